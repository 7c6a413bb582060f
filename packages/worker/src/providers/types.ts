/**
 * What the dispatcher needs from a provider: one call through the official SDK (its own retries
 * off, so every attempt is drawn from the bucket and one policy, ours, decides), the usage the
 * provider reports, and every failure classified so the retry policy never reads message text.
 */
import type { LlmJob, Provider, ProviderError, Usage } from '@headroom/queue';

export type ProviderRequest = LlmJob['request'];

export interface ProviderCallInput {
  /** The model to call; replaces `request.model` (a fallback may differ from the job's model). */
  model: string;
  request: ProviderRequest;
  /** OpenAI's API the request is for: Responses when "responses", else Chat Completions (the job's `api`). */
  api?: 'responses';
  /** Anthropic betas the call opts into (its `anthropic-beta` header); the job's `betas`. */
  betas?: readonly string[];
  /** Aborts the call (worker shutdown). */
  signal?: AbortSignal;
}

export interface ProviderCallOk {
  ok: true;
  status: number;
  /** The provider's response body, untouched. */
  response: unknown;
  usage: Usage;
  /**
   * Response headers, for the bucket sync (`anthropic-ratelimit-*`, `x-ratelimit-*`). None on a
   * stream's result: its only headers are its head's, handed to `onOpen` while they were current.
   */
  headers?: Headers;
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
  /** The provider's error body, secrets cut, when it sent one of its error shape (kept with the job's failure). */
  providerError?: ProviderError;
}

export type ProviderCallResult = ProviderCallOk | ProviderCallFailure;

export interface ProviderStreamInput extends ProviderCallInput {
  /**
   * Each provider event as it arrives, as the JSON text the client is to see (an Anthropic SSE
   * event's data; an OpenAI chunk, without the usage the worker asked for when the client did
   * not). Called in order, synchronously: the relay batches behind it. `output`: the event added
   * to the answer's output (text, tool input, thinking), where the events before the first such
   * one only open the message.
   */
  onEvent(data: string, output: boolean): void;
  /**
   * The provider's id for the call (its `request-id` / `x-request-id` header) and the head's
   * headers, once it answered; before the first event. The head's rate-limit headers describe the
   * provider as the call began: its whole output bound charged, none of it given back yet.
   */
  onOpen?(requestId: string | undefined, headers: Headers): void;
}

/** How far a stream got: what a cut-short stream is charged from. */
export interface StreamProgress {
  /** Provider events passed to `onEvent`. */
  events: number;
  /** When the first event arrived (epoch ms). */
  firstEventAt?: number;
  /** The output text received so far (text, tool input JSON, thinking), for counting its tokens. */
  outputText: string;
  /** Input usage the provider already reported (Anthropic's `message_start`); OpenAI reports none before the end. */
  inputUsage?: Pick<Usage, 'inputTokens' | 'cacheReadInputTokens' | 'cacheCreationInputTokens' | 'cacheCreation1hInputTokens'>;
  /** Output tokens the provider already reported, if any (a cumulative count in a delta). */
  outputTokens?: number;
  /**
   * The answer holds output the stream does not show whole: a thinking block (omitted, or a
   * summary of longer thinking) or OpenAI's hidden reasoning. Its text then undercounts what the
   * provider bills, by an amount nothing in the stream tells.
   */
  hiddenOutput?: true;
}

export type ProviderStreamResult =
  /** `response` is the message (Anthropic) or chat completion (OpenAI) assembled from the events. */
  | (ProviderCallOk & {
      progress: StreamProgress & { firstEventAt: number };
      /** What the answer needs that the client was not sent, for the relay's end (`StreamAccumulator.withheld`). */
      withheld?: string;
    })
  /**
   * With `progress.events === 0` the client saw nothing and the job may be retried like any
   * failed call. After the first event, `errorEvent` is the provider-shaped error event the
   * stream ends with (the provider's own, when it sent one).
   */
  | (ProviderCallFailure & { progress: StreamProgress; errorEvent: string });

export interface ProviderAdapter {
  readonly provider: Provider;
  call(input: ProviderCallInput): Promise<ProviderCallResult>;
  /** The same call, streamed through the SDK's stream API; never throws. */
  stream(input: ProviderStreamInput): Promise<ProviderStreamResult>;
}
