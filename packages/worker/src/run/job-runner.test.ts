/**
 * The runner's decisions, each from a real bucket (a redis-server of this file's own), the real
 * SDK adapters and the provider simulator, with randomness and pressure injected: complete,
 * fall back, fail (and with which code), requeue, delay, shed, hand back.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Bucket, decodeJobEvent, jobEventsKey, createLogger, FleetStatsWriter, parseConfig, type HeadroomConfigInput, type InteractiveLane, type LlmJob, type Pressure } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { WorkerMetrics } from '../metrics.js';
import { createAdapters } from '../providers/index.js';
import { Breaker } from './breaker.js';
import { JobCancelled, runJob } from './job-runner.js';
import type { JobMeta, RunContext, ShedView } from './run-context.js';
import { TokenEstimator } from './token-estimator.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const KEY_ENV = 'RUNNER_TEST_KEY';

let server: EmbeddedRedis;
let redis: Redis;
let sim: Simulator;
let seq = 0;

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url);
  sim = await startSimulator({ latencyMs: 0 });
});
afterEach(() => sim.clearFaults());
afterAll(async () => {
  redis.disconnect();
  await sim.close();
  await server.stop();
});

/** Pressure as a test sets it: pool -> value; the monitor's rule for which lanes it sheds. */
function shedView(config: RunContext['config'], pressure: Record<string, number> = {}): ShedView {
  const of = (pool: string): Pressure | undefined =>
    pressure[pool] === undefined ? undefined : { value: pressure[pool]!, utilization: 1, drainMs: 4_000, coolingModels: 0, binding: 'itpm' };
  return {
    shedsLane: (pool, lane) => (lane === 'low' || (lane === 'normal' && config.shedding.shedNormal)) && (of(pool)?.value ?? 0) >= config.shedding.lowAt,
    pressureOf: of,
    retryHintMs: () => 4_000,
  };
}

function context(over: Partial<HeadroomConfigInput> = {}, pressure: Record<string, number> = {}): RunContext {
  const prefix = `runner${++seq}`;
  const config = parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
    models: {
      [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } },
      [HAIKU]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } },
    },
    retry: { maxAttempts: 3, baseDelayMs: 1_000, maxDelayMs: 8_000 },
    ...over,
  });
  return {
    config,
    redis,
    bucket: new Bucket(redis, { prefix }),
    adapters: createAdapters(config, { [KEY_ENV]: 'sk-runner-test' }),
    estimator: new TokenEstimator(),
    breaker: new Breaker({ ...config.breaker }),
    metrics: new WorkerMetrics({ defaultMetrics: false }),
    stats: new FleetStatsWriter(redis, prefix),
    pressure: shedView(config, pressure),
    logger: createLogger({ level: 'silent' }),
    random: () => 0.5,
    now: Date.now,
    tenantWaits: new Map(),
  };
}

const job = (over: Partial<LlmJob> = {}): LlmJob =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: `question ${++seq}` }] }, ...over }) as LlmJob;

const meta = (lane: InteractiveLane = 'high', waitedMs = 0): JobMeta => ({ id: `job-${seq}`, lane, enqueuedAt: Date.now() - waitedMs, progress: { attempts: 0 } });

const run = (ctx: RunContext, j: LlmJob, m: JobMeta = meta(), signal = new AbortController().signal) => runJob(ctx, j, m, signal);

const calls = (model: string) => sim.stats().models[model]?.admitted ?? 0;

describe('runJob', () => {
  it('completes with the provider response, its usage, one attempt and the timings', async () => {
    const outcome = await run(context(), job());
    expect(outcome.kind).toBe('completed');
    if (outcome.kind !== 'completed') return;
    expect(outcome.result).toMatchObject({ provider: 'anthropic', model: SONNET, attempts: 1, cost: { batch: false } });
    expect(outcome.result.usage.outputTokens).toBeGreaterThan(0);
    expect((outcome.result.response as { type: string }).type).toBe('message');
    expect(outcome.result.timings.finishedAt).toBeGreaterThanOrEqual(outcome.result.timings.startedAt);
  });

  it('fails UNKNOWN_MODEL without a call when no model of the ladder is configured', async () => {
    const before = calls(SONNET) + calls(HAIKU);
    const outcome = await run(context(), job({ request: { model: 'claude-opus-9', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'UNKNOWN_MODEL' } });
    expect(calls(SONNET) + calls(HAIKU)).toBe(before);
  });

  it('fails NEVER_FITS without a call when the request is larger than the lane may ever draw', async () => {
    const before = calls(SONNET);
    const outcome = await run(context(), job({ request: { model: SONNET, max_tokens: 99_000, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'NEVER_FITS', message: expect.stringContaining('otpm') } });
    expect(calls(SONNET)).toBe(before);
  });

  it('fails PROVIDER_REJECTED after exactly one call when the provider answers 400', async () => {
    const requests = () => sim.stats().requestsByPath['POST /v1/messages'] ?? 0;
    const before = requests();
    const outcome = await run(context(), job({ request: { model: SONNET, max_tokens: 80_000, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'PROVIDER_REJECTED', message: expect.stringMatching(/^400 invalid_request_error: max_tokens/) }, progress: { attempts: 1 } });
    expect(requests() - before).toBe(1);
  });

  it('falls back down the ladder at once when the primary is overloaded', async () => {
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    const outcome = await run(context(), job({ fallback: [HAIKU] }));
    expect(outcome).toMatchObject({ kind: 'completed', result: { model: HAIKU, attempts: 2 } });
  });

  it('delays a retryable failure by the full-jitter backoff of its injected randomness', async () => {
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const outcome = await run(context(), job());
    // random 0.5 of the first attempt's ceiling (baseDelayMs 1000): 500 ms, the attempt counted.
    expect(outcome).toEqual({ kind: 'delay', delayMs: 500, progress: { attempts: 1, lastError: expect.stringContaining('503') } });
  });

  it('fails RETRIES_EXHAUSTED on the last attempt, naming the last failure', async () => {
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const outcome = await run(context(), job(), { ...meta(), progress: { attempts: 2 } });
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringMatching(/^after 3 attempts, last: 503 /) } });
  });

  it('requeues (no attempt spent) when its pool is out of quota, so the pool backs off in the lane', async () => {
    // One request a minute: the first call empties the bucket for a minute.
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1, itpm: 400_000, otpm: 100_000 } } } });
    expect((await run(ctx, job(), meta('critical'))).kind).toBe('completed');
    const outcome = await run(ctx, job(), meta('critical'));
    expect(outcome).toMatchObject({ kind: 'requeue', progress: { attempts: 0 } });
    expect(outcome.kind === 'requeue' && outcome.waitMs).toBeGreaterThan(25);
  });

  it('delays the job alone when its tenant is over its tokens/min quota', async () => {
    const ctx = context({ tenants: { default: { tpm: 2_000 } } });
    const big = (): LlmJob => job({ tenant: 'acme', request: { model: SONNET, max_tokens: 1_500, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>);
    // Both draw before either call ends (nothing is refunded yet): the second cannot fit.
    const outcomes = await Promise.all([run(ctx, big()), run(ctx, big())]);
    expect(outcomes.map((o) => o.kind)).toEqual(['completed', 'delay']);
    // The next job of that tenant waits without asking the bucket; another tenant's job runs.
    expect(ctx.tenantWaits.has('acme')).toBe(true);
    expect((await run(ctx, job({ tenant: 'other' }))).kind).toBe('completed');
  });

  it('delays the job alone when its only model is cooling down after a 429', async () => {
    const ctx = context();
    await ctx.bucket.cooldown('claude-sonnet-4-6', SONNET, { durationMs: 5_000 });
    const outcome = await run(ctx, job());
    expect(outcome.kind).toBe('delay');
    expect(outcome.kind === 'delay' && outcome.delayMs).toBeGreaterThan(4_000);
  });

  it('sheds a LOW job past its max wait while its pool is under pressure, with a retry hint', async () => {
    const ctx = context({}, { [SONNET]: 0.95 });
    const before = calls(SONNET);
    const outcome = await run(ctx, job({ priority: 'LOW' }), meta('low', 2 * 3600_000));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'SHED', retryAfterMs: 4_000, message: expect.stringContaining('under pressure (0.95)') } });
    expect(calls(SONNET)).toBe(before);
  });

  it('moves a shed LOW job to the batch lane when it asked to', async () => {
    const outcome = await run(context({}, { [SONNET]: 0.95 }), job({ priority: 'LOW', onShed: 'batch' }), meta('low', 2 * 3600_000));
    expect(outcome).toMatchObject({ kind: 'to_batch', failure: { code: 'SHED' } });
  });

  it('never sheds HIGH, nor LOW within its max wait, whatever the pressure', async () => {
    const ctx = context({}, { [SONNET]: 1 });
    expect((await run(ctx, job(), meta('high', 2 * 3600_000))).kind).toBe('completed');
    expect((await run(ctx, job({ priority: 'LOW' }), meta('low', 1_000))).kind).toBe('completed');
  });

  it('hands the job back, no attempt spent, when the worker is stopping', async () => {
    const abort = new AbortController();
    abort.abort();
    expect(await run(context(), job(), meta(), abort.signal)).toEqual({ kind: 'aborted', progress: { attempts: 0 } });
  });
});

describe('runJob, streamed', () => {
  const streamed = (over: Record<string, unknown> = {}): LlmJob =>
    job({ request: { model: SONNET, max_tokens: 300, stream: true, messages: [{ role: 'user', content: `a long story ${++seq}` }], ...over } } as Partial<LlmJob>);
  const streamMeta = (): JobMeta => ({ id: `high.${randomUUID()}`, lane: 'high', enqueuedAt: Date.now(), progress: { attempts: 0 } });
  const relayed = async (ctx: RunContext, id: string) =>
    (await redis.xrange(jobEventsKey(ctx.config.redis.prefix, id), '-', '+')).map(([, f]) => decodeJobEvent(f[0]!, f[1]!)!);

  it('relays every event between a start naming the model and an end, and records time to first token', async () => {
    const ctx = context();
    const m = streamMeta();
    const outcome = await run(ctx, streamed(), m);
    expect(outcome.kind).toBe('completed');
    if (outcome.kind !== 'completed') return;
    expect(outcome.result.streamed).toBe(true);
    expect(outcome.result.timings.ttftMs).toBeGreaterThanOrEqual(0);
    expect(outcome.result.timings.firstEventAt).toBeLessThanOrEqual(outcome.result.timings.finishedAt);
    const events = await relayed(ctx, m.id);
    expect(events[0]).toMatchObject({ kind: 'start', model: SONNET });
    expect(events.at(-1)).toEqual({ kind: 'end' });
    const types = events.filter((e) => e.kind === 'event').map((e) => (JSON.parse((e as { data: string }).data) as { type: string }).type);
    expect(types[0]).toBe('message_start');
    expect(types.at(-1)).toBe('message_stop');
    expect((outcome.result.response as { usage: { output_tokens: number } }).usage.output_tokens).toBe(outcome.result.usage.outputTokens);
  });

  it('retries a stream that fails before its first event, with nothing relayed', async () => {
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const ctx = context();
    const m = streamMeta();
    expect(await run(ctx, streamed(), m)).toMatchObject({ kind: 'delay', progress: { attempts: 1 } });
    expect(await relayed(ctx, m.id)).toEqual([]);
  });

  it('fails STREAM_FAILED, never retried, when the stream breaks after its first event, ending it with an error event', async () => {
    sim.setPace({ streamTokenMs: 2 });
    sim.injectFaults({ model: SONNET, cut: true, count: 1 });
    const ctx = context();
    const m = streamMeta();
    try {
      const outcome = await run(ctx, streamed({ max_tokens: 200 }), m);
      expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'STREAM_FAILED', message: expect.stringContaining('events had been streamed') }, progress: { attempts: 1 } });
      const events = await relayed(ctx, m.id);
      const last = events.at(-1);
      expect(last?.kind).toBe('error');
      expect(JSON.parse((last as { data: string }).data)).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('stops the provider call when its caller cancels mid-stream, and fails CANCELLED with the output produced', async () => {
    sim.setPace({ streamTokenMs: 20 });
    const ctx = context();
    const m = streamMeta();
    const abort = new AbortController();
    try {
      const running = run(ctx, streamed({ max_tokens: 400 }), m, abort.signal);
      await expect.poll(async () => (await relayed(ctx, m.id)).length, { timeout: 5_000 }).toBeGreaterThan(5);
      abort.abort(new JobCancelled());
      const outcome = await running;
      expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
      const charged = Number(/about (\d+) output tokens/.exec((outcome as { failure: { message: string } }).failure.message)?.[1]);
      await expect.poll(() => sim.stats().admissions.at(-1)?.done, { timeout: 5_000 }).toBe(true);
      const admission = sim.stats().admissions.at(-1)!;
      expect(admission).toMatchObject({ streamed: true, clientClosed: true });
      expect(charged).toBeGreaterThan(0);
      expect(admission.outputSent).toBeLessThan(400);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('fails CANCELLED without a call when its caller cancelled before it started', async () => {
    const abort = new AbortController();
    abort.abort(new JobCancelled());
    const before = calls(SONNET);
    expect(await run(context(), streamed(), streamMeta(), abort.signal)).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
    expect(calls(SONNET)).toBe(before);
  });
});
