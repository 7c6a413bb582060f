/**
 * OpenAI Chat Completions and Responses through the official SDK, its retries off: every attempt
 * is a separate bucket draw, and one policy (ours) decides what happens after a failure. A call
 * whose input says `api: 'responses'` goes to `client.responses`, any other to
 * `client.chat.completions`.
 *
 * ```ts
 * const adapter = new OpenAIAdapter({ apiKey, baseURL: `${sim.url}/v1`, timeoutMs: 60_000 });
 * const result = await adapter.call({ model: 'gpt-4.1', request: job.request });
 * ```
 */
import type { Usage } from '@headroom/queue';
import OpenAI from 'openai';
import { z } from 'zod';
import type { AdapterOptions } from './anthropic.js';
import { streamAccumulatorOf } from './accumulators.js';
import { createHttpFetch } from './http-fetch.js';
import { OpenAIResponseBody, responsesUsage } from './openai-responses.js';
import { runSdkCall, SDK_LOGGING, type SdkCallSpec, type SdkErrorClasses } from './sdk-call.js';
import { runSdkStream, streamBoundsOf, type OpenedStream, type StreamSpec } from './sdk-stream.js';
import type { ProviderAdapter, ProviderCallInput, ProviderCallResult, ProviderStreamInput, ProviderStreamResult } from './types.js';

/** OpenAI's default path includes `/v1` (a custom baseURL must too). */
export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

const count = z.int().nonnegative();

/** What we read from a ChatCompletion; the rest of the body passes through untouched. */
export const OpenAIChatCompletionBody = z.looseObject({
  object: z.literal('chat.completion'),
  choices: z.array(z.looseObject({ message: z.looseObject({ role: z.string() }) })),
  usage: z.looseObject({
    prompt_tokens: count,
    completion_tokens: count,
    prompt_tokens_details: z.looseObject({ cached_tokens: count.nullish() }).nullish(),
  }),
});
export type OpenAIChatCompletionBody = z.infer<typeof OpenAIChatCompletionBody>;

/**
 * `prompt_tokens` already includes the cached tokens: they are reported again as
 * `cacheReadInputTokens` for pricing, not added (see `costOf`).
 */
export function openaiUsage(body: OpenAIChatCompletionBody): Usage {
  return {
    inputTokens: body.usage.prompt_tokens,
    outputTokens: body.usage.completion_tokens,
    cacheReadInputTokens: body.usage.prompt_tokens_details?.cached_tokens ?? 0,
    cacheCreationInputTokens: 0,
  };
}

/** The SDK's error classes, for classifying failures (the batch client uses them too). */
export const OPENAI_SDK_ERRORS: SdkErrorClasses = {
  base: OpenAI.OpenAIError,
  api: OpenAI.APIError,
  connection: OpenAI.APIConnectionError,
  connectionTimeout: OpenAI.APIConnectionTimeoutError,
  userAbort: OpenAI.APIUserAbortError,
};

export class OpenAIAdapter implements ProviderAdapter {
  readonly provider = 'openai' as const;
  readonly #client: OpenAI;
  readonly #spec: SdkCallSpec<OpenAIChatCompletionBody>;
  readonly #responsesSpec: SdkCallSpec<OpenAIResponseBody>;
  readonly #streamSpec: StreamSpec;

  constructor(options: AdapterOptions) {
    if (options.apiKey === '') throw new Error('OpenAIAdapter: apiKey is empty');
    // The baseURL is always passed so the SDK never falls back to OPENAI_BASE_URL behind the config's back.
    this.#client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL ?? OPENAI_DEFAULT_BASE_URL,
      maxRetries: 0,
      timeout: options.timeoutMs,
      ...SDK_LOGGING,
      // node:http under the SDK, not the built-in fetch: less latency and CPU per call (http-fetch.ts).
      fetch: createHttpFetch(),
    });
    this.#spec = {
      provider: 'openai',
      apiKey: options.apiKey,
      timeoutMs: options.timeoutMs,
      errors: OPENAI_SDK_ERRORS,
      requestIdHeader: 'x-request-id',
      schema: OpenAIChatCompletionBody,
      usageOf: openaiUsage,
    };
    this.#responsesSpec = { ...this.#spec, schema: OpenAIResponseBody, usageOf: responsesUsage };
    // One stream spec for both APIs: a stream's classification reads no schema.
    this.#streamSpec = { ...this.#spec, ...streamBoundsOf(options) };
  }

  call(input: ProviderCallInput): Promise<ProviderCallResult> {
    if (input.api === 'responses') {
      // Validated at enqueue as a Responses body; only the model changes.
      const body = { ...input.request, model: input.model, stream: false } as OpenAI.Responses.ResponseCreateParamsNonStreaming;
      return runSdkCall(this.#responsesSpec, input.signal, ({ timeout, signal }) => this.#client.responses.create(body, { timeout, signal }).asResponse());
    }
    // The job's request was validated at enqueue as a Chat Completions body; only the model changes.
    const body = { ...input.request, model: input.model, stream: false } as OpenAI.ChatCompletionCreateParamsNonStreaming;
    return runSdkCall(this.#spec, input.signal, ({ timeout, signal }) => this.#client.chat.completions.create(body, { timeout, signal }).asResponse());
  }

  stream(input: ProviderStreamInput): Promise<ProviderStreamResult> {
    if (input.api === 'responses') {
      // The terminal event carries the usage: a Responses stream needs no option for it.
      const body = { ...input.request, model: input.model, stream: true } as OpenAI.Responses.ResponseCreateParamsStreaming;
      return runSdkStream(
        this.#streamSpec,
        input,
        ({ timeout, signal }) => this.#client.responses.create(body, { timeout, signal }).withResponse() as unknown as Promise<OpenedStream<Record<string, unknown>>>,
        streamAccumulatorOf('openai', input),
      );
    }
    const request = input.request as OpenAI.ChatCompletionCreateParams;
    // The bucket is settled from the usage chunk, so it is always asked for; the accumulator
    // hides it again from a client that did not ask.
    const body = { ...request, model: input.model, stream: true, stream_options: { ...request.stream_options, include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming;
    return runSdkStream(
      this.#streamSpec,
      input,
      ({ timeout, signal }) => this.#client.chat.completions.create(body, { timeout, signal }).withResponse() as unknown as Promise<OpenedStream<Record<string, unknown>>>,
      streamAccumulatorOf('openai', input),
    );
  }
}
