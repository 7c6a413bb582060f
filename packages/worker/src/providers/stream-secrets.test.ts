import { describe, expect, it } from 'vitest';
import { HOLD_FROM, StreamSecrets } from './stream-secrets.js';

const KEY = 'opaque-PROBE-SECRET-a1b2c3d4e5f6';

/** Anthropic's text delta, as the accumulator serializes it. */
const anthropicDelta = (text: string) => JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
/** An OpenAI Chat chunk. */
const openaiChunk = (content: string) => JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] });

/** Runs `pieces` through a guard as a stream's deltas; returns what left, as it left. */
function run(pieces: string[], frame: (text: string) => string = anthropicDelta, end = true) {
  const sent: string[] = [];
  const guard = new StreamSecrets([KEY], (data) => sent.push(data));
  const leftAfter: number[] = [];
  let text = '';
  for (const piece of pieces) {
    text += piece;
    guard.push(frame(piece), text, piece.length > 0);
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
    guard.push(anthropicDelta('x opaque'), 'x opaque', true);
    guard.push('{"type":"ping"}', 'x opaque', false);
    expect(sent).toEqual([]);
    guard.push(anthropicDelta('-PROBE-SECRET-a1b2c3d4e5f6!'), `x ${KEY}!`, true);
    expect(sent.map((d) => (JSON.parse(d) as { type: string }).type)).toEqual(['content_block_delta', 'ping', 'content_block_delta']);
    expect(joined(sent)).toBe('x [redacted]!');
  });
});
