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

export function countTokens(text: string): number {
  return text.length === 0 ? 0 : tokenizer().encode(text).length;
}

/** The first `max` tokens of `text`, and how many tokens that is. */
export function clipToTokens(text: string, max: number): { text: string; tokens: number } {
  const ids = tokenizer().encode(text);
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
  const pieces = tokenizer()
    .encode(text)
    .map((id) => tokenizer().decode([id]));
  return pieces.join('') === text ? pieces : text.split(/(?<= )/);
}
