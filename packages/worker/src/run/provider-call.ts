/**
 * A granted job's provider call: streamed, each event relayed to its client as it arrives
 * (stream-call.ts), or plain.
 */
import { callOptionsOf, isStreamed, type LlmJob } from '@headroom/queue';
import type { ProviderCallResult } from '../providers/types.js';
import type { Grant } from './plan.js';
import { isCancel, type JobMeta, type RunContext } from './run-context.js';
import { streamedCall, type StreamedCall } from './stream-call.js';

export type ProviderCall =
  /** Answered, or failed with nothing relayed: the usual settle, retry and fallback rules apply. */
  | { kind: 'answered'; res: ProviderCallResult; startedAt: number; endedAt: number; firstEventAt: number | undefined }
  /** A stream ended after its first output: its client holds part of an answer (settle.ts). */
  | { kind: 'ended'; streamed: Extract<StreamedCall, { kind: 'ended' }>; startedAt: number };

export async function callProvider(ctx: RunContext, job: LlmJob, meta: JobMeta, grant: Grant, signal: AbortSignal): Promise<ProviderCall> {
  const { model, reservation } = grant;
  const adapter = ctx.adapters[job.provider];
  const startedAt = ctx.now();
  let res: ProviderCallResult;
  let firstEventAt: number | undefined;
  if (isStreamed(job)) {
    const streamed = await streamedCall(ctx, job, meta, { model, reservation, startedAt }, signal);
    if (streamed.kind === 'ended') return { kind: 'ended', streamed, startedAt };
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
  return { kind: 'answered', res, startedAt, endedAt: ctx.now(), firstEventAt };
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
