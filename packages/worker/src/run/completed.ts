/**
 * A completed job's outcome: its result from the call that answered it, or from the whole answer
 * an earlier attempt relayed before it lost the job (relayed-answer.ts).
 */
import { apiOf, choicesOf, errorEventOf, FailureCode, isStreamed, jobFailure, StreamCut, type JobFailure, type LlmJob, type Usage } from '@headroom/queue';
import type { ProviderCallOk } from '../providers/types.js';
import { costOf } from './cost.js';
import type { Grant } from './plan.js';
import { followRelay, type Followed } from './relay-follow.js';
import { relayedAnswer } from './relayed-answer.js';
import { stopped, type JobMeta, type JobProgress, type RunContext, type RunOutcome } from './run-context.js';
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
  ctx.estimator.observe(model, estimate, promptTokensOf(job.provider, res.usage), res.usage.outputTokens / choicesOf(job));
  if (job.provider === 'anthropic') ctx.promptCache.remember(model, { ...job.request, model } as LlmJob['request'], res.usage, times.callStarted);
  countTokens(ctx, job.provider, model, res.usage);
  const usd = costOf(ctx.config.models[model]!.pricing, res.usage, { provider: job.provider, model, batch: false });
  ctx.metrics.cost.inc({ provider: job.provider, model, batch: 'false' }, usd);
  ctx.metrics.waitSeconds.observe({ lane: meta.lane }, Math.max(0, times.callStarted - meta.enqueuedAt) / 1000);
  return completed(job, meta, progress, { model, response: res.response, usage: res.usage, requestId: res.requestId, usd, ...times });
}

/**
 * A rerun whose relay an earlier attempt has written to. That attempt lost the job (its lock
 * lapsed while Redis was away, or its worker was paused) after the end, or while it streamed on:
 * it is followed to the relay's end (relay-follow.ts). A whole answer there is the job's: the
 * client has it, so the job completes with it, rebuilt from the relay (relayed-answer.ts), and no
 * call. That attempt's worker settled the bucket for its call before its finish was refused
 * (runJob settles before it returns), and counted the call's tokens and cost: the rerun, its own
 * grant given back whole, charges and counts nothing of it again. Its stream's failure fails the
 * job as it would have. When the rest will not come (its worker died), the job fails
 * STREAM_FAILED, a second answer cannot follow part of one, and its error event ends the relay,
 * so that a call still running stops at its next write.
 */
export async function fromEarlierAttempt(ctx: RunContext, job: LlmJob, meta: JobMeta, progress: JobProgress, signal: AbortSignal): Promise<RunOutcome> {
  const followed = await followRelay(ctx, job, meta, signal).catch((err: Error): Followed => {
    ctx.logger.warn({ jobId: meta.id, err: err.message }, "could not read the earlier attempt's relay");
    return { kind: 'stopped', why: `its relay could not be read (${err.message})`, events: 0 };
  });
  if (followed.kind === 'aborted') return stopped(signal, progress, "while an earlier attempt's answer was relayed");
  if (followed.kind === 'failed') return { kind: 'failed', failure: followed.failure, progress };
  if (followed.kind === 'cancelled') return { kind: 'failed', failure: jobFailure(FailureCode.CANCELLED, "cancelled by its caller while an earlier attempt's answer was relayed"), progress };
  if (followed.kind === 'stopped') {
    const failure = earlierAttemptStopped(followed.why);
    ctx.logger.warn({ jobId: meta.id, lane: meta.lane, reason: failure.message }, 'an earlier attempt relayed part of an answer and stopped');
    // Written by the finish that fails the job: it ends the relay for its reader, and refuses a
    // write of that attempt if it runs on after all.
    return { kind: 'failed', failure, progress, streamError: { kind: 'error', data: errorEventOf(apiOf(job), failure, followed.events), failure } };
  }
  const answer = relayedAnswer(job, followed.entries);
  // An end after events that do not make an answer: still not one a second call could follow.
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

/** The rest of an earlier attempt's answer will not come: part of one cannot be followed by a second. */
function earlierAttemptStopped(why: string): JobFailure {
  return { ...jobFailure(FailureCode.STREAM_FAILED, `an earlier attempt of this job streamed part of an answer and stopped before its end (${why}); a second one cannot follow it`), streamCut: StreamCut.EARLIER_ATTEMPT_STOPPED };
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
