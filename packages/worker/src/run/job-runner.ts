/**
 * Runs one job: plan a model from the fallback ladder, draw its need from the shared bucket,
 * call the provider, hand its usage and headers back to the bucket, and decide what happens
 * after a failure.
 * Returns an outcome for the dispatcher to apply to the BullMQ job; it never touches the job
 * itself, so it can be tested without one.
 */
import { maxOutputTokens, modelLadder, parseRateLimitHeaders, poolOf, type Bucket, type HeadroomConfig, type InteractiveLane, type LlmJob, type LlmResult, type Provider, type Reservation, type Usage, type FleetStatsWriter, type Logger } from '@headroom/queue';
import type { Breaker } from './breaker.js';
import { costOf } from './cost.js';
import type { WorkerMetrics } from '../metrics.js';
import type { PressureMonitor } from '../shedding/pressure-monitor.js';
import type { ProviderAdapter, ProviderCallFailure } from '../providers/types.js';
import { decide } from './retry-policy.js';
import { promptTokensOf, type TokenEstimator } from './token-estimator.js';

export interface RunContext {
  config: HeadroomConfig;
  bucket: Bucket;
  adapters: Record<Provider, ProviderAdapter>;
  estimator: TokenEstimator;
  breaker: Breaker;
  metrics: WorkerMetrics;
  stats: FleetStatsWriter;
  pressure: PressureMonitor;
  logger: Logger;
  random: () => number;
  now: () => number;
  /**
   * Tenant id -> when its tokens/min bucket can serve again, as the bucket last said. A runaway
   * tenant's flood is then parked without a Redis round trip per job, so the jobs of other
   * tenants queued behind it reach the bucket sooner.
   */
  tenantWaits: Map<string, number>;
}

/** Kept in the BullMQ job's `progress`, so attempts survive requeues, delays and worker crashes. */
export interface JobProgress {
  attempts: number;
  lastError?: string;
}

export interface JobMeta {
  id: string;
  lane: InteractiveLane;
  enqueuedAt: number;
  progress: JobProgress;
}

export type RunOutcome =
  | { kind: 'completed'; result: LlmResult }
  /** `reason` reads `CODE: message`; the producer's JobFailedError carries it. */
  | { kind: 'failed'; reason: string }
  /** Shed from its lane under pressure, and the job asked to go to the batch lane instead. */
  | { kind: 'to_batch'; reason: string }
  /** Back to the front of its lane, no attempt spent; the lane backs off for `waitMs`. */
  | { kind: 'requeue'; waitMs: number; progress: JobProgress }
  /** Into BullMQ's delayed set until `delayMs` from now, holding no slot. */
  | { kind: 'delay'; delayMs: number; progress: JobProgress }
  /** The worker is shutting down: back to waiting for another worker, no attempt spent. */
  | { kind: 'aborted'; progress: JobProgress };

/** Waits this short are slept in place: cheaper than a requeue round trip. */
const INLINE_WAIT_MS = 25;
const MAX_INLINE_WAITS = 4;

type Plan =
  | { kind: 'granted'; model: string; pool: string; reservation: Reservation; estimate: number }
  | { kind: 'wait'; waitMs: number; reason: string }
  | { kind: 'never_fits'; message: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runJob(ctx: RunContext, job: LlmJob, meta: JobMeta, signal: AbortSignal): Promise<RunOutcome> {
  const progress: JobProgress = { ...meta.progress };
  const startedAt = ctx.now();
  let inlineWaits = 0;
  const unknown = modelLadder(job).filter((m) => !ctx.config.models[m]);
  if (unknown.length === modelLadder(job).length) {
    return { kind: 'failed', reason: `UNKNOWN_MODEL: no model of ${JSON.stringify(unknown)} is in the fleet's config` };
  }
  const shed = shedReason(ctx, job, meta);
  if (shed) return job.onShed === 'batch' ? { kind: 'to_batch', reason: shed } : { kind: 'failed', reason: `SHED: ${shed}` };

  while (true) {
    if (signal.aborted) return { kind: 'aborted', progress };
    const plan = await planCall(ctx, job, meta);
    if (plan.kind === 'never_fits') return { kind: 'failed', reason: `NEVER_FITS: ${plan.message}` };
    if (plan.kind === 'wait') {
      if (plan.waitMs <= INLINE_WAIT_MS && inlineWaits++ < MAX_INLINE_WAITS) {
        await sleep(plan.waitMs);
        continue;
      }
      // A cooling or broken model, or a tenant over its quota, is that job's problem, not the
      // lane's: park the job alone so the jobs behind it keep flowing. A pool out of quota
      // concerns every job of that pool: requeued, it backs the pool off in the lane.
      return plan.reason === 'cooldown' || plan.reason === 'breaker' || plan.reason.startsWith('tenant')
        ? { kind: 'delay', delayMs: plan.waitMs, progress }
        : { kind: 'requeue', waitMs: plan.waitMs, progress };
    }

    const { model, pool, reservation, estimate } = plan;
    const modelCfg = ctx.config.models[model]!;
    const adapter = ctx.adapters[job.provider];
    const callStarted = ctx.now();
    const res = await adapter.call({ model, request: job.request, signal });
    const callEnded = ctx.now();
    progress.attempts += 1;
    ctx.metrics.callSeconds.observe({ provider: job.provider, model }, (callEnded - callStarted) / 1000);
    ctx.metrics.providerCalls.inc({ provider: job.provider, model, status: String(res.status ?? 'network') });
    ctx.stats.call({ model, status: res.status });

    settleAndSync(ctx, res.ok ? res.usage : undefined, res.ok ? undefined : res, reservation, pool, modelCfg.limits, res.headers);

    if (res.ok) {
      ctx.breaker.recordSuccess(model);
      ctx.estimator.observe(model, estimate, promptTokensOf(job.provider, res.usage), res.usage.outputTokens);
      countTokens(ctx, job.provider, model, res.usage);
      const usd = costOf(modelCfg.pricing, res.usage, { provider: job.provider, batch: false });
      ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, usd);
      ctx.metrics.waitSeconds.observe({ lane: meta.lane }, Math.max(0, callStarted - meta.enqueuedAt) / 1000);
      return {
        kind: 'completed',
        result: {
          provider: job.provider,
          model,
          response: res.response,
          usage: res.usage,
          attempts: progress.attempts,
          timings: {
            enqueuedAt: meta.enqueuedAt,
            startedAt,
            finishedAt: callEnded,
            waitMs: Math.max(0, callStarted - meta.enqueuedAt),
            runMs: callEnded - callStarted,
          },
          cost: { usd, batch: false },
          ...(job.metadata ? { metadata: job.metadata } : {}),
        },
      };
    }

    if (signal.aborted) return { kind: 'aborted', progress };
    ctx.breaker.recordFailure(model, res.kind);
    if (res.status === 429) ctx.metrics.rateLimited.inc({ provider: job.provider, model });
    progress.lastError = `${res.status ?? 'network'} ${res.kind}: ${res.message}`;
    const decision = decide(res, progress.attempts, ctx.config.retry, ctx.random, { hasNextModel: hasAlternative(ctx, job, model) });
    ctx.logger.warn({ jobId: meta.id, lane: meta.lane, model, attempt: progress.attempts, status: res.status, kind: res.kind, action: decision.action }, 'provider call failed');
    if (decision.action !== 'fail' && decision.cooldownMs) {
      await ctx.bucket.cooldown(pool, model, { durationMs: decision.cooldownMs });
    }
    if (decision.action === 'fail') return { kind: 'failed', reason: `${decision.code}: ${decision.reason}` };
    ctx.metrics.retries.inc({ provider: job.provider, model, kind: res.kind });
    // With another model on the ladder, plan again at once: the cooldown or breaker steers it away.
    if (decision.action === 'fallback' && hasAlternative(ctx, job, model)) continue;
    const delayMs = decision.action === 'retry' ? decision.delayMs : (decision.cooldownMs ?? ctx.config.retry.baseDelayMs);
    return { kind: 'delay', delayMs, progress };
  }
}

/** LOW (and NORMAL if configured) jobs past their max wait while their pool is under pressure. */
function shedReason(ctx: RunContext, job: LlmJob, meta: JobMeta): string | undefined {
  const pool = poolOf(ctx.config, job.request.model);
  if (!ctx.pressure.shedsLane(pool, meta.lane)) return undefined;
  const waited = ctx.now() - meta.enqueuedAt;
  const maxWaitMs = job.maxWaitMs ?? ctx.config.lanes[meta.lane].maxWaitMs;
  if (waited <= maxWaitMs) return undefined;
  const p = ctx.pressure.pressureOf(pool)?.value ?? 1;
  return `waited ${Math.round(waited / 1000)} s, past its max wait of ${Math.round(maxWaitMs / 1000)} s, while pool ${pool} is under pressure (${p.toFixed(2)})`;
}

function hasAlternative(ctx: RunContext, job: LlmJob, failed: string): boolean {
  return modelLadder(job).some((m) => m !== failed && ctx.config.models[m] && ctx.breaker.canCall(m));
}

async function planCall(ctx: RunContext, job: LlmJob, meta: JobMeta): Promise<Plan> {
  const laneCfg = ctx.config.lanes[meta.lane];
  const maxWaitMs = job.maxWaitMs ?? laneCfg.maxWaitMs;
  const waitedMs = ctx.now() - meta.enqueuedAt;
  const ladder = modelLadder(job).filter((m) => ctx.config.models[m]);
  let best: { waitMs: number; reason: string } | undefined;
  const neverFits: string[] = [];

  for (const [i, model] of ladder.entries()) {
    const isLast = i === ladder.length - 1;
    // acquire() hands out the single half-open probe; every path below that does not call gives it back.
    if (!ctx.breaker.acquire(model)) {
      const retryIn = Math.max(1, ctx.breaker.msUntilProbe(model));
      if (!best || retryIn < best.waitMs) best = { waitMs: retryIn, reason: 'breaker' };
      continue;
    }
    const tenantFreeAt = job.tenant ? ctx.tenantWaits.get(job.tenant) : undefined;
    if (tenantFreeAt !== undefined) {
      if (tenantFreeAt > ctx.now()) {
        ctx.breaker.release(model);
        return { kind: 'wait', waitMs: tenantFreeAt - ctx.now(), reason: 'tenant_tpm' };
      }
      ctx.tenantWaits.delete(job.tenant!);
    }
    const modelCfg = ctx.config.models[model]!;
    const pool = poolOf(ctx.config, model);
    const request = { ...job.request, model } as LlmJob['request'];
    const { estimate, reserve } = ctx.estimator.reserveFor(model, request, job.provider);
    const outputTokens = ctx.config.dispatch.outputReservation === 'p95'
      ? ctx.estimator.outputReserveFor(model, maxOutputTokens(job))
      : maxOutputTokens(job);
    const res = await ctx.bucket.acquire({
      pool,
      limits: modelCfg.limits,
      need: { requests: 1, inputTokens: reserve, outputTokens },
      lane: meta.lane,
      reserve: laneCfg.reserve,
      model,
      ...tenantOf(ctx.config, job.tenant),
    });
    if (res.status === 'granted') return { kind: 'granted', model, pool, reservation: res.reservation, estimate };
    ctx.breaker.release(model);
    if (res.status === 'never_fits') {
      const needed = res.dimension === 'otpm' ? outputTokens : res.dimension.endsWith('rpm') ? 1 : reserve;
      neverFits.push(`${model} needs ${needed} in ${res.dimension} but lane ${meta.lane} may draw at most ${Math.floor(res.maxDrawable)} per minute`);
      continue;
    }
    ctx.metrics.bucketWaits.inc({ pool, lane: meta.lane, reason: res.reason });
    if (res.reason.startsWith('tenant') && job.tenant) {
      ctx.tenantWaits.set(job.tenant, ctx.now() + res.waitMs);
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason };
    }
    // Wait for the primary unless it is cooling down or would make the job late; then degrade.
    const tooLate = waitedMs + res.waitMs > maxWaitMs;
    if (res.reason !== 'cooldown' && (!tooLate || isLast)) {
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason };
    }
    if (!best || res.waitMs < best.waitMs) best = { waitMs: res.waitMs, reason: res.reason };
  }
  if (best) return { kind: 'wait', ...best };
  return { kind: 'never_fits', message: neverFits.join('; ') || 'no model on the ladder can serve this job' };
}

/** The tenant's tokens/min quota, drawn in the same atomic call as the pool. */
function tenantOf(config: HeadroomConfig, tenant: string | undefined): { tenant?: { id: string; limits: { tpm: number } } } {
  if (!tenant) return {};
  const tpm = config.tenants.overrides[tenant]?.tpm ?? config.tenants.default.tpm;
  return tpm ? { tenant: { id: tenant, limits: { tpm } } } : {};
}

/**
 * Hands the call's usage and headers to the bucket without waiting: they ride on this worker's
 * next acquire to the pool (or go within the bucket's flush delay), so a call costs the bucket
 * one round trip. A failure costs only a refund, so it is logged, not the job's problem.
 */
function settleAndSync(
  ctx: RunContext,
  usage: Usage | undefined,
  failure: ProviderCallFailure | undefined,
  reservation: Reservation,
  pool: string,
  limits: HeadroomConfig['models'][string]['limits'],
  headers: Headers | undefined,
): void {
  const failed = (err: unknown) => ctx.logger.warn({ err: (err as Error).message, pool }, 'bucket settle/sync failed');
  if (usage) {
    ctx.bucket.settle(reservation, usage).catch(failed);
  } else if (failure && refusedBeforeWork(failure)) {
    // The provider refused before doing any work: give the tokens back, keep the request.
    ctx.bucket.settle(reservation, { inputTokens: 0, outputTokens: 0 }).catch(failed);
  }
  // Otherwise (5xx, cut connection) the provider may have counted everything: keep the charge.
  // Headers go after the settle, so the bucket holds this call's usage when they are read.
  if (headers) ctx.bucket.sync(pool, limits, parseRateLimitHeaders(headers)).catch(failed);
}

function refusedBeforeWork(f: ProviderCallFailure): boolean {
  return f.kind === 'rate_limit' || f.kind === 'spend_cap' || f.kind === 'invalid_request' || f.kind === 'auth' || f.kind === 'not_found';
}

function countTokens(ctx: RunContext, provider: Provider, model: string, usage: Usage): void {
  ctx.metrics.tokens.inc({ provider, model, dimension: 'input' }, usage.inputTokens);
  ctx.metrics.tokens.inc({ provider, model, dimension: 'output' }, usage.outputTokens);
  if (usage.cacheReadInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_read' }, usage.cacheReadInputTokens);
  if (usage.cacheCreationInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_creation' }, usage.cacheCreationInputTokens);
}
