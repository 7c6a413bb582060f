/**
 * A worker whose Redis goes away, each on a private redis-server this file kills: its log stays
 * JSON lines, one per connection when Redis goes and one when it is back (ioredis printed
 * `[ioredis] Unhandled error event` with a stack for each reconnect of a connection nobody
 * listened to, and the listeners there were logged every retry).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { laneKeys, type HeadroomConfigInput } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { Redis } from 'ioredis';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, until, waitForFleet } from '../support/probes.js';

const MODEL = 'claude-haiku-4-5';
const ENV = { REDIS_LOSS_KEY: 'sk-redis-loss', HEADROOM_LOG_LEVEL: 'info' };
const procs: FleetProcess[] = [];
const servers: EmbeddedRedis[] = [];

afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  for (const s of servers) await s.stop({ kill: true });
});

/** A private redis-server (on `port` when given, to restart one in place), stopped after the file. */
async function redisServer(opts: { port?: number; dir?: string; appendOnly?: boolean } = {}): Promise<EmbeddedRedis> {
  const server = await startEmbeddedRedis(opts);
  servers.push(server);
  return server;
}

function config(prefix: string, extra: Partial<HeadroomConfigInput> = {}): string {
  return writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: 'http://127.0.0.1:9', apiKeyEnv: 'REDIS_LOSS_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } } },
    dispatch: { shutdownGraceMs: 2_000, lockMs: 5_000, stalledIntervalMs: 1_000 },
    ...extra,
  });
}

function worker(configFile: string, redisUrl: string, id: string): FleetProcess {
  const proc = spawnWorker(configFile, redisUrl, id, ENV);
  procs.push(proc);
  return proc;
}

/** Every line the process wrote, parsed: a line that is not JSON fails the test, quoted. */
function jsonLines(proc: FleetProcess): { msg?: string; connection?: string; drained?: boolean; level?: number }[] {
  const lines = proc.output().split('\n').filter((l) => l.trim() !== '');
  const notJson = lines.filter((l) => {
    try {
      return typeof JSON.parse(l) !== 'object';
    } catch {
      return true;
    }
  });
  expect(notJson.slice(0, 5), `${notJson.length} of ${lines.length} lines are not JSON`).toEqual([]);
  return lines.map((l) => JSON.parse(l));
}

/** How many lines say `msg`, per connection. */
function perConnection(lines: ReturnType<typeof jsonLines>, msg: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of lines) if (l.msg === msg) counts[l.connection ?? '?'] = (counts[l.connection ?? '?'] ?? 0) + 1;
  return counts;
}

describe('a worker whose Redis goes away', () => {
  it('logs only JSON lines through an outage: one per connection when Redis goes, one when it is back', async () => {
    const port = await freePort();
    const first = await redisServer({ port });
    const w = worker(config('rl1'), first.url, 'rl1-w');
    await waitForFleet(first.url, 'rl1', [w]);

    await first.stop({ kill: true });
    // Long enough for every connection to fail a few reconnects (they retry within 50 ms to 2 s).
    await sleep(4_000);
    const second = await redisServer({ port });
    // Back: the worker publishes the fleet's settings again into the empty Redis.
    const probe = new Redis(second.url);
    await until(async () => (await probe.exists(laneKeys('rl1', 'normal').settings)) === 1, 30_000, 'the worker reconnected');
    probe.disconnect();
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);

    const lines = jsonLines(w);
    const lost = perConnection(lines, 'redis connection lost; reconnecting');
    expect(lost.main).toBe(1);
    expect(Object.values(lost).every((n) => n === 1), JSON.stringify(lost)).toBe(true);
    expect(Object.values(perConnection(lines, 'redis connection back')).every((n) => n === 1)).toBe(true);
    expect(lines.map((l) => l.msg)).toContain('worker stopped');
  });
});
