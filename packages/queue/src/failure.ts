/**
 * Why a job failed, as data: a stable `code` callers branch on and a `message` for people. The
 * worker stores the failure in the job's progress beside BullMQ's `failedReason` (which keeps
 * `CODE: message` for Bull Board and logs), so a reader never parses the text back.
 *
 * ```ts
 * const f = failureOf(job);            // { code: 'PROVIDER_REJECTED', message: '400 ...' }
 * if (f.code === FailureCode.SHED) ...
 * f.providerError?.body;                // { error: { message, type, param, code } }: the provider's own
 * ```
 */
import { PROVIDERS, type Provider } from './job.js';

export const FailureCode = {
  /** The provider refused the request itself (400/401/403/404/413): never retried. */
  PROVIDER_REJECTED: 'PROVIDER_REJECTED',
  /** `retry.maxAttempts` calls made; the message carries the last failure. */
  RETRIES_EXHAUSTED: 'RETRIES_EXHAUSTED',
  /** A spend cap or billing problem, as the provider's error says (it does not clear by waiting). */
  SPEND_CAP: 'SPEND_CAP',
  /** The request is larger than the lane may ever draw from its pool's limits. */
  NEVER_FITS: 'NEVER_FITS',
  /** No model of the job's ladder is in the fleet's config. */
  UNKNOWN_MODEL: 'UNKNOWN_MODEL',
  /** A waiting LOW (or NORMAL) job past its max wait while its pool was under pressure. */
  SHED: 'SHED',
  /** The job's own `maxWaitMs` passed (or would, by the wait it faced) before a call could start: no call made for it. */
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  /** BullMQ failed the job: its worker died during the call more often than allowed. */
  STALLED: 'STALLED',
  /** The job in a lane is not a Headroom job (written by something else). */
  JOB_INVALID: 'JOB_INVALID',
  /** Batch: the provider answered this request with an error. */
  BATCH_ERRORED: 'BATCH_ERRORED',
  /** Batch: cancelled before this request ran. */
  BATCH_CANCELED: 'BATCH_CANCELED',
  /** Batch: the batch hit its 24 h limit before this request ran. */
  BATCH_EXPIRED: 'BATCH_EXPIRED',
  /** Batch: the whole batch failed (validation). */
  BATCH_FAILED: 'BATCH_FAILED',
  /** Batch: its batches kept losing the job. */
  BATCH_LOST: 'BATCH_LOST',
  /** Batch: the provider's result for this request has an unexpected shape. */
  BATCH_BAD_RESPONSE: 'BATCH_BAD_RESPONSE',
  /** Failed by a worker that is not Headroom's, in its own words (the message). */
  WORKER_FAILED: 'WORKER_FAILED',
  /** Its caller went away (`producer.cancel`, a stream's abort signal, a gateway client that disconnected). */
  CANCELLED: 'CANCELLED',
  /**
   * A streamed call failed after its first event: the client already had part of the answer, so
   * the job is not retried; the stream ended with the provider's error event.
   */
  STREAM_FAILED: 'STREAM_FAILED',
} as const;
export type FailureCode = (typeof FailureCode)[keyof typeof FailureCode];

/**
 * What cut a STREAM_FAILED stream when Headroom cut it, not its provider: kept as data beside the
 * code, so a caller tells them apart without reading the message.
 */
export const StreamCut = {
  /** Its worker was stopped (SIGTERM) and its shutdown grace (`dispatch.shutdownGraceMs`) ran out mid-stream. */
  WORKER_SHUTDOWN: 'WORKER_SHUTDOWN',
  /**
   * An earlier attempt lost the job mid-stream (its lock lapsed) and stopped writing its answer
   * before the end: its worker died, or its relay stalled past the call's timeout.
   */
  EARLIER_ATTEMPT_STOPPED: 'EARLIER_ATTEMPT_STOPPED',
  /**
   * Decided by its reader, not its worker: the worker writing it stopped (its heartbeat gone, or it
   * beats on without the job) and nothing came or ended it for a while, so the caller's stream
   * ends rather than hangs (the producer's stream-guard.ts). The job itself ends as its fleet ends
   * it: a rerun fails it `EARLIER_ATTEMPT_STOPPED`.
   */
  WORKER_LOST: 'WORKER_LOST',
} as const;
export type StreamCut = (typeof StreamCut)[keyof typeof StreamCut];
const STREAM_CUTS: ReadonlySet<string> = new Set(Object.values(StreamCut));

/**
 * Failures a repeat of the job's idempotency key is answered with again: the request itself is at
 * fault and would fail the same way (the gateway tells the SDK not to retry them). After any other
 * failure (one that told its caller to retry: SHED, DEADLINE_EXCEEDED, RETRIES_EXHAUSTED,
 * CANCELLED, a stall) the repeat runs the job again, admitted as a new job (lua/add-9.lua keeps the
 * same list). A batch failure is never replayed: BATCH_ERRORED holds the provider's server errors
 * as well as its refusals, and BATCH_FAILED may be another request's fault.
 */
export const REPLAYED_FAILURES: ReadonlySet<FailureCode> = new Set([
  FailureCode.PROVIDER_REJECTED,
  FailureCode.SPEND_CAP,
  FailureCode.NEVER_FITS,
  FailureCode.UNKNOWN_MODEL,
  FailureCode.JOB_INVALID,
]);

const CODES: ReadonlySet<string> = new Set(Object.values(FailureCode));

/**
 * The most of a provider's error body a failure keeps, as JSON. The providers' error bodies are a
 * few hundred bytes; one larger than this is not an error a client needs verbatim (the failure's
 * message still says what went wrong), and every failed job carries it in Redis.
 */
export const PROVIDER_ERROR_MAX_BYTES = 4096;

/**
 * The provider's own error body, as it sent it (secrets cut): what the gateway answers a refusal
 * with, so the client's SDK reads the provider's fields (OpenAI's `code` and `param`, Anthropic's
 * `details.error_code`, which picks the SDK's error class) as it would from the provider.
 */
export interface ProviderError {
  provider: Provider;
  /**
   * Anthropic `{ type: 'error', error: { type, message, details? }, request_id? }`; OpenAI
   * `{ error: { message, type, param, code } }`.
   */
  body: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * `body` kept as the provider's error when it has that provider's error shape and fits
 * `PROVIDER_ERROR_MAX_BYTES`; else undefined (an HTML error page, a proxy's own JSON), and the
 * failure's code, status and message are all there is.
 */
export function providerErrorOf(provider: Provider, body: unknown): ProviderError | undefined {
  if (!isObject(body) || !isObject(body.error) || typeof body.error.message !== 'string') return undefined;
  if (provider === 'anthropic' && (body.type !== 'error' || typeof body.error.type !== 'string')) return undefined;
  return Buffer.byteLength(JSON.stringify(body)) <= PROVIDER_ERROR_MAX_BYTES ? { provider, body } : undefined;
}

export interface JobFailure {
  code: FailureCode;
  message: string;
  /**
   * When sending the job again may do better, as the worker saw it: SHED, when a new job for the
   * same pool may be admitted; DEADLINE_EXCEEDED, the wait that passed the deadline;
   * RETRIES_EXHAUSTED, the wait the fleet keeps for the failing model (its provider's retry-after,
   * its cooldown, its throttle's spacing). The gateway's `retry-after`.
   */
  retryAfterMs?: number;
  /**
   * The HTTP status of the provider's answer behind the failure, when there was one
   * (PROVIDER_REJECTED, SPEND_CAP, RETRIES_EXHAUSTED's last call, STREAM_FAILED): the gateway
   * answers a provider's 4xx with the same status.
   */
  status?: number;
  /** The provider's id for that answer (`LlmResult.providerRequestId`): what its support asks for. */
  providerRequestId?: string;
  /** That answer's error body, as the provider sent it, when it was one (see `ProviderError`). */
  providerError?: ProviderError;
  /** A STREAM_FAILED that Headroom cut, not the provider: what cut it. */
  streamCut?: StreamCut;
}

export const jobFailure = (code: FailureCode, message: string, retryAfterMs?: number, status?: number): JobFailure => ({
  code,
  message,
  ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  ...(status === undefined ? {} : { status }),
});

/** A failure behind which the provider answered: its status, its id for the call and its error body are kept. */
export const answeredFailure = (
  code: FailureCode,
  message: string,
  answer: { status: number | null; requestId?: string | undefined; providerError?: ProviderError | undefined },
): JobFailure => ({
  ...jobFailure(code, message, undefined, answer.status ?? undefined),
  ...(answer.requestId === undefined ? {} : { providerRequestId: answer.requestId }),
  ...(answer.providerError === undefined ? {} : { providerError: answer.providerError }),
});

/**
 * The text BullMQ keeps as the job's `failedReason` (Bull Board, logs): display only. A foreign
 * worker's failure is shown in its own words, as BullMQ keeps it.
 */
export function failureText(f: JobFailure): string {
  return f.code === FailureCode.WORKER_FAILED ? f.message : `${f.code}: ${f.message}`;
}

/** The stored failure, when `value` is one (a job's `progress.failure`). */
export function asJobFailure(value: unknown): JobFailure | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { code, message, retryAfterMs, status, providerRequestId, providerError, streamCut } = value as Partial<JobFailure>;
  if (typeof code !== 'string' || !CODES.has(code) || typeof message !== 'string') return undefined;
  const failure = jobFailure(code as FailureCode, message, typeof retryAfterMs === 'number' ? retryAfterMs : undefined, typeof status === 'number' ? status : undefined);
  // Checked as on the way in: a reader passes the body on verbatim.
  const kept = isObject(providerError) && PROVIDERS.includes(providerError.provider as Provider) ? providerErrorOf(providerError.provider as Provider, providerError.body) : undefined;
  return {
    ...failure,
    ...(typeof providerRequestId === 'string' ? { providerRequestId } : {}),
    ...(kept === undefined ? {} : { providerError: kept }),
    ...(typeof streamCut === 'string' && STREAM_CUTS.has(streamCut) ? { streamCut } : {}),
  };
}

/**
 * BullMQ fails a job in its own words when the job's worker died with it more times than
 * `maxStalledCount` allows (or it was started too often).
 */
const BULLMQ_STALL_REASONS = new Set(['job stalled more than allowable limit', 'job started more than allowable limit']);

/**
 * A failed job's failure. The stored one counts only while BullMQ's `failedReason` is its text:
 * a failure recorded by an earlier attempt that BullMQ later failed as stalled must not win.
 */
export function failureOf(job: { failedReason?: string | undefined; progress?: unknown }): JobFailure {
  const reason = job.failedReason ?? '';
  const stored = asJobFailure((job.progress as { failure?: unknown } | null | undefined)?.failure);
  if (stored && failureText(stored) === reason) return stored;
  if (BULLMQ_STALL_REASONS.has(reason)) {
    return jobFailure(FailureCode.STALLED, `the worker running this job died during its call too many times (BullMQ: ${reason})`);
  }
  return jobFailure(FailureCode.WORKER_FAILED, reason);
}
