/**
 * One streamed provider call and its relay. Each event goes to the job's Redis stream as it
 * arrives, behind a first entry naming the model and the wait; the stream ends with `end`, or,
 * when the call fails after its first event, with the provider's error event.
 *
 * The events that open an answer before any of its output (Anthropic's `message_start`, the
 * Responses API's `response.created`, a Chat Completions role chunk) wait here and go with the
 * first event that carries output, or after `OPENING_HOLD_MS`. A provider that fails a call in
 * the stream, after its 200 head (Anthropic's in-band `overloaded_error`, OpenAI's
 * `server_is_overloaded`), mostly does so before the first token, and the client, having seen
 * nothing, can still get another call's answer. The first token itself is not delayed: it leaves
 * with them, as it did with the opening events of the same network read.
 *
 * What happens after a failure depends on whether the client has seen anything:
 * - before the first output nothing was relayed, so the usual retry and fallback rules apply;
 * - after it, the client holds part of an answer and a second one cannot follow: the job fails
 *   (STREAM_FAILED, or CANCELLED when its caller went away) and is never retried, its stream ended
 *   with the provider's error event by the same call that fails it (`streamError`), and the bucket
 *   is charged what was produced: the input the provider reported (or the reservation's estimate),
 *   and the output tokens counted in the text received.
 */
import { answeredFailure, apiOf, callOptionsOf, errorEventOf, FailureCode, jobFailure, StreamCut, type JobFailure, type LlmJob, type Reservation, type StreamErrorEvent, type Usage } from '@headroom/queue';
import type { FailureKind, ProviderCallFailure, ProviderCallOk, ProviderStreamResult, StreamProgress } from '../providers/types.js';
import { EventRelay, type RelayRefusal } from './event-relay.js';
import { gatewayGoneFailure, STREAM_PRESENCE_CHECK_MS } from './gateway-presence.js';
import { describeFailure } from './retry-policy.js';
import { isCancel, type JobMeta, type RunContext } from './run-context.js';
import { syncHeaders } from './settle.js';
import { estimateOutputTokens } from './token-estimator.js';

/**
 * The longest the opening events wait for the first output. A model that thinks without showing
 * it (`display: omitted`) or reads a long prompt first can take minutes to its first token, and a
 * client (an SDK's timeout, a proxy's) may count from the response head: after this the head and
 * the opening go out, and a failure from then on ends the stream as before. The in-band overloads
 * the hold is for come within a second or two of the head.
 */
export const OPENING_HOLD_MS = 5_000;

export type StreamedCall =
  /** Complete: every event and the end are in the relay. */
  | { kind: 'done'; res: ProviderCallOk; firstEventAt: number }
  /** Failed before its first output: nothing relayed, the usual rules apply. */
  | { kind: 'retryable'; res: ProviderCallFailure }
  /**
   * Ended after its first output: the job fails with `failure`, charged `usage`; its stream ends
   * with `streamError` (the provider's error event), written when the job is failed.
   */
  | { kind: 'ended'; status: number | null; failure: JobFailure; usage: Usage; failureKind?: FailureKind; streamError?: StreamErrorEvent };

export async function streamedCall(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  call: { model: string; reservation: Reservation; startedAt: number },
  signal: AbortSignal,
): Promise<StreamedCall> {
  // In this worker's beats until the call has ended, however it ends: a rerun following its relay
  // after this worker lost the job learns from them when no more will come (relaying-jobs.ts).
  const ended = ctx.relaying.add(meta.id);
  try {
    return await relayedCall(ctx, job, meta, call, signal);
  } finally {
    ended();
  }
}

async function relayedCall(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  call: { model: string; reservation: Reservation; startedAt: number },
  signal: AbortSignal,
): Promise<StreamedCall> {
  const stop = new AbortController();
  const relay = new EventRelay(ctx.redis, ctx.config.redis.prefix, meta.id, (why) => stop.abort(why));
  const orphaned = watchGateway(ctx, job, call.startedAt, relay);
  let output = false;
  /** The answer's opening events, until its first output; undefined once relayed. */
  let opening: string[] | undefined = [];
  let holdTimer: NodeJS.Timeout | undefined;
  let providerRequestId: string | undefined;
  const relayOpening = () => {
    if (opening === undefined) return;
    clearTimeout(holdTimer);
    // An absent id is left out of the entry (JSON drops undefined).
    relay.push({ kind: 'start', model: call.model, waitMs: Math.max(0, call.startedAt - meta.enqueuedAt), startedAt: call.startedAt, providerRequestId, worker: ctx.workerId });
    for (const data of opening) relay.push({ kind: 'event', data });
    opening = undefined;
  };
  const res: ProviderStreamResult = await orphaned.during(ctx.adapters[job.provider].stream({
    model: call.model,
    request: job.request,
    ...callOptionsOf(job),
    signal: AbortSignal.any([signal, stop.signal]),
    onOpen: (requestId, headers) => {
      providerRequestId = requestId;
      // The head's rate-limit headers count this call's whole output bound (both providers charge
      // it as a call starts) and the unused part goes back only at its end. Read after this call's
      // settle, they would take that refund back, and all the refill since, for a minute. So they
      // are synced now, as what the provider held as the call began, and sent at once, ahead of
      // this call's settle (a carried batch applies its settles before its headers).
      syncHeaders(ctx, call.reservation.pool, ctx.config.models[call.model]!.limits, headers, { immediate: true });
    },
    onEvent: (data, carriesOutput) => {
      if (!carriesOutput && opening !== undefined) {
        opening.push(data);
        holdTimer ??= setTimeout(relayOpening, OPENING_HOLD_MS);
        return;
      }
      relayOpening();
      // The first token leaves at once, with the events that opened the message, rather than
      // behind the rest of its network read (a fast provider's whole answer).
      const firstToken = carriesOutput && !output;
      if (carriesOutput) output = true;
      relay.push({ kind: 'event', data }, { now: firstToken });
    },
  }));

  clearTimeout(holdTimer);
  if (res.ok) {
    // An answer without output (an empty text) is relayed whole at its end.
    relayOpening();
    // With what the client was not sent but the answer needs: a rerun may rebuild it from the relay (relayed-answer.ts).
    relay.push(res.withheld === undefined ? { kind: 'end' } : { kind: 'end', withheld: res.withheld });
    const refused = await relay.flush();
    // A cancel that lands after the last event changes nothing: the answer is whole and paid for.
    if (refused === undefined || refused === 'cancelled') return { kind: 'done', res, firstEventAt: res.progress.firstEventAt };
    return { kind: 'ended', status: res.status, ...relayRefused(job, refused, res.progress), usage: res.usage };
  }

  const refused = await relay.flush();
  const { progress, errorEvent: _e, ...failure } = res;
  const cancelled = isCancel(signal) || refused === 'cancelled';
  // A call its caller cancelled once the provider had begun is charged what it produced, relayed or not.
  if (!relay.started && !(cancelled && progress.events > 0)) return { kind: 'retryable', res: failure };
  const usage = producedSoFar(progress, call.reservation);
  const seen = { status: failure.status, usage };
  if (cancelled) {
    const after = `after ${progress.events} events (about ${usage.outputTokens} output tokens)`;
    return { kind: 'ended', ...seen, failure: orphaned.gone && job.gateway !== undefined ? gatewayGoneFailure(job.gateway, after) : jobFailure(FailureCode.CANCELLED, `cancelled by its caller ${after}`) };
  }
  if (refused !== undefined) return { kind: 'ended', ...seen, ...relayRefused(job, refused, progress) };
  if (signal.aborted) {
    // Any other abort of the job's signal is its worker's shutdown grace running out. The SDK's
    // stream just ends then, so the call read as the provider's ("the stream ended before its
    // message_stop event"); the client is told what cut it, in the API's error shape.
    const message = `cut by its worker's shutdown: the shutdown grace (dispatch.shutdownGraceMs) ran out after ${progress.events} events had been streamed, and a second answer cannot follow part of one`;
    const cut: JobFailure = { ...answeredFailure(FailureCode.STREAM_FAILED, message, { status: failure.status, requestId: failure.requestId }), streamCut: StreamCut.WORKER_SHUTDOWN };
    return { kind: 'ended', ...seen, failure: cut, streamError: { kind: 'error', data: errorEventOf(apiOf(job), cut, progress.events), failure: cut } };
  }
  const ended = answeredFailure(FailureCode.STREAM_FAILED, `${describeFailure(failure)} (after ${progress.events} events had been streamed)`, failure);
  // Not relayed here: the finish that fails the job writes it (lua/finish-14.lua), so a caller
  // that reads the failure finds the job failed, and a repeat of its key runs again.
  return { kind: 'ended', ...seen, failure: ended, failureKind: failure.kind, streamError: { kind: 'error', data: res.errorEvent, failure: ended } };
}

/**
 * While the call streams, asks every `STREAM_PRESENCE_CHECK_MS` whether the job's gateway is still
 * there (a cached answer mostly: gateway-presence.ts), and once it is gone withdraws the relay, as a
 * cancel would: the call is stopped and charged what it produced. Not asked per event: a relay
 * write is per network read, and the answer changes only when a gateway dies.
 */
function watchGateway(ctx: RunContext, job: LlmJob, callStartedAt: number, relay: EventRelay): { during<T>(call: Promise<T>): Promise<T>; readonly gone: boolean } {
  const gateway = job.gateway;
  let gone = false;
  /** The call has ended: an answer still on its way must not refuse the end's write. */
  let ended = false;
  const timer =
    gateway === undefined
      ? undefined
      : setInterval(() => {
          void ctx.gateways.gone(gateway, callStartedAt).then((answer) => {
            if (!answer || gone || ended) return;
            gone = true;
            relay.withdraw();
          });
        }, STREAM_PRESENCE_CHECK_MS);
  return {
    during: (call) =>
      call.finally(() => {
        ended = true;
        clearInterval(timer);
      }),
    get gone() {
      return gone;
    },
  };
}

/**
 * Why a job fails whose relay holds an earlier attempt's events: that attempt's worker died
 * mid-stream, or lost the job when its lock lapsed (Redis away longer than the lock) and may be
 * streaming still. Either way the relay holds at least that attempt's first write: its `start`
 * (the model answering and the provider's request id, which a gateway has already sent as the
 * response's head) and the provider's first event (Anthropic's `message_start`, the Responses
 * `response.created`, a Chat Completions chunk, each with that answer's id). Another call's
 * events carry another id, so they cannot follow, even when no text was streamed yet. Found
 * before the provider call (`checkRelay` in job-runner.ts), or at the first write when the
 * earlier attempt wrote in between.
 */
export function relayTakenFailure(): JobFailure {
  return jobFailure(FailureCode.STREAM_FAILED, 'an earlier attempt of this job already streamed part of an answer; a second one cannot follow it');
}

/**
 * Why the job fails whose relay refused this attempt's write, and for a write Redis failed (an
 * error reply: at its maxmemory, a read-only replica after a failover, a script's BUSY), the error
 * event that ends the relay: the call stopped there, so without it a rerun that follows the relay
 * (this worker having lost the job) waited on a relay nobody writes (a client's reader makes the
 * same event from the job's failure once it has failed). The finish that fails the job writes it,
 * or the hand-over when the lock was lost (outcome-applier.ts). The other refusals leave the relay as it is: it has ended already, or is
 * another attempt's, or is gone.
 */
function relayRefused(job: LlmJob, refused: Exclude<RelayRefusal, 'cancelled'>, progress: StreamProgress): { failure: JobFailure; streamError?: StreamErrorEvent } {
  const failure = relayFailure(refused, progress);
  if (!(refused instanceof Error)) return { failure };
  return { failure, streamError: { kind: 'error', data: errorEventOf(apiOf(job), failure, progress.events), failure } };
}

function relayFailure(refused: Exclude<RelayRefusal, 'cancelled'>, progress: StreamProgress): JobFailure {
  if (refused === 'taken') return relayTakenFailure();
  // Its lock lapsed and the rerun that followed its relay gave up on it (relay-follow.ts): the job has ended.
  if (refused === 'closed') return jobFailure(FailureCode.STREAM_FAILED, `the job was ended without this attempt after ${progress.events} events: it had lost the job (its lock lapsed), and the worker that took it again stopped waiting for this answer`);
  if (refused === 'lost') return jobFailure(FailureCode.STREAM_FAILED, `the relay's stream in Redis was gone after ${progress.events} events (Redis lost its data): the rest of the answer cannot follow them`);
  return jobFailure(FailureCode.STREAM_FAILED, `relaying the stream through Redis failed after ${progress.events} events: ${refused.message}`);
}

/**
 * What a stream cut short is charged: the input the provider reported up front (Anthropic), or the
 * reservation's estimate (OpenAI reports none before the end); the output counted in the text
 * received, or the provider's own count when it sent one. An answer with output the stream hides
 * (thinking, reasoning) and no count from the provider keeps its whole output reservation: its
 * text tells nothing of what the thinking cost, and charging less than the provider does is how a
 * fleet trips 429s.
 */
export function producedSoFar(progress: StreamProgress, reservation: Reservation): Usage {
  const input = progress.inputUsage ?? { inputTokens: reservation.need.inputTokens, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
  const unknown = progress.hiddenOutput === true && progress.outputTokens === undefined;
  return { ...input, outputTokens: Math.max(progress.outputTokens ?? 0, estimateOutputTokens(progress.outputText), unknown ? reservation.need.outputTokens : 0) };
}
