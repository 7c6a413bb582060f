import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addToLane, createLogger, laneKeys, parseConfig, type InteractiveLane } from '@headroom/queue';
import { startSimulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker } from '../worker.js';

let server: EmbeddedRedis;

beforeAll(async () => {
  server = await startEmbeddedRedis();
});
afterAll(async () => {
  await server.stop();
});

/** `ready-lanes.lua` is called with five keys per lane: wait, prioritized, delayed, marker, meta. */
const isReadyLanes = (args: string[]) => args[0]?.toLowerCase() === 'evalsha' && Number(args[2]) % 5 === 0 && args[3]?.endsWith(':wait') === true && args[6]?.endsWith(':marker') === true;

/**
 * A worker of one pool on the simulator, watched by a MONITOR opened before it starts, from a
 * client already connected: a command from another connection at the moment MONITOR answers can
 * share a read with its reply, which ioredis takes for a reply to nothing ("Command queue state
 * error"). The worker's first commands are seen too. `add` puts jobs in a lane as admission does.
 */
async function watchedWorker(prefix: string, opts: { latencyMs: number; concurrency?: number }) {
  const sim = await startSimulator({ latencyMs: opts.latencyMs, apiKeys: ['sk-watched'] });
  const config = parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'WATCHED_TEST_KEY' } },
    models: { 'claude-sonnet-4-6': { provider: 'anthropic', limits: { rpm: 100_000, itpm: 100_000_000, otpm: 100_000_000 } } },
    ...(opts.concurrency ? { dispatch: { concurrency: opts.concurrency } } : {}),
    batch: { enabled: false },
  });
  const redis = new Redis(server.url);
  await redis.ping();
  const monitor = await redis.monitor();
  const worker = await startWorker({ config, redisUrl: server.url, env: { WATCHED_TEST_KEY: 'sk-watched' }, logger: createLogger({ level: 'silent' }) });
  const queues = new Map<InteractiveLane, Queue>();
  const queueOf = (lane: InteractiveLane) => {
    const k = laneKeys(prefix, lane);
    if (!queues.has(lane)) queues.set(lane, new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis }));
    return queues.get(lane)!;
  };
  return {
    monitor,
    /** Adds `count` jobs to the lane, ids `<lane>.<tag>-<i>`. */
    add: (lane: InteractiveLane, tag: string, count: number) =>
      addToLane(redis, queueOf(lane), prefix, lane, Array.from({ length: count }, (_, i) => ({
        jobId: `${lane}.${tag}-${i}`,
        job: { priority: lane.toUpperCase() as Uppercase<InteractiveLane>, provider: 'anthropic' as const, request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user' as const, content: `q ${i}` }] } },
        opts: {},
      }))),
    completed: (lane: InteractiveLane) => redis.zcard(`${laneKeys(prefix, lane).jobKeyPrefix}completed`),
    close: async () => {
      monitor.disconnect();
      await worker.close({ graceMs: 100 });
      for (const q of queues.values()) await q.close();
      redis.disconnect();
      await sim.close();
    },
  };
}

describe('an idle worker', () => {
  it('asks Redis about the lanes once per wake from its blocking wait, not once per lane, and not about the pool backoffs', async () => {
    const prefix = 'idle1';
    const config = parseConfig({
      redis: { prefix },
      // No job is added: no provider is called.
      providers: { anthropic: { baseURL: 'http://127.0.0.1:9', apiKeyEnv: 'IDLE_TEST_KEY' } },
      models: { 'claude-sonnet-4-6': { provider: 'anthropic', limits: { rpm: 60, itpm: 100_000, otpm: 100_000 } } },
      // The batcher, which looks at the BATCH lane on its own clock, is not what this counts.
      batch: { enabled: false },
    });
    const worker = await startWorker({ config, redisUrl: server.url, env: { IDLE_TEST_KEY: 'sk-idle' }, logger: createLogger({ level: 'silent' }) });
    // From a client already connected: a fresh one's own ready check would race MONITOR's reply.
    const base = new Redis(server.url);
    await base.ping();
    const monitor = await base.monitor();
    base.disconnect();
    let waits = 0;
    let looks = 0;
    let backoffReads = 0;
    const interactive = (args: string[]) => args.slice(3, 3 + Number(args[2])).some((k) => /:(critical|high|normal|low):wait$/.test(k));
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'bzpopmin' && args[1]?.startsWith(`{${prefix}:`)) waits++;
      else if (isReadyLanes(args) && args[3]?.startsWith(`{${prefix}:`) && interactive(args)) looks++;
      else if (args[1]?.startsWith(`{${prefix}:`) && args[1].endsWith(':hr:pool-backoff')) backoffReads++;
    });
    try {
      // Idle, the worker's blocking wait times out and it looks at every lane: counted over three
      // such waits, however long a busy machine takes for them.
      await expect.poll(() => waits, { timeout: 25_000, interval: 100 }).toBeGreaterThanOrEqual(3);
    } finally {
      monitor.disconnect();
      await worker.close({ graceMs: 100 });
    }
    // Each wake is one look over the lanes (before: one per lane still unknown, 4 for 1).
    expect(looks).toBeLessThanOrEqual(waits + 1);
    // Its looks find every lane empty: no job waits on a backed-off pool (before: 4 reads a look).
    expect(backoffReads).toBe(0);
  });

  it('waits longer between its own looks while they find nothing, and a second again once it has taken a job', async () => {
    const prefix = 'idle2';
    const w = await watchedWorker(prefix, { latencyMs: 0 });
    // Each blocking wait's timeout, in seconds, as the worker sent it.
    const timeouts: number[] = [];
    w.monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'bzpopmin' && args[1]?.startsWith(`{${prefix}:`)) timeouts.push(Number(args[args.length - 1]));
    });
    try {
      await expect.poll(() => timeouts.includes(4), { timeout: 30_000, interval: 100 }).toBe(true);
      // 1 s, then doubled by each look that found nothing, up to 4 s.
      expect(timeouts.slice(0, timeouts.indexOf(4) + 1)).toEqual([1, 2, 4]);
      const seen = timeouts.length;
      await w.add('high', 'idle', 1);
      await expect.poll(() => w.completed('high'), { timeout: 20_000, interval: 50 }).toBe(1);
      await expect.poll(() => timeouts.length, { timeout: 20_000, interval: 50 }).toBeGreaterThan(seen);
      // The 4 s wait was woken by the job's marker; having taken the job, it waits a second again.
      expect(timeouts[seen], JSON.stringify({ seen, timeouts })).toBe(1);
    } finally {
      await w.close();
    }
  });
});

describe('a busy worker', () => {
  it('asks about the lanes below a lane known to hold work only once that lane comes back empty', async () => {
    const prefix = 'busy1';
    // Its first looks, over every lane, are counted too, and keep to the rule checked below.
    const w = await watchedWorker(prefix, { latencyMs: 5, concurrency: 2 });
    // The lanes each count asked about, by name, in key order.
    const asked: string[][] = [];
    w.monitor.on('monitor', (_time: string, args: string[]) => {
      if (!isReadyLanes(args) || !args[3]?.startsWith(`{${prefix}:`)) return;
      const keys = args.slice(3, 3 + Number(args[2]));
      asked.push(keys.filter((k) => k.endsWith(':wait')).map((k) => /:(\w+):wait$/.exec(k)![1]!));
    });
    const jobs = 40;
    try {
      await w.add('normal', 'busy', jobs);
      await expect.poll(() => w.completed('normal'), { timeout: 60_000, interval: 50 }).toBe(jobs);
    } finally {
      await w.close();
    }
    // NORMAL holds the work: LOW is reached, and asked about, only when NORMAL's count is used up
    // and NORMAL is asked again in the same call (the counts above NORMAL, CRITICAL and HIGH's
    // empty marks running out, asked about LOW each time too).
    expect(asked.length).toBeGreaterThan(0);
    for (const lanes of asked) if (lanes.includes('low')) expect(lanes).toContain('normal');
  });
});
