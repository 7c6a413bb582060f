/**
 * The runner's decisions, each from a real bucket (a redis-server of this file's own), the real
 * SDK adapters and the provider simulator, with randomness and pressure injected: complete,
 * fall back, fail (and with which code), requeue, delay, shed, hand back.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Bucket, checkRelay, decodeJobEvent, FailureCode, flagCancelled, Heartbeat, jobFailure, jobEventsKey, relayEvents, createLogger, laneKeys, FleetStatsWriter, fleetKeys, heartbeatTtlMs, parseConfig, publishFleetSettings, readFleetStats, readHeartbeats, SPEND_CAP_STATUS, throttleParamsOf, type HeadroomConfigInput, type InteractiveLane, type JobEvent, type LlmJob, type LlmResult, type Pressure } from '@headroom/queue';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { redisForFile } from '@headroom/testing/vitest';
import { WorkerMetrics } from '../metrics.js';
import { createAdapters } from '../providers/index.js';
import { COOLDOWN_RESUME_SPREAD_MS, JobCancelled, runJob } from './job-runner.js';
import type { JobMeta, RunContext, ShedView } from './run-context.js';
import { GatewayPresence } from './gateway-presence.js';
import { LimitNotices } from './limit-notices.js';
import { PoolHolds } from './pool-holds.js';
import { RelayingJobs } from './relaying-jobs.js';
import { PromptCacheMemory } from './prompt-cache-memory.js';
import { OutageEvidence } from './outage-evidence.js';
import { TenantWaits, TENANT_RECHECK_MS } from './tenant-waits.js';
import { ThrottleStates } from './throttle-states.js';
import { TokenEstimator } from './token-estimator.js';
import { OPENING_HOLD_MS } from './stream-call.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const KEY_ENV = 'RUNNER_TEST_KEY';

const db = redisForFile();
let sim: Simulator;
let seq = 0;

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0 });
});
afterEach(() => sim.clearFaults());
afterAll(async () => {
  await sim.close();
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

function context(over: Partial<HeadroomConfigInput> = {}, pressure: Record<string, number> = {}, random: () => number = () => 0.5): RunContext {
  const logger = createLogger({ level: 'silent' });
  const prefix = `runner${++seq}`;
  const config = parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
    models: {
      [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } },
      [HAIKU]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } },
    },
    retry: { maxAttempts: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, unhealthyBaseDelayMs: 200 },
    ...over,
  });
  return {
    config,
    workerId: `worker-${prefix}`,
    redis: db.redis,
    bucket: new Bucket(db.redis, { prefix, throttle: throttleParamsOf(config) }),
    adapters: createAdapters(config, { [KEY_ENV]: 'sk-runner-test' }),
    estimator: new TokenEstimator(),
    throttles: new ThrottleStates(Date.now),
    outages: new OutageEvidence(),
    promptCache: new PromptCacheMemory(Date.now),
    metrics: new WorkerMetrics({ defaultMetrics: false }),
    stats: new FleetStatsWriter(db.redis, prefix),
    pressure: shedView(config, pressure),
    logger,
    random,
    now: Date.now,
    tenantWaits: new TenantWaits(),
    poolHolds: new PoolHolds(),
    limitNotices: new LimitNotices(logger),
    gateways: new GatewayPresence(() => readHeartbeats(db.redis, prefix, 'gateway'), Date.now, heartbeatTtlMs(config.gateway.heartbeatMs)),
    relaying: new RelayingJobs(),
  };
}

const job = (over: Partial<LlmJob> = {}): LlmJob =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: `question ${++seq}` }] }, ...over }) as LlmJob;

/** A job whose tenant had nothing queued ahead of it (`fresh`), as most jobs of a lane without a backlog are. */
const meta = (lane: InteractiveLane = 'high', waitedMs = 0): JobMeta => ({ id: `job-${seq}`, lane, enqueuedAt: Date.now() - waitedMs, progress: { attempts: 0 }, fresh: true });

/** A context whose clock the test moves: what the worker remembers of a wait is read at known times. */
function clocked(over: Partial<HeadroomConfigInput> = {}): { ctx: RunContext; advance(ms: number): void } {
  let t = Date.now();
  const advance = (ms: number) => {
    t += ms;
  };
  return { ctx: { ...context(over), now: () => t }, advance };
}

/** A job of tenant acme whose output reservation (1,500) is most of a 2,000 tokens/min quota. */
const tenantJob = (model: string, maxTokens = 1_500): LlmJob => job({ tenant: 'acme', request: { model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>);

const run = (ctx: RunContext, j: LlmJob, m: JobMeta = meta(), signal = new AbortController().signal) => runJob(ctx, j, m, signal);

const calls = (model: string) => sim.stats().models[model]?.admitted ?? 0;

/**
 * A context whose SONNET requests bind and barely refill (6 a minute), and what the bucket holds
 * of them: a request kept for a grant given back shows.
 */
/** A gateway killed: its entry stays in the fleet's gateways, its expiry (Redis time) long past, as once its last beat lapses. */
async function lapse(prefix: string, id: string): Promise<void> {
  const key = fleetKeys(prefix).gateways;
  const entry = JSON.parse((await db.redis.hget(key, id))!) as { expiresAtMs: number };
  await db.redis.hset(key, id, JSON.stringify({ ...entry, expiresAtMs: 1 }));
}

function scarceRequests(): { ctx: RunContext; requestsLeft(): Promise<number> } {
  const limits = { rpm: 6, itpm: 400_000, otpm: 100_000 };
  const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits } } });
  const requestsLeft = async () => {
    await ctx.bucket.flush();
    return (await ctx.bucket.snapshot(SONNET, limits)).dimensions.find((d) => d.dimension === 'rpm')!.level;
  };
  return { ctx, requestsLeft };
}

describe('runJob', () => {
  it('completes with the provider response, its usage, one attempt and the timings', async () => {
    const outcome = await run(context(), job());
    expect(outcome.kind).toBe('completed');
    if (outcome.kind !== 'completed') return;
    expect(outcome.result).toMatchObject({ provider: 'anthropic', model: SONNET, attempts: 1, cost: { batch: false } });
    expect(outcome.result.usage.outputTokens).toBeGreaterThan(0);
    expect((outcome.result.response as { type: string }).type).toBe('message');
    expect(outcome.result.timings.finishedAt).toBeGreaterThanOrEqual(outcome.result.timings.startedAt);
    // The provider's own id for the call (the simulator's request-id header).
    expect(outcome.result.providerRequestId).toMatch(/^req_011\w{21}$/);
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
    // With the arithmetic: what the bucket holds (limit x burst / 60) and the lane's reserve.
    expect(outcome).toMatchObject({
      failure: { message: expect.stringMatching(/needs 99000 in otpm but lane \w+ may draw at most 9\d000 at once: the bucket holds otpm 100000 x burst 60 \/ 60 = 100000, less the lane's reserve of 0\.\d+ \(\d+\)/) },
    });
    expect(calls(SONNET)).toBe(before);
  });

  it("reserves an OpenAI request's model maxOutputTokens per choice when it sets no output bound, as OpenAI counts it", async () => {
    const GPT = 'gpt-4.1';
    const MINI = 'gpt-4.1-mini';
    // tpm 100,000: HIGH may draw 95,000. Two choices of 32,768 fit; three never can.
    const ctx = context({
      providers: { openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } },
      models: { [GPT]: { provider: 'openai', limits: { rpm: 1_000, tpm: 100_000 }, maxOutputTokens: 32_768 }, [MINI]: { provider: 'openai', limits: { rpm: 1_000, tpm: 100_000 } } },
    });
    const chat = (model: string, n: number): LlmJob => ({ priority: 'HIGH', provider: 'openai', request: { model, n, messages: [{ role: 'user', content: `question ${++seq}` }] } }) as LlmJob;
    const before = calls(GPT) + calls(MINI);
    expect(await run(ctx, chat(GPT, 2))).toMatchObject({ kind: 'completed', result: { model: GPT } });
    expect(await run(ctx, chat(GPT, 3))).toMatchObject({ kind: 'failed', failure: { code: 'NEVER_FITS', message: expect.stringMatching(/gpt-4\.1 needs 98\d{3} in tpm .*its output cap of 98304 is reserved for a request with no max_completion_tokens: set one/) } });
    // A model without maxOutputTokens in this worker's config (admission refuses such a job
    // against the published config; this is a worker whose config differs) is never called.
    expect(await run(ctx, chat(MINI, 1))).toMatchObject({ kind: 'failed', failure: { code: 'NEVER_FITS', message: expect.stringContaining('gpt-4.1-mini has no maxOutputTokens') } });
    expect(calls(GPT) + calls(MINI)).toBe(before + 1);
  });

  it("learns an OpenAI call's output per choice: n choices teach one choice's tokens to the p95, not n times them", async () => {
    const GPT = 'gpt-4.1';
    const ctx = {
      ...context({ providers: { openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } }, models: { [GPT]: { provider: 'openai', limits: { rpm: 1_000, tpm: 100_000 } } } }),
      estimator: new TokenEstimator({ minSamples: 1 }),
    };
    const outcome = await run(ctx, { priority: 'HIGH', provider: 'openai', request: { model: GPT, n: 4, max_completion_tokens: 64, messages: [{ role: 'user', content: `question ${++seq}` }] } } as LlmJob);
    expect(outcome).toMatchObject({ kind: 'completed' });
    if (outcome.kind !== 'completed') return;
    expect(outcome.result.usage.outputTokens).toBeGreaterThan(4);
    expect(ctx.estimator.outputP95(GPT)).toBe(outcome.result.usage.outputTokens / 4);
  });

  it('serves a mostly cached prompt whose whole length the lane may never draw, and reserves only its uncached part', async () => {
    // ITPM 4,000: HIGH may draw 3,800; the prompt is ~3,000 o200k tokens, ~3,600 with the margin.
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 4_000, otpm: 100_000 } } } });
    const system = [{ type: 'text', text: 'Policy handbook, section after section. '.repeat(500), cache_control: { type: 'ephemeral' } }];
    const cached = (q: string): LlmJob => job({ request: { model: SONNET, max_tokens: 64, system, messages: [{ role: 'user', content: q }] } } as Partial<LlmJob>);
    const first = await run(ctx, cached('first question'));
    expect(first).toMatchObject({ kind: 'completed', result: { usage: { cacheCreationInputTokens: expect.any(Number) } } });
    if (first.kind !== 'completed') return;
    expect(first.result.usage.cacheCreationInputTokens).toBeGreaterThan(3_000);
    // The next call knows the prefix is cached: it reserves the question alone, so HIGH's whole
    // share is still there for it although the first call's write overdrew the bucket.
    const second = await run(ctx, cached('second question'));
    expect(second).toMatchObject({ kind: 'completed', result: { usage: { cacheReadInputTokens: first.result.usage.cacheCreationInputTokens } } });
    // Only the first call met the whole prompt's never-fits; the second reserved what it knew.
    const snapshot = await ctx.bucket.snapshot(SONNET, ctx.config.models[SONNET]!.limits);
    expect(snapshot.counters.neverFits).toEqual({ itpm: 1 });
  });

  it('fails PROVIDER_REJECTED after exactly one call when the provider answers 400', async () => {
    const requests = () => sim.stats().requestsByPath['POST /v1/messages'] ?? 0;
    const before = requests();
    const outcome = await run(context(), job({ request: { model: SONNET, max_tokens: 80_000, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'PROVIDER_REJECTED', message: expect.stringMatching(/^400 invalid_request_error: max_tokens/) }, progress: { attempts: 1 } });
    expect(requests() - before).toBe(1);
    // The provider's answer goes with the failure: its status, its id for the call, its error body.
    expect(outcome).toMatchObject({
      failure: {
        status: 400,
        providerRequestId: expect.stringMatching(/^req_/),
        providerError: { provider: 'anthropic', body: { type: 'error', error: { type: 'invalid_request_error', message: expect.stringMatching(/^max_tokens: 80000 > /) } } },
      },
    });
  });

  it('falls back down the ladder at once when the primary is overloaded', async () => {
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    const outcome = await run(context(), job({ fallback: [HAIKU] }));
    expect(outcome).toMatchObject({ kind: 'completed', result: { model: HAIKU, attempts: 2 } });
  });

  it("falls back along the primary's configured ladder when the job names no fallback", async () => {
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    const ctx = context({
      models: {
        [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 }, fallback: [HAIKU] },
        [HAIKU]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } },
      },
    });
    expect(await run(ctx, job())).toMatchObject({ kind: 'completed', result: { model: HAIKU, attempts: 2 } });
  });

  it('delays a retryable failure by the full-jitter backoff of its injected randomness', async () => {
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const outcome = await run(context(), job());
    // random 0.5 of the first attempt's ceiling (unhealthyBaseDelayMs 200): 100 ms, the attempt counted.
    expect(outcome).toEqual({ kind: 'delay', delayMs: 100, progress: { attempts: 1, triedModels: [SONNET], lastError: expect.stringContaining('503') } });
  });

  it('gives back the tokens of a call answered 529 (the provider did no work), not of one answered 503', async () => {
    // An 8,000-token output reservation: kept after a 503 (the provider may have done the work),
    // given back after a 529. Either way the call is no longer in flight: nothing more of it
    // comes back for a tokens/min wait to count on.
    const usedOtpm = async (status: 529 | 503) => {
      // Limits well under the simulator's, so its rate-limit headers never lower the bucket here.
      const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 100, itpm: 20_000, otpm: 20_000 } } } });
      sim.injectFaults({ model: SONNET, status, count: 1 });
      expect((await run(ctx, job({ request: { model: SONNET, max_tokens: 8_000, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>))).kind).toBe('delay');
      await ctx.bucket.flush();
      const snap = await ctx.bucket.snapshot(SONNET, ctx.config.models[SONNET]!.limits);
      expect(snap.inFlight).toEqual({ calls: 0, outputTokens: 0, tenants: {} });
      const otpm = snap.dimensions.find((d) => d.dimension === 'otpm')!;
      return otpm.capacity - otpm.level;
    };
    expect(await usedOtpm(503)).toBeGreaterThan(7_900);
    expect(await usedOtpm(529)).toBeLessThan(2_000);
  });

  it('retries a model on its retry budget: past it, the job waits (no attempt spent); a served retry gives its place back; a fallback is a first call', async () => {
    const ctx = context({ retry: { budget: { ratio: 0, minPerSecond: 0.1, windowMs: 10_000 } } });
    // A budget of 0.1/s x 10 s = 1 retry of SONNET, and no first calls to add to it.
    const retried = (lane: 'critical' | 'high' = 'high') => ({ ...meta(lane), progress: { attempts: 1, triedModels: [SONNET] } });
    // Retries the provider serves spend nothing: each gives its place back.
    expect((await run(ctx, job(), retried())).kind).toBe('completed');
    expect((await run(ctx, job(), retried())).kind).toBe('completed');
    // One that fails keeps it (the model still serves most calls: its throttle stays closed)...
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    expect(await run(ctx, job(), retried())).toMatchObject({ kind: 'delay', progress: { attempts: 2 } });
    // ...and the next retry waits for the budget, no call made.
    const outcome = await run(ctx, job(), retried());
    expect(outcome).toMatchObject({ kind: 'delay', progress: { attempts: 1 } });
    expect(outcome.kind === 'delay' && outcome.delayMs).toBeGreaterThan(25);
    // The same job falls down its ladder instead when it has one: HAIKU's first call is no retry.
    expect(await run(ctx, job({ fallback: [HAIKU] }), retried())).toMatchObject({ kind: 'completed', result: { model: HAIKU } });
    // CRITICAL's retries are not held by the budget (lanes.critical.retryBudgetExempt).
    expect(await run(ctx, job(), retried('critical'))).toMatchObject({ kind: 'completed', result: { model: SONNET } });
  });

  it("counts a garbage answer (a 200 whose body is not JSON) against the model's throttle, as a 5xx: no answer is not a served call", async () => {
    sim.injectFaults({ model: SONNET, malformed: true, count: 3 });
    const ctx = context();
    let m = meta();
    let outcome = await run(ctx, job({ fallback: [] }), m);
    while (outcome.kind === 'delay' || outcome.kind === 'requeue') {
      m = { ...m, progress: outcome.progress };
      outcome = await run(ctx, job({ fallback: [] }), m);
    }
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringContaining('200 response body is not valid JSON') } });
    await ctx.bucket.flush();
    const [view] = await ctx.bucket.throttles(SONNET, ctx.config.models[SONNET]!.limits, [SONNET]);
    expect(view!.successRatio).toBe(0);
  });

  it('requeues a job of a model the fleet has found dead: its lane backs off, and calls fall to probes', async () => {
    const ctx = context();
    for (let i = 0; i < 20; i++) ctx.bucket.report(SONNET, SONNET, false);
    const outcomes = [];
    for (let i = 0; i < 5; i++) outcomes.push(await run(ctx, job(), meta('critical')));
    // At most the probe's token went to a call; the rest were requeued with the time to the next probe.
    expect(outcomes.filter((o) => o.kind === 'completed').length).toBeLessThanOrEqual(1);
    const requeued = outcomes.filter((o) => o.kind === 'requeue');
    expect(requeued.length).toBeGreaterThanOrEqual(4);
    for (const o of requeued) expect(o.kind === 'requeue' && o.waitMs).toBeLessThanOrEqual(1_000);
    const [view] = await ctx.bucket.throttles(SONNET, ctx.config.models[SONNET]!.limits, [SONNET]);
    expect(view!.state).not.toBe('closed');
    expect(view!.successRatio).toBeLessThan(0.1);
  });

  it("spends no attempt on a failed probe of a dead model, for retry.outageGraceMs from the job's first", async () => {
    const ctx = context({ throttle: { probeIntervalMs: 100 } });
    // Other jobs' calls failing: the model's unhealthy run (20) is longer than the job's calls.
    for (let i = 0; i < 20; i++) ctx.bucket.report(SONNET, SONNET, false);
    sim.injectFaults({ model: SONNET, status: 529, count: 1_000 });
    /** Runs the job until its call goes (requeued meanwhile, as a dead model's jobs are, until the probe is theirs). */
    const untilCalled = async (m: JobMeta) => {
      for (;;) {
        const outcome = await run(ctx, job(), m);
        if (outcome.kind !== 'requeue') return outcome;
        await new Promise((r) => setTimeout(r, outcome.waitMs));
      }
    };
    // On its last attempt: the probe fails, and the job waits for the next one instead of failing.
    const last = { ...meta('critical'), progress: { attempts: 2, triedModels: [SONNET] } };
    const probed = await untilCalled(last);
    expect(probed).toMatchObject({ kind: 'delay', progress: { attempts: 3, outageFailures: 1, outageSince: expect.any(Number) } });
    const again = await untilCalled({ ...last, progress: probed.kind === 'delay' ? probed.progress : last.progress });
    expect(again).toMatchObject({ kind: 'delay', progress: { attempts: 4, outageFailures: 2 } });
    if (again.kind !== 'delay') return;
    // Past the grace its probes count again: the next failure is its last.
    const late = { ...last, progress: { ...again.progress, outageSince: Date.now() - ctx.config.retry.outageGraceMs } };
    expect(await untilCalled(late)).toMatchObject({
      kind: 'failed',
      failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringMatching(/^after 3 attempts, last: 529 .*\(and 2 failed in the model's outage, not counted\)$/) },
      progress: { attempts: 5, outageFailures: 2 },
    });
  });

  it('spends an attempt on a failed probe when the failures that opened the throttle were all its own', async () => {
    const ctx = context({ throttle: { probeIntervalMs: 100 } });
    // The job's own two calls, nothing else: the model's unhealthy run is 2, the job's calls 2.
    for (let i = 0; i < 2; i++) ctx.bucket.report(SONNET, SONNET, false);
    sim.injectFaults({ model: SONNET, status: 503, count: 1_000 });
    const last = { ...meta('critical'), progress: { attempts: 2, triedModels: [SONNET] } };
    let outcome = await run(ctx, job(), last);
    while (outcome.kind === 'requeue') {
      await new Promise((r) => setTimeout(r, outcome.kind === 'requeue' ? outcome.waitMs : 0));
      outcome = await run(ctx, job(), last);
    }
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringMatching(/^after 3 attempts, last: 503 /) }, progress: { attempts: 3 } });
    expect(outcome.kind === 'failed' && outcome.progress.outageFailures).toBeFalsy();
  });

  it("counts a spend cap's 429 apart from rate limits: not in headroom_provider_429_total nor in the fleet's 429 rate", async () => {
    const ctx = context();
    // A spend cap is tried once more, then fails SPEND_CAP.
    sim.injectFaults({ model: SONNET, spendCap: true, count: 2 });
    const first = await run(ctx, job({ fallback: [] }));
    if (first.kind !== 'delay') throw new Error(`expected one more try, got ${first.kind}`);
    expect(await run(ctx, job({ fallback: [] }), { ...meta(), progress: first.progress })).toMatchObject({ kind: 'failed', failure: { code: 'SPEND_CAP' } });
    expect((await ctx.metrics.rateLimited.get()).values).toEqual([]);
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 1 });
    expect((await run(ctx, job({ fallback: [] }))).kind).toBe('delay');
    expect((await ctx.metrics.rateLimited.get()).values).toEqual([{ labels: { provider: 'anthropic', model: SONNET }, value: 1 }]);
    await ctx.stats.flush();
    const fleet = await readFleetStats(db.redis, ctx.config.redis.prefix, 1);
    expect(fleet.calls[SONNET]).toMatchObject({ '429': 1, [SPEND_CAP_STATUS]: 2 });
    expect(fleet.calls429).toBe(1);
  });

  it("spends no attempt on a failure while this worker sees other jobs' calls to the model fail, none started later served", async () => {
    const ctx = context();
    // An outage's onset: the fleet's throttle has not opened yet, but the calls of three other
    // jobs started since the latest served one have all failed.
    ctx.outages.record(SONNET, 'before', Date.now() - 1_000, true);
    for (let i = 0; i < 9; i++) ctx.outages.record(SONNET, `other-${i % 3}`, Date.now() - 500 + i, false);
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    const outcome = await run(ctx, job(), { ...meta(), progress: { attempts: 2, triedModels: [SONNET] } });
    expect(outcome).toMatchObject({ kind: 'delay', progress: { attempts: 3, outageFailures: 1 } });
    expect((await ctx.metrics.outageFailures.get()).values).toEqual([{ labels: { provider: 'anthropic', model: SONNET }, value: 1 }]);
    // A call that started after them and was served ends the outage: the next failure counts.
    const served = await run(ctx, job(), { ...meta(), progress: { attempts: 0 } });
    expect(served.kind).toBe('completed');
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    let last = await run(ctx, job(), { ...meta(), progress: { attempts: 2, triedModels: [SONNET] } });
    // (told to wait for the model's retry budget meanwhile, no attempt spent)
    while (last.kind === 'requeue') {
      await new Promise((r) => setTimeout(r, last.kind === 'requeue' ? last.waitMs : 0));
      last = await run(ctx, job(), { ...meta(), progress: { attempts: 2, triedModels: [SONNET] } });
    }
    expect(last).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED' } });
  });

  it("tells a job out of attempts on a dead model with no fallback the wait its throttle keeps between calls, as its retry-after", async () => {
    // Probes one per 2 s: a client told to come back in 1 s came back into the same outage.
    const ctx = context({ throttle: { probeIntervalMs: 2_000, windowMs: 4_000 } });
    for (let i = 0; i < 2; i++) ctx.bucket.report(SONNET, SONNET, false);
    sim.injectFaults({ model: SONNET, status: 500, count: 1_000 });
    const last = { ...meta(), progress: { attempts: 2, triedModels: [SONNET] } };
    let outcome = await run(ctx, job({ fallback: [] }), last);
    while (outcome.kind === 'requeue') {
      await new Promise((r) => setTimeout(r, outcome.kind === 'requeue' ? outcome.waitMs : 0));
      outcome = await run(ctx, job({ fallback: [] }), last);
    }
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', status: 500 } });
    const [throttle] = await ctx.bucket.throttles(SONNET, ctx.config.models[SONNET]!.limits, [SONNET]);
    expect(throttle).toMatchObject({ state: 'open' });
    expect(outcome.kind === 'failed' && outcome.failure.retryAfterMs).toBe(Math.ceil(60_000 / throttle!.allowedRpm));
    expect(outcome.kind === 'failed' && outcome.failure.retryAfterMs).toBeGreaterThan(1_000);
  });

  it("tells a job out of attempts the provider's own retry-after on its last call, and nothing for a model that is not failing", async () => {
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 7 });
    const limited = await run(context(), job({ fallback: [] }), { ...meta(), progress: { attempts: 2 } });
    expect(limited).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', retryAfterMs: 7_000 } });
    // One 503 of a healthy model: no wait is known, the gateway's default stands.
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const once = await run(context(), job({ fallback: [] }), { ...meta(), progress: { attempts: 2 } });
    expect(once).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED' } });
    expect(once.kind === 'failed' && 'retryAfterMs' in once.failure).toBe(false);
  });

  it('fails RETRIES_EXHAUSTED on the last attempt, naming the last failure (a model not found dead: no probe)', async () => {
    sim.injectFaults({ model: SONNET, status: 503, count: 1 });
    const outcome = await run(context(), job(), { ...meta(), progress: { attempts: 2 } });
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringMatching(/^after 3 attempts, last: 503 /) } });
  });

  it('fails RETRIES_EXHAUSTED with no status when the last call was cut mid-answer: its head\'s 200 was no answer', async () => {
    sim.injectFaults({ model: SONNET, cut: true, count: 1 });
    const outcome = await run(context(), job(), { ...meta(), progress: { attempts: 2 } });
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'RETRIES_EXHAUSTED', message: expect.stringMatching(/^after 3 attempts, last: network connection closed mid-response/) } });
    expect(outcome.kind === 'failed' && 'status' in outcome.failure).toBe(false);
  });

  it('requeues (no attempt spent) when its pool is out of quota, so the pool backs off in the lane', async () => {
    // One request a minute: the first call empties the bucket for a minute.
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1, itpm: 400_000, otpm: 100_000 } } } });
    expect((await run(ctx, job(), meta('critical'))).kind).toBe('completed');
    const outcome = await run(ctx, job(), meta('critical'));
    expect(outcome).toMatchObject({ kind: 'requeue', progress: { attempts: 0 } });
    expect(outcome.kind === 'requeue' && outcome.waitMs).toBeGreaterThan(25);
  });

  it("records its pool's pace with a requeue: the refill of the job's draw at the pool's binding limit", async () => {
    // 2 requests/min bind (30 s a job); 64 output tokens at 100,000/min take 38 ms.
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 2, itpm: 400_000, otpm: 100_000, burst: 30 } } } });
    expect((await run(ctx, job(), meta('critical'))).kind).toBe('completed');
    expect(await run(ctx, job(), meta('critical'))).toMatchObject({ kind: 'requeue', paceMs: 30_000 });
  });

  it("goes down its ladder without drawing from its primary's pool when taken past that pool's queue for a fallback (lateOn)", async () => {
    const ctx = context();
    const grants = async () => (await ctx.bucket.snapshot(SONNET, ctx.config.models[SONNET]!.limits)).counters.grants.high ?? 0;
    const outcome = await run(ctx, job({ fallback: [HAIKU], maxWaitMs: 60_000 }), { ...meta(), lateOn: SONNET });
    expect(outcome).toMatchObject({ kind: 'completed', result: { model: HAIKU, attempts: 1 } });
    // Sonnet's bucket was not drawn: its refill stays for the jobs queued ahead.
    expect(await grants()).toBe(0);
    // With nowhere else to go, it still runs on its primary.
    expect(await run(ctx, job({ fallback: [] }), { ...meta(), lateOn: SONNET })).toMatchObject({ kind: 'completed', result: { model: SONNET } });
  });

  it('requeues a job facing a short quota wait while another job of its pool sleeps in place for it', async () => {
    // 3,000 requests/min with a 1 s burst: 50 in the bucket, then one every 20 ms (a short wait,
    // one a job alone would sleep in place for).
    // A machine busy enough to spread the 55 acquires over more than the refills they need
    // grants them all (nothing to see): the scenario is tried again on a fresh bucket.
    let requeued: Awaited<ReturnType<typeof run>>[] = [];
    for (let attempt = 0; attempt < 10 && requeued.length === 0; attempt++) {
      const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 3_000, itpm: 10_000_000, otpm: 10_000_000, burst: 1 } } } });
      // Another job of this worker is already sleeping for the pool's next refill.
      ctx.poolHolds.take(SONNET, 'critical', Date.now() + 20);
      const outcomes = await Promise.all(Array.from({ length: 55 }, () => run(ctx, job(), meta('critical'))));
      requeued = outcomes.filter((o) => o.kind === 'requeue');
      expect(outcomes.filter((o) => o.kind === 'completed').length).toBeGreaterThanOrEqual(50);
      expect(ctx.poolHolds.has(SONNET)).toBe(true);
    }
    // Not a herd of sleepers racing for each refill: back to the lane, whose front is served next.
    expect(requeued.length).toBeGreaterThanOrEqual(1);
    for (const o of requeued) expect(o.kind === 'requeue' && o.waitMs).toBeLessThanOrEqual(25);
  });

  it('holds its pool in its lane while it sleeps in place for a refill, until its next acquire has answered', async () => {
    // 3,000 requests/min with a 1 s burst: 50 in the bucket, then one every 20 ms.
    const limits = { rpm: 3_000, itpm: 10_000_000, otpm: 10_000_000, burst: 1 };
    // The job sleeps only if its acquire comes within 20 ms of the bucket being emptied; on a
    // machine busy enough to take longer it is simply granted (no hold to see), so the scenario
    // is tried again on a fresh bucket until the job did sleep (bound by events, not a clock).
    let held: ReturnType<PoolHolds['in']> = [];
    for (let attempt = 0; attempt < 10 && held.length === 0; attempt++) {
      const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits } } });
      expect((await ctx.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { requests: 50, inputTokens: 0, outputTokens: 0 } })).status).toBe('granted');
      let done = false;
      const running = run(ctx, job(), meta('critical')).finally(() => (done = true));
      // The dispatcher sees the pool held in the job's lane (not in the others) while it sleeps.
      await vi.waitUntil(() => done || ctx.poolHolds.in('critical').length === 1, { timeout: 10_000, interval: 1 });
      if (!done) {
        held = ctx.poolHolds.in('critical');
        expect(ctx.poolHolds.in('high')).toEqual([]);
      }
      expect((await running).kind).toBe('completed');
      expect(ctx.poolHolds.has(SONNET)).toBe(false);
    }
    expect(held).toEqual([expect.objectContaining({ pool: SONNET, lane: 'critical' })]);
  });

  it('gives its grant back whole (its request too) and goes behind a job of its pool and lane fetched before it that waits; that job, and one fetched before it, are served', async () => {
    const { ctx, requestsLeft } = scarceRequests();
    expect(await requestsLeft()).toBe(6);
    ctx.poolHolds.waited('ahead', { lane: 'critical', pool: SONNET, fetched: 5, waitEnd: Date.now() + 200, fairShare: false });
    const behind = await run(ctx, job(), { ...meta('critical'), id: 'behind', fetched: 6 });
    expect(behind).toMatchObject({ kind: 'requeue', progress: { attempts: 0 } });
    expect(behind.kind === 'requeue' && behind.waitMs).toBeGreaterThanOrEqual(1);
    expect(behind.kind === 'requeue' && behind.waitMs).toBeLessThanOrEqual(200);
    expect(await requestsLeft()).toBe(6);
    expect((await run(ctx, job(), { ...meta('critical'), id: 'earlier', fetched: 4 })).kind).toBe('completed');
    // The waiting job, fetched again, is served; then the one behind it.
    expect((await run(ctx, job(), { ...meta('critical'), id: 'ahead', fetched: 9 })).kind).toBe('completed');
    expect((await run(ctx, job(), { ...meta('critical'), id: 'behind', fetched: 10 })).kind).toBe('completed');
  });

  it("requeues a queued-up tenant's job the fair reserve holds back (fairShare: only such jobs back off), and serves a fresh tenant's from it", async () => {
    const limits = { rpm: 100, itpm: 400_000, otpm: 100_000 };
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits } } });
    // 21 requests left: NORMAL keeps 20, a queued-up tenant's job 2 more (lanes.normal.fairReserve 0.02).
    expect((await ctx.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { requests: 79, inputTokens: 0, outputTokens: 0 } })).status).toBe('granted');
    const queuedUp = await run(ctx, job({ tenant: 'a', priority: 'NORMAL' }), { ...meta('normal'), fresh: false });
    expect(queuedUp).toMatchObject({ kind: 'requeue', fairShare: true, progress: { attempts: 0 } });
    const fresh = await run(ctx, job({ tenant: 'b', priority: 'NORMAL' }), meta('normal'));
    expect(fresh.kind).toBe('completed');
    // In a FIFO lane nobody leaves the fair reserve.
    const fifo = context({ models: { [SONNET]: { provider: 'anthropic', limits } }, lanes: { normal: { fairness: 'fifo' } } });
    expect((await fifo.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { requests: 79, inputTokens: 0, outputTokens: 0 } })).status).toBe('granted');
    expect((await run(fifo, job({ tenant: 'a', priority: 'NORMAL' }), { ...meta('normal'), fresh: false })).kind).toBe('completed');
  });

  it('delays the job alone when its tenant is over its tokens/min quota', async () => {
    const { ctx } = clocked({ tenants: { default: { tpm: 2_000 } } });
    // Both draw before either call ends (nothing is refunded yet): the second cannot fit.
    const outcomes = await Promise.all([run(ctx, tenantJob(SONNET)), run(ctx, tenantJob(SONNET))]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['completed', 'delay']);
    // The next job of that tenant for the pool waits without asking the bucket; another tenant's job runs.
    expect(ctx.tenantWaits.heldFor(SONNET, 'acme', { id: 'probe', lane: 'high', paceMs: 0, ownDeadline: false }, ctx.now())).toMatchObject({ reason: 'tenant_tpm' });
    expect((await run(ctx, job({ tenant: 'other' }))).kind).toBe('completed');
  });

  it('holds a tenant over its quota in one pool back in that pool only: its own bucket in another pool serves it', async () => {
    const { ctx } = clocked({ tenants: { default: { tpm: 2_000 } } });
    const outcomes = await Promise.all([run(ctx, tenantJob(SONNET)), run(ctx, tenantJob(SONNET))]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['completed', 'delay']);
    // Haiku is a pool of its own: the tenant's bucket there is untouched.
    expect(await run(ctx, tenantJob(HAIKU))).toMatchObject({ kind: 'completed', result: { model: HAIKU } });
    expect((await run(ctx, job({ tenant: 'acme' }))).kind).toBe('delay');
  });

  it("asks a tenant's bucket again after TENANT_RECHECK_MS at most, so what its settled calls did not use serves its next job", async () => {
    const { ctx, advance } = clocked({ tenants: { default: { tpm: 2_000 } } });
    const outcomes = await Promise.all([run(ctx, tenantJob(SONNET)), run(ctx, tenantJob(SONNET))]);
    const parked = outcomes.find((o) => o.kind === 'delay');
    // On the refill alone the bucket says about 34 s (1,510 more than HIGH may hold of 2,000, at
    // 2,000/min); the call in flight hands back most of its 1,500 output tokens when it settles.
    expect(parked?.kind === 'delay' && parked.delayMs).toBeLessThanOrEqual(TENANT_RECHECK_MS);
    // Until then the tenant's next job is parked as well, without asking the bucket.
    const waitsOf = async () => (await ctx.bucket.snapshot(SONNET, ctx.config.models[SONNET]!.limits)).counters.waits.tenant_tpm ?? 0;
    const told = await waitsOf();
    expect(await run(ctx, tenantJob(SONNET))).toMatchObject({ kind: 'delay', delayMs: expect.any(Number) });
    expect(await waitsOf()).toBe(told);
    advance(TENANT_RECHECK_MS);
    expect((await run(ctx, tenantJob(SONNET))).kind).toBe('completed');
  });

  it("parks a held job of a tenant over its quota for its turn, not for the recheck, and brings it back when the tenant's bucket grants again", async () => {
    const { ctx, advance } = clocked({ tenants: { default: { tpm: 2_000 } } });
    const k = laneKeys(ctx.config.redis.prefix, 'high');
    const lane = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
    try {
      const outcomes = await Promise.all([run(ctx, tenantJob(SONNET)), run(ctx, tenantJob(SONNET))]);
      expect(outcomes.map((o) => o.kind).sort()).toEqual(['completed', 'delay']);
      // The tenant's next job, held without asking: parked behind the bucket's wait (~34 s on the
      // refill alone) and its own draw's refill, not for a second (a backlog parked for a second
      // each goes through the lane every second).
      const held = await lane.add('held', {}, { delay: 3_600_000 });
      const outcome = await run(ctx, tenantJob(SONNET), { ...meta(), id: held.id! });
      expect(outcome.kind === 'delay' && outcome.delayMs).toBeGreaterThan(30_000);
      expect(await lane.getJobState(held.id!)).toBe('delayed');
      // At the recheck the tenant's settled call has refunded most of its reservation: the next
      // job is granted, and the held job is brought back to ask with the rest.
      advance(TENANT_RECHECK_MS);
      expect((await run(ctx, tenantJob(SONNET))).kind).toBe('completed');
      await vi.waitUntil(async () => (await lane.getJobState(held.id!)) !== 'delayed', { timeout: 10_000, interval: 5 });
      expect(await lane.getJobState(held.id!)).toBe('waiting');
    } finally {
      await lane.close();
    }
  });

  it("fails NEVER_FITS at once, naming the prompt and output it needs, for a job larger than its tenant's quota while the tenant's jobs are held", async () => {
    const { ctx } = clocked({ tenants: { default: { tpm: 2_000 } } });
    const outcomes = await Promise.all([run(ctx, tenantJob(SONNET)), run(ctx, tenantJob(SONNET))]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['completed', 'delay']);
    // 3,000 of output and the prompt: more than the 1,900 HIGH may ever hold of 2,000 tokens/min.
    const huge = await run(ctx, tenantJob(SONNET, 3_000));
    expect(huge).toMatchObject({
      kind: 'failed',
      failure: { code: 'NEVER_FITS', message: expect.stringMatching(/^claude-sonnet-4-6 needs 30\d\d in tenant_tpm but lane high may draw at most 1900 at once/) },
    });
  });

  it('delays the job alone when its only model is cooling down after a 429', async () => {
    const ctx = context();
    await ctx.bucket.cooldown('claude-sonnet-4-6', SONNET, { durationMs: 5_000 });
    const outcome = await run(ctx, job());
    expect(outcome.kind).toBe('delay');
    expect(outcome.kind === 'delay' && outcome.delayMs).toBeGreaterThan(4_000);
  });

  it('spreads the jobs a cooldown parked over the time after it ends, by the injected randomness', async () => {
    const delays: number[] = [];
    for (const r of [0, 0.5, 0.999]) {
      const ctx = context({}, {}, () => r);
      await ctx.bucket.cooldown('claude-sonnet-4-6', SONNET, { durationMs: 10_000 });
      const outcome = await run(ctx, job());
      if (outcome.kind !== 'delay') throw new Error(`expected a delay, got ${outcome.kind}`);
      delays.push(outcome.delayMs);
    }
    // The cooldown's end (about 10 s) plus r x 2 s: not all at the same millisecond.
    expect(delays[0]).toBeGreaterThan(9_000);
    expect(delays[0]).toBeLessThanOrEqual(10_000);
    expect(delays[1]! - delays[0]!).toBeGreaterThan(COOLDOWN_RESUME_SPREAD_MS / 2 - 100);
    expect(delays[2]! - delays[0]!).toBeGreaterThan(COOLDOWN_RESUME_SPREAD_MS - 100);
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

  it.each(['critical', 'high', 'normal', 'low'] as const)('ends a %s job past its own maxWaitMs DEADLINE_EXCEEDED, without a call', async (lane) => {
    const before = calls(SONNET);
    const outcome = await run(context(), job({ maxWaitMs: 1_000 }), meta(lane, 5_000));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/^not started within its maxWaitMs of 1000 ms \(waited 5\d{3} ms\)$/) } });
    expect(calls(SONNET)).toBe(before);
  });

  it("names the calls a job past its maxWaitMs made, and the provider's last failure, instead of calling it not started", async () => {
    // A model's outage costs its jobs no attempt, so they retry until their deadline: the failure
    // read `not started within its maxWaitMs`, though each call had been made and answered 500.
    const progress = { attempts: 11, triedModels: [SONNET], lastError: '500 server: api_error: Internal server error' };
    const past = await run(context(), job({ maxWaitMs: 1_000 }), { ...meta('high', 5_000), progress });
    expect(past).toMatchObject({
      kind: 'failed',
      failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/^not started again within its maxWaitMs of 1000 ms \(waited 5\d{3} ms; 11 calls made, the last failed: 500 server: api_error: Internal server error\)$/) },
    });
    const ctx = context();
    await ctx.bucket.cooldown(SONNET, SONNET, { durationMs: 30_000 });
    const cooling = await run(ctx, job({ maxWaitMs: 2_000 }), { ...meta(), progress });
    expect(cooling).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/its cooldown wait needs \d+ ms more \(11 calls made, the last failed: 500 server: api_error: Internal server error\)$/) } });
  });

  it('ends the job at once when the wait it faces already passes its deadline', async () => {
    const ctx = context();
    const cooledAt = Date.now();
    await ctx.bucket.cooldown(SONNET, SONNET, { durationMs: 30_000 });
    const before = calls(SONNET);
    const outcome = await run(ctx, job({ maxWaitMs: 2_000 }));
    const elapsed = Date.now() - cooledAt;
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringContaining('its cooldown wait needs') } });
    // When a retry could start: the cooldown's end, not a second from now (the gateway's retry-after).
    const retryAfterMs = outcome.kind === 'failed' ? (outcome.failure.retryAfterMs ?? 0) : 0;
    expect(retryAfterMs).toBeGreaterThanOrEqual(30_000 - elapsed - 1);
    expect(retryAfterMs).toBeLessThanOrEqual(30_000);
    expect(calls(SONNET)).toBe(before);
    // Without a deadline of its own the job waits out the cooldown, as before.
    expect((await run(ctx, job())).kind).toBe('delay');
  });

  it("waits for its tenant's refunds rather than fail its deadline on a tokens/min wait the calls in flight could cover", async () => {
    const { ctx, advance } = clocked({ tenants: { default: { tpm: 2_000 } } });
    const withDeadline = () => ({ ...tenantJob(SONNET), maxWaitMs: 3_000 });
    // The bucket says about 34 s for the second, far past its 3 s; the first's call, in flight as
    // the second asks, reserved 1,500 of output and settles for a few.
    const outcomes = await Promise.all([run(ctx, withDeadline()), run(ctx, withDeadline())]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['completed', 'delay']);
    const parked = outcomes.find((o) => o.kind === 'delay')!;
    expect(parked.kind === 'delay' && parked.delayMs).toBeLessThanOrEqual(TENANT_RECHECK_MS);
    // Looked at again, with the refund in: served, within its deadline.
    advance(TENANT_RECHECK_MS);
    expect((await run(ctx, withDeadline(), { ...meta(), enqueuedAt: ctx.now() - TENANT_RECHECK_MS })).kind).toBe('completed');
    // Past its deadline the job ends, with no call.
    const late = await run(ctx, withDeadline(), { ...meta(), enqueuedAt: ctx.now() - 3_001 });
    expect(late).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED' } });
  });

  it("ends a deadline job at once, the foreseen wait as its retry-after, when its tenant's quota is spent and nothing in flight can give tokens back", async () => {
    const ctx = context({ tenants: { default: { tpm: 2_000 } } });
    const limits = ctx.config.models[SONNET]!.limits;
    const tenant = { id: 'acme', limits: { tpm: 2_000 } };
    const spent = await ctx.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { inputTokens: 100, outputTokens: 1_500 }, tenant });
    if (spent.status !== 'granted') throw new Error(`expected a grant, got ${spent.status}`);
    await ctx.bucket.settle(spent.reservation, { input_tokens: 100, output_tokens: 1_500 }, { immediate: true });
    const before = calls(SONNET);
    const outcome = await run(ctx, { ...tenantJob(SONNET), maxWaitMs: 3_000 });
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringContaining('its tenant_tpm wait needs') } });
    // About 34 s at 2,000/min, not a second: the SDK that waits it is served.
    expect(outcome.kind === 'failed' && outcome.failure.retryAfterMs).toBeGreaterThan(30_000);
    expect(calls(SONNET)).toBe(before);
  });

  it("parks a deadline job behind a pool's output wait the calls in flight could refund until no later than its deadline, and ends it at once when they cannot", async () => {
    const limits = { rpm: 1_000, itpm: 400_000, otpm: 6_000 };
    const ctx = context({ models: { [SONNET]: { provider: 'anthropic', limits } } });
    const inFlight = await ctx.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { inputTokens: 0, outputTokens: 4_000 } });
    if (inFlight.status !== 'granted') throw new Error(`expected a grant, got ${inFlight.status}`);
    const withDeadline = () => job({ maxWaitMs: 3_000, request: { model: SONNET, max_tokens: 3_000, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJob>);
    // 4,000 of the 6,000 reserved by a call in flight: the 3,000 this job needs come in about
    // 10 s on the refill alone, or as soon as that call gives back what it did not use.
    const parked = await run(ctx, withDeadline());
    expect(parked).toMatchObject({ kind: 'requeue' });
    expect(parked.kind === 'requeue' && parked.waitMs).toBeLessThanOrEqual(3_000);
    // The call settles for a few tokens: the job, looked at again, is served.
    await ctx.bucket.settle(inFlight.reservation, { input_tokens: 0, output_tokens: 5 }, { immediate: true });
    expect((await run(ctx, withDeadline())).kind).toBe('completed');
    // Spent by a call that used all it reserved, nothing in flight: the wait is sure.
    const spent = await ctx.bucket.acquire({ pool: SONNET, limits, lane: 'critical', need: { inputTokens: 0, outputTokens: 5_000 } });
    if (spent.status !== 'granted') throw new Error(`expected a grant, got ${spent.status}`);
    await ctx.bucket.settle(spent.reservation, { input_tokens: 0, output_tokens: 5_000 }, { immediate: true });
    const sure = await run(ctx, withDeadline());
    expect(sure).toMatchObject({ kind: 'failed', failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringContaining('its otpm wait needs') } });
    expect(sure.kind === 'failed' && sure.failure.retryAfterMs).toBeGreaterThan(3_000);
  });

  it('makes no retry due past the deadline: the job ends with the failure it had', async () => {
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 10 });
    const startedAt = Date.now();
    const outcome = await run(context(), job({ maxWaitMs: 3_000 }));
    const elapsed = Date.now() - startedAt;
    expect(outcome).toMatchObject({ kind: 'failed', progress: { attempts: 1 }, failure: { code: 'DEADLINE_EXCEEDED', message: expect.stringContaining('the retry after 429 rate_limit') } });
    // The provider's retry-after (10 s), less what already passed, is when the caller may try again.
    expect(outcome.kind === 'failed' ? outcome.failure.retryAfterMs : undefined).toBeGreaterThanOrEqual(10_000 - elapsed - 1);
  });

  it('hands the job back, no attempt spent, when the worker is stopping', async () => {
    const abort = new AbortController();
    abort.abort();
    expect(await run(context(), job(), meta(), abort.signal)).toEqual({ kind: 'aborted', progress: { attempts: 0 } });
  });

  it('withdraws a job whose gateway is gone, as its client would: CANCELLED, no provider call, its grant given back whole', async () => {
    const { ctx, requestsLeft } = scarceRequests();
    // Its gateway beat, then was killed: its last beat lapsed.
    await new Heartbeat({ redis: db.redis, prefix: ctx.config.redis.prefix, kind: 'gateway', id: 'gateway-killed', concurrency: 0, inFlight: () => 0 }).beat();
    await lapse(ctx.config.redis.prefix, 'gateway-killed');
    const before = calls(SONNET);
    const outcome = await run(ctx, job({ gateway: 'gateway-killed' }));
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' }, progress: { attempts: 0 } });
    expect((outcome as { failure: { message: string } }).failure.message).toContain('the gateway waiting on it (gateway-killed) is gone');
    expect(calls(SONNET)).toBe(before);
    expect(await requestsLeft()).toBe(6);
  });

  it('runs a job whose gateway still beats', async () => {
    const ctx = context();
    await new Heartbeat({ redis: db.redis, prefix: ctx.config.redis.prefix, kind: 'gateway', id: 'gateway-live', concurrency: 0, inFlight: () => 0 }).beat();
    const before = calls(SONNET);
    expect(await run(ctx, job({ gateway: 'gateway-live' }))).toMatchObject({ kind: 'completed', result: { attempts: 1 } });
    expect(calls(SONNET)).toBe(before + 1);
  });
});

describe('runJob, streamed', () => {
  const streamed = (over: Record<string, unknown> = {}): LlmJob =>
    job({ request: { model: SONNET, max_tokens: 300, stream: true, messages: [{ role: 'user', content: `a long story ${++seq}` }], ...over } } as Partial<LlmJob>);
  const streamMeta = (): JobMeta => ({ id: `high.${randomUUID()}`, lane: 'high', enqueuedAt: Date.now(), progress: { attempts: 0 } });
  const relayed = async (ctx: RunContext, id: string) =>
    (await db.redis.xrange(jobEventsKey(ctx.config.redis.prefix, id), '-', '+')).map(([, f]) => decodeJobEvent(f[0]!, f[1]!)!);

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
    expect(events[0]).toMatchObject({ kind: 'start', model: SONNET, providerRequestId: outcome.result.providerRequestId });
    expect(outcome.result.providerRequestId).toMatch(/^req_011\w{21}$/);
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

  it('retries a stream the provider overloads in the stream before its first token: the client never saw its opening, so the retry answers', async () => {
    sim.injectFaults({ model: SONNET, overloaded: true, midCall: true, count: 1 });
    const ctx = context();
    const m = streamMeta();
    const before = calls(SONNET);
    const story = streamed();
    const first = await run(ctx, story, m);
    // Without the hold, message_start was relayed and the job failed STREAM_FAILED.
    expect(first).toMatchObject({ kind: 'delay', progress: { attempts: 1 } });
    expect(await relayed(ctx, m.id)).toEqual([]);
    if (first.kind !== 'delay') throw new Error('expected a retry');
    const second = await run(ctx, story, { ...m, progress: first.progress });
    expect(second).toMatchObject({ kind: 'completed', result: { attempts: 2 } });
    expect(calls(SONNET)).toBe(before + 2);
    // One answer in the relay: the second call's, opened by its own message_start.
    const events = await relayed(ctx, m.id);
    const starts = events.filter((e) => e.kind === 'event' && (JSON.parse(e.data) as { type: string }).type === 'message_start');
    expect(starts).toHaveLength(1);
    expect((JSON.parse((starts[0] as { data: string }).data) as { message: { id: string } }).message.id).toBe((second as { result: { response: { id: string } } }).result.response.id);
    expect(events[0]).toMatchObject({ kind: 'start', model: SONNET });
    expect(events.at(-1)).toEqual({ kind: 'end' });
  });

  it('relays the opening of a stream whose first output is later than OPENING_HOLD_MS before that output: a client counting from the head is not left with nothing while the model thinks', async () => {
    // The first output a minute after the head (the simulator's latency, with streamTokenMs set),
    // as a model that thinks without showing it: held until its first output, the opening (and the
    // response's head at the gateway) waited that minute.
    sim.setPace({ latencyMs: { min: 60_000, max: 60_000 }, streamTokenMs: 1 });
    const ctx = context();
    const m = streamMeta();
    const abort = new AbortController();
    try {
      const running = run(ctx, streamed(), m, abort.signal);
      await expect.poll(async () => (await relayed(ctx, m.id)).length, { timeout: OPENING_HOLD_MS + 15_000, interval: 50 }).toBeGreaterThan(0);
      const events = await relayed(ctx, m.id);
      expect(events[0]).toMatchObject({ kind: 'start', model: SONNET });
      const types = events.slice(1).map((e) => (JSON.parse((e as { data: string }).data) as { type: string }).type);
      expect(types[0]).toBe('message_start');
      // The opening alone: nothing of the answer had come from the provider.
      expect(types).not.toContain('content_block_delta');
      // Its client now holds the opening: a cancel ends the job, never a retry behind its back.
      abort.abort(new JobCancelled());
      expect(await running).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
    } finally {
      sim.setPace({ latencyMs: { min: 0, max: 0 }, streamTokenMs: null });
    }
  });

  it("fails STREAM_FAILED, never retried, when the stream breaks after its first event, its error event left for the finish that fails the job", async () => {
    sim.setPace({ streamTokenMs: 2 });
    sim.injectFaults({ model: SONNET, cut: true, count: 1 });
    const ctx = context();
    const m = streamMeta();
    try {
      const outcome = await run(ctx, streamed({ max_tokens: 200 }), m);
      expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'STREAM_FAILED', message: expect.stringContaining('events had been streamed') }, progress: { attempts: 1 } });
      // A cut stream had no answer of its own: no status (the stream's head said 200).
      expect(outcome.kind === 'failed' && 'status' in outcome.failure).toBe(false);
      // The caller must not read the failure while the job is still active: a repeat of its
      // idempotency key sent then joined the dying job and got the failure again, where a repeat
      // after a failure runs again. The error event goes with the outcome, for the finish.
      const events = await relayed(ctx, m.id);
      expect(events.length).toBeGreaterThan(1);
      expect(events.map((e) => e.kind)).not.toContain('error');
      expect(outcome.kind === 'failed' && outcome.streamError).toMatchObject({ kind: 'error', failure: { code: 'STREAM_FAILED' } });
      expect(JSON.parse((outcome as { streamError: { data: string } }).streamError.data)).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("cuts a stream the provider stalls half-way at streamIdleMs: STREAM_FAILED saying how long the provider was silent, the call out of flight, its error event for the client", async () => {
    // The call timeout (20 s here, 600 s by default) was all that ended a stalled stream: the
    // worker's slot held, the client kept waiting behind the gateway's keep-alives.
    sim.injectFaults({ model: SONNET, stall: true, count: 1 });
    const ctx = context({ providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV, timeoutMs: 20_000, streamIdleMs: 300 } } });
    const m = streamMeta();
    const silent = 'the provider sent nothing for 300 ms (stream idle timeout, providers.anthropic.streamIdleMs)';
    const outcome = await run(ctx, streamed({ max_tokens: 200 }), m);
    expect(outcome).toMatchObject({
      kind: 'failed',
      failure: { code: 'STREAM_FAILED', message: expect.stringMatching(new RegExp(`^network ${silent.replace(/[().]/g, '\\$&')} \\(after \\d+ events had been streamed\\)$`)) },
      progress: { attempts: 1 },
    });
    expect(sim.stats().models[SONNET]?.faultsInjected.stall).toBe(1);
    // Part of the answer was relayed; its end is the API's error event, with the failure.
    expect((await relayed(ctx, m.id)).length).toBeGreaterThan(1);
    const { streamError } = outcome as { streamError: { data: string } };
    expect(JSON.parse(streamError.data)).toEqual({ type: 'error', error: { type: 'api_error', message: expect.stringContaining(silent) } });
    // The call is over: nothing relays it, and the bucket counts nothing of it in flight.
    expect(ctx.relaying.ids()).toEqual([]);
    await ctx.bucket.flush();
    expect((await ctx.bucket.snapshot(SONNET, ctx.config.models[SONNET]!.limits)).inFlight).toMatchObject({ calls: 0 });
  });

  it('completes a slow but steady stream that runs past streamIdleMs and past the call timeout: its events come more often than the idle bound', async () => {
    // 100 ms a token for 40 tokens, past both bounds of 3 s. The bounds keep 30 token gaps of
    // margin: at 1.5 s (15 gaps) a machine loaded by parallel test files starved the stream's
    // process past the idle bound, and the stream was cut after 11 tokens.
    sim.setPace({ streamTokenMs: 100 });
    try {
      const ctx = context({ providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV, timeoutMs: 3_000, streamIdleMs: 3_000 } } });
      const m = streamMeta();
      const outcome = await run(ctx, streamed({ max_tokens: 40 }), m);
      expect(outcome).toMatchObject({ kind: 'completed', result: { usage: { outputTokens: 40 } } });
      expect((await relayed(ctx, m.id)).map((e) => e.kind)).toContain('end');
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  // A stream's rate-limit headers come with its 200 head, when the provider has charged the call's
  // whole output bound (Anthropic's output tokens/min, OpenAI's tokens/min), and the unused part is
  // given back at its end. The provider here holds this call alone (a key of its own) and refills
  // slowly (6,000 a minute), so what it and the bucket still count after the settle is read from
  // their states: the simulator's admission, and the bucket's stored level at its own time.
  it.each([
    { provider: 'anthropic', model: SONNET, dimension: 'otpm', limits: { rpm: 1_000, itpm: 450_000, otpm: 6_000 } },
    { provider: 'openai', model: 'gpt-4.1', dimension: 'tpm', limits: { rpm: 5_000, tpm: 6_000 } },
  ] as const)("holds after a $provider stream's settle what the provider counts, not the output bound its head's headers still counted ($dimension)", async ({ provider, model, dimension, limits }) => {
    const key = `sk-stream-sync-${++seq}`;
    const restore = sim.limits().models[model]!.configured;
    sim.setLimits(model, { [dimension]: limits[dimension] });
    try {
      const base = context({
        providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV }, openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } },
        models: { [model]: { provider, limits } },
      });
      const ctx: RunContext = { ...base, adapters: createAdapters(base.config, { [KEY_ENV]: key }) };
      const bound = provider === 'anthropic' ? { max_tokens: 5_000 } : { max_completion_tokens: 5_000 };
      const grantedFrom = Date.now();
      const outcome = await run(ctx, job({ provider, request: { model, ...bound, stream: true, messages: [{ role: 'user', content: `a short story ${++seq}` }] } } as Partial<LlmJob>), streamMeta());
      expect(outcome.kind).toBe('completed');
      await ctx.bucket.flush();
      const snap = await ctx.bucket.snapshot(model, limits);
      const admitted = sim.stats().admissions.filter((a) => a.key === key);
      expect(admitted).toMatchObject([{ done: true, streamed: true }]);
      const { t, input, output } = admitted[0]!;
      const level = snap.dimensions.find((d) => d.dimension === dimension)!;
      const perMs = level.ratePerSec / 1000;
      // What the simulator still counts: the call's usage (its bucket was full before it), refilled since its admission.
      const counted = (dimension === 'tpm' ? input : 0) + output;
      const providerUsed = Math.max(0, counted - perMs * (snap.atMs - t));
      // The bucket charged the grant a little before the provider's admission, so it may have refilled that much more.
      const earlier = perMs * (t - grantedFrom);
      // Where the head's headers counted more input than the grant's estimate, they lift the bucket
      // to it, and the settle adds the difference again: on the safe side, by at most the input.
      const twice = dimension === 'tpm' ? input : 0;
      const bucketUsed = level.capacity - level.level;
      expect(output).toBeLessThan(1_000);
      expect(bucketUsed).toBeLessThanOrEqual(providerUsed + twice + 1e-6);
      expect(bucketUsed).toBeGreaterThanOrEqual(providerUsed - earlier);
    } finally {
      sim.setLimits(model, restore);
    }
  });

  it("fails a stream its worker's shutdown cut after its first event STREAM_FAILED, saying so in the failure and in the client's error event, not blaming the provider", async () => {
    sim.setPace({ streamTokenMs: 10 });
    try {
      const ctx = context();
      const m = streamMeta();
      const shutdown = new AbortController();
      const outcome = run(ctx, streamed({ max_tokens: 200 }), m, shutdown.signal);
      // The grace runs out once the client has part of the answer.
      while ((await db.redis.xlen(jobEventsKey(ctx.config.redis.prefix, m.id))) < 5) await new Promise((r) => setTimeout(r, 10));
      shutdown.abort();
      const ended = await outcome;
      if (ended.kind !== 'failed') throw new Error(`ended ${ended.kind}`);
      expect(ended.failure).toMatchObject({ code: 'STREAM_FAILED', streamCut: 'WORKER_SHUTDOWN', message: expect.stringMatching(/^cut by its worker's shutdown: the shutdown grace \(dispatch.shutdownGraceMs\) ran out after \d+ events had been streamed/) });
      expect(ended.progress.attempts).toBe(1);
      expect(ended.streamError?.failure).toEqual(ended.failure);
      expect(JSON.parse(ended.streamError!.data)).toEqual({ type: 'error', error: { type: 'api_error', message: `STREAM_FAILED: ${ended.failure.message}` } });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("lets a plain call already sent run to its end when its caller cancels: the job completes with the provider's answer", async () => {
    sim.setPace({ latencyMs: { min: 400, max: 400 } });
    const abort = new AbortController();
    try {
      const before = calls(SONNET);
      const running = run(context(), job(), meta(), abort.signal);
      await expect.poll(() => calls(SONNET), { timeout: 5_000, interval: 5 }).toBe(before + 1);
      abort.abort(new JobCancelled());
      // The provider has the call and counts it: its answer goes to the job, not away.
      const outcome = await running;
      expect(outcome).toMatchObject({ kind: 'completed', result: { attempts: 1 } });
      expect(outcome.kind === 'completed' && outcome.result.usage.outputTokens).toBeGreaterThan(0);
      expect(calls(SONNET)).toBe(before + 1);
    } finally {
      sim.setPace({ latencyMs: { min: 0, max: 0 } });
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

  it("gives a retry's place in the budget back when its caller cuts its stream: the call says nothing of the model", async () => {
    // A budget of 0.1/s x 10 s = 1 retry of SONNET, and no first calls to add to it.
    const ctx = context({ retry: { budget: { ratio: 0, minPerSecond: 0.1, windowMs: 10_000 } } });
    const retried = (): JobMeta => ({ ...streamMeta(), progress: { attempts: 1, triedModels: [SONNET] } });
    sim.setPace({ streamTokenMs: 20 });
    try {
      const m = retried();
      const abort = new AbortController();
      const running = run(ctx, streamed({ max_tokens: 400 }), m, abort.signal);
      await expect.poll(async () => (await relayed(ctx, m.id)).length, { timeout: 5_000 }).toBeGreaterThan(3);
      abort.abort(new JobCancelled());
      expect(await running).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
    // The budget's one retry is there again: the next retry is called (and fails, keeping it)...
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    expect(await run(ctx, streamed(), retried())).toMatchObject({ kind: 'delay', progress: { attempts: 2 } });
    // ...so the one after waits for the budget, no call made.
    expect(await run(ctx, streamed(), retried())).toMatchObject({ kind: 'delay', progress: { attempts: 1 } });
  });

  it('fails STREAM_FAILED without a provider call, its grant given back whole, when an earlier attempt streamed part of an answer and its worker has stopped', async () => {
    const { ctx, requestsLeft } = scarceRequests();
    // Run again: taken from its lane before (BullMQ's attemptsStarted 2).
    const m = { ...streamMeta(), takenBefore: true };
    // What a worker killed mid-stream (or one that lost the job's lock) left in the relay: its
    // first write, the start and the provider's first event, read by the caller already. Its
    // worker has no heartbeat: it stopped.
    const earlier = [
      { kind: 'start', model: SONNET, waitMs: 0, startedAt: Date.now(), providerRequestId: 'req_earlier', worker: 'a-stopped-worker' },
      { kind: 'event', data: '{"type":"message_start","message":{"id":"msg_earlier"}}' },
    ] as const;
    expect(await relayEvents(db.redis, ctx.config.redis.prefix, m.id, earlier, { first: true })).toBe('written');
    const before = calls(SONNET);
    const outcome = await run(ctx, streamed(), m);
    // No call whose answer would be thrown away: none reached the provider, none is charged.
    expect(calls(SONNET) - before).toBe(0);
    const message = 'an earlier attempt of this job streamed part of an answer and stopped before its end (its worker a-stopped-worker has stopped); a second one cannot follow it';
    const failure = { code: 'STREAM_FAILED', message, streamCut: 'EARLIER_ATTEMPT_STOPPED' };
    expect(outcome).toEqual({ kind: 'failed', failure, progress: { attempts: 0 }, streamError: { kind: 'error', data: expect.any(String), failure } });
    // The error event its finish writes ends the relay: the client's SDK raises it.
    expect(JSON.parse((outcome as { streamError: { data: string } }).streamError.data)).toEqual({ type: 'error', error: { type: 'api_error', message: `STREAM_FAILED: ${message}` } });
    expect(await requestsLeft()).toBe(6);
    expect(await relayed(ctx, m.id)).toEqual(earlier);
  });

  it("follows an earlier attempt that lost the job but streams on, its worker beating, to the relay's end, and completes the job with that answer: one provider call", async () => {
    sim.setPace({ streamTokenMs: 10 });
    try {
      const { ctx, requestsLeft } = scarceRequests();
      const prefix = ctx.config.redis.prefix;
      // The earlier attempt's worker: alive, and beating.
      const writer: RunContext = { ...context(), config: ctx.config, workerId: 'the-earlier-worker' };
      const beat = new Heartbeat({ redis: db.redis, prefix, id: writer.workerId, concurrency: 1, inFlight: () => 1, relaying: () => writer.relaying.ids() });
      await beat.beat();
      const j = streamed({ max_tokens: 120 });
      const m = streamMeta();
      const before = calls(SONNET);
      const earlier = run(writer, j, m);
      // Taken again once the earlier attempt has relayed part of its answer (its lock lapsed).
      while ((await db.redis.xlen(jobEventsKey(prefix, m.id))) < 3) await new Promise((r) => setTimeout(r, 10));
      // A beat while it streams lists the job: the rerun follows on.
      await beat.beat();
      expect(writer.relaying.ids()).toEqual([m.id]);
      const outcome = await run(ctx, j, { ...m, takenBefore: true });
      const first = await earlier;
      if (first.kind !== 'completed') throw new Error(`the earlier attempt ended ${first.kind}`);
      expect(calls(SONNET) - before).toBe(1);
      expect(outcome).toEqual({
        kind: 'completed',
        result: expect.objectContaining({ model: SONNET, response: first.result.response, usage: first.result.usage, providerRequestId: first.result.providerRequestId, streamed: true, attempts: 1 }),
      });
      expect(first.result.usage.outputTokens).toBeGreaterThan(0);
      // The rerun's grant went back whole: only the earlier attempt's call is charged, in its own bucket.
      expect(await requestsLeft()).toBe(6);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  /** A rerun's job whose relay an earlier attempt began, its worker alive and beating: it may stream on. */
  async function streamingElsewhere() {
    const ctx = context();
    const prefix = ctx.config.redis.prefix;
    const m = { ...streamMeta(), takenBefore: true };
    await new Heartbeat({ redis: db.redis, prefix, id: 'a-beating-worker', concurrency: 1, inFlight: () => 1 }).beat();
    const opening = [{ kind: 'start', model: SONNET, waitMs: 0, startedAt: Date.now(), worker: 'a-beating-worker' }, { kind: 'event', data: '{"type":"message_start","message":{"id":"msg_earlier"}}' }] as const;
    await relayEvents(db.redis, prefix, m.id, opening, { first: true });
    return { ctx, prefix, m };
  }

  it("fails with the earlier attempt's own stream failure when its error event reaches the relay it follows", async () => {
    const { ctx, prefix, m } = await streamingElsewhere();
    const outcome = run(ctx, streamed(), m);
    // That attempt's stream breaks; its finish refused (its lock lapsed), its worker relays the error.
    const broke = jobFailure(FailureCode.STREAM_FAILED, '200 network connection closed mid-response (after 1 events had been streamed)');
    const data = JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'broke' } });
    expect(await relayEvents(db.redis, prefix, m.id, [{ kind: 'error', data, failure: broke }], { first: false })).toBe('written');
    expect(await outcome).toEqual({ kind: 'failed', failure: broke, progress: { attempts: 0 } });
    // Nothing follows a stream's end: a later write of that attempt is refused.
    expect(await relayEvents(db.redis, prefix, m.id, [{ kind: 'event', data: '{}' }], { first: false })).toBe('closed');
  });

  /**
   * What a worker leaves that streamed a job's whole answer, then lost the job (its lock lapsed
   * while Redis was away): the first attempt runs to its end in a context of its own, its bucket
   * charged there, and its relay (less what `keep` drops) is copied into `into`'s, whose bucket it
   * never touched. Returns the result that attempt would have stored.
   */
  async function answeredEarlier(first: RunContext, into: RunContext, j: LlmJob, m: JobMeta, keep = (events: JobEvent[]) => events) {
    const outcome = await run(first, j, m);
    if (outcome.kind !== 'completed') throw new Error(`the first attempt ended ${outcome.kind}`);
    const events = keep(await relayed(first, m.id));
    expect(await relayEvents(db.redis, into.config.redis.prefix, m.id, events, { first: true })).toBe('written');
    return outcome.result;
  }

  /** Every dimension's level, flushed first: a grant given back whole leaves them as they were. */
  const levels = async (ctx: RunContext, pool: string) => {
    await ctx.bucket.flush();
    const limits = ctx.config.models[pool]!.limits;
    return (await ctx.bucket.snapshot(pool, limits)).dimensions.map((d) => [d.dimension, d.level]);
  };

  it('completes a rerun with the whole answer an earlier attempt relayed before it lost the job: the same response and usage, no provider call, nothing charged', async () => {
    const { ctx, requestsLeft } = scarceRequests();
    // Run again: taken from its lane before (BullMQ's attemptsStarted 2).
    const m = { ...streamMeta(), takenBefore: true };
    const j = streamed();
    const earlier = await answeredEarlier(context(), ctx, j, m);
    const before = calls(SONNET);
    const charged = await levels(ctx, SONNET);
    const outcome = await run(ctx, j, m);
    expect(calls(SONNET) - before).toBe(0);
    expect(outcome).toEqual({
      kind: 'completed',
      result: expect.objectContaining({
        provider: 'anthropic',
        model: SONNET,
        response: earlier.response,
        usage: earlier.usage,
        providerRequestId: earlier.providerRequestId,
        cost: earlier.cost,
        streamed: true,
        attempts: 1,
      }),
    });
    expect(earlier.usage.outputTokens).toBeGreaterThan(0);
    const timings = (outcome as { result: LlmResult }).result.timings;
    expect(timings.waitMs).toBe(earlier.timings.waitMs);
    expect(timings.firstEventAt).toBeGreaterThanOrEqual(timings.startedAt);
    expect(timings.ttftMs).toBe(timings.firstEventAt! - timings.startedAt);
    // The grant the rerun took went back whole: its request, its tokens.
    expect(await requestsLeft()).toBe(6);
    expect(await levels(ctx, SONNET)).toEqual(charged);
  });

  it("completes a rerun with no second provider call when the client's reader already read the earlier answer to its end: the relay waits for the job's end", async () => {
    const ctx = context();
    const prefix = ctx.config.redis.prefix;
    await publishFleetSettings(db.redis, ctx.config);
    const producer = new Producer({ redis: db.url, prefix });
    try {
      const j = streamed();
      // The client's stream, as the gateway reads it: the job waits in its lane, taken by no worker here.
      const stream = await producer.stream({ priority: j.priority, provider: j.provider, request: j.request } as LlmJobInput);
      const m: JobMeta = { id: stream.id, lane: 'high', enqueuedAt: Date.now(), progress: { attempts: 0 } };
      // The earlier attempt streams the whole answer to the client, then loses the job (its
      // finish refused: its lock lapsed while Redis was away), and the reader reads the end.
      const read = (async () => {
        const events: string[] = [];
        for await (const data of stream.raw()) events.push(data);
        return events;
      })();
      const before = calls(SONNET);
      const earlier = await run(ctx, j, m);
      if (earlier.kind !== 'completed') throw new Error(`the earlier attempt ended ${earlier.kind}`);
      expect((await read).length).toBeGreaterThan(0);
      expect(calls(SONNET) - before).toBe(1);
      // The rerun: taken from its lane before.
      const outcome = await run(ctx, j, { ...m, takenBefore: true });
      expect(calls(SONNET) - before).toBe(1);
      expect(outcome).toMatchObject({ kind: 'completed', result: { response: earlier.result.response, usage: earlier.result.usage } });
    } finally {
      await producer.close();
    }
  });

  it("rebuilds a Chat Completions answer whose client did not ask for usage: the relay's end carries the usage chunk the client was not sent", async () => {
    const GPT = 'gpt-4.1';
    const openai = () => context({ providers: { openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } }, models: { [GPT]: { provider: 'openai', limits: { rpm: 1_000, tpm: 100_000 } } } });
    const ctx = openai();
    const m = { ...streamMeta(), takenBefore: true };
    const j = { priority: 'HIGH', provider: 'openai', request: { model: GPT, max_tokens: 64, stream: true, messages: [{ role: 'user', content: `question ${++seq}` }] } } as LlmJob;
    const earlier = await answeredEarlier(openai(), ctx, j, m);
    const events = await relayed(ctx, m.id);
    // The client's chunks hold no usage; the end does.
    expect(events.filter((e) => e.kind === 'event').some((e) => 'usage' in (JSON.parse((e as { data: string }).data) as object))).toBe(false);
    expect(events.at(-1)).toMatchObject({ kind: 'end', withheld: expect.stringContaining('"usage"') });
    const before = calls(GPT);
    const outcome = await run(ctx, j, m);
    expect(calls(GPT) - before).toBe(0);
    expect(outcome).toMatchObject({ kind: 'completed', result: { model: GPT, response: earlier.response, usage: earlier.usage, cost: earlier.cost } });
    expect((earlier.response as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(earlier.usage.outputTokens);
  });

  /**
   * An earlier attempt whose relay write Redis refuses mid-stream (at its maxmemory, every write is
   * refused OOM for a while), its worker beating on: the call is stopped at that write. Returns
   * that attempt's outcome, once Redis takes writes again.
   */
  async function relayRefusedMidStream(writer: RunContext, j: LlmJob, m: JobMeta) {
    const earlier = run(writer, j, m);
    while ((await db.redis.xlen(jobEventsKey(writer.config.redis.prefix, m.id))) < 3) await new Promise((r) => setTimeout(r, 10));
    await db.redis.config('SET', 'maxmemory', '1');
    try {
      return await earlier;
    } finally {
      await db.redis.config('SET', 'maxmemory', '0');
    }
  }

  it("ends the relay with an error event when Redis refuses a relay write mid-stream: the call stops there, and the finish (or the hand-over of a lost job) writes that event", async () => {
    sim.setPace({ streamTokenMs: 20 });
    try {
      const ctx = context();
      const m = streamMeta();
      const outcome = await relayRefusedMidStream(ctx, streamed({ max_tokens: 400 }), m);
      const failure = { code: 'STREAM_FAILED', message: expect.stringMatching(/^relaying the stream through Redis failed after \d+ events: OOM /) };
      expect(outcome).toMatchObject({ kind: 'failed', failure, streamError: { kind: 'error', failure } });
      // The client's SDK raises it, as it does any stream's error event.
      const { streamError } = outcome as { streamError: { data: string } };
      expect(JSON.parse(streamError.data)).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('STREAM_FAILED: relaying the stream through Redis failed') } });
      // Stopped at the refused write: nothing of this attempt was written after it.
      expect((await relayed(ctx, m.id)).map((e) => e.kind)).not.toContain('end');
      expect(ctx.relaying.ids()).toEqual([]);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("fails a rerun STREAM_FAILED once the earlier attempt, whose relay writes Redis refused, has stopped its call: its worker's beats, alive, no longer list the job", async () => {
    sim.setPace({ streamTokenMs: 20 });
    try {
      // The follower gives up on the provider's call timeout at the latest: 20 s here.
      const ctx = context({ providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV, timeoutMs: 20_000 } } });
      const prefix = ctx.config.redis.prefix;
      const writer: RunContext = { ...context(), config: ctx.config, workerId: 'a-writer-redis-refused' };
      const beat = new Heartbeat({ redis: db.redis, prefix, id: writer.workerId, concurrency: 1, inFlight: () => 1, relaying: () => writer.relaying.ids(), ttlMs: 60_000 });
      await beat.beat();
      const j = streamed({ max_tokens: 400 });
      const m = streamMeta();
      const first = await relayRefusedMidStream(writer, j, m);
      expect(first).toMatchObject({ kind: 'failed', failure: { code: 'STREAM_FAILED', message: expect.stringContaining('OOM') } });
      // Its worker lives on, and beats.
      await beat.beat();
      const before = calls(SONNET);
      const outcome = await run(ctx, j, { ...m, takenBefore: true });
      expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'STREAM_FAILED', streamCut: 'EARLIER_ATTEMPT_STOPPED', message: expect.stringContaining('no longer relays it') } });
      expect(calls(SONNET) - before).toBe(0);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("fails CANCELLED when its caller cancels while it follows an earlier attempt's relay, though this worker never heard the cancel", async () => {
    const { ctx, prefix, m } = await streamingElsewhere();
    // Its relay script loaded: the rerun's own check goes out on this connection before the cancel.
    expect(await checkRelay(db.redis, prefix, m.id)).toBe('taken');
    const outcome = run(ctx, streamed(), m);
    await flagCancelled(db.redis, prefix, m.id);
    expect(await outcome).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' }, progress: { attempts: 0 } });
  });

  it('still fails STREAM_FAILED, with no call, when the relay holds an earlier answer without its end and its worker is dead', async () => {
    const { ctx, requestsLeft } = scarceRequests();
    const m = { ...streamMeta(), takenBefore: true };
    const j = streamed();
    // Every event of a real answer but its end, written by a worker that beat once and then no
    // more (its beat lasted 1 ms). The rerun's clock runs on by 3 s a reading: the writer is given
    // a heartbeat interval to beat again (Redis may have been paused), and does not.
    const writer = context();
    await new Heartbeat({ redis: db.redis, prefix: ctx.config.redis.prefix, id: writer.workerId, concurrency: 1, inFlight: () => 1, ttlMs: 1 }).beat();
    await answeredEarlier(writer, ctx, j, m, (events) => events.slice(0, -1));
    let t = Date.now();
    const before = calls(SONNET);
    const outcome = await run({ ...ctx, now: () => (t += 3_000) }, j, m);
    expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'STREAM_FAILED', streamCut: 'EARLIER_ATTEMPT_STOPPED', message: expect.stringContaining(`its worker ${writer.workerId} is dead`) }, progress: { attempts: 0 } });
    expect(calls(SONNET) - before).toBe(0);
    expect(await requestsLeft()).toBe(6);
  });

  it("fails CANCELLED without a call when its cancel flag is set though this worker never heard the cancel", async () => {
    const ctx = context();
    // Run again: taken from its lane before (BullMQ's attemptsStarted 2).
    const m = { ...streamMeta(), takenBefore: true };
    await flagCancelled(db.redis, ctx.config.redis.prefix, m.id);
    const before = calls(SONNET);
    expect(await run(ctx, streamed(), m)).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' }, progress: { attempts: 0 } });
    expect(calls(SONNET) - before).toBe(0);
  });

  it('fails CANCELLED without a call when its caller cancelled before it started', async () => {
    const abort = new AbortController();
    abort.abort(new JobCancelled());
    const before = calls(SONNET);
    expect(await run(context(), streamed(), streamMeta(), abort.signal)).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
    expect(calls(SONNET)).toBe(before);
  });

  it('stops a streamed call whose gateway goes away mid-stream, and fails CANCELLED with the output produced', async () => {
    sim.setPace({ streamTokenMs: 20 });
    const ctx = context();
    const m = streamMeta();
    const gateway = new Heartbeat({ redis: db.redis, prefix: ctx.config.redis.prefix, kind: 'gateway', id: 'gateway-mid', concurrency: 0, inFlight: () => 0 });
    await gateway.beat();
    try {
      const running = run(ctx, { ...streamed({ max_tokens: 400 }), gateway: 'gateway-mid' }, m);
      await expect.poll(async () => (await relayed(ctx, m.id)).length, { timeout: 5_000 }).toBeGreaterThan(5);
      // The rest of the answer a token a second: it outlasts the test unless it is stopped.
      sim.setPace({ streamTokenMs: 1_000 });
      // Killed: it beats no more, and its last beat lapses.
      await lapse(ctx.config.redis.prefix, 'gateway-mid');
      const outcome = await running;
      expect(outcome).toMatchObject({ kind: 'failed', failure: { code: 'CANCELLED' } });
      const { message } = (outcome as { failure: { message: string } }).failure;
      expect(message).toContain('the gateway waiting on it (gateway-mid) is gone');
      expect(Number(/about (\d+) output tokens/.exec(message)?.[1])).toBeGreaterThan(0);
      await expect.poll(() => sim.stats().admissions.at(-1)?.done, { timeout: 5_000 }).toBe(true);
      const admission = sim.stats().admissions.at(-1)!;
      expect(admission).toMatchObject({ streamed: true, clientClosed: true });
      expect(admission.outputSent).toBeLessThan(400);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });
});
