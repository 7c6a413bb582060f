// Structured outputs: a request that asks for JSON (Chat `response_format` `json_schema` or
// `json_object`, Responses `text.format` of those types) is answered with JSON text, as the model
// is constrained to write it: for a schema, a value that conforms to it; for `json_object`, an
// object holding the prose answer. The text is counted, clipped to the output ceiling and streamed
// like any answer (a JSON answer cut by the ceiling is broken JSON with finish_reason `length`, as
// the real API's is), and it is as deterministic as the prose one: drawn from the request's hash.

import { type Answer, generateAnswer, prng } from './answer.js';
import { sampleJson } from './json-sample.js';
import type { Range } from './options.js';
import { clipToTokens } from './tokenizer.js';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** What JSON a request asks for: a schema's value, or any object. */
export type JsonFormat = { kind: 'schema'; schema: unknown } | { kind: 'object' };

/** Chat Completions: `response_format: { type: 'json_schema', json_schema: { name, schema } }` or `{ type: 'json_object' }`. */
export function chatJsonFormat(params: Record<string, unknown>): JsonFormat | undefined {
  const format = params.response_format;
  if (!isObject(format)) return undefined;
  if (format.type === 'json_object') return { kind: 'object' };
  if (format.type === 'json_schema') return { kind: 'schema', schema: isObject(format.json_schema) ? format.json_schema.schema : undefined };
  return undefined;
}

/** Responses: `text: { format: { type: 'json_schema', name, schema } }` or `{ format: { type: 'json_object' } }`. */
export function responsesJsonFormat(params: Record<string, unknown>): JsonFormat | undefined {
  const format = isObject(params.text) ? params.text.format : undefined;
  if (!isObject(format)) return undefined;
  if (format.type === 'json_object') return { kind: 'object' };
  if (format.type === 'json_schema') return { kind: 'schema', schema: format.schema };
  return undefined;
}

/**
 * The answer to a request for JSON (`hash`: the request's). A schema with nothing to go by (none
 * given) gets an empty object, which any object schema without required properties accepts.
 */
export function jsonAnswer(format: JsonFormat, hash: string, maxTokens: number, length: Range): Answer {
  const value = format.kind === 'schema' ? (sampleJson(format.schema, prng(Number.parseInt(hash.slice(16, 24), 16))) ?? {}) : { answer: generateAnswer(hash, Number.POSITIVE_INFINITY, length).text };
  const text = JSON.stringify(value);
  const clipped = clipToTokens(text, maxTokens);
  return { text: clipped.text, outputTokens: clipped.tokens, clipped: clipped.text !== text };
}
