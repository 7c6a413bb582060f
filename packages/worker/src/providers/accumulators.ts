/**
 * Which accumulator assembles a streamed call's answer from its events: the adapters' own, as the
 * events arrive, and a rerun's, rebuilding from the relay the answer an earlier attempt streamed
 * whole (run/relayed-answer.ts). One choice for both, so the two assemble the same result.
 */
import type { Provider } from '@headroom/queue';
import type OpenAI from 'openai';
import { AnthropicStreamAccumulator } from './anthropic-stream.js';
import { OpenAIResponsesAccumulator } from './openai-responses.js';
import { OpenAIStreamAccumulator } from './openai-stream.js';
import type { StreamAccumulator } from './sdk-stream.js';
import type { ProviderCallInput } from './types.js';

export function streamAccumulatorOf(provider: Provider, input: Pick<ProviderCallInput, 'request' | 'api'>): StreamAccumulator<Record<string, unknown>> {
  if (provider === 'anthropic') return new AnthropicStreamAccumulator();
  if (input.api === 'responses') return new OpenAIResponsesAccumulator();
  const request = input.request as OpenAI.ChatCompletionCreateParams;
  // Nothing in a Chat Completions stream shows reasoning: the request's effort is what says a
  // reasoning model thinks (one called without it is counted by its visible text).
  return new OpenAIStreamAccumulator(request.stream_options?.include_usage === true, request.reasoning_effort != null && request.reasoning_effort !== 'none');
}
