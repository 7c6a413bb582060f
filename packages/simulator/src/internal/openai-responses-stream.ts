// A Response as the Responses API streams it: named server-sent events (`event: <type>` then
// `data: <json>`), each data object carrying its `type` and a `sequence_number` counting from 0.
// The order: response.created and response.in_progress (the response with no output and no
// usage), response.output_item.added (the message, in progress, empty), response.content_part.added
// (an empty output_text), one response.output_text.delta per output token paced over time, then
// response.output_text.done, response.content_part.done, response.output_item.done, and last
// response.completed, or response.incomplete when max_output_tokens cut the answer short, with
// the whole response and its usage. Unlike Chat Completions there is no `data: [DONE]`: the
// terminal event ends the stream. The official SDK's stream helper checks this order strictly. A
// function call (a forced tool) streams as response.output_item.added (the call, its arguments
// empty), one response.function_call_arguments.delta per output token, then
// response.function_call_arguments.done, response.output_item.done and response.completed.

import type { ServerResponse } from 'node:http';
import { finishedAt, inProgress, type FunctionCallItem, type OpenAIResponse } from './openai-responses-request.js';
import { paceDeltas, type StreamPacing } from './paced-stream.js';
import { tokenPieces } from './tokenizer.js';
import type { TokenLogprob } from './logprobs.js';
import { OVERLOADED_MESSAGE } from './openai-faults.js';

export interface ResponseStreamOptions extends StreamPacing {
  /** The simulator clock (ms), read when the stream ends for the response's `completed_at`. */
  now: () => number;
}

export async function streamResponse(res: ServerResponse, response: OpenAIResponse, options: ResponseStreamOptions): Promise<void> {
  let sequence = 0;
  const send = (out: ServerResponse, type: string, fields: object) => {
    if (out.destroyed) return;
    out.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...fields })}\n\n`);
    sequence += 1;
  };
  const [item] = response.output;
  if (item.type === 'function_call') return streamFunctionCall(res, response, item, options, send);
  const message = item;
  const [part] = message.content;
  const { text } = part;
  const at = { item_id: message.id, output_index: 0, content_index: 0 };

  const started = inProgress(response);
  send(res, 'response.created', { response: started });
  send(res, 'response.in_progress', { response: started });
  send(res, 'response.output_item.added', { output_index: 0, item: { ...message, status: 'in_progress', content: [] } });
  send(res, 'response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
  // With logprobs included, each delta carries its token's entry, and the done event them all, in
  // the events' shape: the SDK types theirs without `bytes`.
  const entries = part.logprobs.map(eventLogprob);
  const complete = await paceDeltas<[string, number]>(res, {
    ...options,
    pieces: tokenPieces(text).map((piece, i): [string, number] => [piece, i]),
    outputTokens: response.usage.output_tokens,
    writeDelta: (out, [delta, i]) => send(out, 'response.output_text.delta', { ...at, delta, logprobs: entries.slice(i, i + 1) }),
    writeMalformed: (out) =>
      out.write(`event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":${sequence},"item_id":"${message.id}","output_index":0,"content_index":0,"delta":\n\n`),
    writeOverloaded: (out) => send(out, 'error', overloadedError),
  });
  if (!complete) return;

  const done = finishedAt(response, options.now());
  send(res, 'response.output_text.done', { ...at, text, logprobs: entries });
  send(res, 'response.content_part.done', { ...at, part });
  send(res, 'response.output_item.done', { output_index: 0, item: message });
  send(res, done.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: done });
}

type Send = (out: ServerResponse, type: string, fields: object) => void;

/** A token's logprob entry as the delta and done events carry it: the output text's without `bytes`. */
function eventLogprob(entry: TokenLogprob) {
  return { token: entry.token, logprob: entry.logprob, top_logprobs: entry.top_logprobs.map(({ token, logprob }) => ({ token, logprob })) };
}

/** The Responses API's `error` event for an overload mid-call. */
const overloadedError = { code: 'server_is_overloaded', message: OVERLOADED_MESSAGE, param: null };

async function streamFunctionCall(res: ServerResponse, response: OpenAIResponse, call: FunctionCallItem, options: ResponseStreamOptions, send: Send): Promise<void> {
  const at = { item_id: call.id, output_index: 0 };
  const started = inProgress(response);
  send(res, 'response.created', { response: started });
  send(res, 'response.in_progress', { response: started });
  send(res, 'response.output_item.added', { output_index: 0, item: { ...call, status: 'in_progress', arguments: '' } });
  const complete = await paceDeltas(res, {
    ...options,
    pieces: tokenPieces(call.arguments),
    outputTokens: response.usage.output_tokens,
    writeDelta: (out, delta) => send(out, 'response.function_call_arguments.delta', { ...at, delta }),
    writeMalformed: (out) => out.write(`event: response.function_call_arguments.delta\ndata: {"type":"response.function_call_arguments.delta","item_id":"${call.id}","output_index":0,"delta":\n\n`),
    writeOverloaded: (out) => send(out, 'error', overloadedError),
  });
  if (!complete) return;
  send(res, 'response.function_call_arguments.done', { ...at, arguments: call.arguments });
  send(res, 'response.output_item.done', { output_index: 0, item: call });
  send(res, 'response.completed', { response: finishedAt(response, options.now()) });
}
