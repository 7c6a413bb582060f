import { describe, expect, it } from 'vitest';
import { parseCommandLine } from './args.js';

const usage = (argv: string[]) => {
  const parsed = parseCommandLine(argv);
  if (parsed.kind !== 'usage') throw new Error(`expected a usage error, got ${JSON.stringify(parsed)}`);
  return parsed.message;
};

describe('parseCommandLine', () => {
  it('reads each command with its own flags and their defaults', () => {
    expect(parseCommandLine(['worker', '--config', 'c.yaml', '--redis', 'redis://x:1', '--id', 'w1'])).toEqual({
      kind: 'run',
      args: { command: 'worker', config: 'c.yaml', redis: 'redis://x:1', id: 'w1', localOnly: false, showPayloads: false, watch: false, check: false },
    });
    expect(parseCommandLine(['status'])).toMatchObject({ kind: 'run', args: { command: 'status', config: 'headroom.config.yaml', watch: false } });
    expect(parseCommandLine(['dashboard', '--port', '0', '--read-only', '--local-only'])).toMatchObject({ kind: 'run', args: { port: 0, readOnly: true, localOnly: true } });
    expect(parseCommandLine(['demo', '--workers', '2', '--duration', '1.5', '--check'])).toMatchObject({ kind: 'run', args: { workers: 2, durationSec: 1.5, check: true } });
  });

  it('reads status --check, and refuses it with --watch: a probe reads once, a watch never ends with a verdict', () => {
    expect(parseCommandLine(['status', '--check'])).toMatchObject({ kind: 'run', args: { command: 'status', check: true, watch: false } });
    expect(usage(['status', '--check', '--watch'])).toBe('headroom status: --check and --watch do not go together (--check reads once and exits with its verdict; --watch redraws until stopped)');
  });

  it('refuses a positional argument, naming it and pointing to --config', () => {
    expect(usage(['worker', '/path/cfg.yaml'])).toBe("headroom worker: unexpected argument '/path/cfg.yaml' (use --config FILE)");
    expect(usage(['gateway', '--port', '8080', 'extra'])).toBe("headroom gateway: unexpected argument 'extra' (use --config FILE)");
    expect(usage(['demo', 'now'])).toBe("headroom demo: unexpected argument 'now' (demo takes only flags)");
  });

  it("refuses another command's flag, naming the command that owns it", () => {
    expect(usage(['status', '--workers', '9'])).toBe('headroom status: --workers is not a flag of status (it is one of headroom demo)');
    expect(usage(['worker', '--port', '1'])).toBe('headroom worker: --port is not a flag of worker (it is one of headroom dashboard, headroom gateway)');
    expect(usage(['demo', '--config', 'c.yaml'])).toContain('headroom demo: --config is not a flag of demo');
  });

  it('refuses an unknown flag and a flag without its value, in Node’s words', () => {
    expect(usage(['worker', '--concurrency', '5'])).toContain("headroom worker: Unknown option '--concurrency'");
    expect(usage(['worker', '--redis'])).toContain("Option '--redis <value>' argument missing");
  });

  it('refuses an unknown command, and a flag where the command belongs', () => {
    expect(usage(['wrker'])).toBe("unknown command 'wrker'");
    expect(usage(['--config', 'x'])).toBe('expected a command before --config');
  });

  it('asks for help with --help, -h or help, before or after a command', () => {
    for (const argv of [['--help'], ['-h'], ['help'], ['worker', '--help'], ['status', '-h']]) expect(parseCommandLine(argv)).toEqual({ kind: 'help' });
    expect(parseCommandLine([])).toEqual({ kind: 'none' });
  });

  it('refuses a flag value of the wrong kind', () => {
    expect(usage(['demo', '--workers', '1.5'])).toBe('headroom demo: --workers expects a positive integer, got "1.5"');
    expect(usage(['demo', '--workers', '0'])).toBe('headroom demo: --workers expects a positive integer, got "0"');
    expect(usage(['demo', '--duration', 'ten'])).toBe('headroom demo: --duration expects a positive number, got "ten"');
    expect(usage(['dashboard', '--port', '70000'])).toBe('headroom dashboard: --port: expected 0-65535, got 70000');
    expect(usage(['gateway', '--port', ''])).toBe('headroom gateway: --port: expected 0-65535, got ');
    // Number() reads these; no one means them as a port.
    expect(usage(['gateway', '--port', '1e3'])).toBe('headroom gateway: --port: expected 0-65535, got 1e3');
    expect(usage(['gateway', '--port', '0x50'])).toBe('headroom gateway: --port: expected 0-65535, got 0x50');
  });
});
