/**
 * `headroom status --check` as a health probe, run as the real command against a private Redis
 * and a real worker: silent and exit 0 while the fleet takes work; exit 1 with one reason a line
 * on stderr when it does not (no live worker, a lane paused with BullMQ's own `Queue.pause()`, as
 * Bull Board does); exit 3 when Redis cannot be read, since unreadable is not unhealthy; exit 2
 * for `--check --watch`. `headroom status` exited 0 whatever the fleet's state once it could read
 * Redis, so a script, a cron line or a container healthcheck could not use it.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laneKeys, readHeartbeats } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { exitOf, spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const PREFIX = 'stck';
const MODEL = 'claude-haiku-4-5';
const KEY = { STATUS_CHECK_TEST_KEY: 'sk-status-check-test' };

const procs: FleetProcess[] = [];
let redis: EmbeddedRedis;
let sim: Simulator;
let config: string;
beforeAll(async () => {
  [redis, sim] = await Promise.all([startEmbeddedRedis(), startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 100 } } } })]);
  config = writeConfig({
    redis: { prefix: PREFIX },
    models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 100 } } },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'STATUS_CHECK_TEST_KEY' } },
  });
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  await Promise.all([redis?.stop({ kill: true }), sim?.close()]);
});

/** Runs `headroom status --check` to its end: exit code and everything it printed. */
async function check(redisUrl: string, ...flags: string[]): Promise<{ code: number | string; out: string }> {
  const proc = spawnHeadroom(['status', '--config', config, '--redis', redisUrl, '--check', ...flags]);
  procs.push(proc);
  return { code: await exitOf(proc), out: proc.output() };
}

describe('headroom status --check', () => {
  it('exits 1 with no live worker, saying so in one line', async () => {
    const { code, out } = await check(redis.url);
    expect(out).toBe(`headroom status --check: no live worker beats under redis.prefix "${PREFIX}": nothing takes jobs from the lanes\n`);
    expect(code).toBe(1);
  });

  it('exits 0, printing nothing, once a worker takes work from every lane', async () => {
    const worker = spawnWorker(config, redis.url, `${PREFIX}-w1`, KEY);
    procs.push(worker);
    // Its heartbeat is what the check reads, and it starts after the lanes' consumers connect.
    const conn = new Redis(redis.url);
    try {
      await until(async () => (await readHeartbeats(conn, PREFIX)).alive.some((w) => w.id === worker.id), 60_000, "the worker's first heartbeat");
    } finally {
      conn.disconnect();
    }
    const { code, out } = await check(redis.url);
    expect(out).toBe('');
    expect(code).toBe(0);
  });

  it("exits 1 naming a lane paused with BullMQ's Queue.pause(), and 0 again once it is resumed", async () => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const k = laneKeys(PREFIX, 'normal');
    const normal = new Queue(k.queueName, { connection, prefix: k.bullPrefix });
    try {
      await normal.pause();
      const paused = await check(redis.url);
      expect(paused.out).toBe('headroom status --check: lane normal is held back: paused: none of its jobs starts\n');
      expect(paused.code).toBe(1);
      await normal.resume();
      expect((await check(redis.url)).code).toBe(0);
    } finally {
      await normal.close();
      connection.disconnect();
    }
  });

  it('exits 3, not 1, when Redis cannot be read: unreadable is not unhealthy', async () => {
    const port = await freePort();
    const { code, out } = await check(`redis://127.0.0.1:${port}`);
    expect(out).toBe(`headroom status: cannot read the fleet from Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}\n`);
    expect(code).toBe(3);
  });

  it('refuses --watch beside it as a usage error, exit 2, before reading anything', async () => {
    const { code, out } = await check(redis.url, '--watch');
    expect(out).toBe('headroom status: --check and --watch do not go together (--check reads once and exits with its verdict; --watch redraws until stopped)\n');
    expect(code).toBe(2);
  });
});
