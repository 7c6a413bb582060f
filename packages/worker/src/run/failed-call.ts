/**
 * What follows a failed provider call (one its job's signal did not stop): whether it cost the job
 * an attempt (a model's outage does not, for a while), and then, by the retry policy
 * (retry-policy.ts), the job's failure, the next model, or a retry after a delay.
 */
import { answeredFailure, type LlmJob } from '@headroom/queue';
import type { ProviderCallFailure } from '../providers/types.js';
import { pastDeadline } from './deadline.js';
import { modelWaitMs } from './model-wait.js';
import { type Grant, hasAlternative } from './plan.js';
import { decide } from './retry-policy.js';
import type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';
import { UNHEALTHY } from './settle.js';

/**
 * The failed call's outcome for the job, or `fallback`: another model of its ladder is planned at
 * once, the failed one avoided. `ownCalls`: the job's calls before this one.
 */
export async function afterFailure(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  progress: JobProgress,
  grant: Grant,
  res: ProviderCallFailure,
  call: { ownCalls: number; endedAt: number },
): Promise<RunOutcome | 'fallback'> {
  const { model, pool, probeRun } = grant;
  // A rate limit's 429; a spend cap's (or billing's) is not a limit the fleet could have kept.
  if (res.kind === 'rate_limit') ctx.metrics.rateLimited.inc({ provider: job.provider, model });
  // `503 server: ...`; a failure with no status (a network one) says its kind once: `network: ...`.
  progress.lastError = `${res.status === null ? '' : `${res.status} `}${res.kind}: ${res.message}`;
  if (UNHEALTHY.has(res.kind) && inOutage(ctx, model, meta.id, probeRun, call.ownCalls) && countNoAttempt(progress, call.endedAt, ctx.config.retry.outageGraceMs)) {
    ctx.metrics.outageFailures.inc({ provider: job.provider, model });
  }
  const decision = decide(res, countedAttempts(progress), ctx.config.retry, ctx.random, { hasNextModel: hasAlternative(ctx, job, model) });
  ctx.logger.warn({ jobId: meta.id, lane: meta.lane, model, attempt: progress.attempts, status: res.status, kind: res.kind, action: decision.action }, 'provider call failed');
  if (decision.action !== 'fail' && decision.cooldownMs) {
    await ctx.bucket.cooldown(pool, model, { durationMs: decision.cooldownMs });
  }
  // The provider's status (the gateway answers its 4xx with it) and its id for the call go with the failure.
  if (decision.action === 'fail') {
    // The reason counts the attempts that counted; the calls an outage cost are named beside them.
    const reason = decision.code === 'RETRIES_EXHAUSTED' && progress.outageFailures ? `${decision.reason} (and ${progress.outageFailures} failed in the model's outage, not counted)` : decision.reason;
    const failure = answeredFailure(decision.code, reason, res);
    if (decision.code !== 'RETRIES_EXHAUSTED') return { kind: 'failed', failure, progress };
    // Out of attempts on a model that keeps failing: the caller is told the wait the fleet keeps for it.
    const retryAfterMs = await modelWaitMs(ctx, pool, model, ctx.config.models[model]!.limits, res);
    return { kind: 'failed', failure: retryAfterMs === undefined ? failure : { ...failure, retryAfterMs }, progress };
  }
  ctx.metrics.retries.inc({ provider: job.provider, model, kind: res.kind });
  // With another model on the ladder, plan again at once: the cooldown or throttle steers it away.
  if (decision.action === 'fallback' && hasAlternative(ctx, job, model)) return 'fallback';
  const delayMs = decision.action === 'retry' ? decision.delayMs : (decision.cooldownMs ?? ctx.config.retry.baseDelayMs);
  const retryTooLate = pastDeadline(job, meta, ctx.now(), delayMs, `the retry after ${progress.lastError}`);
  if (retryTooLate) return { kind: 'failed', failure: retryTooLate, progress };
  return { kind: 'delay', delayMs, progress };
}

/**
 * A call that failed as a dead model's do was the fleet's outage, not the job's own failure,
 * when other jobs' calls to the model are failing too:
 * - it was a probe (granted while the model's throttle was open, one per probe interval
 *   fleet-wide) and the model's unhealthy run, fleet-wide, at the grant is longer than all the
 *   job's own calls so far;
 * - or this worker saw other jobs' calls to it fail, and none started later served
 *   (outage-evidence.ts), as at an outage's onset, before the throttle can tell.
 * A request that fails on its own while nothing else calls the model keeps the throttle open by
 * itself (its failures are the whole run) and is no evidence to itself, so it still runs out of
 * attempts.
 */
function inOutage(ctx: RunContext, model: string, jobId: string, probeRun: number | undefined, ownCalls: number): boolean {
  return (probeRun !== undefined && probeRun > ownCalls) || ctx.outages.othersFailing(model, jobId);
}

/**
 * Counts the failure as the outage's; false once the job's grace is over. Without this, an
 * outage's failures land on the jobs that retry fastest (the highest lanes', whose retries go
 * first) and spend their attempts: a 40 s outage failed 3-4 of about 4,360 jobs
 * RETRIES_EXHAUSTED in bench:brownout, each within the outage's first second. Bounded by time: a
 * job rides out `outageGraceMs` from its first such failure, so a few bad requests of one model
 * with nothing else served, each the others' evidence, do not retry for ever.
 */
function countNoAttempt(progress: JobProgress, now: number, outageGraceMs: number): boolean {
  progress.outageSince ??= now;
  if (now - progress.outageSince >= outageGraceMs) return false;
  progress.outageFailures = (progress.outageFailures ?? 0) + 1;
  return true;
}

/** The calls that count against `retry.maxAttempts`: all of them but an outage's. */
function countedAttempts(progress: JobProgress): number {
  return progress.attempts - (progress.outageFailures ?? 0);
}
