/**
 * A provider brownout against real `headroom worker` processes and the official SDK pointed at
 * the simulator: the fleet-wide adaptive throttle and retry budget (lua/includes/model-throttle).
 *
 * - half the calls answered 529 (seeded): CRITICAL jobs keep completing during it, the throttle
 *   stays closed (the model still serves half), and retries stay within the budget;
 * - every call answered 529: the fleet's calls fall to about one probe a second, whatever the
 *   backlog; once the provider recovers, the throttle closes again and every job completes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Producer, type JobHandle, type LlmJobInput, type Priority } from '@headroom/producer-sdk';
import { Bucket, parseConfig, throttleParamsOf, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, until, waitForFleet } from '../support/probes.js';

const MODEL = 'claude-sonnet-4-6';
const LIMITS = { rpm: 600, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'BROWNOUT_TEST_ANTHROPIC_KEY';

let sim: Simulator | undefined;
let redis: EmbeddedRedis | undefined;
const procs: FleetProcess[] = [];
const closers: (() => unknown)[] = [];
afterEach(async () => {
  await stopAll(procs.splice(0), 'SIGKILL');
  for (const close of closers.splice(0).reverse()) await close();
  await sim?.close();
  await redis?.stop();
  sim = undefined;
  redis = undefined;
});

/** mulberry32: the simulator's coin tosses are the same every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

async function fleet(prefix: string, n: number, extra: Partial<HeadroomConfigInput> = {}) {
  redis = await startEmbeddedRedis();
  const input = {
    redis: { prefix },
    providers: { anthropic: { baseURL: sim!.url, apiKeyEnv: KEY_ENV } },
    models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
    dispatch: { concurrency: 8 },
    ...extra,
  } satisfies HeadroomConfigInput;
  const started = Array.from({ length: n }, (_, i) => spawnWorker(writeConfig(input), redis!.url, `${prefix}-w${i + 1}`, { [KEY_ENV]: 'sk-brownout-test' }));
  procs.push(...started);
  await waitForFleet(redis.url, prefix, started);
  const producer = new Producer({ redis: redis.url, prefix });
  const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
  closers.push(() => conn.disconnect(), () => producer.close());
  // Reads the model's throttle as the dashboard does (the fleet's own params).
  const bucket = new Bucket(conn, { prefix, throttle: throttleParamsOf(parseConfig(input)) });
  const throttle = async () => (await bucket.throttles(MODEL, LIMITS, [MODEL]))[0];
  return { producer, throttle };
}

const job = (priority: Priority, i: number): LlmJobInput => ({
  priority,
  provider: 'anthropic',
  request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `${priority} job ${i}: summarise.` }] },
});
const calls = () => sim!.stats().requestsByPath['POST /v1/messages'] ?? 0;
const served = () => sim!.stats().models[MODEL]?.admitted ?? 0;

describe('brownout', () => {
  it('keeps CRITICAL completing while half the calls are answered 529, within the retry budget', async () => {
    sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 50, max: 150 }, random: seeded(16) });
    // Attempts enough that no CRITICAL job runs out at 50% (0.5^30): the test is about flow, and
    // CRITICAL's retries, which the budget does not hold, go back to back through the seeded
    // coin's runs (one job took 12 calls). The throttle's window is 10 s, not 2 s, so the success
    // ratio read below averages enough calls however slowly a loaded machine makes them (under a
    // CPU hog, a 2 s window held a dozen calls and read 0.88 of a coin's 0.5).
    // Shedding off: the LOW backlog is this test's load, not its subject, and a backlog of 150 can
    // read as a full pressure (it drains past the shedding horizon while calls fail), which shed
    // a LOW enqueue of the backlog once (SHED at enqueue, a clean-clone run on a busy machine).
    const { producer, throttle } = await fleet('half', 3, { retry: { maxAttempts: 30 }, throttle: { windowMs: 10_000 }, shedding: { enabled: false } });
    // The brownout starts before any call: a burst of calls served before it (the bucket starts
    // full) would stay in the throttle's window and read as a healthier model than the brownout's.
    sim.injectFaults({ model: MODEL, overloaded: true, probability: 0.5 });
    const faultsFrom = Date.now();
    // A LOW backlog keeps the lanes busy below CRITICAL.
    const low: JobHandle[] = [];
    for (let i = 0; i < 150; i++) low.push(await producer.enqueue(job('LOW', i)));
    const critical: JobHandle[] = [];
    for (let i = 0; i < 40; i++) {
      critical.push(await producer.enqueue(job('CRITICAL', i)));
      await sleep(100);
    }
    // Every CRITICAL job completes while the LOW backlog's retries wait on the budget. CRITICAL's
    // retries are not held by it while the throttle is closed, as it mostly is at 50% (k = 2;
    // lanes.critical.retryBudgetExempt). Held, a CRITICAL retry raced every lane's for each retry
    // the budget freed: the slowest of the 40 took 3.6-16.6 s beside a parallel test run (past
    // 60 s under CI's whole suite); now 1.0-2.0 s. The bound only keeps a stuck job from hanging
    // the run, not a measure of how soon.
    const results = await Promise.all(critical.map((h) => h.result({ timeoutMs: 60_000 })));
    const during = sim.stats().models[MODEL]!;
    expect(results).toHaveLength(40);
    expect(during.faultsInjected['529'] ?? 0).toBeGreaterThan(20);
    // Many needed more than one call, and got it while the brownout went on.
    expect(results.filter((r) => r.attempts > 1).length).toBeGreaterThan(5);
    // The model still serves half its calls: the throttle does not cut them (k = 2). Read once the
    // window is full. (With the backlog's first calls made before the brownout, 91 of them served
    // in a burst, the ratio read 0.65-0.77 while the simulator served 49-52% of the calls since.)
    await sleep(Math.max(0, faultsFrom + 12_000 - Date.now()));
    const t = await throttle();
    expect(t?.successRatio).toBeGreaterThan(0.25);
    expect(t?.successRatio).toBeLessThan(0.75);
    expect(t?.admitRatio).toBeGreaterThan(0.5);
    sim.clearFaults();
    const lowEnds = await Promise.allSettled(low.map((h) => h.result({ timeoutMs: 90_000 })));
    expect(lowEnds.filter((e) => e.status === 'rejected').map((e) => String((e as PromiseRejectedResult).reason))).toEqual([]);
    // Retries within budget: every served call took at most ~2 calls (1 / 0.5), not 3 (SDK-style).
    expect(calls() / served()).toBeLessThan(2.2);
    expect(sim.stats().models[MODEL]?.refused429 ?? 0).toBe(0);
  }, 300_000);

  it('falls to about one probe a second in a full outage, then ramps back and completes every job', async () => {
    sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 20, max: 60 } });
    const { producer, throttle } = await fleet('dead', 3);
    sim.injectFaults({ model: MODEL, overloaded: true });
    const handles: JobHandle[] = [];
    for (let i = 0; i < 120; i++) handles.push(await producer.enqueue(job(i % 4 === 0 ? 'HIGH' : 'NORMAL', i)));
    // The fleet learns the model is dead from its first failures, then probes.
    await until(async () => (await throttle())?.state === 'open', 15_000, 'the throttle to open');
    const from = calls();
    const startedAt = Date.now();
    await sleep(6_000);
    const probes = calls() - from;
    const seconds = (Date.now() - startedAt) / 1000;
    // One probe per second fleet-wide (the token a probe takes may be there at the start, and a
    // job may have been mid-call): never the backlog's worth.
    expect(probes).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
    expect(probes).toBeGreaterThanOrEqual(1);
    // Nothing fails while it is down: jobs wait on the throttle, no attempt spent, and the calls
    // that fail while other jobs' fail too (the outage's onset, the probes) count no attempt.
    const failedWhileDown = (await Promise.all(handles.map((h) => producer.getJob(h.id)))).filter((j) => j?.state === 'failed');
    expect(failedWhileDown.map((j) => j?.failedReason)).toEqual([]);

    sim.clearFaults();
    await until(async () => (await throttle())?.state === 'closed', 30_000, 'the throttle to close after recovery');
    const endings = await Promise.allSettled(handles.map((h) => h.result({ timeoutMs: 90_000 })));
    // Every job completed once the model was back, none out of attempts.
    expect(endings.filter((e) => e.status === 'rejected').map((e) => String((e as PromiseRejectedResult).reason))).toEqual([]);
    // Among them the jobs whose calls failed in the outage.
    expect(endings.some((e) => e.status === 'fulfilled' && e.value.attempts > 1)).toBe(true);
    expect((await throttle())?.admitRatio).toBe(1);
    expect(sim.stats().models[MODEL]?.refused429 ?? 0).toBe(0);
  });
});
