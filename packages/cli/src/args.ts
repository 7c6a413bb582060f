/**
 * The `headroom` command line, read per command: each command takes its own flags and no
 * positional argument. One flag set shared by all, with positionals allowed, let
 * `headroom worker /path/cfg.yaml` start silently with ./headroom.config.yaml and
 * `headroom status --workers 9 --duration 5` pass. A mistake is returned as data (`usage`), which the
 * CLI prints and exits 2 on (docs/operations.md#exit-codes).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const COMMANDS = ['worker', 'dashboard', 'gateway', 'status', 'demo'] as const;
export type Command = (typeof COMMANDS)[number];

type Options = NonNullable<ParseArgsConfig['options']>;

const CONFIG_AND_REDIS = { config: { type: 'string' }, redis: { type: 'string' } } as const satisfies Options;

/** Each command's own flags; `--help` (`-h`) goes with every one. */
const OPTIONS = {
  worker: { ...CONFIG_AND_REDIS, id: { type: 'string' } },
  dashboard: { ...CONFIG_AND_REDIS, port: { type: 'string' }, 'read-only': { type: 'boolean' }, 'local-only': { type: 'boolean' }, 'show-payloads': { type: 'boolean' } },
  gateway: { ...CONFIG_AND_REDIS, port: { type: 'string' } },
  status: { ...CONFIG_AND_REDIS, watch: { type: 'boolean' }, check: { type: 'boolean' } },
  demo: { duration: { type: 'string' }, workers: { type: 'string' }, check: { type: 'boolean' } },
} as const satisfies Record<Command, Options>;

const HELP = { help: { type: 'boolean', short: 'h' } } as const satisfies Options;

/** Every command's flags at once: a flag of another command is then named as such, not as unknown. */
const ALL_OPTIONS: Options = Object.assign({}, HELP, ...Object.values(OPTIONS));

/** What the command line asks for, with each value checked and converted. */
export interface CliArgs {
  command: Command;
  config: string;
  redis?: string;
  id?: string;
  port?: number;
  /** Absent: the dashboard follows `dashboard.readOnly` (itself true by default). */
  readOnly?: true;
  localOnly: boolean;
  showPayloads: boolean;
  watch: boolean;
  durationSec?: number;
  workers?: number;
  check: boolean;
}

export type ParsedArgs =
  | { kind: 'run'; args: CliArgs }
  /** `--help`, `-h`, `help`: the usage on stdout, exit 0. */
  | { kind: 'help' }
  /** No command at all: the usage, exit 0, as before. */
  | { kind: 'none' }
  /** A mistake: the message (and the usage, when `showUsage`), exit 2. */
  | { kind: 'usage'; message: string; showUsage: boolean };

const isCommand = (word: string | undefined): word is Command => (COMMANDS as readonly string[]).includes(word ?? '');

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  const [command, ...rest] = argv;
  if (command === undefined) return { kind: 'none' };
  if (command === 'help' || command === '--help' || command === '-h') return { kind: 'help' };
  if (!isCommand(command)) {
    const message = command.startsWith('-') ? `expected a command before ${command}` : `unknown command '${command}'`;
    return { kind: 'usage', message, showUsage: true };
  }
  const prefix = `headroom ${command}`;
  let parsed: ReturnType<typeof parseArgs<{ options: Options; allowPositionals: true; strict: true; tokens: true; args: string[] }>>;
  try {
    parsed = parseArgs({ args: rest, options: ALL_OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    // Node's own words for an unknown flag or a missing value ("Unknown option '--concurrency'").
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) return { kind: 'usage', message: `${prefix}: ${(err as Error).message}`, showUsage: true };
    throw err;
  }
  const { values, positionals, tokens } = parsed;
  if (values.help === true) return { kind: 'help' };
  const own: Options = OPTIONS[command];
  const takesConfig = 'config' in own;
  const positional = positionals[0];
  if (positional !== undefined) {
    const hint = takesConfig ? ' (use --config FILE)' : ` (${command} takes only flags)`;
    return { kind: 'usage', message: `${prefix}: unexpected argument '${positional}'${hint}`, showUsage: false };
  }
  for (const token of tokens) {
    if (token.kind !== 'option' || token.name in own) continue;
    const owners = COMMANDS.filter((c) => token.name in OPTIONS[c]).map((c) => `headroom ${c}`);
    return { kind: 'usage', message: `${prefix}: ${token.rawName} is not a flag of ${command} (it is one of ${owners.join(', ')})`, showUsage: true };
  }
  return checkedValues(command, values as Record<string, string | boolean | undefined>);
}

function checkedValues(command: Command, values: Record<string, string | boolean | undefined>): ParsedArgs {
  const str = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const bool = (name: string): boolean => values[name] === true;
  const args: CliArgs = { command, config: str('config') ?? 'headroom.config.yaml', localOnly: bool('local-only'), showPayloads: bool('show-payloads'), watch: bool('watch'), check: bool('check') };
  const redis = str('redis');
  if (redis !== undefined) args.redis = redis;
  const id = str('id');
  if (id !== undefined) args.id = id;
  if (bool('read-only')) args.readOnly = true;
  // A probe reads once and exits with its verdict; a watch redraws until stopped and exits 0 then.
  // Together the verdict would have no moment to be given, so neither wins silently.
  if (args.watch && args.check) return { kind: 'usage', message: `headroom ${command}: --check and --watch do not go together (--check reads once and exits with its verdict; --watch redraws until stopped)`, showUsage: false };
  try {
    const port = str('port');
    if (port !== undefined) args.port = portOf(port);
    const duration = str('duration');
    if (duration !== undefined) args.durationSec = positiveNumber('--duration', duration);
    const workers = str('workers');
    if (workers !== undefined) args.workers = positiveInteger('--workers', workers);
  } catch (err) {
    if (err instanceof FlagValueError) return { kind: 'usage', message: `headroom ${command}: ${err.message}`, showUsage: false };
    throw err;
  }
  return { kind: 'run', args };
}

/** A flag whose value is not of its kind (caught in this module, never seen outside it). */
class FlagValueError extends Error {}

function portOf(raw: string): number {
  // Digits only: Number() also reads `1e3` and `0x50`, which no one means as a port.
  const n = /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FlagValueError(`--port: expected 0-65535, got ${raw}`);
  return n;
}

function positiveNumber(flag: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0) throw new FlagValueError(`${flag} expects a positive number, got "${raw}"`);
  return n;
}

/** A count of processes: `--workers 1.5` started one worker and announced "1.5 processes". */
function positiveInteger(flag: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n <= 0) throw new FlagValueError(`${flag} expects a positive integer, got "${raw}"`);
  return n;
}
