/**
 * What the dispatcher needs from a provider: one call through the official SDK (its own retries
 * off, so every attempt is drawn from the bucket and one policy, ours, decides), the usage the
 * provider reports, and every failure classified so the retry policy never reads message text.
 */
import type { LlmJob, Provider, Usage } from '@headroom/queue';

export type ProviderRequest = LlmJob['request'];

export interface ProviderCallInput {
  /** The model to call; replaces `request.model` (a fallback may differ from the job's model). */
  model: string;
  request: ProviderRequest;
  /** Aborts the call (worker shutdown). */
  signal?: AbortSignal;
}

export interface ProviderCallOk {
  ok: true;
  status: number;
  /** The provider's response body, untouched. */
  response: unknown;
  usage: Usage;
  /** Response headers, for the bucket sync (`anthropic-ratelimit-*`, `x-ratelimit-*`). */
  headers: Headers;
  requestId?: string;
}

export type FailureKind =
  /** 429 with a limit that clears by waiting (retry-after, else the reset headers). */
  | 'rate_limit'
  /** A spend cap or billing problem, as the provider's error code says (429 `insufficient_quota`, Anthropic's spend limits, 402): does not clear by waiting. */
  | 'spend_cap'
  /** 529 overloaded_error. */
  | 'overloaded'
  /** 500, 502, 503, 504. */
  | 'server'
  /** No response: connection refused or reset, timeout, cut mid-body. */
  | 'network'
  /** 2xx with a body we cannot read (malformed JSON, missing fields). */
  | 'bad_response'
  /** 400 / 413 / 422: the request itself is wrong; retrying cannot help. */
  | 'invalid_request'
  /** 401 / 403. */
  | 'auth'
  /** 404: unknown model or endpoint. */
  | 'not_found'
  /** Anything else. */
  | 'unknown';

export interface ProviderCallFailure {
  ok: false;
  kind: FailureKind;
  /** HTTP status, or null when no response arrived. */
  status: number | null;
  /** The provider's own message (never the API key). */
  message: string;
  /** From `retry-after-ms` or `retry-after`, when the provider sent one. */
  retryAfterMs?: number;
  /** A rate limit without `retry-after`: when its reset headers say the exhausted limit frees up. */
  resetInMs?: number;
  headers?: Headers;
  requestId?: string;
}

export type ProviderCallResult = ProviderCallOk | ProviderCallFailure;

export interface ProviderAdapter {
  readonly provider: Provider;
  call(input: ProviderCallInput): Promise<ProviderCallResult>;
}
