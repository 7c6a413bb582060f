/**
 * Invariant 1 under faults, with real processes: `headroom worker` children, a redis-server each
 * test starts (and kills) on its own port, the official SDKs against the simulator.
 *
 * - a worker SIGKILLed mid-call: the job runs again on another worker, completes once, and the
 *   bucket paid for both calls;
 * - Redis SIGKILLed and restarted from its append-only file: every job acknowledged more than
 *   1 s before the kill ends;
 * - Redis away for 10 s: producers fail fast with REDIS_UNAVAILABLE, everyone reconnects, every
 *   job enqueued before and after ends;
 * - a 529 storm on the primary while the fallback answers malformed JSON and cut connections,
 *   across a fleet: every job ends, completed or failed with a reason that says why.
 */
import { rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { JobFailedError, JobNotFoundError, Producer, RedisUnavailableError, type FailureCode, type JobHandle, type LlmJobInput, type LlmResult, type Priority } from '@headroom/producer-sdk';
import { Bucket, laneKeys, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, until, waitForFleet } from '../support/probes.js';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const LIMITS = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'FAULTS_TEST_ANTHROPIC_KEY';
const KEY = { [KEY_ENV]: 'sk-faults-test' };

let sim: Simulator | undefined;
const procs: FleetProcess[] = [];
const redises: EmbeddedRedis[] = [];
const closers: (() => unknown)[] = [];

afterEach(async () => {
  await stopAll(procs.splice(0), 'SIGKILL');
  for (const close of closers.splice(0).reverse()) await close();
  await sim?.close();
  sim = undefined;
  for (const r of redises.splice(0)) {
    await r.stop({ kill: true });
    rmSync(r.dir, { recursive: true, force: true });
  }
});

async function redisServer(opts: Parameters<typeof startEmbeddedRedis>[0] = {}): Promise<EmbeddedRedis> {
  const r = await startEmbeddedRedis(opts);
  redises.push(r);
  return r;
}

function admin(url: string): Redis {
  const conn = new Redis(url, { maxRetriesPerRequest: null });
  conn.on('error', () => {});
  closers.push(() => conn.disconnect());
  return conn;
}

function producerOn(url: string, prefix: string): Producer {
  const producer = new Producer({ redis: url, prefix });
  closers.push(() => producer.close());
  return producer;
}

/** `n` worker processes on one config; resolves when all of them serve the lanes. */
async function fleet(redisUrl: string, prefix: string, n: number, extra: Partial<HeadroomConfigInput> = {}): Promise<FleetProcess[]> {
  const config = writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim!.url, apiKeyEnv: KEY_ENV } },
    models: { [SONNET]: { provider: 'anthropic', limits: LIMITS }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    ...extra,
  });
  const started = Array.from({ length: n }, (_, i) => spawnWorker(config, redisUrl, `${prefix}-w${i + 1}`, KEY));
  procs.push(...started);
  await waitForFleet(redisUrl, prefix, started);
  return started;
}

const job = (text: string, opts: { priority?: Priority; model?: string; fallback?: string[]; maxWaitMs?: number } = {}): LlmJobInput => ({
  priority: opts.priority ?? 'HIGH',
  provider: 'anthropic',
  request: { model: opts.model ?? HAIKU, max_tokens: 32, messages: [{ role: 'user', content: text }] },
  ...(opts.fallback ? { fallback: opts.fallback } : {}),
  ...(opts.maxWaitMs === undefined ? {} : { maxWaitMs: opts.maxWaitMs }),
});

/** How a job ended, as its producer sees it. */
type Ending = { kind: 'completed'; result: LlmResult } | { kind: 'failed'; code: FailureCode; reason: string } | { kind: 'missing' } | { kind: 'other'; error: unknown };

async function ending(handle: JobHandle, timeoutMs: number): Promise<Ending> {
  try {
    return { kind: 'completed', result: await handle.result({ timeoutMs }) };
  } catch (err) {
    if (err instanceof JobFailedError) return { kind: 'failed', code: err.failureCode, reason: err.reason };
    if (err instanceof JobNotFoundError) return { kind: 'missing' };
    return { kind: 'other', error: err };
  }
}

describe('faults', () => {
  it('runs a job again on another worker after its worker is SIGKILLed mid-call: one result, both calls charged', async () => {
    sim = await startSimulator({ models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: 3_000 });
    const redis = await redisServer();
    const prefix = 'kill';
    // A dead worker's lock lapses after 2 s and the survivors look for lapsed locks every 0.5 s.
    const workers = await fleet(redis.url, prefix, 2, {
      models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
      dispatch: { concurrency: 2, lockMs: 2_000, stalledIntervalMs: 500 },
    });
    const conn = admin(redis.url);
    const k = laneKeys(prefix, 'high');
    const lane = new Queue(k.queueName, { connection: conn, prefix: k.bullPrefix });
    const events = new QueueEvents(k.queueName, { connection: admin(redis.url), prefix: k.bullPrefix });
    closers.push(() => lane.close(), () => events.close());
    await events.waitUntilReady();
    const completions: string[] = [];
    const stalls: string[] = [];
    events.on('completed', ({ jobId }) => completions.push(jobId));
    events.on('stalled', ({ jobId }) => stalls.push(jobId));

    const producer = producerOn(redis.url, prefix);
    const handle = await producer.enqueue(job('kill me mid-call'));
    // The call is at the provider (admitted, 3 s to go) when the worker holding the job dies.
    await until(() => sim!.stats().models[HAIKU]?.admitted === 1, 15_000, 'first call admitted');
    const holder = (await lane.getJob(handle.id))?.processedBy;
    const victim = workers.find((w) => w.id === holder);
    expect(victim, `job processed by ${holder}`).toBeDefined();
    victim!.child.kill('SIGKILL');
    await victim!.exited;

    const result = await handle.result({ timeoutMs: 30_000 });
    expect(result.model).toBe(HAIKU);
    const final = await lane.getJob(handle.id);
    expect(await final?.getState()).toBe('completed');
    expect(final?.processedBy).not.toBe(holder);
    expect(stalls).toContain(handle.id);
    // Give a duplicate completion every chance to show up before counting.
    await sleep(1_000);
    expect(completions.filter((id) => id === handle.id)).toHaveLength(1);

    // The provider admitted (and so charged) both calls, and so did our bucket: the first
    // call's reservation is never refunded, as its tokens may have been spent.
    expect(sim.stats().models[HAIKU]?.admitted).toBe(2);
    const snapshot = await new Bucket(conn, { prefix }).snapshot(HAIKU, LIMITS);
    expect(snapshot.counters.grants.high ?? 0).toBeGreaterThanOrEqual(2);
  });

  it('does not call again a job its caller cancelled while it ran, when its worker is then SIGKILLed: the stalled rerun on a worker that missed the cancel ends CANCELLED', async () => {
    sim = await startSimulator({ models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: 10_000 });
    const redis = await redisServer();
    const prefix = 'killcancel';
    const config = writeConfig({
      redis: { prefix },
      providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
      models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
      dispatch: { concurrency: 2, lockMs: 2_000, stalledIntervalMs: 500 },
    });
    const victim = spawnWorker(config, redis.url, `${prefix}-first`, KEY);
    procs.push(victim);
    await waitForFleet(redis.url, prefix, [victim]);
    const conn = admin(redis.url);
    const k = laneKeys(prefix, 'high');
    const lane = new Queue(k.queueName, { connection: conn, prefix: k.bullPrefix });
    closers.push(() => lane.close());
    const producer = producerOn(redis.url, prefix);
    const handle = await producer.enqueue(job('cancel me, then kill my worker'));
    await until(() => sim!.stats().models[HAIKU]?.admitted === 1, 15_000, 'first call admitted');
    // The worker dies before the cancel reaches it: the flag is set (the job had started), the
    // message goes to a process that is gone. The worker that takes the job next starts after it,
    // so it never heard the message either (workers running then remember it).
    victim.child.kill('SIGSTOP');
    await producer.cancel(handle.id);
    expect(await conn.exists(k.jobCancel(handle.id))).toBe(1);
    victim.child.kill('SIGKILL');
    await victim.exited;
    const survivor = spawnWorker(config, redis.url, `${prefix}-second`, KEY);
    procs.push(survivor);

    const ended = await ending(handle, 30_000);
    expect(ended).toMatchObject({ kind: 'failed', code: 'CANCELLED' });
    const final = await lane.getJob(handle.id);
    expect(final?.processedBy).toBe(`${prefix}-second`);
    expect(final?.stalledCounter).toBeGreaterThan(0);
    // Taken again after the stall, it made no call of its own.
    await sleep(500);
    expect(sim.stats().models[HAIKU]?.admitted).toBe(1);
  });

  it('keeps every job acknowledged more than 1 s before Redis is SIGKILLed (AOF, appendfsync everysec)', async () => {
    sim = await startSimulator({ models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 100, max: 300 } });
    const redis = await redisServer({ appendOnly: true });
    const prefix = 'aof';
    await fleet(redis.url, prefix, 2, {
      models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
      dispatch: { concurrency: 3, lockMs: 3_000, stalledIntervalMs: 1_000 },
    });
    const producer = producerOn(redis.url, prefix);

    // A steady stream of enqueues up to the moment of the kill: some jobs done, some running,
    // many waiting (6 slots, 10 jobs/s in). Counted, not timed: at least 100 ms apart, at most
    // ten fall in the last second however slowly a loaded machine enqueues, so twenty are older.
    const acked: { handle: JobHandle; at: number }[] = [];
    for (let i = 0; i < 30; i++) {
      acked.push({ handle: await producer.enqueue(job(`aof ${i}`, { priority: i % 2 ? 'NORMAL' : 'HIGH' })), at: Date.now() });
      await sleep(100);
    }
    const killedAt = Date.now();
    await redis.stop({ kill: true, keepDir: true });
    await sleep(500);
    const restarted = await startEmbeddedRedis({ port: redis.port, dir: redis.dir, appendOnly: true });
    redises.push(restarted);
    // The producer reconnects by itself (its calls fail fast meanwhile).
    await until(() => producer.getJob(acked[0]!.handle.id).then(() => true, () => false), 15_000, 'producer reconnected');

    const endings = await Promise.all(acked.map((a) => ending(a.handle, 60_000)));
    const old = endings.filter((_, i) => acked[i]!.at < killedAt - 1_000);
    const recent = endings.filter((_, i) => acked[i]!.at >= killedAt - 1_000);
    const summary = (list: Ending[]) => {
      const by: Record<string, number> = {};
      for (const e of list) by[e.kind] = (by[e.kind] ?? 0) + 1;
      return by;
    };
    console.log(`redis SIGKILL: ${acked.length} acknowledged; older than 1 s: ${JSON.stringify(summary(old))}; last second: ${JSON.stringify(summary(recent))}`);
    expect(old.length).toBeGreaterThan(15);
    // Older than the fsync window: every one ended, completed or failed with a reason.
    for (const e of old) {
      expect(e.kind === 'completed' || (e.kind === 'failed' && e.reason.length > 0), JSON.stringify(e)).toBe(true);
    }
    // The last second may be lost on a machine crash; a process kill keeps it, and nothing hangs.
    for (const e of recent) expect(['completed', 'failed', 'missing']).toContain(e.kind);
  });

  it('survives Redis being away for 10 s: fast REDIS_UNAVAILABLE meanwhile, then everyone reconnects and every job ends', async () => {
    sim = await startSimulator({ models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 200, max: 400 } });
    const redis = await redisServer({ appendOnly: true });
    const prefix = 'outage';
    const workers = await fleet(redis.url, prefix, 2, {
      models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
      // Locks outlast the outage, so calls in flight when Redis left still record their result.
      dispatch: { concurrency: 3, lockMs: 15_000, stalledIntervalMs: 2_000 },
    });
    const producer = producerOn(redis.url, prefix);

    const before = await Promise.all(Array.from({ length: 20 }, (_, i) => producer.enqueue(job(`before ${i}`))));
    const beforeResults = before.map((h) => ending(h, 90_000));
    await sleep(300);
    await redis.stop({ keepDir: true });

    const outageStarted = Date.now();
    const attempts: { ms: number; error: unknown }[] = [];
    while (Date.now() - outageStarted < 10_000) {
      const t0 = Date.now();
      const error = await producer.enqueue(job('during the outage')).then(() => null, (err: unknown) => err);
      attempts.push({ ms: Date.now() - t0, error });
      const t1 = Date.now();
      const lookup = await producer.getJob(before[0]!.id).then(() => null, (err: unknown) => err);
      attempts.push({ ms: Date.now() - t1, error: lookup });
      await sleep(400);
    }
    const restarted = await startEmbeddedRedis({ port: redis.port, dir: redis.dir, appendOnly: true });
    redises.push(restarted);

    // Tried all through the outage (each call ends within the connect timeout, so at least a few).
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    for (const a of attempts) {
      expect(a.error, 'every call during the outage is refused').toBeInstanceOf(RedisUnavailableError);
      expect((a.error as RedisUnavailableError).code).toBe('REDIS_UNAVAILABLE');
      // No hang: each refusal comes within the producer's 2 s connect timeout (plus scheduling).
      expect(a.ms).toBeLessThan(3_000);
    }

    // The producer reconnects by itself: enqueue works again within a few seconds.
    let first: JobHandle | undefined;
    await until(async () => {
      first = await producer.enqueue(job('after 0')).catch(() => undefined);
      return first !== undefined;
    }, 20_000, 'producer reconnected');
    const after = [first!, ...(await Promise.all(Array.from({ length: 9 }, (_, i) => producer.enqueue(job(`after ${i + 1}`)))))];

    const endings = [...(await Promise.all(beforeResults)), ...(await Promise.all(after.map((h) => ending(h, 60_000))))];
    expect(endings.map((e) => e.kind)).toEqual(Array(30).fill('completed'));
    expect(workers.every((w) => w.child.exitCode === null)).toBe(true);
  });

  it('rides out a 529 storm across a fleet: throttle, fallback, clear reasons, nothing lost', async () => {
    sim = await startSimulator({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
      latencyMs: { min: 20, max: 60 },
    });
    const redis = await redisServer();
    const prefix = `storm${randomUUID().slice(0, 4)}`;
    const workers = await fleet(redis.url, prefix, 3, {
      models: {
        [SONNET]: { provider: 'anthropic', limits: LIMITS },
        [HAIKU]: { provider: 'anthropic', limits: LIMITS },
      },
      dispatch: { concurrency: 4 },
      retry: { maxAttempts: 4, baseDelayMs: 50, maxDelayMs: 300 },
    });
    // The primary is down for good; the fallback garbles a third of its answers and cuts a
    // third of the rest mid-body (both after admission: those calls are paid for).
    sim.injectFaults([
      { model: SONNET, status: 529 },
      { model: HAIKU, malformed: true, probability: 0.3 },
      { model: HAIKU, cut: true, probability: 0.3 },
    ]);
    const producer = producerOn(redis.url, prefix);
    // The fleet's retry budget keeps failing retries within a fifth of first calls: past it a job waits
    // rather than spend an attempt, so in a storm this long some jobs run out of time, not of
    // attempts. Each job's deadline bounds that wait; every job must end by it, with a reason.
    const maxWaitMs = 40_000;
    const withFallback = await Promise.all(
      Array.from({ length: 120 }, (_, i) => producer.enqueue(job(`storm ${i}`, { model: SONNET, fallback: [HAIKU], priority: i % 3 ? 'NORMAL' : 'HIGH', maxWaitMs }))),
    );
    // With nothing to fall back to, a job rides out the outage (no attempt spent) until its own
    // deadline: a shorter one, so the test does not wait for it.
    const primaryOnlyMaxWaitMs = 10_000;
    const primaryOnly = await Promise.all(Array.from({ length: 3 }, (_, i) => producer.enqueue(job(`no fallback ${i}`, { model: SONNET, maxWaitMs: primaryOnlyMaxWaitMs }))));

    const fallbackEndings = await Promise.all(withFallback.map((h) => ending(h, 90_000)));
    const primaryEndings = await Promise.all(primaryOnly.map((h) => ending(h, 90_000)));
    const completed = fallbackEndings.filter((e): e is Extract<Ending, { kind: 'completed' }> => e.kind === 'completed');
    const failed = fallbackEndings.filter((e): e is Extract<Ending, { kind: 'failed' }> => e.kind === 'failed');
    const stats = sim.stats().models;
    const codes = (es: Ending[]) => es.map((e) => (e.kind === 'failed' ? e.code : e.kind)).join(',');
    console.log(`529 storm: ${completed.length} completed, ${failed.length} failed (${codes(failed)}); primary-only ${codes(primaryEndings)}; sonnet 529s ${stats[SONNET]?.faultsInjected['529']}, haiku admitted ${stats[HAIKU]?.admitted} (malformed ${stats[HAIKU]?.faultsInjected.malformed ?? 0}, cut ${stats[HAIKU]?.faultsInjected.cut ?? 0})`);

    // Nothing lost: every job ended, and each failure says what happened last or what it waited for.
    expect(completed.length + failed.length).toBe(120);
    expect(completed.every((e) => e.result.model === HAIKU)).toBe(true);
    expect(completed.length).toBeGreaterThan(60);
    for (const f of failed) {
      if (f.code === 'DEADLINE_EXCEEDED') expect(f.reason).toMatch(/within its maxWaitMs of 40000 ms/);
      else {
        expect(f.code).toBe('RETRIES_EXHAUSTED');
        expect(f.reason).toMatch(/after 4 attempts, last: (200 response body is not valid JSON|network connection closed mid-response|529 overloaded_error)/);
      }
    }
    // With no fallback the job fails: out of attempts with the provider's overload as its reason,
    // or out of time while the dead model's throttle let through one probe a second.
    for (const e of primaryEndings) {
      expect(e.kind).toBe('failed');
      const f = e as Extract<Ending, { kind: 'failed' }>;
      if (f.code === 'DEADLINE_EXCEEDED') expect(f.reason).toMatch(new RegExp(`within its maxWaitMs of ${primaryOnlyMaxWaitMs} ms`));
      else {
        expect(f.code).toBe('RETRIES_EXHAUSTED');
        expect(f.reason).toMatch(/after 4 attempts, last: 529 overloaded_error: Overloaded/);
      }
    }
    // The fleet's throttle opened: the storm cost fewer primary calls than there were jobs (each
    // of them would have tried the primary first), and after the first attempt none was served.
    expect(stats[SONNET]?.faultsInjected['529'] ?? 0).toBeLessThan(123);
    expect(stats[SONNET]?.admitted ?? 0).toBe(0);
    // No worker crashed on the garbage.
    expect(workers.every((w) => w.child.exitCode === null && w.child.signalCode === null)).toBe(true);
  });
});
