/**
 * What both adapters do around one SDK call: a deadline over the whole call, reading and checking
 * the body ourselves, and turning every way a call can fail into a `ProviderCallFailure`, so the
 * retry policy branches on `kind` and never on message text.
 *
 * The body is read here (`asResponse()`), not by the SDK, for two reasons:
 * - a malformed or cut 200 still gives us its headers and request id: that call was admitted and
 *   paid for, and the bucket sync needs its rate-limit headers all the same;
 * - the SDKs' `timeout` stops at the response head; a body that stalls would hang the job, so
 *   our deadline (an abort signal) covers the body too.
 */
import { cutSecretTokens, providerErrorOf, REDACTED, redactSecrets, type Provider, type ProviderError, type Usage } from '@headroom/queue';
import type { z } from 'zod';
import { rateLimitResetMs } from './rate-limit-reset.js';
import type { FailureKind, ProviderCallFailure, ProviderCallResult } from './types.js';

type ErrorClass = abstract new (...args: never[]) => Error;

/** The error classes of one SDK (both Stainless SDKs have the same tree). */
export interface SdkErrorClasses {
  /** The SDK's base class: a plain instance is a local refusal (the request never left). */
  base: ErrorClass;
  api: ErrorClass;
  connection: ErrorClass;
  connectionTimeout: ErrorClass;
  userAbort: ErrorClass;
}

export interface SdkCallSpec<T> {
  provider: Provider;
  /** Only to scrub it from every message. */
  apiKey: string;
  timeoutMs: number;
  errors: SdkErrorClasses;
  requestIdHeader: string;
  /** The part of the body we read; anything else passes through untouched. */
  schema: z.ZodType<T>;
  usageOf(body: T): Usage;
}

/**
 * The SDK clients' own logging, off. Both SDKs log through `console` (stderr, outside the worker's
 * JSON log lines), and on a stream event that is not JSON they print its raw text: what the
 * provider sent, before the worker's redaction, so a key echoed in a broken event reached stderr
 * whole. Every failure they would log comes back to the worker classified, and is logged there.
 * (An explicit level also overrides ANTHROPIC_LOG / OPENAI_LOG, which would turn the same printing on.)
 */
export const SDK_LOGGING = { logLevel: 'off' } as const;

export interface SendOptions {
  timeout: number;
  signal: AbortSignal;
}

/** Runs one call; never throws. */
export async function runSdkCall<T>(
  spec: SdkCallSpec<T>,
  callerSignal: AbortSignal | undefined,
  send: (options: SendOptions) => Promise<Response>,
): Promise<ProviderCallResult> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), spec.timeoutMs);
  const signal = callerSignal === undefined ? deadline.signal : AbortSignal.any([callerSignal, deadline.signal]);
  const why = { deadline: deadline.signal, caller: callerSignal };
  let response: Response | undefined;
  try {
    response = await send({ timeout: spec.timeoutMs, signal });
    const { status, headers } = response;
    const requestId = headers.get(spec.requestIdHeader) ?? undefined;
    const meta = { status, headers, ...(requestId === undefined ? {} : { requestId }) };
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      return failure(spec, 'bad_response', `response body is not valid JSON (${text.length} bytes): ${(error as Error).message}`, meta);
    }
    const parsed = spec.schema.safeParse(body);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ');
      return failure(spec, 'bad_response', `response body has an unexpected shape: ${issues}`, meta);
    }
    // A key the provider echoed is whole in the answer's text (the Redis scrub cuts it there) but
    // in pieces in its logprobs' tokens; only an answer that lists tokens is walked.
    const answer = text.includes('"token"') ? cutSecretTokens(body) : body;
    return { ok: true, status, response: answer, usage: spec.usageOf(parsed.data), headers, ...(requestId === undefined ? {} : { requestId }) };
  } catch (error) {
    // Failing mid-body keeps what the head told us.
    const meta = response === undefined ? undefined : { status: response.status, headers: response.headers, requestId: response.headers.get(spec.requestIdHeader) ?? undefined };
    return classifyError(spec, error, why, meta);
  } finally {
    clearTimeout(timer);
  }
}

export interface Meta {
  status: number | null;
  headers?: Headers;
  requestId?: string | undefined;
}

function failure(spec: Pick<SdkCallSpec<unknown>, 'apiKey'>, kind: FailureKind, message: string, meta: Meta, retryAfterMs?: number): ProviderCallFailure {
  return {
    ok: false,
    kind,
    status: meta.status,
    message: redact(message, spec.apiKey),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(meta.headers === undefined ? {} : { headers: meta.headers }),
    ...(meta.requestId === undefined || meta.requestId === null ? {} : { requestId: meta.requestId }),
  };
}

/** Turns whatever an SDK call threw into a classified failure (the streaming path shares it). */
export function classifyError(
  spec: Pick<SdkCallSpec<unknown>, 'provider' | 'apiKey' | 'timeoutMs' | 'errors' | 'requestIdHeader'>,
  error: unknown,
  why: { deadline: AbortSignal; caller: AbortSignal | undefined; timedOut?: () => string },
  midBody: Meta | undefined,
): ProviderCallFailure {
  const { errors } = spec;
  const noResponse: Meta = midBody ?? { status: null };
  // A call that never ended has no status: the head's 200 said the body would follow, not how the
  // call went, and a failure's status is the answer (the gateway, the metrics and callers branch
  // on it). The head's rate-limit headers and request id are kept: the call was admitted.
  const unanswered: Meta = { ...noResponse, status: null };
  const aborted = error instanceof errors.userAbort || (error instanceof Error && error.name === 'AbortError');
  if (error instanceof errors.connectionTimeout || (aborted && why.deadline.aborted && !why.caller?.aborted)) {
    // A stream says which of its bounds cut it (sdk-stream.ts); the SDK's own timeout is the head's.
    const timedOut = why.deadline.aborted && why.timedOut !== undefined ? why.timedOut() : `request timed out after ${spec.timeoutMs} ms`;
    return failure(spec, 'network', timedOut, unanswered);
  }
  if (aborted) return failure(spec, 'network', 'request aborted by the worker', unanswered);
  if (error instanceof errors.connection) return failure(spec, 'network', `connection error: ${causeChain(error)}`, unanswered);
  if (error instanceof errors.api) {
    const api = error as Error & { status?: unknown; headers?: unknown; error?: unknown; requestID?: unknown };
    if (typeof api.status === 'number') {
      const headers = api.headers instanceof Headers ? api.headers : undefined;
      const requestId = typeof api.requestID === 'string' ? api.requestID : (headers?.get(spec.requestIdHeader) ?? undefined);
      return httpFailure(spec, api.status, headers, api.error, requestId);
    }
    const inBand = inBandFailure(spec, api.error, unanswered);
    if (inBand !== undefined) return inBand;
  }
  // The raw errors of reading a body: fetch's 'terminated' when the socket drops mid-body, and
  // (if the SDK parsed it) the JSON parser's SyntaxError on a malformed 200.
  if (error instanceof SyntaxError) return failure(spec, 'bad_response', `response body is not valid JSON: ${error.message}`, noResponse);
  if (error instanceof TypeError && (error.message === 'terminated' || isSocketError(error))) {
    return failure(spec, 'network', `connection closed mid-response: ${causeChain(error)}`, unanswered);
  }
  if (error instanceof errors.base) return failure(spec, 'invalid_request', `refused by the SDK before sending: ${error.message}`, noResponse);
  return failure(spec, 'unknown', error instanceof Error ? `${error.name}: ${causeChain(error)}` : String(error), noResponse);
}

/**
 * The provider's error codes for a 429 that waiting does not clear: OpenAI's `insufficient_quota`
 * (credits or the monthly budget), Anthropic's spend limits (`details.error_code`). Any other 429
 * is a rate limit, with `retry-after` or without (it is optional in OpenAI's API): a missing
 * header is no evidence of a cap.
 */
export const SPEND_CAP_CODES: ReadonlySet<string> = new Set(['insufficient_quota', 'enforced_spend_limit_reached', 'contract_spend_limit_reached']);

/** How a status maps to a kind; the provider's error code tells a spend cap from a rate limit. */
export function kindOfStatus(status: number, providerCode?: string): FailureKind {
  if (status === 429) return providerCode !== undefined && SPEND_CAP_CODES.has(providerCode) ? 'spend_cap' : 'rate_limit';
  if (status === 529) return 'overloaded';
  // 408 and 409 (Anthropic's lock timeout) are transient: the SDKs' own policies retry them.
  if (status === 408 || status === 409) return 'server';
  if (status === 501 || status === 505) return 'unknown';
  if (status >= 500 && status <= 599) return 'server';
  if (status === 400 || status === 413 || status === 422) return 'invalid_request';
  if (status === 401 || status === 403) return 'auth';
  // 402: billing; does not clear by waiting, like a spend cap.
  if (status === 402) return 'spend_cap';
  if (status === 404) return 'not_found';
  return 'unknown';
}

function httpFailure(spec: Pick<SdkCallSpec<unknown>, 'provider' | 'apiKey'>, status: number, headers: Headers | undefined, body: unknown, requestId: string | undefined): ProviderCallFailure {
  const retryAfterMs = headers === undefined ? undefined : parseRetryAfterMs(headers);
  const detail = errorFields(body);
  const kind = kindOfStatus(status, detail.code);
  const message = detail.message === undefined ? `HTTP ${status} (no error message)` : detail.type === undefined ? detail.message : `${detail.type}: ${detail.message}`;
  const result = failure(spec, kind, message, { status, ...(headers === undefined ? {} : { headers }), requestId }, retryAfterMs);
  if (kind === 'rate_limit' && retryAfterMs === undefined && headers !== undefined) {
    const resetInMs = rateLimitResetMs(headers);
    if (resetInMs !== undefined) result.resetInMs = resetInMs;
  }
  const sent = sentError(spec, body);
  if (sent !== undefined) result.providerError = sent;
  return result;
}

/**
 * The status each provider answers an error with, by the error's type (Anthropic) or code and type
 * (OpenAI): what an error sent inside a stream would have been as a response of its own.
 */
const ERROR_STATUS: Record<Provider, Record<string, number>> = {
  anthropic: {
    invalid_request_error: 400,
    authentication_error: 401,
    billing_error: 402,
    permission_error: 403,
    not_found_error: 404,
    request_too_large: 413,
    rate_limit_error: 429,
    api_error: 500,
    timeout_error: 504,
    overloaded_error: 529,
  },
  openai: {
    invalid_request_error: 400,
    invalid_api_key: 401,
    model_not_found: 404,
    rate_limit_exceeded: 429,
    insufficient_quota: 429,
    server_error: 500,
    server_is_overloaded: 503,
    slow_down: 503,
  },
};

/**
 * An error the provider sent inside a stream, after its 200 head: Anthropic's `event: error`
 * (`overloaded_error` when it runs out of capacity mid-call, as a 529 would say before it), an
 * OpenAI chunk `{"error": ...}` or Responses `error` event (`server_is_overloaded`). The SDKs raise
 * it as an API error without a status; classified by what the same error answered as a response
 * would be, so an overload is retried like a 529 rather than taken for a refusal. The failure has
 * no status: the head said 200, and the call never ended.
 */
function inBandFailure(spec: Pick<SdkCallSpec<unknown>, 'provider' | 'apiKey'>, body: unknown, meta: Meta): ProviderCallFailure | undefined {
  const detail = errorFields(body);
  const table = ERROR_STATUS[spec.provider];
  const status = (detail.code === undefined ? undefined : table[detail.code]) ?? (detail.type === undefined ? undefined : table[detail.type]);
  if (status === undefined) return undefined;
  const what = detail.code ?? detail.type;
  const result = failure(spec, kindOfStatus(status, detail.code), `${what} in the stream${detail.message === undefined ? '' : `: ${detail.message}`}`, meta);
  const sent = sentError(spec, body);
  if (sent !== undefined) result.providerError = sent;
  return result;
}

/**
 * The error body the provider sent, its secrets cut as the message's are, to answer the client
 * with verbatim: rebuilt from our message, it lost fields code branches on (OpenAI's `param` and
 * `code`; Anthropic's `details.error_code`, which picks the SDK's error class). Anthropic's SDK
 * keeps the whole body; OpenAI's keeps its `error` member, which is all an OpenAI error body
 * holds. Undefined when the body is not the provider's error shape (an HTML page, a proxy's JSON)
 * or is too large to keep (`providerErrorOf`).
 */
export function sentError(spec: Pick<SdkCallSpec<unknown>, 'provider' | 'apiKey'>, body: unknown): ProviderError | undefined {
  if (body === undefined || body === null) return undefined;
  try {
    return providerErrorOf(spec.provider, redactStrings(spec.provider === 'openai' ? { error: body } : body, (text) => redact(text, spec.apiKey)));
  } catch {
    // Nested deeper than the stack allows: no error body a client needs.
    return undefined;
  }
}

/** Every string of a JSON value (keys too) through `cut`. */
function redactStrings(value: unknown, cut: (text: string) => string): unknown {
  if (typeof value === 'string') return cut(value);
  if (Array.isArray(value)) return value.map((v) => redactStrings(v, cut));
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [cut(k), redactStrings(v, cut)]));
  return value;
}

/**
 * The provider's own error fields. Anthropic's SDK keeps the whole body
 * (`{type:'error', error:{type, message, details?:{error_code}}}`), OpenAI's keeps the inner
 * `error` object (`{type, code, message}`). `code` is OpenAI's `code`, else Anthropic's
 * `details.error_code`.
 */
function errorFields(body: unknown): { type?: string; code?: string; message?: string } {
  if (typeof body !== 'object' || body === null) return typeof body === 'string' && body !== '' ? { message: body } : {};
  const outer = body as Record<string, unknown>;
  const inner = typeof outer.error === 'object' && outer.error !== null ? (outer.error as Record<string, unknown>) : outer;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const type = str(inner.type);
  const details = typeof inner.details === 'object' && inner.details !== null ? (inner.details as Record<string, unknown>) : {};
  const code = str(inner.code) ?? str(details.error_code);
  const message = str(inner.message);
  return {
    ...(type === undefined ? {} : { type }),
    ...(code === undefined ? {} : { code }),
    ...(message === undefined ? {} : { message }),
  };
}

/**
 * `retry-after-ms` (milliseconds), else `retry-after` (seconds, or an HTTP date). Undefined when
 * absent or unreadable; a date in the past reads as 0.
 */
export function parseRetryAfterMs(headers: Headers, now: number = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '') {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const raw = headers.get('retry-after');
  if (raw === null || raw.trim() === '') return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Removes the API key, and anything shaped like a key or a bearer credential (redaction.ts: a
 * proxy may echo one we never held), from a message or error body we are about to keep.
 */
export function redact(message: string, apiKey: string): string {
  return redactSecrets(apiKey.length >= 4 ? message.split(apiKey).join(REDACTED) : message);
}

function isSocketError(error: Error): boolean {
  const code = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('UND_ERR_') || code === 'ECONNRESET' || code === 'EPIPE');
}

function causeChain(error: Error): string {
  const parts = [error.message];
  let cause: unknown = error.cause;
  for (let depth = 0; depth < 3 && cause instanceof Error; depth += 1) {
    const code = (cause as { code?: unknown }).code;
    parts.push(typeof code === 'string' ? `${cause.message} (${code})` : cause.message);
    cause = cause.cause;
  }
  return parts.filter((p) => p !== '').join(': ');
}
