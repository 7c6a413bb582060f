import { describe, expect, it } from 'vitest';
import { clipToTokens, countTokens, tokenPieces } from './tokenizer.js';

describe('the simulator tokenizer on long runs', () => {
  it('counts, clips and splits a 64 KiB prompt of one word (a DNA string) rather than hanging on it for minutes', () => {
    const dna = 'ACGT'.repeat(16_384);
    const perRepeat = countTokens('ACGT'.repeat(64)) / 64;
    expect(countTokens(dna)).toBe(perRepeat * 16_384);
    const clipped = clipToTokens(dna, 10);
    expect(clipped.tokens).toBe(10);
    expect(dna.startsWith(clipped.text)).toBe(true);
    expect(tokenPieces(dna.slice(0, 1_000)).join('')).toBe(dna.slice(0, 1_000));
  });

  it('encodes ordinary text as the tokenizer does, unsliced', () => {
    const text = 'the queue keeps every job until a worker takes it '.repeat(100);
    expect(tokenPieces(text).join('')).toBe(text);
    expect(countTokens(text)).toBe(tokenPieces(text).length);
  });
});
