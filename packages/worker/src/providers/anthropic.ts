/**
 * Anthropic Messages through the official SDK, its retries off: every attempt is a separate
 * bucket draw, and one policy (ours) decides what happens after a failure.
 *
 * ```ts
 * const adapter = new AnthropicAdapter({ apiKey, baseURL: sim.url, timeoutMs: 60_000 });
 * const result = await adapter.call({ model: 'claude-sonnet-4-6', request: job.request });
 * ```
 */
import Anthropic from '@anthropic-ai/sdk';
import type { Usage } from '@headroom/queue';
import { z } from 'zod';
import { streamAccumulatorOf } from './accumulators.js';
import { createHttpFetch } from './http-fetch.js';
import { runSdkCall, SDK_LOGGING, type SdkCallSpec, type SdkErrorClasses } from './sdk-call.js';
import { runSdkStream, streamBoundsOf, type OpenedStream, type StreamSpec } from './sdk-stream.js';
import type { ProviderAdapter, ProviderCallInput, ProviderCallResult, ProviderStreamInput, ProviderStreamResult } from './types.js';

export const ANTHROPIC_DEFAULT_BASE_URL = 'https://api.anthropic.com';

const count = z.int().nonnegative();

/** What we read from a Message; the rest of the body passes through untouched. */
export const AnthropicMessageBody = z.looseObject({
  type: z.literal('message'),
  content: z.array(z.looseObject({ type: z.string() })),
  usage: z.looseObject({
    input_tokens: count,
    output_tokens: count,
    cache_read_input_tokens: count.nullish(),
    cache_creation_input_tokens: count.nullish(),
    cache_creation: z.looseObject({ ephemeral_1h_input_tokens: count.nullish() }).nullish(),
  }),
});
export type AnthropicMessageBody = z.infer<typeof AnthropicMessageBody>;

export function anthropicUsage(body: AnthropicMessageBody): Usage {
  const oneHour = body.usage.cache_creation?.ephemeral_1h_input_tokens;
  return {
    inputTokens: body.usage.input_tokens,
    outputTokens: body.usage.output_tokens,
    cacheReadInputTokens: body.usage.cache_read_input_tokens ?? 0,
    cacheCreationInputTokens: body.usage.cache_creation_input_tokens ?? 0,
    // 1-hour writes cost more than 5-minute ones (cost.ts): kept apart when the provider says.
    ...(oneHour == null ? {} : { cacheCreation1hInputTokens: oneHour }),
  };
}

export interface AdapterOptions {
  apiKey: string;
  /** @default the provider's public API */
  baseURL?: string | undefined;
  /**
   * A plain call's whole life, body included; a stream's head and first event. Also lifts the
   * SDKs' local refusal of long non-streaming calls.
   */
  timeoutMs: number;
  /** A stream's longest silence after its first event. @default PROVIDER_DEFAULTS.streamIdleMs */
  streamIdleMs?: number | undefined;
  /** A stream's whole life. @default PROVIDER_DEFAULTS.streamTimeoutMs */
  streamTimeoutMs?: number | undefined;
}

/** The SDK's error classes, for classifying failures (the batch client uses them too). */
export const ANTHROPIC_SDK_ERRORS: SdkErrorClasses = {
  base: Anthropic.AnthropicError,
  api: Anthropic.APIError,
  connection: Anthropic.APIConnectionError,
  connectionTimeout: Anthropic.APIConnectionTimeoutError,
  userAbort: Anthropic.APIUserAbortError,
};

/** The job's betas as the SDK's `client.beta.messages` sends them: one `anthropic-beta` header, comma-joined. */
function betaHeaders(input: ProviderCallInput): { headers?: Record<string, string> } {
  return input.betas === undefined || input.betas.length === 0 ? {} : { headers: { 'anthropic-beta': input.betas.join(',') } };
}


export class AnthropicAdapter implements ProviderAdapter {
  readonly provider = 'anthropic' as const;
  readonly #client: Anthropic;
  readonly #spec: SdkCallSpec<AnthropicMessageBody>;
  readonly #streamSpec: StreamSpec;

  constructor(options: AdapterOptions) {
    if (options.apiKey === '') throw new Error('AnthropicAdapter: apiKey is empty');
    // The baseURL is always passed so the SDK never falls back to ANTHROPIC_BASE_URL behind the config's back.
    this.#client = new Anthropic({
      apiKey: options.apiKey,
      baseURL: options.baseURL ?? ANTHROPIC_DEFAULT_BASE_URL,
      maxRetries: 0,
      timeout: options.timeoutMs,
      ...SDK_LOGGING,
      // node:http under the SDK, not the built-in fetch: less latency and CPU per call (http-fetch.ts).
      fetch: createHttpFetch(),
    });
    this.#spec = {
      provider: 'anthropic',
      apiKey: options.apiKey,
      timeoutMs: options.timeoutMs,
      errors: ANTHROPIC_SDK_ERRORS,
      requestIdHeader: 'request-id',
      schema: AnthropicMessageBody,
      usageOf: anthropicUsage,
    };
    this.#streamSpec = { ...this.#spec, ...streamBoundsOf(options) };
  }

  call(input: ProviderCallInput): Promise<ProviderCallResult> {
    // The job's request was validated at enqueue as an Anthropic body; only the model changes.
    const body = { ...input.request, model: input.model, stream: false } as Anthropic.MessageCreateParamsNonStreaming;
    return runSdkCall(this.#spec, input.signal, ({ timeout, signal }) => this.#client.messages.create(body, { timeout, signal, ...betaHeaders(input) }).asResponse());
  }

  stream(input: ProviderStreamInput): Promise<ProviderStreamResult> {
    const body = { ...input.request, model: input.model, stream: true } as Anthropic.MessageCreateParamsStreaming;
    return runSdkStream(
      this.#streamSpec,
      input,
      ({ timeout, signal }) => this.#client.messages.create(body, { timeout, signal, ...betaHeaders(input) }).withResponse() as unknown as Promise<OpenedStream<Record<string, unknown>>>,
      streamAccumulatorOf('anthropic', input),
    );
  }
}
