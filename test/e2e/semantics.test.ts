/**
 * Scheduling semantics users expect (issue 18), each with real `headroom worker` processes, the
 * official SDKs inside them, and the simulator answering as the providers do:
 * - the config's fallback ladder serves a job that names none;
 * - a rate-limit 429 without `retry-after` waits for the reset headers, and only what the
 *   provider calls a spend cap or a billing error fails SPEND_CAP;
 * - a setting that must 429 is refused when the worker starts;
 * - `maxWaitMs` is a deadline in every lane, and `result()` can cancel the job it gave up on;
 * - a `stream()` caller that leaves its loop early stops the provider's stream.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, TimeoutError, type LlmJobInput } from '@headroom/producer-sdk';
import type { HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, waitForFleet } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const GPT = 'gpt-4.1';
const LIMITS = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'SEMANTICS_TEST_KEY';
const KEY = { [KEY_ENV]: 'sk-semantics-test' };

let redis: EmbeddedRedis;
let sim: Simulator;
const procs: FleetProcess[] = [];
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 5 });
});
afterEach(async () => {
  await stopAll(procs.splice(0));
  for (const close of closers.splice(0).reverse()) await close();
  sim.clearFaults();
  sim.reset();
});
afterAll(async () => {
  await sim.close();
  await redis.stop();
});

/** One `headroom worker` process on `config` (merged over a two-model Anthropic fleet), and a producer. */
async function fleet(config: Partial<HeadroomConfigInput> = {}): Promise<{ producer: Producer; prefix: string }> {
  const prefix = `sem${randomUUID().slice(0, 6)}`;
  const file = writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV }, openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } },
    models: { [SONNET]: { provider: 'anthropic', limits: LIMITS }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    retry: { maxAttempts: 6, baseDelayMs: 50, maxDelayMs: 200 },
    ...config,
  });
  const worker = spawnWorker(file, redis.url, `${prefix}-w1`, KEY);
  procs.push(worker);
  await waitForFleet(redis.url, prefix, [worker]);
  const producer = new Producer({ redis: redis.url, prefix });
  closers.push(() => producer.close());
  return { producer, prefix };
}

const job = (model: string, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model, max_tokens: 32, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] }, ...extra }) as LlmJobInput;

const failureOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

describe('the config fallback ladder', () => {
  it("serves a job that names no fallback from its primary's configured fallback while the primary cools down", async () => {
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    // The primary is rate limited for a minute: waiting on it would outlast the test.
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 60 });
    const result = await producer.run(job(SONNET), { timeoutMs: 20_000 });
    expect(result.model).toBe(HAIKU);
    expect(result.attempts).toBe(2);
    expect(sim.stats().models[SONNET]?.faultsInjected['429']).toBe(1);
  });

  it("serves a job from its fallback when it would be late waiting behind a backlog on its primary's drained pool", async () => {
    // Sonnet holds two calls and refills one every 5 s; Haiku is idle.
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 12, itpm: 2_000_000, otpm: 400_000, burst: 10 } }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    const backlog = await Promise.all([1, 2, 3, 4].map(() => producer.enqueue(job(SONNET))));
    // Behind them, a job that may go to Haiku and must start within 5 s: it used to wait for
    // its turn at Sonnet, never taken while the jobs ahead waited, and end DEADLINE_EXCEEDED.
    const late = await producer.run(job(SONNET, { fallback: [HAIKU], maxWaitMs: 5_000 }), { timeoutMs: 20_000 });
    expect(late.model).toBe(HAIKU);
    // The backlog keeps its place on Sonnet: the first ran, the rest wait their refill.
    expect((await backlog[0]!.result({ timeoutMs: 20_000 })).model).toBe(SONNET);
    expect(sim.stats().models[HAIKU]?.admitted).toBe(1);
    for (const handle of backlog) await producer.cancel(handle.id);
  });

  it("serves a job from its fallback at once when the jobs ahead on its primary, not the bucket's wait alone, would make it late", async () => {
    // Sonnet holds two calls and refills one every 10 s; Haiku is idle.
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 6, itpm: 2_000_000, otpm: 400_000, burst: 20 } }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    const backlog = await Promise.all([1, 2, 3, 4].map(() => producer.enqueue(job(SONNET))));
    // Two run; the third waits 10 s for the bucket, the fourth 20 s. Behind them, a job that must
    // start within 15 s: the bucket's wait fits, its turn does not. It went to Haiku only once the
    // third had started and the bucket's wait itself passed its deadline.
    await backlog[1]!.result({ timeoutMs: 20_000 });
    const late = await producer.run(job(SONNET, { fallback: [HAIKU], maxWaitMs: 15_000 }), { timeoutMs: 20_000 });
    expect(late.model).toBe(HAIKU);
    const third = await backlog[2]!.result({ timeoutMs: 30_000 });
    expect(third.model).toBe(SONNET);
    // Served before the job ahead of it started on Sonnet.
    expect(late.timings.finishedAt).toBeLessThan(third.timings.enqueuedAt + third.timings.waitMs);
    for (const handle of backlog) await producer.cancel(handle.id);
  });

  it("serves jobs from their fallback at once while jobs without one retry their failing primary ahead of them", async () => {
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    // Sonnet fails every call; Haiku is healthy. Jobs that name no fallback wait out the outage
    // in the lane, until their 20 s deadline or their last attempt.
    sim.injectFaults({ model: SONNET, status: 529 });
    const stuck = await Promise.all([1, 2, 3, 4].map(() => producer.enqueue(job(SONNET, { fallback: [], maxWaitMs: 20_000 }))));
    const stuckEnds = Promise.all(stuck.map((h) => failureOf(h.result({ timeoutMs: 60_000 })).then((failure) => ({ failure, at: Date.now() }))));
    await sleep(2_000);
    // Behind them, jobs with the configured ladder: they waited behind the backlog's backoff for
    // their own deadline (60 s here), as if Sonnet were merely busy, until the backlog ended.
    const served = await Promise.all([1, 2, 3, 4].map(() => producer.run(job(SONNET, { maxWaitMs: 60_000 }), { timeoutMs: 60_000 })));
    const servedBy = Date.now();
    expect(served.map((r) => r.model)).toEqual([HAIKU, HAIKU, HAIKU, HAIKU]);
    // All served while the backlog still waited on Sonnet (they used to be served only once it ended).
    const ends = await stuckEnds;
    expect(Math.min(...ends.map((e) => e.at))).toBeGreaterThan(servedBy);
    for (const { failure } of ends) {
      expect(failure).toBeInstanceOf(JobFailedError);
      expect(['DEADLINE_EXCEEDED', 'RETRIES_EXHAUSTED']).toContain((failure as JobFailedError).failure.code);
    }
  });

  it('keeps a job that asks for no fallback (fallback: []) on its primary', async () => {
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 1 });
    const result = await producer.run(job(SONNET, { fallback: [] }), { timeoutMs: 20_000 });
    expect(result.model).toBe(SONNET);
    expect(sim.stats().models[HAIKU]?.admitted ?? 0).toBe(0);
  });
});

describe('429s without retry-after', () => {
  it('waits out a rate-limit 429 that has no retry-after by its reset headers (both providers); only a spend cap or billing answer fails SPEND_CAP', async () => {
    const GPT_MINI = 'gpt-4.1-mini';
    const { producer } = await fleet({
      models: {
        [SONNET]: { provider: 'anthropic', limits: LIMITS },
        [HAIKU]: { provider: 'anthropic', limits: LIMITS },
        [GPT]: { provider: 'openai', limits: { rpm: 5_000, tpm: 2_000_000 } },
        [GPT_MINI]: { provider: 'openai', limits: { rpm: 5_000, tpm: 2_000_000 } },
      },
    });
    // Two rate-limit 429s in a row, each saying (in its reset headers only) "requests free in 1 s".
    sim.injectFaults([
      { model: SONNET, status: 429, omitRetryAfter: true, resetMs: 1_000, count: 2 },
      { model: GPT, status: 429, omitRetryAfter: true, resetMs: 1_000, count: 2 },
      { model: HAIKU, spendCap: true, count: 1 },
      { model: HAIKU, billing: true, count: 100 },
      { model: GPT_MINI, spendCap: true, count: 100 },
    ]);
    const openai = (model: string): LlmJobInput => ({ priority: 'HIGH', provider: 'openai', request: { model, max_completion_tokens: 32, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] } });
    const [claude, gpt, capped, cappedGpt] = await Promise.all([
      producer.run(job(SONNET), { timeoutMs: 30_000 }),
      producer.run(openai(GPT), { timeoutMs: 30_000 }),
      failureOf(producer.run(job(HAIKU), { timeoutMs: 30_000 })),
      failureOf(producer.run(openai(GPT_MINI), { timeoutMs: 30_000 })),
    ]);
    for (const result of [claude, gpt]) {
      expect(result.attempts).toBe(3);
      // Each retry waited for the reset (at least 1 s), not the 50-200 ms backoff.
      expect(result.timings.finishedAt - result.timings.enqueuedAt).toBeGreaterThanOrEqual(2_000);
    }
    expect(sim.stats().models[SONNET]?.faultsInjected['429']).toBe(2);
    expect(sim.stats().models[GPT]?.faultsInjected['429']).toBe(2);
    // The spend cap, then the billing error: the provider said so, twice, and the job stopped.
    expect(capped).toBeInstanceOf(JobFailedError);
    expect((capped as JobFailedError).failureCode).toBe('SPEND_CAP');
    expect((capped as JobFailedError).reason).toContain('402 billing_error');
    expect(sim.stats().models[HAIKU]?.faultsInjected).toMatchObject({ '429-spend-cap': 1, '402-billing': 1 });
    expect((cappedGpt as JobFailedError).failureCode).toBe('SPEND_CAP');
    expect((cappedGpt as JobFailedError).reason).toContain('insufficient_quota');
  });
});

describe('output reservation', () => {
  it('refuses to start a worker whose outputReservation must 429, saying why', async () => {
    const file = writeConfig({
      redis: { prefix: `sem${randomUUID().slice(0, 6)}` },
      providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS } },
      dispatch: { outputReservation: 'p95' },
    });
    const worker = spawnWorker(file, redis.url, 'p95-w1', KEY);
    procs.push(worker);
    const code = await Promise.race([worker.exited, sleep(30_000).then(() => 'still running')]);
    expect(code).not.toBe('still running');
    expect(code).not.toBe(0);
    expect(worker.output()).toContain('dispatch.outputReservation: p95 must 429');
    expect(worker.output()).toContain(`${SONNET} (anthropic counts max_tokens toward output tokens/min (otpm) when a request starts)`);
    expect(sim.stats().models[SONNET]?.admitted ?? 0).toBe(0);
  });
});

describe('deadlines', () => {
  it('ends a job not started by its own maxWaitMs DEADLINE_EXCEEDED in every lane, with no provider call; result() can cancel what it gave up on', async () => {
    const { producer } = await fleet({ shedding: { enabled: false } });
    // The model is rate limited for a minute (what outside traffic did): every job of it must wait.
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 60 });
    const first = await producer.enqueue(job(SONNET));
    void first.result({ timeoutMs: 90_000 }).catch(() => undefined);
    await waitForCount(() => sim.stats().models[SONNET]?.faultsInjected['429'] ?? 0, 1);

    const lanes = ['CRITICAL', 'HIGH', 'NORMAL', 'LOW'] as const;
    const ends = await Promise.all(lanes.map(async (priority) => failureOf((await producer.enqueue(job(SONNET, { priority, maxWaitMs: 2_000 }))).result({ timeoutMs: 20_000 }))));
    for (const [i, err] of ends.entries()) {
      expect(err, lanes[i]).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode, lanes[i]).toBe('DEADLINE_EXCEEDED');
    }

    // A caller with no deadline on the job gives up, and takes the job with it.
    const abandoned = await producer.enqueue(job(SONNET, { priority: 'HIGH' }));
    const timeout = await failureOf(abandoned.result({ timeoutMs: 1_500, cancelOnTimeout: true }));
    expect(timeout).toBeInstanceOf(TimeoutError);
    expect((timeout as TimeoutError).cancelled).toBe(true);
    expect(await producer.getJob(abandoned.id)).toBeNull();
    // Not one call was made for any of them: the only answer the provider gave is the first 429.
    expect(sim.stats().models[SONNET]?.admitted ?? 0).toBe(0);
    expect(sim.stats().requestsByPath['POST /v1/messages']).toBe(1);
  });
});

async function waitForCount(read: () => number, atLeast: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (read() < atLeast) {
    if (Date.now() > end) throw new Error(`count ${read()} never reached ${atLeast}`);
    await sleep(50);
  }
}

describe('cache-aware reservations', () => {
  it('serves a prompt that is mostly a cached system block although its whole length exceeds what the lane may draw', async () => {
    // ITPM 4,000: HIGH may draw 3,800. The prompt is ~3,500 tokens, all but a question cached.
    const { producer } = await fleet({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 4_000, otpm: 100_000 } } } });
    const system = [{ type: 'text' as const, text: 'Support handbook: refunds, returns, shipping. '.repeat(450), cache_control: { type: 'ephemeral' as const } }];
    const ask = (q: string) => producer.run(job(SONNET, { request: { model: SONNET, max_tokens: 64, system, messages: [{ role: 'user', content: q }] } } as Partial<LlmJobInput>), { timeoutMs: 30_000 });
    const first = await ask('How long do refunds take?');
    expect(first.usage.cacheCreationInputTokens).toBeGreaterThan(3_000);
    const later = await Promise.all(['Can I return shoes?', 'Do you ship abroad?', 'Who pays return shipping?'].map(ask));
    for (const r of later) expect(r.usage.cacheReadInputTokens).toBe(first.usage.cacheCreationInputTokens);
    expect(sim.stats().models[SONNET]?.refused429).toBe(0);
    expect(sim.stats().models[SONNET]?.admitted).toBe(4);
  });
});

describe('producer streams', () => {
  it("stops the provider's stream when its caller leaves the loop early: the provider charged only what it sent", async () => {
    const { producer } = await fleet();
    // 300 tokens 50 ms apart: 15 s to the end, where the break comes after the first few.
    sim.setPace({ streamTokenMs: 50 });
    try {
      const stream = await producer.stream(job(SONNET, { request: { model: SONNET, max_tokens: 300, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] } } as Partial<LlmJobInput>));
      let events = 0;
      for await (const _ of stream) if (++events === 5) break;
      const err = await failureOf(stream.result());
      expect(err).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode).toBe('CANCELLED');
      await expect.poll(() => sim.stats().models[SONNET]?.clientClosed, { timeout: 10_000 }).toBe(1);
      const call = sim.stats().admissions.at(-1);
      expect(call).toMatchObject({ streamed: true, clientClosed: true, output: call?.outputSent });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });
});
