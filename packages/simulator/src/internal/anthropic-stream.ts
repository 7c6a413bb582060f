// A Messages answer as server-sent events, in the order the API sends them: message_start,
// content_block_start, ping, one content_block_delta (text_delta, or input_json_delta for a tool
// call's input) per output token paced over time, content_block_stop, message_delta with the
// usage, message_stop. Parallel tool calls are blocks one after the other, each opened and closed
// around its own deltas. Thinking comes first, as its own block: thinking_delta per token, then
// its signature_delta before the block stops; with `display: 'omitted'` the thinking tokens take
// their time with no delta, and the signature still comes.

import type { ServerResponse } from 'node:http';
import type { AnthropicBlock, AnthropicMessage } from './anthropic-request.js';
import type { TransportFaultAction } from './faults.js';
import { paceDeltas, type StreamDelivery } from './paced-stream.js';
import { tokenPieces } from './tokenizer.js';

export interface StreamOptions {
  latencyMs: number;
  tokenMs: () => number | null;
  fault: TransportFaultAction | null;
  progress: (outputSent: number) => void;
  /** Settles the call (refund, cache write, stats); runs once, however the stream ends. */
  settle: (delivery: StreamDelivery) => void;
}

function event(res: ServerResponse, name: string, data: unknown): void {
  if (!res.destroyed) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

export async function streamMessage(res: ServerResponse, message: AnthropicMessage, options: StreamOptions): Promise<void> {
  const { usage } = message;
  event(res, 'message_start', {
    type: 'message_start',
    message: {
      ...message,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { ...usage, output_tokens: 1 },
    },
  });
  const blocks = message.content;
  const opening = (index: number) => {
    const block = blocks[index];
    if (block?.type === 'thinking') return { type: 'thinking', thinking: '', signature: '' };
    return block?.type === 'tool_use' ? { type: 'tool_use', id: block.id, name: block.name, input: {} } : { type: 'text', text: '', citations: null };
  };
  const close = (out: ServerResponse, index: number) => {
    const block = blocks[index];
    if (block?.type === 'thinking') event(out, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: block.signature } });
    event(out, 'content_block_stop', { type: 'content_block_stop', index });
  };
  // One piece per output token. An omitted thinking's tokens (the usage's beyond the other blocks')
  // are empty pieces: paced, as the model still thinks, but not sent.
  const shownPieces = (block: AnthropicBlock): string[] =>
    tokenPieces(block.type === 'thinking' ? block.thinking : block.type === 'tool_use' ? JSON.stringify(block.input) : block.text);
  const shown = blocks.map(shownPieces);
  const hiddenTokens = Math.max(0, usage.output_tokens - shown.reduce((n, pieces) => n + pieces.length, 0));
  const piecesOf = (block: AnthropicBlock, index: number): [number, string][] => {
    const pieces = block.type === 'thinking' && block.thinking === '' ? Array.from({ length: hiddenTokens }, () => '') : (shown[index] ?? []);
    return pieces.map((piece): [number, string] => [index, piece]);
  };
  event(res, 'content_block_start', { type: 'content_block_start', index: 0, content_block: opening(0) });
  event(res, 'ping', { type: 'ping' });

  let open = 0;
  const complete = await paceDeltas<[number, string]>(res, {
    pieces: blocks.flatMap(piecesOf),
    outputTokens: usage.output_tokens,
    latencyMs: options.latencyMs,
    tokenMs: options.tokenMs,
    writeDelta: (out, [index, piece]) => {
      if (index !== open) {
        close(out, open);
        open = index;
        event(out, 'content_block_start', { type: 'content_block_start', index, content_block: opening(index) });
      }
      const kind = blocks[index]?.type;
      if (kind === 'thinking' && piece === '') return;
      const delta = kind === 'thinking' ? { type: 'thinking_delta', thinking: piece } : kind === 'tool_use' ? { type: 'input_json_delta', partial_json: piece } : { type: 'text_delta', text: piece };
      event(out, 'content_block_delta', { type: 'content_block_delta', index, delta });
    },
    writeMalformed: (out) => out.write('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":\n\n'),
    writeOverloaded: (out) => event(out, 'error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
    fault: options.fault,
    progress: options.progress,
    settle: options.settle,
  });
  if (!complete) return;

  close(res, open);
  event(res, 'message_delta', {
    type: 'message_delta',
    // The delta and usage with every field the SDK's MessageDeltaEvent declares.
    delta: { stop_reason: message.stop_reason, stop_sequence: message.stop_sequence, stop_details: message.stop_details, container: message.container },
    usage: {
      input_tokens: usage.input_tokens,
      cache_creation_input_tokens: usage.cache_creation_input_tokens,
      cache_read_input_tokens: usage.cache_read_input_tokens,
      output_tokens: usage.output_tokens,
      output_tokens_details: usage.output_tokens_details,
      server_tool_use: usage.server_tool_use,
    },
  });
  event(res, 'message_stop', { type: 'message_stop' });
}
