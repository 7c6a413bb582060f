/**
 * Every way a gateway request can fail, as the status and error type that make the official SDKs
 * do the right thing. Both SDKs retry 408, 409, 429 and 5xx (twice by default, honouring
 * `retry-after-ms` and `retry-after`) and never retry other 4xx; both obey `x-should-retry`. So:
 * - backpressure (a full lane, a shed LOW job, a tenant over quota) is a 429 with `retry-after`:
 *   the SDK's own retry is the backoff;
 * - a job that could not start in time, or ran out of retries, is Anthropic's 529
 *   `overloaded_error` / OpenAI's 503, with `retry-after`; one past its max wait also with
 *   `x-should-retry: false` (the max wait bounds the client's whole wait);
 * - a request that can never succeed (malformed, a model nobody serves, a spend cap) is a 4xx
 *   with `x-should-retry: false`, even the spend cap's 429;
 * - a provider's refusal and its spend cap are the provider's own answer: its status and its
 *   error body, verbatim, so the SDK raises the class and reads the fields it would from the
 *   provider.
 */
import { randomUUID } from 'node:crypto';
import {
  ErrorCode,
  FailureCode,
  FleetUnpublishedError,
  HeadroomError,
  JobFailedError,
  JobNotFoundError,
  JobStoppingError,
  JobValidationError,
  PayloadTooLargeError,
  QueueFullError,
  QuotaExceededError,
  RedisOomError,
  RedisRefusedError,
  RedisUnavailableError,
  ShedError,
  TimeoutError,
  type Issue,
  type IssueCode,
  type JobFailure,
  type ProviderError,
} from '@headroom/queue';
import type { Dialect, ErrorKind } from './dialects.js';
import { HEADER_OF_FIELD } from './headroom-headers.js';

/**
 * The gateway's own codes for what only it refuses; every other answer carries Headroom's error
 * code (`QUEUE_FULL`, `SHED`, ...) or the failed job's failure code (`PROVIDER_REJECTED`, ...).
 */
export const GatewayCode = {
  /** No client key, or one the gateway does not know: the caller's own key, not the fleet's. */
  KEY_INVALID: 'GATEWAY_KEY_INVALID',
  /** No such endpoint. */
  NOT_FOUND: 'NOT_FOUND',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  /** The request body did not arrive within `gateway.bodyTimeoutMs`. */
  BODY_TIMEOUT: 'BODY_TIMEOUT',
  /** The request head did not arrive within `gateway.headersTimeoutMs` (node-refusals.ts). */
  HEAD_TIMEOUT: 'HEAD_TIMEOUT',
  /** A request head Node's parser refused: malformed, or over `gateway.maxHeaderBytes` (node-refusals.ts). */
  MALFORMED_REQUEST: 'MALFORMED_REQUEST',
  INTERNAL: 'INTERNAL',
} as const;

export interface WireError {
  kind: ErrorKind;
  /**
   * Stable, sent as `headroom-error-code`: what the status cannot say, such as whether a 401 is
   * the caller's key (`GATEWAY_KEY_INVALID`) or the provider refusing the fleet's (`PROVIDER_REJECTED`).
   */
  code: string;
  message: string;
  /** Overrides the kind's status: a provider's own 4xx passes through with its status. */
  status?: number;
  retryAfterMs?: number;
  /** Sent as `x-should-retry`, which both SDKs obey over their own rules. */
  shouldRetry?: boolean;
  /** OpenAI's `param`: the body field at fault, as OpenAI writes it (`messages[0].role`); never a header. */
  param?: string;
  /** OpenAI's `code` for a refused field (`missing_required_parameter`, `invalid_type`...); none (null) for a rule across fields. */
  issueCode?: IssueCode;
  /**
   * The answer's id, sent in the header the provider names its calls in (`Dialect.requestIdHeader`)
   * and in Anthropic's error body: the provider's id for the call that answered, else the gateway's own.
   */
  requestId?: string;
  /** The provider's own error body: sent verbatim, in place of one built from `kind` and `message`, to a client of that provider's dialect. */
  providerError?: ProviderError;
}

/** An id for an answer the gateway gives itself, told apart from the providers' (`req_...`) by its prefix. */
export function gatewayRequestId(): string {
  return `req_headroom_${randomUUID().replaceAll('-', '')}`;
}

/** How long a client is told to wait when nothing better is known (a full lane, a busy fleet). */
export const DEFAULT_RETRY_AFTER_MS = 1_000;

/** A job field's path as the client wrote it: a body field without `request.`, a header by its name. */
export function clientPath(path: string): string {
  if (path === 'request') return '(body)';
  if (path.startsWith('request.')) return path.slice('request.'.length);
  const [first, ...rest] = path.split('.');
  const header = HEADER_OF_FIELD[first ?? ''];
  if (header) return rest.length > 0 ? `${header} (${rest.join('.')})` : header;
  return path || '(body)';
}

/**
 * A job field's path as OpenAI's `param` names a body field (`messages[0].role`), or undefined
 * for what is no body field: a header (a job option), the body as a whole.
 */
export function paramOf(path: string): string | undefined {
  if (!path.startsWith('request.')) return undefined;
  const [first = '', ...rest] = path.slice('request.'.length).split('.');
  if (first === '') return undefined;
  return first + rest.map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`)).join('');
}

export function describeIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `${clientPath(i.path)}: ${i.message}`).join('; ');
}

/**
 * The refusal of a request with these issues: the first names OpenAI's `param` and `code`. A rule
 * across fields has no code, as OpenAI sends none for its own (`stream_options` without `stream`:
 * `"code": null`); it was `invalid_value`, which OpenAI keeps for a value outside a field's set.
 */
export function invalid(issues: readonly Issue[]): WireError {
  const first = issues[0];
  const param = first === undefined ? undefined : paramOf(first.path);
  return {
    kind: 'invalid_request',
    code: ErrorCode.JOB_INVALID,
    message: describeIssues(issues),
    shouldRetry: false,
    ...(param === undefined ? {} : { param }),
    ...(first?.code === undefined ? {} : { issueCode: first.code }),
  };
}

const KIND_OF_STATUS: Record<number, ErrorKind> = { 400: 'invalid_request', 401: 'authentication', 403: 'permission', 404: 'not_found', 413: 'too_large', 422: 'invalid_request' };

/** The provider's message as it gave it: the stored failure reads `<status> <type>: <message>`. */
function providerMessage(failure: JobFailure): string {
  return failure.status !== undefined && failure.message.startsWith(`${failure.status} `) ? failure.message.slice(String(failure.status).length + 1) : failure.message;
}

/** A failed job's answer; the provider's id for the call behind it, when there was one, goes with it. */
export function fromFailure(failure: JobFailure): WireError {
  const error = { ...answerTo(failure), code: failure.code };
  return failure.providerRequestId === undefined ? error : { ...error, requestId: failure.providerRequestId };
}

/** The provider's error body, when the failure kept one: the answer is the provider's own. */
const asSent = (failure: JobFailure) => (failure.providerError === undefined ? {} : { providerError: failure.providerError });

function answerTo(failure: JobFailure): Omit<WireError, 'code'> {
  switch (failure.code) {
    case FailureCode.PROVIDER_REJECTED: {
      const status = failure.status ?? 400;
      return { kind: KIND_OF_STATUS[status] ?? 'invalid_request', status, message: providerMessage(failure), shouldRetry: false, ...asSent(failure) };
    }
    case FailureCode.RETRIES_EXHAUSTED:
      return { kind: 'overloaded', message: `the provider kept failing: ${failure.message}`, retryAfterMs: failure.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS };
    case FailureCode.SPEND_CAP:
      // The provider's status: its spend caps are 429s, Anthropic's billing error a 402 (which
      // its SDK raises as PaymentRequiredError, where a 429 would be a RateLimitError). The SDKs
      // retry neither, told so besides.
      return { kind: 'rate_limit', ...(failure.status === undefined ? {} : { status: failure.status }), message: providerMessage(failure), shouldRetry: false, ...asSent(failure) };
    case FailureCode.NEVER_FITS:
      return { kind: 'invalid_request', message: `the request can never fit the configured limits: ${failure.message}`, shouldRetry: false };
    case FailureCode.UNKNOWN_MODEL:
      return { kind: 'not_found', message: failure.message, shouldRetry: false };
    case FailureCode.SHED:
      return { kind: 'rate_limit', message: `shed under pressure: ${failure.message}`, retryAfterMs: failure.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS };
    case FailureCode.CANCELLED: {
      // Withdrawn because its gateway was taken for gone (its beats lapsed while it lived: the
      // failure says when a retry may start): its client is still there, and a retry runs the job
      // again. Any other cancel is a caller's or an operator's decision (Producer.cancel, Bull
      // Board), which the SDK's automatic retry must not undo by sending the call again.
      const message = `${failure.code}: ${failure.message}`;
      return failure.retryAfterMs === undefined ? { kind: 'api_error', message, shouldRetry: false } : { kind: 'api_error', message, retryAfterMs: failure.retryAfterMs };
    }
    case FailureCode.DEADLINE_EXCEEDED:
      // Not started within its max wait (the client's own, headroom-max-wait-ms, or the gateway's
      // default). The fleet kept the job through that whole wait, retrying a failing provider
      // within it; each automatic SDK retry would be a new job waiting the whole max wait again
      // (a dead model: 3x the client's stated bound, and a probe a second for each). So the SDK is
      // told not to retry; `retry-after` still says when a retry of the caller's own could start
      // (a model cooling down for the provider's retry-after, a drained pool) when it was known.
      return { kind: 'overloaded', message: `the call could not start in time: ${failure.message}; retry later`, retryAfterMs: failure.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS, shouldRetry: false };
    default:
      // A batch's failure (errored, expired, cancelled, lost) came after hours in a batch: the
      // SDK's automatic retry would send a new batch each time, so it is left to the caller
      // (docs/batch.md: resubmit it if it still matters).
      return { kind: 'api_error', message: `${failure.code}: ${failure.message}`, ...(failure.code.startsWith('BATCH_') ? { shouldRetry: false } : {}) };
  }
}

/**
 * The answer's body: the provider's own error body when there is one for this dialect's provider,
 * else one in the dialect's shape. An Anthropic body means nothing to the OpenAI SDK; the gateway
 * makes each call a job for its dialect's provider, so a kept body is always its own.
 */
export function errorBodyOf(dialect: Dialect, error: WireError): string {
  if (error.providerError?.provider === dialect.provider) return JSON.stringify(error.providerError.body);
  return dialect.errorBody(error.kind, error.message, {
    ...(error.param === undefined ? {} : { param: error.param }),
    ...(error.issueCode === undefined ? {} : { code: error.issueCode }),
    ...(error.requestId === undefined ? {} : { requestId: error.requestId }),
  });
}

/** Whatever enqueueing or waiting threw, as the client is to see it. */
export function fromError(err: unknown): WireError {
  if (err instanceof JobFailedError) return fromFailure(err.failure);
  const answer = answerToError(err);
  return { ...answer, code: err instanceof HeadroomError ? err.code : GatewayCode.INTERNAL };
}

function answerToError(err: unknown): Omit<WireError, 'code'> {
  if (err instanceof JobValidationError) return invalid(err.issues);
  if (err instanceof PayloadTooLargeError) return { kind: 'too_large', message: `the request is ${err.sizeBytes} bytes as a job, over the limit of ${err.limitBytes}`, shouldRetry: false };
  if (err instanceof QueueFullError) return { kind: 'rate_limit', message: `${err.message}; retry later`, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  if (err instanceof ShedError) return { kind: 'rate_limit', message: err.message, retryAfterMs: Math.max(DEFAULT_RETRY_AFTER_MS, err.retryAfterMs) };
  if (err instanceof QuotaExceededError) return { kind: 'rate_limit', message: err.message, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  // The key's job did not stop within the producer's resends (its worker gone, say): the SDK's
  // retry, a second on, sends the repeat again, which runs the job again once it has ended.
  if (err instanceof JobStoppingError) return { kind: 'conflict', message: err.message, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  // The fleet's settings are missing (no worker yet, or Redis lost them): workers publish them
  // again within seconds, so the SDK's retry is the right answer.
  if (err instanceof FleetUnpublishedError) return { kind: 'unavailable', message: `${err.message}; retry later`, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  if (err instanceof RedisOomError) return { kind: 'unavailable', message: err.message, retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  // Refused (REDIS_REFUSED, the code says so): the gateway's configuration is for its operator to
  // fix, so the client is told no more than that the queue is away (and not which Redis).
  if (err instanceof RedisUnavailableError || err instanceof RedisRefusedError) return { kind: 'unavailable', message: 'the queue is unavailable; retry later', retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  if (err instanceof TimeoutError) return { kind: 'overloaded', message: 'the call did not finish in time; retry later', retryAfterMs: DEFAULT_RETRY_AFTER_MS };
  if (err instanceof JobNotFoundError) return { kind: 'api_error', message: `the job ${err.jobId} disappeared before it finished` };
  return { kind: 'api_error', message: 'internal gateway error' };
}
