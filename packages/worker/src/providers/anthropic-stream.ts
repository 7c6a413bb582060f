/**
 * An Anthropic Messages stream, event by event: each relayed as the SSE event's data, and the
 * Message assembled from them as the API documents it (message_start, content blocks and their
 * deltas, message_delta's stop reason and cumulative usage, message_stop).
 */
import type { ProviderCallFailure } from './types.js';
import { AnthropicMessageBody, anthropicUsage } from './anthropic.js';
import type { StreamAccumulator } from './sdk-stream.js';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
/** Blocks whose streamed text is not what the thinking cost (hiddenOutput). */
const THINKING_BLOCKS = new Set(['thinking', 'redacted_thinking']);

export class AnthropicStreamAccumulator implements StreamAccumulator<Json> {
  #message: Json | undefined;
  #content: Json[] = [];
  #json = new Map<number, string>();
  #text = '';
  #stopped = false;
  #outputTokens: number | undefined;
  /** A thinking block began: omitted, or (Claude 4 models) a summary of the thinking billed. */
  #hidden = false;

  add(event: Json): string {
    // Serialized first: nothing below may touch what the client is sent.
    const data = JSON.stringify(event);
    switch (event.type) {
      case 'message_start':
        if (isRecord(event.message)) this.#message = { ...event.message, usage: { ...(event.message.usage as Json) } };
        break;
      case 'content_block_start':
        if (typeof event.index === 'number' && isRecord(event.content_block)) {
          this.#content[event.index] = { ...event.content_block };
          if (THINKING_BLOCKS.has(String(event.content_block.type))) this.#hidden = true;
        }
        break;
      case 'content_block_delta':
        this.#delta(event.index, event.delta);
        break;
      case 'content_block_stop':
        if (typeof event.index === 'number' && this.#json.has(event.index)) {
          const block = this.#content[event.index];
          const raw = this.#json.get(event.index) ?? '';
          if (block) {
            try {
              block.input = raw === '' ? {} : JSON.parse(raw);
            } catch {
              block.input = {};
            }
          }
        }
        break;
      case 'message_delta':
        if (this.#message) {
          const delta = isRecord(event.delta) ? event.delta : {};
          if ('stop_reason' in delta) this.#message.stop_reason = delta.stop_reason;
          if ('stop_sequence' in delta) this.#message.stop_sequence = delta.stop_sequence;
          // A refusal's category and explanation, and the code execution tool's container: only
          // this event carries them (message_start has them null), as the SDK's MessageStream reads.
          if ('stop_details' in delta) this.#message.stop_details = delta.stop_details;
          if (delta.container != null) this.#message.container = delta.container;
          // Cumulative whole-message counts; fields that do not apply are omitted or null.
          const usage = this.#message.usage as Json;
          if (isRecord(event.usage)) for (const [k, v] of Object.entries(event.usage)) if (v !== null && v !== undefined) usage[k] = v;
          this.#outputTokens = num(usage.output_tokens);
        }
        break;
      case 'message_stop':
        this.#stopped = true;
        break;
    }
    return data;
  }

  #delta(index: unknown, delta: unknown): void {
    if (typeof index !== 'number' || !isRecord(delta)) return;
    const block = this.#content[index];
    if (!block) return;
    switch (delta.type) {
      case 'text_delta':
        block.text = `${typeof block.text === 'string' ? block.text : ''}${String(delta.text ?? '')}`;
        this.#text += String(delta.text ?? '');
        break;
      case 'input_json_delta':
        this.#json.set(index, (this.#json.get(index) ?? '') + String(delta.partial_json ?? ''));
        this.#text += String(delta.partial_json ?? '');
        break;
      case 'thinking_delta':
        block.thinking = `${typeof block.thinking === 'string' ? block.thinking : ''}${String(delta.thinking ?? '')}`;
        this.#text += String(delta.thinking ?? '');
        break;
      case 'signature_delta':
        block.signature = delta.signature;
        break;
      case 'citations_delta':
        block.citations = [...(Array.isArray(block.citations) ? block.citations : []), delta.citation];
        break;
    }
  }

  outputText(): string {
    return this.#text;
  }

  progress() {
    const usage = isRecord(this.#message?.usage) ? this.#message.usage : undefined;
    const input = num(usage?.input_tokens);
    const oneHour = isRecord(usage?.cache_creation) ? num(usage.cache_creation.ephemeral_1h_input_tokens) : undefined;
    return {
      outputText: this.#text,
      ...(input === undefined
        ? {}
        : {
            inputUsage: {
              inputTokens: input,
              cacheReadInputTokens: num(usage?.cache_read_input_tokens) ?? 0,
              cacheCreationInputTokens: num(usage?.cache_creation_input_tokens) ?? 0,
              ...(oneHour === undefined ? {} : { cacheCreation1hInputTokens: oneHour }),
            },
          }),
      ...(this.#outputTokens === undefined ? {} : { outputTokens: this.#outputTokens }),
      ...(this.#hidden ? { hiddenOutput: true as const } : {}),
    };
  }

  finish() {
    if (!this.#message) return { incomplete: 'the stream ended without a message_start event' };
    if (!this.#stopped) return { incomplete: 'the stream ended before its message_stop event' };
    const message = { ...this.#message, content: this.#content.filter(Boolean) };
    const parsed = AnthropicMessageBody.safeParse(message);
    if (!parsed.success) return { incomplete: `the streamed message has an unexpected shape: ${parsed.error.issues[0]?.message ?? ''}` };
    return { response: message, usage: anthropicUsage(parsed.data) };
  }

  /** The API's own `error` event when it sent one (the SDK keeps its body); else one in its shape. */
  errorEvent(error: unknown, failure: ProviderCallFailure): string {
    const body = (error as { error?: unknown } | undefined)?.error;
    if (isRecord(body) && body.type === 'error' && isRecord(body.error)) return JSON.stringify(body);
    const type = failure.status === 529 || failure.kind === 'overloaded' ? 'overloaded_error' : 'api_error';
    return JSON.stringify({ type: 'error', error: { type, message: failure.message } });
  }
}
