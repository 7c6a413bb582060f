/**
 * OpenAI's Responses API (`POST /v1/responses`) as the OpenAI adapter calls it: the part of a
 * Response body we read (its usage), and the stream's events, relayed as they came and assembled
 * into the Response its terminal event carries.
 */
import type { Usage } from '@headroom/queue';
import { z } from 'zod';
import type { StreamAccumulator } from './sdk-stream.js';
import type { ProviderCallFailure } from './types.js';

const count = z.int().nonnegative();

/** What we read from a Response; the rest of the body passes through untouched. */
export const OpenAIResponseBody = z.looseObject({
  object: z.literal('response'),
  status: z.string().nullish(),
  output: z.array(z.looseObject({ type: z.string() })),
  usage: z.looseObject({
    input_tokens: count,
    output_tokens: count,
    input_tokens_details: z.looseObject({ cached_tokens: count.nullish() }).nullish(),
  }),
});
export type OpenAIResponseBody = z.infer<typeof OpenAIResponseBody>;

/**
 * `input_tokens` already includes the cached tokens (reported again as `cacheReadInputTokens` for
 * pricing, not added), and `output_tokens` the reasoning tokens, as Chat Completions counts them.
 */
export function responsesUsage(body: Pick<OpenAIResponseBody, 'usage'>): Usage {
  return {
    inputTokens: body.usage.input_tokens,
    outputTokens: body.usage.output_tokens,
    cacheReadInputTokens: body.usage.input_tokens_details?.cached_tokens ?? 0,
    cacheCreationInputTokens: 0,
  };
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The events that end a Response stream, each carrying the whole Response. */
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);
/** Events whose `delta` is output the model produced (text, refusals, tool-call arguments, reasoning summaries). */
const OUTPUT_DELTA = /^response\.(output_text|refusal|function_call_arguments|reasoning_summary_text|reasoning_text)\.delta$/;

/**
 * A Responses stream, event by event: each relayed as its JSON (the `type` first, as OpenAI
 * writes it, which the gateway names the SSE event by), the output text counted as it grows, and
 * the Response taken from the terminal event, which holds the usage.
 */
export class OpenAIResponsesAccumulator implements StreamAccumulator<Json> {
  #text = '';
  #terminal: Json | undefined;
  #lastSequence = -1;
  /** A reasoning item began: its tokens are billed, at most a summary of them streamed. */
  #hidden = false;

  add(event: Json): string | undefined {
    const type = typeof event.type === 'string' ? event.type : '';
    if (typeof event.sequence_number === 'number') this.#lastSequence = event.sequence_number;
    if (type === 'response.output_item.added' && isRecord(event.item) && event.item.type === 'reasoning') this.#hidden = true;
    if (OUTPUT_DELTA.test(type) && typeof event.delta === 'string') this.#text += event.delta;
    if (TERMINAL.has(type) && isRecord(event.response)) this.#terminal = event;
    return JSON.stringify(event);
  }

  outputText(): string {
    return this.#text;
  }

  progress() {
    const usage = this.#terminal && isRecord(this.#terminal.response) && isRecord(this.#terminal.response.usage) ? this.#terminal.response.usage : undefined;
    return {
      outputText: this.#text,
      ...(typeof usage?.output_tokens === 'number' ? { outputTokens: usage.output_tokens } : {}),
      ...(this.#hidden ? { hiddenOutput: true as const } : {}),
    };
  }

  finish() {
    if (!this.#terminal) return { incomplete: 'the stream ended before its response.completed event' };
    const response = this.#terminal.response as Json;
    if (this.#terminal.type === 'response.failed') {
      const error = isRecord(response.error) ? response.error : {};
      return { incomplete: `the response failed: ${typeof error.message === 'string' ? error.message : 'no reason given'}${typeof error.code === 'string' ? ` (${error.code})` : ''}` };
    }
    const parsed = OpenAIResponseBody.safeParse(response);
    if (!parsed.success) return { incomplete: `the ${String(this.#terminal.type)} event's response has an unexpected shape: ${parsed.error.issues[0]?.message ?? ''}` };
    return { response, usage: responsesUsage(parsed.data) };
  }

  /**
   * The Responses stream's own error event (`event: error`), next in the sequence. The SDK throws
   * the provider's as an APIError whose `error` is the event's data, which is kept as it was.
   */
  errorEvent(error: unknown, failure: ProviderCallFailure): string {
    // A response.failed event already told the client, in the provider's words.
    if (this.#terminal?.type === 'response.failed') return '';
    const inner = (error as { error?: unknown } | undefined)?.error;
    const sequence_number = this.#lastSequence + 1;
    if (isRecord(inner) && typeof inner.message === 'string') {
      return JSON.stringify({ type: 'error', code: inner.code ?? null, message: inner.message, param: inner.param ?? null, sequence_number });
    }
    return JSON.stringify({ type: 'error', code: 'server_error', message: failure.message, param: null, sequence_number });
  }
}
