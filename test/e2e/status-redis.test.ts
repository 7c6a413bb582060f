/**
 * `headroom status` when Redis cannot be read, run as the real command: one line on stderr naming
 * the Redis URL (its password masked) and what failed, and exit code 3 (docs/operations.md#exit-codes),
 * whether Redis was never there, refuses it (a password, a database: in the words a worker's
 * start uses, `refused the connection: <cause>`), also under `--watch`. It printed
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

  it('with --watch, still ends with that line and exit 3 when Redis refuses it: waiting does not change a wrong password', async () => {
    const server = await startEmbeddedRedis({ args: ['--requirepass', 'right-password'] });
    servers.push(server);
    const { code, out } = await status(`redis://:wrong-password@127.0.0.1:${server.port}`, '--watch');
    expect(out).toMatch(new RegExp(`^headroom status: cannot read the fleet from Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${server.port}: refused the connection: WRONGPASS `));
    expect(code).toBe(3);
  });
});

/**
 * `headroom status --watch` through a Redis blip: it shows that Redis cannot be read, since when,
 * and how old the figures it drew last are, keeps its loop, and draws the fleet again once Redis
 * answers, ending 0 on Ctrl-C or SIGTERM as ever. It ended with exit 3 at the first failed read,
 * the moment an operator watching an incident wanted it most. Each test runs Redis on a port of
 * its own, stopped and started again (or paused) under the running command.
 */
describe('headroom status --watch through a Redis blip', () => {
  /** Ports of this file's own, so Redis comes back where the watch looks for it. */
  const PORTS = { restart: 17_110, paused: 17_111, late: 17_112 };
  const TABLE_END = 'last 5 min: calls';
  const unreachableLine = (port: number) => new RegExp(`^Redis at redis://127\\.0\\.0\\.1:${port} unreachable since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z: (.+); (no figures read yet|the last figures are [\\d.]+(ms|s|m) old \\(read at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)); trying again every 2\\.0s$`, 'm');
  /** A table drawn after the output's last unreachable line: the watch read Redis again. */
  const tableAfterBlip = (out: string) => {
    const at = out.lastIndexOf(' unreachable since ');
    return at >= 0 && out.indexOf(TABLE_END, at) > at;
  };
  const watch = (port: number) => {
    const proc = spawnHeadroom(['status', '--config', config, '--redis', `redis://127.0.0.1:${port}`, '--watch']);
    procs.push(proc);
    return proc;
  };

  it('shows Redis unreachable when it goes away after a table, with the figures\' age, and draws the fleet again when it is back; SIGTERM ends it 0', async () => {
    const first = await startEmbeddedRedis({ port: PORTS.restart });
    servers.push(first);
    const proc = watch(PORTS.restart);
    await until(() => proc.output().includes(TABLE_END), 60_000, 'the first table');
    await first.stop({ kill: true });
    await until(() => unreachableLine(PORTS.restart).test(proc.output()), 60_000, 'the unreachable line');
    const [, failure, figures] = unreachableLine(PORTS.restart).exec(proc.output())!;
    expect(failure).toMatch(/ECONNREFUSED|connection was lost|Connection is closed/);
    expect(figures).toMatch(/^the last figures are /);
    // Still watching, through more than one attempt.
    await until(() => (proc.output().match(/ unreachable since /g) ?? []).length >= 2, 60_000, 'a second attempt');
    expect(proc.child.exitCode).toBeNull();
    const again = await startEmbeddedRedis({ port: PORTS.restart });
    servers.push(again);
    await until(() => tableAfterBlip(proc.output()), 60_000, 'a table once Redis is back');
    proc.child.kill('SIGTERM');
    expect(await exitOf(proc, 30_000)).toBe(0);
    expect(proc.output()).not.toMatch(/^\s+at /m);
  });

  it('shows Redis not answering while it is paused, and draws the fleet again when it answers; SIGINT ends it 0', async () => {
    const server = await startEmbeddedRedis({ port: PORTS.paused });
    servers.push(server);
    const proc = watch(PORTS.paused);
    await until(() => proc.output().includes(TABLE_END), 60_000, 'the first table');
    server.process.kill('SIGSTOP');
    try {
      await until(() => unreachableLine(PORTS.paused).test(proc.output()), 60_000, 'the unreachable line');
      expect(unreachableLine(PORTS.paused).exec(proc.output())![1]).toBe('no answer within 3000 ms to the read of the fleet');
      expect(proc.child.exitCode).toBeNull();
    } finally {
      server.process.kill('SIGCONT');
    }
    await until(() => tableAfterBlip(proc.output()), 60_000, 'a table once Redis answers');
    proc.child.kill('SIGINT');
    expect(await exitOf(proc, 30_000)).toBe(0);
  });

  it('started before Redis is up, says it has no figures yet and draws the fleet once Redis starts', async () => {
    const proc = watch(PORTS.late);
    await until(() => unreachableLine(PORTS.late).test(proc.output()), 60_000, 'the unreachable line');
    expect(unreachableLine(PORTS.late).exec(proc.output())![2]).toBe('no figures read yet');
    const server = await startEmbeddedRedis({ port: PORTS.late });
    servers.push(server);
    await until(() => tableAfterBlip(proc.output()), 60_000, 'a table once Redis is up');
    proc.child.kill('SIGTERM');
    expect(await exitOf(proc, 30_000)).toBe(0);
  });
});
