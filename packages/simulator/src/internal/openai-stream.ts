// A chat completion as `chat.completion.chunk` server-sent events: a first chunk with the role,
// one content delta per output token paced over time, a chunk with the finish_reason, and with
// `stream_options.include_usage` a last chunk with `choices: []` and the usage (every chunk before
// it then carries `usage: null`, as OpenAI documents), then `data: [DONE]`. With `n`, each chunk
// carries one choice, named by its `index`: the choices' roles first, then their tokens in turn,
// then their finish_reasons, so a client must put each choice together by its index. A choice that
// calls tools opens with its first call's id and name, and its tokens are pieces of the arguments;
// each further (parallel) call opens with a chunk of its own `index`, id and name. A spoken answer
// (audio output) sends, per token, a chunk with its piece of `audio.transcript` and one with its
// `audio.data` (the first of these with the audio's `id`), and ends with a chunk holding only
// `audio.expires_at`: that chunk ends the choice, with no finish_reason chunk after it for a
// natural stop (as the API does, and as the openai SDK's stream helper reads it).

import type { ServerResponse } from 'node:http';
import type { ChatCompletion } from './openai-request.js';
import { paceDeltas, type StreamPacing } from './paced-stream.js';
import { tokenPieces } from './tokenizer.js';
import { OVERLOADED_MESSAGE } from './openai-faults.js';
import { spokenPieces } from './openai-audio.js';

export interface CompletionStreamOptions extends StreamPacing {
  includeUsage: boolean;
}

export async function streamCompletion(res: ServerResponse, completion: ChatCompletion, options: CompletionStreamOptions): Promise<void> {
  const base = {
    id: completion.id,
    object: 'chat.completion.chunk',
    created: completion.created,
    model: completion.model,
    service_tier: completion.service_tier,
    system_fingerprint: completion.system_fingerprint,
  };
  const send = (out: ServerResponse, choices: unknown[], usage: unknown = null) => {
    if (!out.destroyed) out.write(`data: ${JSON.stringify({ ...base, choices, ...(options.includeUsage ? { usage } : {}) })}\n\n`);
  };
  const delta = (index: number, content: object, finish: string | null = null, logprobs: object | null = null) => [{ index, delta: content, logprobs, finish_reason: finish }];
  // With logprobs, each content chunk carries its token's entry: the choice's entries in order.
  const logprobsOf = completion.choices.map((c) => c.logprobs?.content ?? null);
  const tokenAt = completion.choices.map(() => 0);
  const entryFor = (index: number) => {
    const entries = logprobsOf[index];
    if (!entries) return null;
    const entry = entries[tokenAt[index] ?? 0];
    tokenAt[index] = (tokenAt[index] ?? 0) + 1;
    return { content: entry ? [entry] : [], refusal: null };
  };

  const callsOf = (index: number) => completion.choices[index]?.message.tool_calls;
  const opening = (at: number, call: NonNullable<ReturnType<typeof callsOf>>[number]) => ({ tool_calls: [{ index: at, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] });
  for (const choice of completion.choices) {
    const first = callsOf(choice.index)?.[0];
    send(res, delta(choice.index, { role: 'assistant', content: first || choice.message.audio ? null : '', refusal: null, ...(first ? opening(0, first) : {}) }));
  }
  const spoken = completion.choices.map((c) => (c.message.audio ? spokenPieces(c.message.audio) : undefined));
  const audioIdSent = completion.choices.map(() => false);
  // Each choice's pieces with the call they belong to (-1: text), and the call each has open.
  const open = completion.choices.map(() => 0);
  const complete = await paceDeltas(res, {
    pieces: interleaved(
      completion.choices.map((c) =>
        c.message.tool_calls
          ? c.message.tool_calls.flatMap((call, at) => tokenPieces(call.function.arguments).map((piece): [number, string] => [at, piece]))
          : spoken[c.index]
            ? spoken[c.index]!.map((_, at): [number, string] => [SPOKEN, String(at)])
            : tokenPieces(c.message.content ?? '').map((piece): [number, string] => [TEXT, piece]),
      ),
    ),
    outputTokens: completion.usage.completion_tokens,
    latencyMs: options.latencyMs,
    tokenMs: options.tokenMs,
    writeDelta: (out, [index, [at, piece]]) => {
      if (at === TEXT) return send(out, delta(index, { content: piece }, null, entryFor(index)));
      if (at === SPOKEN) {
        const sound = spoken[index]?.[Number(piece)];
        const audio = completion.choices[index]?.message.audio;
        if (!sound || !audio) return;
        send(out, delta(index, { audio: { transcript: sound.transcript } }));
        send(out, delta(index, { audio: { ...(audioIdSent[index] ? {} : { id: audio.id }), data: sound.data } }));
        audioIdSent[index] = true;
        return;
      }
      const call = callsOf(index)?.[at];
      if (at !== open[index] && call) {
        open[index] = at;
        send(out, delta(index, opening(at, call)));
      }
      send(out, delta(index, { tool_calls: [{ index: at, function: { arguments: piece } }] }));
    },
    writeMalformed: (out) => out.write(`data: {"id":"${completion.id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":\n\n`),
    // OpenAI's error object, as its 503 carries it, in a chunk of its own.
    writeOverloaded: (out) => out.write(`data: ${JSON.stringify({ error: { message: OVERLOADED_MESSAGE, type: 'server_error', param: null, code: 'server_is_overloaded' } })}\n\n`),
    fault: options.fault,
    progress: options.progress,
    settle: options.settle,
  });
  if (!complete) return;

  for (const choice of completion.choices) {
    const audio = choice.message.audio;
    if (audio) send(res, delta(choice.index, { audio: { expires_at: audio.expires_at } }));
    if (!audio || choice.finish_reason !== 'stop') send(res, delta(choice.index, {}, choice.finish_reason));
  }
  if (options.includeUsage) send(res, [], completion.usage);
  if (!res.destroyed) res.write('data: [DONE]\n\n');
}

/** A piece's call index when it is no tool call's: a piece of text, or a spoken token (its number). */
const TEXT = -1;
const SPOKEN = -2;

/** Each choice's pieces as `[index, piece]`, in turn: every choice's first token, then their second, ... */
function interleaved<T>(choices: readonly T[][]): [number, T][] {
  const out: [number, T][] = [];
  const longest = Math.max(0, ...choices.map((pieces) => pieces.length));
  for (let at = 0; at < longest; at++) {
    for (const [index, pieces] of choices.entries()) if (at < pieces.length) out.push([index, pieces[at]!]);
  }
  return out;
}
