/**
 * Runs one job: plan a model from the fallback ladder (plan.ts), call the provider, hand its
 * usage and headers back to the bucket, and decide what happens after a failure (retry-policy.ts).
 * Returns an outcome for the dispatcher to apply to the BullMQ job; it never touches the job
 * itself, so it is tested without one (job-runner.test.ts).
 */
import { answeredFailure, callOptionsOf, checkRelay, FailureCode, isStreamed, isTenantDimension, jobFailure, parseRateLimitHeaders, poolOf, tenantTpmOf, type HeadroomConfig, type LlmJob, type Provider, type RelayCheck, type Reservation, type Usage } from '@headroom/queue';
import type { FailureKind, ProviderCallFailure, ProviderCallResult } from '../providers/types.js';
import { shedFailure } from '../shedding/shed-decision.js';
import { costOf } from './cost.js';
import { deadlineOf, pastDeadline } from './deadline.js';
import { ladderOf } from './model-ladder.js';
import { modelWaitMs } from './model-wait.js';
import { hasAlternative, planCall, waitIsJobsOwn } from './plan.js';
import { decide } from './retry-policy.js';
import { isCancel, type JobMeta, type JobProgress, type RunContext, type RunOutcome } from './run-context.js';
import { relayTakenFailure, streamedCall } from './stream-call.js';
import { relayedAnswer } from './relayed-answer.js';
import { promptTokensOf } from './token-estimator.js';

export type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';
export { JobCancelled } from './run-context.js';

/** Stopped before its provider call: cancelled by its caller, or handed back by a worker shutting down. */
function stopped(signal: AbortSignal, progress: JobProgress, when: string): RunOutcome {
  return isCancel(signal) ? { kind: 'failed', failure: jobFailure(FailureCode.CANCELLED, `cancelled by its caller ${when}`), progress } : { kind: 'aborted', progress };
}

/**
 * The signal a plain (not streamed) call is made with: the job's, except that its caller's cancel
 * does not cut it. A plain call already sent runs to its end, as `Producer.cancel` promises: the
 * provider has taken it and counts it whether or not anyone reads the answer, which then goes to
 * the job's result rather than away. A stop of the worker (its shutdown grace run out) still cuts
 * it, and the job goes back to the fleet. A streamed call is stopped by a cancel: its output ends.
 */
function plainCallSignal(job: AbortSignal): { signal: AbortSignal; dispose(): void } {
  const call = new AbortController();
  const onAbort = () => {
    if (!isCancel(job)) call.abort(job.reason);
  };
  if (job.aborted) onAbort();
  else job.addEventListener('abort', onAbort, { once: true });
  return { signal: call.signal, dispose: () => job.removeEventListener('abort', onAbort) };
}

/** Waits this short are slept in place: cheaper than a requeue round trip. */
const INLINE_WAIT_MS = 25;
const MAX_INLINE_WAITS = 4;
/**
 * Jobs parked by a cooldown come back spread over up to this long after it ends (uniformly, by
 * the injected randomness), not all in the same millisecond: with the bucket pacing them from
 * there, a 429 storm's backlog resumes at the refill rate instead of as one burst.
 */
export const COOLDOWN_RESUME_SPREAD_MS = 2_000;

/**
 * Failures that say the model is unhealthy (the throttle counts them against its success ratio).
 * A 429 says it is busy (the bucket's business); a 4xx says the request is wrong.
 */
export const UNHEALTHY: ReadonlySet<FailureKind> = new Set(['server', 'overloaded', 'network']);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The longest a waiting job may be parked: until its deadline (at least 1 ms, so the look then
 * comes after it), when it is looked at again; unbounded without one.
 */
function untilDeadline(job: LlmJob, meta: JobMeta, now: number): number {
  const deadline = deadlineOf(job, meta);
  return deadline === undefined ? Number.POSITIVE_INFINITY : Math.max(1, deadline - now);
}

export async function runJob(ctx: RunContext, job: LlmJob, meta: JobMeta, signal: AbortSignal): Promise<RunOutcome> {
  const progress: JobProgress = { ...meta.progress };
  const startedAt = ctx.now();
  let inlineWaits = 0;
  let sleeping = false;
  // Back to its lane told to wait for its pool: it stays ahead of the jobs fetched after it.
  let waitsForPool = false;
  // The pool a requeue backs off (its primary's), and the one whose sleeper slot it may take.
  const primaryPool = poolOf(ctx.config, job.request.model);
  const fellBackFrom = new Set<string>();
  const ladder = ladderOf(ctx.config, job);
  const unknown = ladder.filter((m) => !ctx.config.models[m]);
  if (unknown.length === ladder.length) {
    return { kind: 'failed', failure: jobFailure(FailureCode.UNKNOWN_MODEL, `no model of ${JSON.stringify(unknown)} is in the fleet's config`), progress };
  }
  const shed = shedFailure(ctx, job, meta);
  if (shed) return { kind: job.onShed === 'batch' ? 'to_batch' : 'failed', failure: shed, progress };
  // A streamed job run again after its worker died or lost it mid-stream finds that attempt's
  // events in its relay, which refuses a second answer: failed before the provider call, not after
  // it (the call was charged and its answer thrown away). Asked only of a job taken before (a
  // first fetch has no earlier attempt), sent ahead of the first plan's acquire and read once
  // granted, so it adds no round trip; the relay's first write still checks, for an earlier
  // attempt that writes in between. Unanswered (Redis failing), that first write decides.
  const relay: Promise<RelayCheck> | undefined = isStreamed(job) && meta.takenBefore ? checkRelay(ctx.redis, ctx.config.redis.prefix, meta.id).catch(() => 'open' as const) : undefined;

  try {
    while (true) {
      if (signal.aborted) return stopped(signal, progress, 'before its provider call');
      const late = pastDeadline(job, meta, ctx.now());
      if (late) return { kind: 'failed', failure: late, progress };
      const plan = await planCall(ctx, job, meta, fellBackFrom);
      // A sleeper holds its pool until this acquire has answered (granted or told to wait again).
      if (sleeping) {
        ctx.poolHolds.release(primaryPool);
        sleeping = false;
      }
      if (plan.kind === 'never_fits') return { kind: 'failed', failure: jobFailure(FailureCode.NEVER_FITS, plan.message), progress };
      if (plan.kind === 'wait') {
        // A sure wait (one the refunds of the calls in flight cannot cover) already past the
        // deadline ends the job now, with the whole foreseen wait as its retry-after. A wait only
        // those refunds could shorten parks it no later than its deadline, looked at again then.
        const sureMs = plan.sureWaitMs ?? plan.waitMs;
        const tooLate = pastDeadline(job, meta, ctx.now(), sureMs) && pastDeadline(job, meta, ctx.now(), Math.max(plan.waitMs, sureMs), `its ${plan.reason} wait`);
        if (tooLate) return { kind: 'failed', failure: tooLate, progress };
        const waitMs = Math.min(plan.waitMs, untilDeadline(job, meta, ctx.now()));
        const jobsOwn = waitIsJobsOwn(plan.reason);
        if (!jobsOwn && meta.fetched !== undefined) {
          ctx.poolHolds.waited(meta.id, { lane: meta.lane, pool: primaryPool, fetched: meta.fetched, waitEnd: ctx.now() + waitMs, fairShare: plan.reason === 'fair_share' });
        }
        // A fair-share wait is never slept in place: the jobs it holds back (all of one pool, and
        // short waits) would race a sleeper for the same refill and come back out of lane order.
        const inline = plan.reason !== 'fair_share' && (jobsOwn || !ctx.poolHolds.has(primaryPool));
        if (waitMs <= INLINE_WAIT_MS && inlineWaits < MAX_INLINE_WAITS && inline) {
          inlineWaits++;
          if (!jobsOwn) {
            ctx.poolHolds.take(primaryPool, meta.lane, ctx.now() + waitMs);
            sleeping = true;
          }
          await sleep(waitMs);
          continue;
        }
        // A cooling model, a retry over the model's budget, or a tenant over its quota is that
        // job's problem, not the lane's: park the job alone so the jobs behind it keep flowing. A
        // pool out of quota or a throttled model concerns every job of it: requeued, it backs the
        // pool off in the lane.
        if (!jobsOwn) {
          waitsForPool = true;
          return {
            kind: 'requeue',
            waitMs,
            progress,
            ...(plan.reason === 'fair_share' ? { fairShare: true } : {}),
            // The backoff is its primary's pool's: so is the pace it records.
            ...(plan.pace?.pool === primaryPool ? { paceMs: plan.pace.ms } : {}),
          };
        }
        const spread = plan.reason === 'cooldown' ? Math.floor(ctx.random() * Math.min(COOLDOWN_RESUME_SPREAD_MS, plan.waitMs)) : 0;
        const tpm = isTenantDimension(plan.reason) && job.tenant ? tenantTpmOf(ctx.config, job.tenant) : undefined;
        return { kind: 'delay', delayMs: Math.min((plan.parkMs ?? plan.waitMs) + spread, untilDeadline(job, meta, ctx.now())), progress, ...(tpm === undefined ? {} : { tenantPark: { tenant: job.tenant!, tpm } }) };
      }

      // A grant as a retry of the model, served or never sent, gives its place in the budget back.
      const { model, pool, reservation, estimate, retry, probeRun } = plan;
      const attemptsBefore = progress.attempts;
      const modelCfg = ctx.config.models[model]!;
      // A job of this pool fetched before this one waits: the refill this one was granted is
      // that job's, ahead of it in the lane (pool-holds.ts). It goes back behind that job.
      const ahead = pool === primaryPool && meta.fetched !== undefined ? ctx.poolHolds.ahead(meta.id, meta.lane, pool, meta.fetched, meta.fresh === true, ctx.now()) : undefined;
      const relayed = relay === undefined ? 'open' : await relay;
      if (signal.aborted || ahead || relayed !== 'open') {
        // Granted but never called: the whole reservation goes back, its request too (kept, a
        // pool whose requests bind would lose a call per grant given back), and a retry's place
        // in the budget.
        ctx.bucket.release(reservation).catch((err: Error) => ctx.logger.warn({ err: err.message, pool }, 'bucket refund failed'));
        report(ctx, { pool, model, jobId: meta.id, startedAt: ctx.now(), retry }, undefined);
        if (relayed === 'taken') return await fromEarlierAttempt(ctx, job, meta, progress);
        // Its caller cancelled it (the flag the relay checks) and this worker missed the message.
        if (relayed === 'cancelled') return { kind: 'failed', failure: jobFailure(FailureCode.CANCELLED, 'cancelled by its caller before its provider call'), progress };
        if (!ahead) return stopped(signal, progress, 'before its provider call');
        ctx.poolHolds.waited(meta.id, { lane: meta.lane, pool, fetched: meta.fetched!, waitEnd: ctx.now() + ahead.waitMs, fairShare: ahead.fairShare });
        waitsForPool = true;
        return { kind: 'requeue', waitMs: ahead.waitMs, progress, ...(ahead.fairShare ? { fairShare: true } : {}) };
      }
      ctx.poolHolds.done(meta.id);
      const adapter = ctx.adapters[job.provider];
      const callStarted = ctx.now();
      let res: ProviderCallResult;
      let firstEventAt: number | undefined;
      if (isStreamed(job)) {
        const streamed = await streamedCall(ctx, job, meta, { model, reservation, startedAt: callStarted }, signal);
        if (streamed.kind === 'ended') {
          // The client holds part of an answer: never retried; charged what was produced.
          progress.attempts += 1;
          const endedAt = ctx.now();
          ctx.metrics.callSeconds.observe({ provider: job.provider, model }, (endedAt - callStarted) / 1000);
          ctx.metrics.providerCalls.inc({ provider: job.provider, model, status: String(streamed.status ?? 'network') });
          ctx.stats.call({ model, status: streamed.status, spendCap: streamed.failureKind === 'spend_cap' });
          settleAndSync(ctx, streamed.usage, undefined, reservation, pool, modelCfg.limits, streamed.headers);
          countTokens(ctx, job.provider, model, streamed.usage);
          ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, costOf(modelCfg.pricing, streamed.usage, { provider: job.provider, batch: false }));
          // A provider failure mid-stream is the model's; a client that went away is not.
          report(ctx, { pool, model, jobId: meta.id, startedAt: callStarted, retry }, streamed.failureKind ? !UNHEALTHY.has(streamed.failureKind) : undefined);
          return { kind: 'failed', failure: streamed.failure, progress, ...(streamed.streamError ? { streamError: streamed.streamError } : {}) };
        }
        res = streamed.res;
        if (streamed.kind === 'done') firstEventAt = streamed.firstEventAt;
      } else {
        const call = plainCallSignal(signal);
        try {
          res = await adapter.call({ model, request: job.request, ...callOptionsOf(job), signal: call.signal });
        } finally {
          call.dispose();
        }
      }
      const callEnded = ctx.now();
      progress.attempts += 1;
      if (!progress.triedModels?.includes(model)) progress.triedModels = [...(progress.triedModels ?? []), model];
      // The outcome rides on this worker's next acquire to the pool: the fleet's throttle learns it.
      report(ctx, { pool, model, jobId: meta.id, startedAt: callStarted, retry }, !res.ok && signal.aborted ? undefined : res.ok || !UNHEALTHY.has(res.kind));
      ctx.metrics.callSeconds.observe({ provider: job.provider, model }, (callEnded - callStarted) / 1000);
      ctx.metrics.providerCalls.inc({ provider: job.provider, model, status: String(res.status ?? 'network') });
      ctx.stats.call({ model, status: res.status, spendCap: !res.ok && res.kind === 'spend_cap' });

      settleAndSync(ctx, res.ok ? res.usage : undefined, res.ok ? undefined : res, reservation, pool, modelCfg.limits, res.headers);

      if (res.ok) {
        ctx.estimator.observe(model, estimate, promptTokensOf(job.provider, res.usage), res.usage.outputTokens);
        if (job.provider === 'anthropic') ctx.promptCache.remember(model, { ...job.request, model } as LlmJob['request'], res.usage, callStarted);
        countTokens(ctx, job.provider, model, res.usage);
        const usd = costOf(modelCfg.pricing, res.usage, { provider: job.provider, batch: false });
        ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, usd);
        ctx.metrics.waitSeconds.observe({ lane: meta.lane }, Math.max(0, callStarted - meta.enqueuedAt) / 1000);
        return completed(job, meta, progress, { model, response: res.response, usage: res.usage, requestId: res.requestId, usd, startedAt, callStarted, callEnded, firstEventAt });
      }

      if (signal.aborted) return stopped(signal, progress, 'during its provider call');
      // A rate limit's 429; a spend cap's (or billing's) is not a limit the fleet could have kept.
      if (res.kind === 'rate_limit') ctx.metrics.rateLimited.inc({ provider: job.provider, model });
      // `503 server: ...`; a failure with no status (a network one) says its kind once: `network: ...`.
      progress.lastError = `${res.status === null ? '' : `${res.status} `}${res.kind}: ${res.message}`;
      if (UNHEALTHY.has(res.kind) && inOutage(ctx, model, meta.id, probeRun, attemptsBefore) && countNoAttempt(progress, callEnded, ctx.config.retry.outageGraceMs)) {
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
        const retryAfterMs = await modelWaitMs(ctx, pool, model, modelCfg.limits, res);
        return { kind: 'failed', failure: retryAfterMs === undefined ? failure : { ...failure, retryAfterMs }, progress };
      }
      ctx.metrics.retries.inc({ provider: job.provider, model, kind: res.kind });
      // With another model on the ladder, plan again at once: the cooldown or throttle steers it away.
      if (decision.action === 'fallback' && hasAlternative(ctx, job, model)) {
        fellBackFrom.add(model);
        continue;
      }
      const delayMs = decision.action === 'retry' ? decision.delayMs : (decision.cooldownMs ?? ctx.config.retry.baseDelayMs);
      const retryTooLate = pastDeadline(job, meta, ctx.now(), delayMs, `the retry after ${progress.lastError}`);
      if (retryTooLate) return { kind: 'failed', failure: retryTooLate, progress };
      return { kind: 'delay', delayMs, progress };
    }
  } finally {
    // A job leaving the loop (stopped, late, an error) no longer holds its pool for a refill, nor
    // waits for it ahead of others, unless it went back to its lane to wait.
    if (sleeping) ctx.poolHolds.release(primaryPool);
    if (!waitsForPool) ctx.poolHolds.done(meta.id);
  }
}

/** A completed job's outcome: its result from the call that answered. */
function completed(
  job: LlmJob,
  meta: JobMeta,
  progress: JobProgress,
  call: { model: string; response: unknown; usage: Usage; requestId: string | undefined; usd: number; startedAt: number; callStarted: number; callEnded: number; firstEventAt: number | undefined },
): RunOutcome {
  const { callStarted, callEnded, firstEventAt } = call;
  return {
    kind: 'completed',
    result: {
      provider: job.provider,
      model: call.model,
      response: call.response,
      usage: call.usage,
      attempts: progress.attempts,
      timings: {
        enqueuedAt: meta.enqueuedAt,
        startedAt: call.startedAt,
        finishedAt: callEnded,
        waitMs: Math.max(0, callStarted - meta.enqueuedAt),
        runMs: callEnded - callStarted,
        ...(firstEventAt === undefined ? {} : { firstEventAt, ttftMs: Math.max(0, firstEventAt - callStarted) }),
      },
      ...(isStreamed(job) ? { streamed: true } : {}),
      ...(call.requestId === undefined ? {} : { providerRequestId: call.requestId }),
      cost: { usd: call.usd, batch: false },
      ...(job.metadata ? { metadata: job.metadata } : {}),
    },
  };
}

/**
 * A rerun whose relay an earlier attempt has written to. A whole answer there (its worker lost
 * the job after the end, when its lock lapsed while Redis was away) is the job's: the client has
 * it, so the job completes with it, rebuilt from the relay (relayed-answer.ts), and no call. That
 * attempt's worker settled the bucket for its call before its finish was refused (runJob settles
 * before it returns), and counted the call's tokens and cost: the rerun, its own grant given
 * back whole, charges and counts nothing of it again. Part of an answer fails the job
 * STREAM_FAILED: a second answer cannot follow it.
 */
async function fromEarlierAttempt(ctx: RunContext, job: LlmJob, meta: JobMeta, progress: JobProgress): Promise<RunOutcome> {
  const answer = await relayedAnswer(ctx, job, meta).catch((err: Error) => {
    ctx.logger.warn({ jobId: meta.id, err: err.message }, "could not read the earlier attempt's relay");
    return undefined;
  });
  if (answer === undefined) return { kind: 'failed', failure: relayTakenFailure(), progress };
  // The earlier attempt's call is the one that answered; its progress was never recorded.
  progress.attempts += 1;
  if (!progress.triedModels?.includes(answer.model)) progress.triedModels = [...(progress.triedModels ?? []), answer.model];
  ctx.logger.info({ jobId: meta.id, lane: meta.lane, model: answer.model }, 'completed with the answer an earlier attempt relayed whole before it lost the job');
  const usd = costOf(ctx.config.models[answer.model]?.pricing, answer.usage, { provider: job.provider, batch: false });
  return completed(job, meta, progress, {
    model: answer.model,
    response: answer.response,
    usage: answer.usage,
    requestId: answer.providerRequestId,
    usd,
    // That attempt's run began a little before its call; the relay tells only the call's start.
    startedAt: answer.startedAt,
    callStarted: answer.startedAt,
    callEnded: answer.endedAt,
    firstEventAt: answer.firstEventAt,
  });
}

/**
 * The outcome of a call: to the fleet's throttle (it rides on this worker's next acquire to the
 * pool) and to this worker's outage evidence. `served` undefined: the call says nothing of the
 * model (never sent, or stopped by its caller), and only a retry's place in the budget goes back,
 * since it is the failing retries that the budget bounds.
 */
function report(ctx: RunContext, call: { pool: string; model: string; jobId: string; startedAt: number; retry: boolean }, served: boolean | undefined): void {
  if (served === undefined) {
    if (call.retry) ctx.bucket.retryWithoutOutcome(call.pool, call.model);
    return;
  }
  ctx.bucket.report(call.pool, call.model, served, { retry: call.retry });
  ctx.outages.record(call.model, call.jobId, call.startedAt, served);
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
  } else {
    // Otherwise (5xx, cut connection) the provider may have counted everything: keep the charge,
    // and no longer count it among what the calls in flight may give back.
    ctx.bucket.keep(reservation).catch(failed);
  }
  // Headers go after the settle, so the bucket holds this call's usage when they are read.
  if (headers) {
    const observed = parseRateLimitHeaders(headers);
    ctx.limitNotices.check(pool, limits, observed);
    ctx.bucket.sync(pool, limits, observed).catch(failed);
  }
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

function countTokens(ctx: RunContext, provider: Provider, model: string, usage: Usage): void {
  ctx.metrics.tokens.inc({ provider, model, dimension: 'input' }, usage.inputTokens);
  ctx.metrics.tokens.inc({ provider, model, dimension: 'output' }, usage.outputTokens);
  if (usage.cacheReadInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_read' }, usage.cacheReadInputTokens);
  if (usage.cacheCreationInputTokens) ctx.metrics.tokens.inc({ provider, model, dimension: 'cache_creation' }, usage.cacheCreationInputTokens);
}
