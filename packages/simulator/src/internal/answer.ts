// Deterministic answers: the same request always gets the same text and the same length, so tests
// (and coalescing) can compare results across calls, retries and the batch APIs.

import { createHash, randomBytes } from 'node:crypto';
import type { Range } from './options.js';
import { clipToTokens } from './tokenizer.js';

// Fields that change how an answer is delivered, not what it says (`n` adds choices after the
// first, which stays the answer the request gets without it; a stop sequence ends the same text
// early; logprobs annotate the same tokens, and the Responses API's `include` only adds them or
// other annotations to the same answer).
const DELIVERY_FIELDS = new Set(['stream', 'stream_options', 'metadata', 'user', 'service_tier', 'n', 'stop', 'stop_sequences', 'logprobs', 'top_logprobs', 'include']);

/** JSON with sorted keys, so two clients serialising the same request differently hash the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function requestHash(body: Record<string, unknown>): string {
  const content = Object.fromEntries(Object.entries(body).filter(([k]) => !DELIVERY_FIELDS.has(k)));
  return sha256(canonicalJson(content));
}

// mulberry32: tiny, seedable, good enough to pick words.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export const WORDS = (
  'the queue keeps every job until a worker takes it and the bucket says there is room for the call ' +
  'tokens refill at a steady rate so bursts spend the minute while the rate sets throughput ' +
  'priority lanes let urgent work go first background work waits or moves to a batch at half price ' +
  'limits headers retry after seconds model pool cache prefix input output request answer simulated'
).split(' ');

export interface Answer {
  text: string;
  outputTokens: number;
  /** True when `maxTokens` cut the answer short (stop_reason max_tokens / finish_reason length). */
  clipped: boolean;
}

/** Every word above is at least one token, so `target` words always hold `target` tokens. */
export function generateAnswer(hash: string, maxTokens: number, length: Range): Answer {
  const random = prng(Number.parseInt(hash.slice(0, 8), 16));
  const span = Math.floor(length.max) - Math.ceil(length.min) + 1;
  const target = Math.ceil(length.min) + Math.floor(random() * span);
  if (target === 0) return { text: '', outputTokens: 0, clipped: false };
  const words: string[] = [];
  for (let i = 0; i < target; i++) {
    const word = WORDS[Math.floor(random() * WORDS.length)] ?? 'ok';
    const sentenceStart = i % 12 === 0;
    words.push(sentenceStart ? word.charAt(0).toUpperCase() + word.slice(1) : word);
    if (i % 12 === 11 || i === target - 1) words[words.length - 1] += '.';
  }
  const answer = clipToTokens(words.join(' '), Math.min(target, maxTokens));
  return { text: answer.text, outputTokens: answer.tokens, clipped: target > maxTokens };
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A random id in the providers' style: `msg_01` + base62, `chatcmpl-` + base62, ... */
export function newId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let out = prefix;
  for (const byte of bytes) out += BASE62[byte % 62];
  return out;
}
