/**
 * The wire formats the gateway speaks: each provider's error bodies, model list and SSE framing
 * (OpenAI's two APIs frame their streams differently), so the official SDKs read the gateway's
 * answers as they read the provider's.
 */
import type { Provider, ProviderApi } from '@headroom/queue';

/** What went wrong, in terms both providers have a status and an error type for. */
export type ErrorKind =
  | 'invalid_request'
  | 'authentication'
  | 'permission'
  | 'not_found'
  /** No such endpoint (OpenAI's "Invalid URL", with no code: it is not a model that is missing). */
  | 'unknown_endpoint'
  | 'method_not_allowed'
  | 'too_large'
  /** The request body did not arrive within `gateway.bodyTimeoutMs`. */
  | 'body_timeout'
  | 'rate_limit'
  /** The call's idempotency key names a job that is stopping (cancelled as it ran): a retry in a moment runs it again. */
  | 'conflict'
  | 'api_error'
  /** The service is too busy to take or finish the call now (a job past its max wait, out of retries). */
  | 'overloaded'
  /** A dependency is down (Redis). */
  | 'unavailable';

/** A model the gateway serves, with what its config says of it. */
export interface ServedModel {
  id: string;
  /** The config's `maxOutputTokens`: the most a call may ask for (`max_tokens`), when known. */
  maxOutputTokens: number | null;
}

/**
 * A model's release date, which the config does not hold: the epoch, as Anthropic documents for
 * a date it does not know. Never the gateway's start, which changed with each restart and differed
 * between instances behind one address.
 */
const RELEASED_UNKNOWN = { rfc3339: '1970-01-01T00:00:00Z', unixSeconds: 0 };

/**
 * Anthropic's ModelInfo with every field its SDK declares present: what the gateway knows (the
 * model serves calls, so `active`; `max_tokens` from the config) and null for what it does not.
 */
const anthropicModel = (m: ServedModel) => ({
  type: 'model',
  id: m.id,
  display_name: m.id,
  created_at: RELEASED_UNKNOWN.rfc3339,
  capabilities: null,
  deprecated_at: null,
  lifecycle: 'active',
  line: null,
  max_input_tokens: null,
  max_tokens: m.maxOutputTokens,
  retires_at: null,
});

/**
 * OpenAI's Model. `owned_by` is "the organization that owns the model": the provider's models are
 * not Headroom's, so what OpenAI itself answers for its current models, `system` (observed in real
 * listings, e.g. huggingface/smolagents#808; only its oldest say `openai`), as the simulator does.
 */
const openaiModel = (m: ServedModel) => ({ id: m.id, object: 'model', created: RELEASED_UNKNOWN.unixSeconds, owned_by: 'system' });

export interface Dialect {
  readonly provider: Provider;
  /** The provider API a call in this dialect is a job for. */
  readonly api: ProviderApi;
  status(kind: ErrorKind): number;
  /** `requestId`: the answer's id, which Anthropic repeats in its error body (`request_id`). */
  errorBody(kind: ErrorKind, message: string, detail?: { param?: string; code?: string; requestId?: string }): string;
  /** A list of models; `hasMore` when the client asked for a page that ends before the list does. */
  modelList(models: readonly ServedModel[], hasMore: boolean): string;
  model(model: ServedModel): string;
  /** One event as an SSE frame. */
  frame(data: string): string;
  /** What closes a complete stream (OpenAI's `[DONE]`), if anything. */
  readonly endFrame: string;
  /** A keep-alive the provider's SDK reads past: Anthropic's own `ping` event, else an SSE comment. */
  readonly pingFrame: string;
  /** The header the provider names its call in, which its SDK reads into `_request_id`. */
  readonly requestIdHeader: string;
}

const STATUS: Record<ErrorKind, number> = {
  invalid_request: 400,
  authentication: 401,
  permission: 403,
  not_found: 404,
  unknown_endpoint: 404,
  method_not_allowed: 405,
  too_large: 413,
  body_timeout: 408,
  rate_limit: 429,
  conflict: 409,
  api_error: 500,
  overloaded: 529,
  unavailable: 503,
};

const ANTHROPIC_TYPES: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  authentication: 'authentication_error',
  permission: 'permission_error',
  not_found: 'not_found_error',
  unknown_endpoint: 'not_found_error',
  method_not_allowed: 'invalid_request_error',
  too_large: 'request_too_large',
  body_timeout: 'invalid_request_error',
  rate_limit: 'rate_limit_error',
  // Anthropic documents no type of its own for a 409 (its SDK raises ConflictError by the status).
  conflict: 'api_error',
  api_error: 'api_error',
  overloaded: 'overloaded_error',
  unavailable: 'api_error',
};

/** The SSE event name is the data's `type`, which Anthropic and OpenAI's Responses API write first. */
const TYPE_FIRST = /^\{"type":"([a-z_.]+)"/;

/** `event: <the data's type>` before the data, as Anthropic and OpenAI's Responses API frame their events. */
function namedFrame(data: string, fallback: string): string {
  const name = TYPE_FIRST.exec(data)?.[1] ?? ((JSON.parse(data) as { type?: string }).type || fallback);
  return `event: ${name}\ndata: ${data}\n\n`;
}

/**
 * Anthropic's own answer to a body that did not finish arriving in time: a 400
 * `invalid_request_error` with `details.error_code: "request_body_timeout"`, which its SDK (1.13)
 * raises as `BetaRequestBodyTimeoutError` ("nothing was done"). It was a 408 `timeout_error`,
 * a type Anthropic pairs with 504 (its SDK's `GatewayTimeoutErrorObject`: the API timed out
 * processing), raised as a bare `RequestTimeoutError`. The retry a 408 got from the SDK comes from
 * `x-should-retry: true` (request-body.ts), which both SDKs obey before their status rules.
 */
const ANTHROPIC_ERROR_CODES: Partial<Record<ErrorKind, string>> = { body_timeout: 'request_body_timeout' };

export const anthropic: Dialect = {
  provider: 'anthropic',
  api: 'messages',
  status: (kind) => (kind === 'body_timeout' ? 400 : STATUS[kind]),
  errorBody: (kind, message, detail = {}) => {
    const errorCode = ANTHROPIC_ERROR_CODES[kind];
    const error = { type: ANTHROPIC_TYPES[kind], message, ...(errorCode === undefined ? {} : { details: { error_code: errorCode } }) };
    return JSON.stringify({ type: 'error', error, request_id: detail.requestId ?? null });
  },
  modelList: (models, hasMore) =>
    JSON.stringify({
      data: models.map(anthropicModel),
      has_more: hasMore,
      first_id: models[0]?.id ?? null,
      last_id: models.at(-1)?.id ?? null,
    }),
  model: (m) => JSON.stringify(anthropicModel(m)),
  frame: (data) => namedFrame(data, 'message'),
  endFrame: '',
  pingFrame: 'event: ping\ndata: {"type": "ping"}\n\n',
  requestIdHeader: 'request-id',
};

const OPENAI_TYPES: Record<ErrorKind, { type: string; code: string | null }> = {
  invalid_request: { type: 'invalid_request_error', code: null },
  authentication: { type: 'invalid_request_error', code: 'invalid_api_key' },
  permission: { type: 'invalid_request_error', code: 'permission_denied' },
  not_found: { type: 'invalid_request_error', code: 'model_not_found' },
  unknown_endpoint: { type: 'invalid_request_error', code: null },
  method_not_allowed: { type: 'invalid_request_error', code: 'method_not_supported' },
  too_large: { type: 'invalid_request_error', code: 'request_too_large' },
  body_timeout: { type: 'invalid_request_error', code: 'timeout' },
  rate_limit: { type: 'requests', code: 'rate_limit_exceeded' },
  conflict: { type: 'invalid_request_error', code: 'conflict' },
  api_error: { type: 'server_error', code: null },
  overloaded: { type: 'server_error', code: 'overloaded' },
  unavailable: { type: 'server_error', code: null },
};

export const openai: Dialect = {
  provider: 'openai',
  api: 'chat',
  // OpenAI never answers 529: its "engine overloaded" is a 503.
  status: (kind) => (kind === 'overloaded' ? 503 : STATUS[kind]),
  errorBody: (kind, message, detail = {}) =>
    JSON.stringify({ error: { message, type: OPENAI_TYPES[kind].type, param: detail.param ?? null, code: detail.code ?? OPENAI_TYPES[kind].code } }),
  modelList: (models) => JSON.stringify({ object: 'list', data: models.map(openaiModel) }),
  model: (m) => JSON.stringify(openaiModel(m)),
  frame: (data) => `data: ${data}\n\n`,
  endFrame: 'data: [DONE]\n\n',
  // OpenAI sends none of its own; every SSE reader skips a line that starts with ':'.
  pingFrame: ': ping\n\n',
  requestIdHeader: 'x-request-id',
};

/**
 * OpenAI's Responses API: OpenAI's errors and models, its events framed with their names (an
 * `error` event is what the SDK throws on) and no `[DONE]` after the last.
 */
export const openaiResponses: Dialect = {
  ...openai,
  api: 'responses',
  frame: (data) => namedFrame(data, 'message'),
  endFrame: '',
};

export const DIALECTS: Record<Provider, Dialect> = { anthropic, openai };

/**
 * The provider's id for the call, in the header its SDK reads. Only printable ASCII of a sane
 * length goes on: a provider answering garbage must not make the answer itself fail to send
 * (Node refuses a header with control characters).
 */
export function requestIdHeader(dialect: Dialect, id: string | undefined): Record<string, string> {
  return id !== undefined && /^[\x21-\x7e]{1,256}$/.test(id) ? { [dialect.requestIdHeader]: id } : {};
}
