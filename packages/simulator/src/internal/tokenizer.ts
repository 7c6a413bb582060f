// The simulator counts with its own tokenizer, cl100k_base, on purpose: the worker estimates with
// o200k, so the two disagree a little, as a client's estimate and a real provider's count do.

import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';

let encoder: Tiktoken | undefined;

// Built lazily: loading the ranks takes ~0.5 s, which a process that never counts should not pay.
function tokenizer(): Tiktoken {
  encoder ??= new Tiktoken(cl100kBase);
  return encoder;
}

/**
 * BPE takes time quadratic in one pre-token piece (a whole run of letters, punctuation or
 * whitespace): js-tiktoken spent minutes on 60 KB of one word, answering nothing meanwhile. Such
 * runs are encoded in slices, as the worker's estimate counts them (token-count.ts in
 * @headroom/queue), a token or two more a slice than whole; ordinary text encodes as before.
 */
const LONG_PIECE = 128;
const LONG_PIECES = new RegExp(`[\\p{L}\\p{M}]{${LONG_PIECE + 1},}|[^\\s\\p{L}\\p{N}]{${LONG_PIECE + 1},}|\\s{${LONG_PIECE + 1},}`, 'gu');

function encode(text: string): number[] {
  const parts: number[][] = [];
  let from = 0;
  for (const match of text.matchAll(LONG_PIECES)) {
    parts.push(tokenizer().encode(text.slice(from, match.index)));
    for (let at = 0; at < match[0].length; at += LONG_PIECE) parts.push(tokenizer().encode(match[0].slice(at, at + LONG_PIECE)));
    from = match.index + match[0].length;
  }
  if (from === 0) return tokenizer().encode(text);
  parts.push(tokenizer().encode(text.slice(from)));
  return parts.flat();
}

export function countTokens(text: string): number {
  return text.length === 0 ? 0 : encode(text).length;
}

/** The first `max` tokens of `text`, and how many tokens that is. */
export function clipToTokens(text: string, max: number): { text: string; tokens: number } {
  const ids = encode(text);
  if (ids.length <= max) return { text, tokens: ids.length };
  return { text: tokenizer().decode(ids.slice(0, max)), tokens: max };
}

/** Warms the tokenizer so the first request does not pay for loading it. */
export function loadTokenizer(): void {
  tokenizer();
}

/**
 * `text` as a model emits it, one piece per token, joining back to `text`. A token can hold part
 * of a multi-byte character, which decodes alone as garbage; such text is split at spaces instead.
 */
export function tokenPieces(text: string): string[] {
  if (text === '') return [];
  const pieces = encode(text).map((id) => tokenizer().decode([id]));
  return pieces.join('') === text ? pieces : text.split(/(?<= )/);
}
