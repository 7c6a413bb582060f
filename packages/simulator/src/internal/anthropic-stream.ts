// A Messages answer as server-sent events, in the order the API sends them, with the call's
// latency spread over the deltas so a streaming client sees tokens arrive over time.

import type { ServerResponse } from 'node:http';
import type { AnthropicMessage } from './anthropic-request.js';
import type { FaultAction } from './faults.js';
import { sleep } from './http-exchange.js';

export interface StreamOptions {
  latencyMs: number;
  /** Settles the call (refund, cache write); runs once the last delta is out, or when the client leaves. */
  finish: () => unknown;
  fault: Exclude<FaultAction, { kind: 'status' }> | null;
}

const CHUNKS = 8;

function event(res: ServerResponse, name: string, data: unknown): void {
  if (!res.destroyed) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

function chunksOf(text: string): string[] {
  const words = text.split(/(?<= )/);
  const size = Math.max(1, Math.ceil(words.length / CHUNKS));
  const chunks: string[] = [];
  for (let i = 0; i < words.length; i += size) chunks.push(words.slice(i, i + size).join(''));
  return chunks;
}

export async function streamMessage(res: ServerResponse, message: AnthropicMessage, options: StreamOptions): Promise<void> {
  let finished = false;
  const finish = () => {
    if (!finished) {
      finished = true;
      options.finish();
    }
  };
  // A client that disconnects mid-stream has still been served (and charged) by the provider.
  res.once('close', finish);

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
  event(res, 'content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '', citations: null } });
  event(res, 'ping', { type: 'ping' });

  const text = message.content[0]?.text ?? '';
  const chunks = text === '' ? [] : chunksOf(text);
  const pause = options.latencyMs / (chunks.length + 1);
  await sleep(pause);
  for (const [i, chunk] of chunks.entries()) {
    if (res.destroyed) break;
    if (options.fault && i === Math.floor(chunks.length / 2)) {
      finish();
      if (options.fault.kind === 'cut') res.destroy();
      else res.write('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":\n\n');
      return;
    }
    event(res, 'content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: chunk } });
    await sleep(pause);
  }
  finish();
  event(res, 'content_block_stop', { type: 'content_block_stop', index: 0 });
  event(res, 'message_delta', {
    type: 'message_delta',
    delta: { stop_reason: message.stop_reason, stop_sequence: null },
    usage: {
      input_tokens: usage.input_tokens,
      cache_creation_input_tokens: usage.cache_creation_input_tokens,
      cache_read_input_tokens: usage.cache_read_input_tokens,
      output_tokens: usage.output_tokens,
    },
  });
  event(res, 'message_stop', { type: 'message_stop' });
}
