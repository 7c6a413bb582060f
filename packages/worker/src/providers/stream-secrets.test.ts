import { describe, expect, it } from 'vitest';
import { HOLD_FROM, StreamSecrets } from './stream-secrets.js';

const KEY = 'opaque-PROBE-SECRET-a1b2c3d4e5f6';

/** Anthropic's text delta. */
const anthropicDelta = (text: string, index = 0) => ({ type: 'content_block_delta', index, delta: { type: 'text_delta', text } });
/** An OpenAI Chat chunk. */
const openaiChunk = (content: string, index = 0) => ({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index, delta: { content }, finish_reason: null }] });

/** Pushes an event as the worker does: its JSON and itself. */
const push = (guard: StreamSecrets, event: object) => guard.push(JSON.stringify(event), event, true);

/** Runs `pieces` through a guard as a stream's deltas; returns what left, as it left. */
function run(pieces: string[], frame: (text: string) => object = anthropicDelta, end = true) {
  const sent: string[] = [];
  const guard = new StreamSecrets([KEY], (data) => sent.push(data));
  const leftAfter: number[] = [];
  for (const piece of pieces) {
    push(guard, frame(piece));
    leftAfter.push(sent.length);
  }
  if (end) guard.end();
  return { sent, leftAfter };
}

const joined = (sent: string[]) =>
  sent
    .map((d) => JSON.parse(d) as { delta?: { text?: string }; choices?: { delta: { content?: string } }[] })
    .map((e) => e.delta?.text ?? e.choices?.[0]?.delta.content ?? '')
    .join('');

/** `text` in pieces of `n` characters. */
const pieces = (text: string, n: number) => Array.from({ length: Math.ceil(text.length / n) }, (_, i) => text.slice(i * n, (i + 1) * n));

describe('StreamSecrets', () => {
  it('cuts a key echoed three characters per event, letting fewer than HOLD_FROM of its characters through', () => {
    const { sent } = run(pieces(`your key is ${KEY} ok`, 3));
    const text = joined(sent);
    expect(text).not.toContain(KEY.slice(0, HOLD_FROM));
    expect(text).toBe(`your key is ${KEY.slice(0, 3)}[redacted] ok`);
    // Every event still goes, in order: the stream keeps its shape.
    expect(sent).toHaveLength(pieces(`your key is ${KEY} ok`, 3).length);
  });

  it('cuts it across OpenAI chunks and in one delta that holds it whole', () => {
    expect(joined(run(pieces(`a ${KEY} b`, 5), openaiChunk).sent)).toBe(`a ${KEY.slice(0, 3)}[redacted] b`);
    expect(joined(run([`a ${KEY} b`]).sent)).toBe('a [redacted] b');
  });

  it('holds nothing back from ordinary text: each event leaves as it is pushed', () => {
    const text = 'the queue keeps every job until a worker takes it';
    const { sent, leftAfter } = run(pieces(text, 4), anthropicDelta, false);
    expect(leftAfter).toEqual(pieces(text, 4).map((_, i) => i + 1));
    expect(joined(sent)).toBe(text);
  });

  it("lets a false start go untouched once the text stops matching, and only holds from HOLD_FROM characters of a key's start", () => {
    const { sent, leftAfter } = run(['say opaq', 'ue things'], anthropicDelta, false);
    expect(leftAfter).toEqual([0, 2]);
    expect(joined(sent)).toBe('say opaque things');
    expect(run(['say opa', 'que things'], anthropicDelta, false).leftAfter).toEqual([1, 2]);
  });

  it("cuts a key's start a stream ended inside", () => {
    expect(joined(run(['the key: ', KEY.slice(0, 20)]).sent)).toBe('the key: [redacted]');
  });

  it('keeps events without text in their place behind a held one', () => {
    const sent: string[] = [];
    const guard = new StreamSecrets([KEY], (data) => sent.push(data));
    push(guard, anthropicDelta('x opaque'));
    push(guard, { type: 'ping' });
    expect(sent).toEqual([]);
    push(guard, anthropicDelta('-PROBE-SECRET-a1b2c3d4e5f6!'));
    expect(sent.map((d) => (JSON.parse(d) as { type: string }).type)).toEqual(['content_block_delta', 'ping', 'content_block_delta']);
    expect(joined(sent)).toBe('x [redacted]!');
  });

  it('reads interleaved parts of an answer apart: two choices, two content blocks', () => {
    const text = `a ${KEY} b`;
    const parts = pieces(text, 4);
    // Choice 1 says something else between each piece of choice 0's.
    const chunks = parts.flatMap((p) => [openaiChunk(p, 0), openaiChunk('zz', 1)]);
    const sent: string[] = [];
    const guard = new StreamSecrets([KEY], (data) => sent.push(data));
    for (const chunk of chunks) push(guard, chunk);
    guard.end();
    const choice = (i: number) =>
      sent
        .map((d) => JSON.parse(d) as { choices: { index: number; delta: { content: string } }[] })
        .filter((c) => c.choices[0]!.index === i)
        .map((c) => c.choices[0]!.delta.content)
        .join('');
    expect(choice(0)).toBe(`a ${KEY.slice(0, 2)}[redacted] b`);
    expect(choice(1)).toBe('zz'.repeat(parts.length));
    // Anthropic blocks: a thinking block's pieces between a text block's.
    const blocks = pieces(`x ${KEY}`, 3).flatMap((p) => [anthropicDelta(p, 1), { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'hm' } }]);
    const out: string[] = [];
    const g = new StreamSecrets([KEY], (data) => out.push(data));
    for (const b of blocks) push(g, b);
    g.end();
    expect(out.map((d) => JSON.parse(d) as { index: number; delta: { text?: string } }).filter((e) => e.index === 1).map((e) => e.delta.text).join('')).toBe(`x ${KEY.slice(0, 1)}[redacted]`);
  });

  it("cuts it from every Responses delta: a custom tool call's input as well as text", () => {
    const sent: string[] = [];
    const guard = new StreamSecrets([KEY], (data) => sent.push(data));
    for (const p of pieces(`call(${KEY})`, 3)) push(guard, { type: 'response.custom_tool_call_input.delta', output_index: 1, item_id: 'ct_1', delta: p, sequence_number: 3 });
    guard.end();
    expect(sent.map((d) => (JSON.parse(d) as { delta: string }).delta).join('')).toBe(`call(${KEY.slice(0, 1)}[redacted])`);
  });

  it("cuts it from the logprobs that list the answer token by token: each token, its bytes, each rank of its alternatives", () => {
    const bytes = (t: string) => [...Buffer.from(t, 'utf8')];
    const entry = (token: string) => ({ token, logprob: -0.1, bytes: bytes(token), top_logprobs: [{ token, logprob: -0.1, bytes: bytes(token) }, { token: '?', logprob: -4, bytes: [63] }] });
    // OpenAI Chat with logprobs: each chunk's content and, beside it, the same text as tokens (two per chunk here).
    const chunk = (text: string) => ({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: text }, logprobs: { content: pieces(text, 3).map(entry), refusal: null }, finish_reason: null }] });
    const sent: string[] = [];
    const guard = new StreamSecrets([KEY], (data) => sent.push(data));
    for (const p of pieces(`your key is ${KEY} ok`, 6)) push(guard, chunk(p));
    guard.end();
    type Entry = { token: string; bytes: number[]; top_logprobs: { token: string; bytes: number[] }[] };
    const entries = sent.flatMap((d) => (JSON.parse(d) as { choices: { logprobs: { content: Entry[] } }[] }).choices[0]!.logprobs.content);
    // The key starts a chunk here: held from its first six characters, none of it leaves.
    expect(joined(sent)).toBe('your key is [redacted] ok');
    expect(entries.map((e) => e.token).join('')).toBe('your key is [redacted] ok');
    expect(entries.map((e) => e.top_logprobs[0]!.token).join('')).toBe('your key is [redacted] ok');
    expect(entries.map((e) => e.top_logprobs[1]!.token).join('')).toBe('?'.repeat(entries.length));
    for (const e of entries) expect(e.bytes).toEqual(bytes(e.token));
    expect(String.fromCharCode(...entries.flatMap((e) => e.bytes))).not.toContain(KEY.slice(0, HOLD_FROM));
  });
});
