/**
 * What a provider call hands back, whatever its outcome: its usage and the provider's headers to
 * the bucket, whether it was served to the model's throttle and this worker's outage evidence,
 * and its time, status, tokens and cost to the metrics. Nothing here waits: a call costs the
 * bucket one round trip (its acquire), and all this rides on the next one.
 */
import { parseRateLimitHeaders, type LlmJob, type PoolLimits, type Provider, type Reservation, type Usage } from '@headroom/queue';
import type { FailureKind, ProviderCallFailure, ProviderCallResult } from '../providers/types.js';
import { costOf } from './cost.js';
import type { Grant } from './plan.js';
import type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';
import type { StreamedCall } from './stream-call.js';

/**
 * Failures that say the model is unhealthy (the throttle counts them against its success ratio).
 * A 429 says it is busy (the bucket's business); a 4xx says the request is wrong. A bad body (a
 * 200 that is not JSON, an HTML page, an empty or short one, a stream ended before its end event)
 * is no answer either: counted as served, a model behind a proxy answering garbage kept its
 * throttle closed, its retries outside the retry budget, and its jobs off their fallbacks (a
 * probe: 20 gateway calls with a fallback each spent 6 calls on it and failed RETRIES_EXHAUSTED,
 * where a 500 storm sent them all to the fallback after 6 calls in all).
 */
export const UNHEALTHY: ReadonlySet<FailureKind> = new Set(['server', 'overloaded', 'network', 'bad_response']);

/**
 * A call that answered or failed whole: its outcome to the throttle, its figures to the metrics,
 * its usage and headers to the bucket. A failed call stopped by the job's signal says nothing of
 * the model.
 */
export function settleCall(ctx: RunContext, job: LlmJob, meta: JobMeta, grant: Grant, res: ProviderCallResult, signal: AbortSignal, call: { startedAt: number; endedAt: number }): void {
  const { pool, model, reservation, retry } = grant;
  // The outcome rides on this worker's next acquire to the pool: the fleet's throttle learns it.
  report(ctx, { pool, model, jobId: meta.id, startedAt: call.startedAt, retry }, !res.ok && signal.aborted ? undefined : res.ok || !UNHEALTHY.has(res.kind));
  countCall(ctx, job.provider, model, call, res.status, !res.ok && res.kind === 'spend_cap');
  settleAndSync(ctx, res.ok ? res.usage : undefined, res.ok ? undefined : res, reservation, pool, ctx.config.models[model]!.limits, res.headers);
}

/** A stream that ended after its first output. The client holds part of an answer: never retried; charged what was produced. */
export function settleEndedStream(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  progress: JobProgress,
  grant: Grant,
  streamed: Extract<StreamedCall, { kind: 'ended' }>,
  callStarted: number,
): RunOutcome {
  const { pool, model, reservation, retry } = grant;
  const modelCfg = ctx.config.models[model]!;
  progress.attempts += 1;
  countCall(ctx, job.provider, model, { startedAt: callStarted, endedAt: ctx.now() }, streamed.status, streamed.failureKind === 'spend_cap');
  // Its head's headers were synced when they came (stream-call.ts).
  settleAndSync(ctx, streamed.usage, undefined, reservation, pool, modelCfg.limits, undefined);
  countTokens(ctx, job.provider, model, streamed.usage);
  ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, costOf(modelCfg.pricing, streamed.usage, { provider: job.provider, model, batch: false }));
  // A provider failure mid-stream is the model's; a client that went away is not.
  report(ctx, { pool, model, jobId: meta.id, startedAt: callStarted, retry }, streamed.failureKind ? !UNHEALTHY.has(streamed.failureKind) : undefined);
  return { kind: 'failed', failure: streamed.failure, progress, ...(streamed.streamError ? { streamError: streamed.streamError } : {}) };
}

/**
 * The outcome of a call: to the fleet's throttle (it rides on this worker's next acquire to the
 * pool) and to this worker's outage evidence. `served` undefined: the call says nothing of the
 * model (never sent, or stopped by its caller), and only a retry's place in the budget goes back,
 * since it is the failing retries that the budget bounds.
 */
export function report(ctx: RunContext, call: { pool: string; model: string; jobId: string; startedAt: number; retry: boolean }, served: boolean | undefined): void {
  if (served === undefined) {
    if (call.retry) ctx.bucket.retryWithoutOutcome(call.pool, call.model);
    return;
  }
  ctx.bucket.report(call.pool, call.model, served, { retry: call.retry });
  ctx.outages.record(call.model, call.jobId, call.startedAt, served);
}

export function countTokens(ctx: RunContext, provider: Provider, model: string, usage: Usage): void {
  ctx.metrics.tokens.inc({ provider, model, dimension: 'input' }, usage.inputTokens);
  ctx.metrics.tokens.inc({ provider, model, dimension: 'output' }, usage.outputTokens);
  if (usage.cacheReadInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_read' }, usage.cacheReadInputTokens);
  if (usage.cacheCreationInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_creation' }, usage.cacheCreationInputTokens);
}

function countCall(ctx: RunContext, provider: Provider, model: string, call: { startedAt: number; endedAt: number }, status: number | null, spendCap: boolean): void {
  ctx.metrics.callSeconds.observe({ provider, model }, (call.endedAt - call.startedAt) / 1000);
  ctx.metrics.providerCalls.inc({ provider, model, status: String(status ?? 'network') });
  ctx.stats.call({ model, status, spendCap });
}

/**
 * Hands the call's usage and headers to the bucket without waiting: they ride on this worker's
 * next acquire to the pool (or go within the bucket's flush delay), so a call costs the bucket
 * one round trip. A failure costs only a refund, so it is logged, not the job's problem.
 */
function settleAndSync(ctx: RunContext, usage: Usage | undefined, failure: ProviderCallFailure | undefined, reservation: Reservation, pool: string, limits: PoolLimits, headers: Headers | undefined): void {
  const failed = (err: unknown) => ctx.logger.warn({ err: (err as Error).message, pool }, 'bucket settle/sync failed');
  if (usage) {
    ctx.bucket.settle(reservation, usage).catch(failed);
  } else if (failure && refusedBeforeWork(failure)) {
    // The provider refused before doing any work: give the tokens back, keep the request.
    ctx.bucket.settle(reservation, { inputTokens: 0, outputTokens: 0 }).catch(failed);
  } else {
    // Otherwise (5xx, cut connection) the provider may have counted everything: keep the charge,
    // and no longer count it among what the calls in flight may give back.
    ctx.bucket.keep(reservation).catch(failed);
  }
  // Headers go after the settle, so the bucket holds this call's usage when they are read: a
  // plain call's come with its end, once the provider counts its usage too. A stream's head came
  // before any of that (stream-call.ts syncs it then), so a streamed result carries none here.
  if (headers) syncHeaders(ctx, pool, limits, headers);
}

/**
 * Lowers the pool's bucket to what the provider's rate-limit headers say is left (never raises
 * it), riding on the next acquire like a settle; `immediate` sends them, and whatever the pool
 * had waiting before them, at once.
 */
export function syncHeaders(ctx: RunContext, pool: string, limits: PoolLimits, headers: Headers, options: { immediate?: boolean } = {}): void {
  const observed = parseRateLimitHeaders(headers);
  ctx.limitNotices.check(pool, limits, observed);
  ctx.bucket.sync(pool, limits, observed, options).catch((err: Error) => ctx.logger.warn({ err: err.message, pool }, 'bucket settle/sync failed'));
}

/**
 * Answers that come before the provider does any work on the request. A 529 `overloaded_error` is
 * one: the request was turned away, and the simulator (which follows the providers) spends no
 * token quota on it. Keeping its token charge would halve the fleet's throughput in a 50%
 * brownout for tokens the provider never counted.
 */
function refusedBeforeWork(f: ProviderCallFailure): boolean {
  return f.kind === 'rate_limit' || f.kind === 'spend_cap' || f.kind === 'overloaded' || f.kind === 'invalid_request' || f.kind === 'auth' || f.kind === 'not_found';
}
