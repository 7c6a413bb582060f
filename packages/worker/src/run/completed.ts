/**
 * A completed job's outcome: its result from the call that answered it, or from the whole answer
 * an earlier attempt relayed before it lost the job (relayed-answer.ts).
 */
import { isStreamed, type LlmJob, type Usage } from '@headroom/queue';
import type { ProviderCallOk } from '../providers/types.js';
import { costOf } from './cost.js';
import type { Grant } from './plan.js';
import { relayedAnswer } from './relayed-answer.js';
import type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';
import { countTokens } from './settle.js';
import { relayTakenFailure } from './stream-call.js';
import { promptTokensOf } from './token-estimator.js';

/**
 * A call that answered (settled already, settle.ts): what it teaches the estimator and the prompt
 * cache memory, its tokens and cost to the metrics, and the job's result.
 */
export function answered(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  progress: JobProgress,
  grant: Grant,
  res: ProviderCallOk,
  times: { startedAt: number; callStarted: number; callEnded: number; firstEventAt: number | undefined },
): RunOutcome {
  const { model, estimate } = grant;
  ctx.estimator.observe(model, estimate, promptTokensOf(job.provider, res.usage), res.usage.outputTokens);
  if (job.provider === 'anthropic') ctx.promptCache.remember(model, { ...job.request, model } as LlmJob['request'], res.usage, times.callStarted);
  countTokens(ctx, job.provider, model, res.usage);
  const usd = costOf(ctx.config.models[model]!.pricing, res.usage, { provider: job.provider, model, batch: false });
  ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, usd);
  ctx.metrics.waitSeconds.observe({ lane: meta.lane }, Math.max(0, times.callStarted - meta.enqueuedAt) / 1000);
  return completed(job, meta, progress, { model, response: res.response, usage: res.usage, requestId: res.requestId, usd, ...times });
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
export async function fromEarlierAttempt(ctx: RunContext, job: LlmJob, meta: JobMeta, progress: JobProgress): Promise<RunOutcome> {
  const answer = await relayedAnswer(ctx, job, meta).catch((err: Error) => {
    ctx.logger.warn({ jobId: meta.id, err: err.message }, "could not read the earlier attempt's relay");
    return undefined;
  });
  if (answer === undefined) return { kind: 'failed', failure: relayTakenFailure(), progress };
  // The earlier attempt's call is the one that answered; its progress was never recorded.
  progress.attempts += 1;
  if (!progress.triedModels?.includes(answer.model)) progress.triedModels = [...(progress.triedModels ?? []), answer.model];
  ctx.logger.info({ jobId: meta.id, lane: meta.lane, model: answer.model }, 'completed with the answer an earlier attempt relayed whole before it lost the job');
  const usd = costOf(ctx.config.models[answer.model]?.pricing, answer.usage, { provider: job.provider, model: answer.model, batch: false });
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
