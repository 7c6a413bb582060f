/**
 * `headroom status` when Redis cannot be read, run as the real command: one line on stderr naming
 * the Redis URL (its password masked) and what failed, and exit code 3 (docs/operations.md#exit-codes),
 * whether Redis was never there, refuses it (a password, a database: in the words a worker's
 * start uses, `refused the connection: <cause>`), or goes away under `--watch`. It printed
 * a stack and exited 1 when a read failed after connecting, and exited 2, the bad-input code,
 * without naming the URL when the first connect failed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { exitOf, spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const procs: FleetProcess[] = [];
const servers: EmbeddedRedis[] = [];
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  for (const s of servers) await s.stop({ kill: true });
});

const config = writeConfig({ redis: { prefix: 'strd' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });

/** Runs `headroom status` to its end: exit code and output. */
async function status(redisUrl: string, ...flags: string[]): Promise<{ code: number | string; out: string; proc: FleetProcess }> {
  const proc = spawnHeadroom(['status', '--config', config, '--redis', redisUrl, ...flags]);
  procs.push(proc);
  return { code: await proc.exited, out: proc.output(), proc };
}

/** `headroom status --watch` on a Redis of its own, once it has drawn its first table. */
async function watchingFirstTable(): Promise<{ server: EmbeddedRedis; proc: FleetProcess }> {
  const server = await startEmbeddedRedis();
  servers.push(server);
  const proc = spawnHeadroom(['status', '--config', config, '--redis', server.url, '--watch']);
  procs.push(proc);
  await until(() => proc.output().includes('last 5 min: calls'), 60_000, 'the first table');
  return { server, proc };
}

describe('headroom status without a readable Redis', () => {
  it('says which Redis could not be reached and why, in one line, and exits 3', async () => {
    const port = await freePort();
    const { code, out } = await status(`redis://127.0.0.1:${port}`);
    expect(out).toBe(`headroom status: cannot read the fleet from Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    expect(code).toBe(3);
  });

  it('masks the password of the URL it names', async () => {
    const port = await freePort();
    const { code, out } = await status(`redis://:hunter2-secret@127.0.0.1:${port}`);
    expect(out).toBe(`headroom status: cannot read the fleet from Redis at redis://:***@127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    expect(code).toBe(3);
  });

  it('masks a password given as a query parameter, which ioredis reads too', async () => {
    const port = await freePort();
    const { code, out } = await status(`redis://127.0.0.1:${port}?password=hunter2-secret`);
    expect(out).toBe(`headroom status: cannot read the fleet from Redis at redis://127.0.0.1:${port}?password=***: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    expect(code).toBe(3);
  });

  it('says that Redis refused a wrong password, in the words a worker uses, with what to check', async () => {
    const server = await startEmbeddedRedis({ args: ['--requirepass', 'right-password'] });
    servers.push(server);
    const { code, out } = await status(`redis://:wrong-password@127.0.0.1:${server.port}`);
    expect(out.trim().split('\n')).toHaveLength(1);
    expect(out).toMatch(new RegExp(`^headroom status: cannot read the fleet from Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${server.port}: refused the connection: WRONGPASS .*\\(check the user and password in the URL\\)\n$`));
    expect(out).not.toContain('wrong-password');
    expect(code).toBe(3);
  });

  it('says that Redis refused a database it does not have, naming it', async () => {
    const server = await startEmbeddedRedis();
    servers.push(server);
    const { code, out } = await status(`redis://127.0.0.1:${server.port}/99`);
    // It said only "ERR DB index is out of range".
    expect(out).toMatch(new RegExp(`^headroom status: cannot read the fleet from Redis at redis://127\\.0\\.0\\.1:${server.port}/99: refused the connection: it cannot select database 99 \\(ERR DB index is out of range\\)`));
    expect(code).toBe(3);
  });

  it('with --watch, ends with that line and exit 3 when Redis goes away after a table, not a stack and 1', async () => {
    const { server, proc } = await watchingFirstTable();
    await server.stop({ kill: true });
    expect(await proc.exited).toBe(3);
    const lines = proc.output().trimEnd().split('\n');
    expect(lines.at(-1)).toMatch(new RegExp(`^headroom status: cannot read the fleet from Redis at ${server.url.replace(/\./g, '\\.')}: `));
    expect(proc.output()).not.toMatch(/^\s+at /m);
  });

  it('with --watch, ends with that line and exit 3 when Redis stops answering after a table, rather than hang on it', async () => {
    // Connected but silent: a paused Redis, a node mid-failover, a network black hole. The
    // command waited on its read for as long as that lasted, the last table still on screen.
    const { server, proc } = await watchingFirstTable();
    server.process.kill('SIGSTOP');
    try {
      expect(await exitOf(proc, 30_000)).toBe(3);
    } finally {
      server.process.kill('SIGCONT');
    }
    expect(proc.output().trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^headroom status: cannot read the fleet from Redis at ${server.url.replace(/\./g, '\\.')}: no answer within 3000 ms to the read of the fleet$`));
  });
});
