/**
 * `pnpm headroom ...` reads a relative `--config` (and the default `headroom.config.yaml`) from the
 * directory pnpm was run in, as docs/operations.md says to run the CLI. pnpm runs a root script in
 * the root, so `cd infra && pnpm headroom status --config headroom.sim.config.yaml` failed with
 * ENOENT, and a directory's own headroom.config.yaml lost silently to the root's. Run as the real
 * `pnpm headroom` from a directory outside the repository (`pnpm --dir`), the config there names a
 * Redis port where nothing listens: `headroom status` naming that port proves which file it read.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '@headroom/testing';
import { REPO_ROOT } from '../support/fleet.js';

/** Runs `pnpm headroom <args>` with `cwd` as the caller's directory: exit code and output. */
function pnpmHeadroom(cwd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  // REDIS_URL unset: the Redis URL must come from the config file under test.
  const { REDIS_URL: _unset, ...env } = process.env;
  const child = spawn('pnpm', ['--silent', '--dir', REPO_ROOT, 'headroom', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out })));
}

/** A directory outside the repository holding `name`, a config whose Redis is a port where nothing listens. */
async function callerDir(name: string): Promise<{ dir: string; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'headroom-caller-'));
  const port = await freePort();
  writeFileSync(join(dir, name), JSON.stringify({ redis: { prefix: 'clip', url: `redis://127.0.0.1:${port}` }, models: { 'claude-haiku-4-5': { provider: 'anthropic' } } }));
  return { dir, port };
}

describe('pnpm headroom, run from another directory', () => {
  it('reads a relative --config from the directory pnpm was run in', async () => {
    const { dir, port } = await callerDir('headroom.sim.config.yaml');
    const { code, out } = await pnpmHeadroom(dir, ['status', '--config', 'headroom.sim.config.yaml']);
    expect(out).toContain(`headroom status: cannot read the fleet from Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED`);
    expect(code).toBe(3);
  });

  it("reads that directory's headroom.config.yaml by default, not the repository's", async () => {
    const { dir, port } = await callerDir('headroom.config.yaml');
    const { code, out } = await pnpmHeadroom(dir, ['status']);
    expect(out).toContain(`cannot read the fleet from Redis at redis://127.0.0.1:${port}:`);
    expect(code).toBe(3);
  });

  it('names the absolute path it tried when the file is not there', async () => {
    const { dir } = await callerDir('headroom.sim.config.yaml');
    const { code, out } = await pnpmHeadroom(dir, ['status', '--config', 'missing.yaml']);
    expect(out).toContain(`cannot read: ENOENT: no such file or directory, open '${join(dir, 'missing.yaml')}'`);
    expect(code).toBe(2);
  });
});
