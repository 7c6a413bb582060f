/**
 * Bad input through `headroom gateway` (the CLI process): every case gets its provider's error
 * shape with a status the SDKs do not retry, a message naming what is wrong, and nothing is
 * enqueued. The gateway never crashes: a good call still goes through at the end.
 */
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetKeys, loadConfig, publishFleetSettings } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { loggedLine, spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const KEY = 'hr-gw-bad-input-key-0123456789';
const PREFIX = 'gwbad';
const SONNET = 'claude-sonnet-4-6';
const GPT = 'gpt-4.1';

let redis: EmbeddedRedis;
let admin: Redis;
let gateway: FleetProcess;
let base: string;
let port: number;
let configFile: string;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  // Redis is stopped by the last test: the test's own connection reconnects quietly.
  admin.on('error', () => {});
  port = await freePort();
  configFile = writeConfig({
    redis: { prefix: PREFIX },
    models: { [SONNET]: { provider: 'anthropic' }, [GPT]: { provider: 'openai' } },
    gateway: {
      host: '127.0.0.1',
      keys: { app: { keyEnv: 'BAD_INPUT_GATEWAY_KEY' } },
      maxBodyBytes: 64 * 1024,
      maxHeaderBytes: 8 * 1024,
      bodyTimeoutMs: 500,
      // Far below Node's own 30 s sweep of slow heads, which this limit used to wait for.
      headersTimeoutMs: 2_000,
    },
  });
  gateway = spawnHeadroom(['gateway', '--config', configFile, '--redis', redis.url, '--port', String(port)], { BAD_INPUT_GATEWAY_KEY: KEY, HEADROOM_LOG_LEVEL: 'info' });
  base = `http://127.0.0.1:${port}`;
  await loggedLine(gateway, '"msg":"gateway started"');
});
afterAll(async () => {
  if (gateway) await stopAll([gateway]);
  admin?.disconnect();
  await redis?.stop();
});

const ANTHROPIC = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': KEY };
const OPENAI = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` };
const message = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...extra });
/** A count_tokens body: a Messages body without max_tokens. */
const countBody = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: SONNET, messages: [{ role: 'user', content: 'hi' }], ...extra });
const chat = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...extra });

/** An object nested `levels` deep: `{ a: { a: ... {} } }`. */
function nested(levels: number): object {
  let v: object = {};
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

interface Case {
  name: string;
  /** A fetch request, or raw bytes for what fetch refuses to send. */
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | (() => ReadableStream<Uint8Array>);
  raw?: string;
  status: number;
  says: string | RegExp;
  provider: 'anthropic' | 'openai';
  /** OpenAI's `code`, where the case pins it. */
  code?: string | null;
  /** OpenAI's `param`, where the case pins it: a body field as OpenAI writes it, null for a header. */
  param?: string | null;
  /** The SDKs retry it (a request that was slow to come may come in time): a 408 by its status, else told so (`x-should-retry: true`). */
  retried?: boolean;
}

const CASES: Case[] = [
  { name: 'bad JSON (Anthropic)', headers: ANTHROPIC, body: '{"model": ', status: 400, says: 'the request body is not valid JSON', provider: 'anthropic' },
  { name: 'bad JSON (OpenAI)', path: '/v1/chat/completions', headers: OPENAI, body: '{"model": gpt}', status: 400, says: 'not valid JSON', provider: 'openai' },
  { name: 'unsupported content-encoding', headers: { ...ANTHROPIC, 'content-encoding': 'zstd' }, body: message(), status: 400, says: 'content-encoding: "zstd" is not supported', provider: 'anthropic' },
  { name: 'content-encoding gzip on a body that is not gzip', headers: { ...ANTHROPIC, 'content-encoding': 'gzip' }, body: message(), status: 400, says: 'the request body is not valid gzip (content-encoding)', provider: 'anthropic' },
  { name: 'gzip body inflating past the limit', headers: { ...ANTHROPIC, 'content-encoding': 'gzip' }, body: new Blob([gzipSync(Buffer.alloc(1024 * 1024, 0x20))]) as unknown as string, status: 413, says: 'the inflated request body is 65537 bytes or more', provider: 'anthropic' },
  { name: 'wrong content type', headers: { ...ANTHROPIC, 'content-type': 'text/plain' }, body: message(), status: 400, says: 'content-type: expected application/json, got "text/plain"', provider: 'anthropic' },
  { name: 'no content type', headers: { 'anthropic-version': '2023-06-01', 'x-api-key': KEY }, body: new Blob([message()]) as unknown as string, status: 400, says: 'content-type: expected application/json', provider: 'anthropic' },
  { name: 'oversized body', headers: ANTHROPIC, body: message({ system: 'x'.repeat(70_000) }), status: 413, says: "over the gateway's limit of 65536 bytes", provider: 'anthropic' },
  {
    name: 'oversized chunked body (no content-length)',
    headers: ANTHROPIC,
    body: () => new ReadableStream({ start(c) { for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode('x'.repeat(8_192))); c.close(); } }),
    status: 413,
    says: "over the gateway's limit",
    provider: 'anthropic',
  },
  { name: 'empty body', headers: ANTHROPIC, body: '', status: 400, says: 'the request body is empty', provider: 'anthropic' },
  { name: 'a JSON array for a body', headers: ANTHROPIC, body: '[1,2]', status: 400, says: 'must be a JSON object, got an array', provider: 'anthropic' },
  { name: 'null for a body', headers: ANTHROPIC, body: 'null', status: 400, says: 'must be a JSON object, got null', provider: 'anthropic' },
  // Decoded as it came, its bad bytes read U+FFFD: the prompt went to the provider silently changed.
  { name: 'a body that is not UTF-8', headers: ANTHROPIC, body: new Blob([Buffer.concat([Buffer.from('{"model":"x","messages":[{"role":"user","content":"hi '), Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')])]) as unknown as string, status: 400, says: 'the request body is not valid UTF-8 (at byte 54)', provider: 'anthropic' },
  // Both providers refuse the whole request for one (Anthropic: "no low surrogate in string"), after it was queued and its quota drawn.
  { name: 'a lone surrogate in a prompt', headers: ANTHROPIC, body: message({ messages: [{ role: 'user', content: 'hi \ud800 there' }] }), status: 400, says: 'messages.0.content: this text holds a lone surrogate (\\ud800 at character 3)', provider: 'anthropic' },
  { name: 'a lone surrogate in a prompt (OpenAI)', path: '/v1/chat/completions', headers: OPENAI, body: chat({ messages: [{ role: 'user', content: 'cut \ud83d' }] }), status: 400, says: 'messages.0.content: this text holds a lone surrogate (\\ud83d at character 4)', provider: 'openai', param: 'messages[0].content' },
  { name: 'count_tokens with a lone surrogate', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ system: 'x\udc00' }), status: 400, says: 'system: this text holds a lone surrogate', provider: 'anthropic' },
  // Validation, the token estimate and JSON.stringify recurse: thousands deep overflowed the stack (a 500).
  { name: 'a tool schema nested 200 deep', headers: ANTHROPIC, body: message({ tools: [{ name: 't', input_schema: { type: 'object', properties: nested(200) } }] }), status: 400, says: 'tools.0.input_schema.properties.a.a.a.a...: nests deeper than 128 levels', provider: 'anthropic' },
  { name: 'a response schema nested 200 deep (OpenAI)', path: '/v1/chat/completions', headers: OPENAI, body: chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: nested(200) } } }), status: 400, says: 'response_format.json_schema.schema.a.a.a.a.a...: nests deeper than 128 levels', provider: 'openai' },
  { name: 'count_tokens nested 200 deep', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: message({ metadata: nested(200) }), status: 400, says: 'metadata.a.a.a.a.a.a.a...: nests deeper than 128 levels', provider: 'anthropic' },
  { name: 'missing key', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: message(), status: 401, says: 'no API key', provider: 'anthropic' },
  { name: 'wrong key', headers: { ...ANTHROPIC, 'x-api-key': 'hr-gw-not-a-key-000000000000' }, body: message(), status: 401, says: 'invalid API key', provider: 'anthropic' },
  // Node keeps the first of two credentials: the valid key beside a wrong one passed, and the client was never told.
  { name: 'a valid key beside a wrong one', headers: { ...ANTHROPIC, authorization: 'Bearer hr-gw-not-a-key-000000000000' }, body: message(), status: 401, says: 'conflicting credentials: x-api-key and Authorization: Bearer hold different keys; send one key', provider: 'anthropic' },
  { name: 'wrong bearer key (OpenAI)', path: '/v1/chat/completions', headers: { ...OPENAI, authorization: 'Bearer sk-someone-elses-key-000000' }, body: chat(), status: 401, says: 'invalid API key', provider: 'openai' },
  { name: 'missing anthropic-version', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: message(), status: 400, says: 'anthropic-version: header is required', provider: 'anthropic' },
  { name: 'unknown priority', headers: { ...ANTHROPIC, 'headroom-priority': 'urgent' }, body: message(), status: 400, says: 'headroom-priority: expected critical, high, normal or low, got "urgent"', provider: 'anthropic' },
  { name: 'misspelt headroom header', headers: { ...ANTHROPIC, 'headroom-priorty': 'high' }, body: message(), status: 400, says: 'headroom-priorty: unknown header', provider: 'anthropic' },
  { name: 'bad max wait', headers: { ...ANTHROPIC, 'headroom-max-wait-ms': '-5' }, body: message(), status: 400, says: 'headroom-max-wait-ms: expected a whole number of milliseconds', provider: 'anthropic' },
  { name: 'tenant with spaces', headers: { ...ANTHROPIC, 'headroom-tenant': 'acme corp' }, body: message(), status: 400, says: 'headroom-tenant: expected 1-128 characters', provider: 'anthropic' },
  { name: 'coalesce not a boolean', headers: { ...ANTHROPIC, 'headroom-coalesce': 'maybe' }, body: message(), status: 400, says: 'headroom-coalesce: expected true or false', provider: 'anthropic' },
  { name: 'unknown sla', headers: { ...ANTHROPIC, 'headroom-sla': 'tomorrow' }, body: message(), status: 400, says: 'headroom-sla: expected interactive or none', provider: 'anthropic' },
  { name: 'fallback model nobody serves', headers: { ...ANTHROPIC, 'headroom-fallback': 'claude-nope-9' }, body: message(), status: 400, says: 'headroom-fallback: not anthropic models this gateway serves: claude-nope-9', provider: 'anthropic' },
  { name: 'empty idempotency key', headers: { ...ANTHROPIC, 'headroom-idempotency-key': '' }, body: message(), status: 400, says: 'headroom-idempotency-key: expected 1-256 characters', provider: 'anthropic' },
  { name: 'a control character in a header', headers: { ...ANTHROPIC, 'headroom-tenant': 'acme\tcorp' }, body: message(), status: 400, says: 'headroom-tenant: holds a control character', provider: 'anthropic' },
  { name: 'unknown model', headers: ANTHROPIC, body: message({ model: 'claude-nope-9' }), status: 404, says: 'model: claude-nope-9 is not served by this gateway', provider: 'anthropic' },
  { name: 'an OpenAI model on the Anthropic API', headers: ANTHROPIC, body: message({ model: GPT }), status: 404, says: `model: ${GPT} is not served`, provider: 'anthropic' },
  // OpenAI names no param for a model it does not have.
  { name: 'OpenAI unknown model', path: '/v1/chat/completions', headers: OPENAI, body: chat({ model: 'gpt-nope-9' }), status: 404, says: 'model: gpt-nope-9 is not served', provider: 'openai', param: null, code: 'model_not_found' },
  { name: 'a beta name with spaces', headers: { ...ANTHROPIC, 'anthropic-beta': 'context 1m' }, body: message(), status: 400, says: 'anthropic-beta (0): expected a beta name', provider: 'anthropic' },
  { name: 'betas with sla none', headers: { ...ANTHROPIC, 'anthropic-beta': 'context-1m-2025-08-07', 'headroom-sla': 'none' }, body: message(), status: 400, says: 'anthropic-beta: betas go with interactive calls only', provider: 'anthropic' },
  { name: 'streaming with sla none', headers: { ...ANTHROPIC, 'headroom-sla': 'none' }, body: message({ stream: true }), status: 400, says: 'stream: a streamed job must be interactive', provider: 'anthropic' },
  { name: 'a max wait with sla none', headers: { ...ANTHROPIC, 'headroom-sla': 'none', 'headroom-max-wait-ms': '3000' }, body: message(), status: 400, says: 'headroom-max-wait-ms: cannot be combined with headroom-sla: none', provider: 'anthropic' },
  { name: 'missing messages', headers: ANTHROPIC, body: JSON.stringify({ model: SONNET, max_tokens: 16 }), status: 400, says: 'messages: expected an array of messages', provider: 'anthropic' },
  { name: 'max_tokens 0', headers: ANTHROPIC, body: message({ max_tokens: 0 }), status: 400, says: 'max_tokens: expected a positive integer, got 0', provider: 'anthropic' },
  { name: 'system role inside Anthropic messages', headers: ANTHROPIC, body: message({ messages: [{ role: 'system', content: 'x' }] }), status: 400, says: 'messages.0.role: expected "user" or "assistant"', provider: 'anthropic' },
  // A rule across fields: OpenAI's own 400 for it names the param with code null.
  { name: 'OpenAI stream_options without stream', path: '/v1/chat/completions', headers: OPENAI, body: chat({ stream_options: { include_usage: true } }), status: 400, says: 'stream_options: stream_options is only allowed with "stream": true', provider: 'openai', param: 'stream_options', code: null },
  { name: 'OpenAI max_tokens and max_completion_tokens', path: '/v1/chat/completions', headers: OPENAI, body: chat({ max_tokens: 16 }), status: 400, says: "max_tokens: setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported: set only one", provider: 'openai', param: 'max_tokens', code: 'invalid_parameter_combination' },
  // OpenAI: "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."
  { name: 'OpenAI temperature 3', path: '/v1/chat/completions', headers: OPENAI, body: chat({ temperature: 3 }), status: 400, says: 'temperature: expected at most 2, got 3', provider: 'openai', param: 'temperature', code: 'decimal_above_max_value' },
  { name: 'OpenAI temperature -1', path: '/v1/chat/completions', headers: OPENAI, body: chat({ temperature: -1 }), status: 400, says: 'temperature: expected at least 0, got -1', provider: 'openai', param: 'temperature', code: 'decimal_below_min_value' },
  { name: 'OpenAI top_p 2 (Responses)', path: '/v1/responses', headers: OPENAI, body: JSON.stringify({ model: GPT, input: 'hi', top_p: 2 }), status: 400, says: 'top_p: expected at most 1, got 2', provider: 'openai', param: 'top_p', code: 'decimal_above_max_value' },
  { name: 'OpenAI messages []', path: '/v1/chat/completions', headers: OPENAI, body: chat({ messages: [] }), status: 400, says: 'messages: must not be empty', provider: 'openai', param: 'messages', code: 'empty_array' },
  { name: 'OpenAI content a number', path: '/v1/chat/completions', headers: OPENAI, body: chat({ messages: [{ role: 'user', content: 7 }] }), status: 400, says: 'messages.0.content: expected a string or an array of content parts, got 7', provider: 'openai', param: 'messages[0].content', code: 'invalid_type' },
  // Union-typed fields name what they take (each read zod's bare "Invalid input", or only its first type).
  { name: "a tool_result's content a number", headers: ANTHROPIC, body: message({ messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 5 }] }] }), status: 400, says: 'messages.0.content.0.content: expected a string or an array of content blocks, got 5', provider: 'anthropic' },
  { name: "a tool_result's content block a number", headers: ANTHROPIC, body: message({ messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [5] }] }] }), status: 400, says: 'messages.0.content.0.content.0: expected an object, got 5', provider: 'anthropic' },
  { name: 'a text block with a number for text', headers: ANTHROPIC, body: message({ messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] }), status: 400, says: 'messages.0.content.0.text: expected a string, got 5', provider: 'anthropic' },
  { name: 'system a number', headers: ANTHROPIC, body: message({ system: 5 }), status: 400, says: 'system: expected a string or an array of text blocks, got 5', provider: 'anthropic' },
  // OpenAI's param and code, as OpenAI gives them: the path in its own notation, the kind of problem.
  { name: 'OpenAI unknown role', path: '/v1/chat/completions', headers: OPENAI, body: chat({ messages: [{ role: 'bot', content: 'x' }] }), status: 400, says: 'messages.0.role: expected role', provider: 'openai', param: 'messages[0].role', code: 'invalid_value' },
  { name: 'OpenAI temperature as a string', path: '/v1/chat/completions', headers: OPENAI, body: chat({ temperature: 'hot' }), status: 400, says: 'temperature:', provider: 'openai', param: 'temperature', code: 'invalid_type' },
  // OpenAI's bound on n: "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 130 instead."
  { name: 'OpenAI n of 129', path: '/v1/chat/completions', headers: OPENAI, body: chat({ n: 129 }), status: 400, says: 'n: expected at most 128, got 129', provider: 'openai', param: 'n', code: 'integer_above_max_value' },
  // OpenAI's Chat answer to a call without a model: its own words, no param, no code.
  { name: 'OpenAI Chat without a model', path: '/v1/chat/completions', headers: OPENAI, body: chat({ model: undefined }), status: 400, says: 'you must provide a model parameter', provider: 'openai', param: null, code: null },
  { name: 'OpenAI Chat with a model that is not a string', path: '/v1/chat/completions', headers: OPENAI, body: chat({ model: 5 }), status: 400, says: 'you must provide a model parameter', provider: 'openai', param: null, code: null },
  // The Responses API's own answer to it names the param: "Missing required parameter: 'model'."
  { name: 'OpenAI Responses without a model', path: '/v1/responses', headers: OPENAI, body: JSON.stringify({ input: 'hi' }), status: 400, says: 'model: expected a string, got nothing', provider: 'openai', param: 'model', code: 'missing_required_parameter' },
  { name: 'OpenAI n of 0', path: '/v1/chat/completions', headers: OPENAI, body: chat({ n: 0 }), status: 400, says: 'n: expected a positive integer, got 0', provider: 'openai', param: 'n', code: 'integer_below_min_value' },
  { name: 'OpenAI max_output_tokens of 0 (Responses)', path: '/v1/responses', headers: OPENAI, body: JSON.stringify({ model: GPT, input: 'hi', max_output_tokens: 0 }), status: 400, says: 'max_output_tokens: expected a positive integer, got 0', provider: 'openai', param: 'max_output_tokens', code: 'integer_below_min_value' },
  // A header is no body field: OpenAI's param is null for it.
  { name: 'OpenAI without a content type', path: '/v1/chat/completions', headers: { authorization: `Bearer ${KEY}` }, body: new Blob([chat()]) as unknown as string, status: 400, says: 'content-type: expected application/json', provider: 'openai', param: null },
  { name: 'OpenAI unknown priority', path: '/v1/chat/completions', headers: { ...OPENAI, 'headroom-priority': 'urgent' }, body: chat(), status: 400, says: 'headroom-priority: expected critical', provider: 'openai', param: null },
  // count_tokens refuses what /v1/messages refuses (and Anthropic's count_tokens does).
  { name: 'count_tokens with a system role in messages', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ messages: [{ role: 'system', content: 'x' }] }), status: 400, says: 'messages.0.role: expected "user" or "assistant"', provider: 'anthropic' },
  { name: 'count_tokens with content 5', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ messages: [{ role: 'user', content: 5 }] }), status: 400, says: 'messages.0.content:', provider: 'anthropic' },
  { name: 'count_tokens with a message without content', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ messages: [{ role: 'user' }] }), status: 400, says: 'messages.0.content:', provider: 'anthropic' },
  { name: 'count_tokens with tools "nope"', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ tools: 'nope' }), status: 400, says: 'tools: expected an array of tools', provider: 'anthropic' },
  { name: 'count_tokens with system 5', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ system: 5 }), status: 400, says: 'system:', provider: 'anthropic' },
  { name: 'count_tokens with an empty message before the last', path: '/v1/messages/count_tokens', headers: ANTHROPIC, body: countBody({ messages: [{ role: 'assistant', content: '' }, { role: 'user', content: 'hi' }] }), status: 400, says: 'messages.0.content: must not be empty', provider: 'anthropic' },
  { name: 'tools "nope" (Anthropic)', headers: ANTHROPIC, body: message({ tools: 'nope' }), status: 400, says: 'tools: expected an array of tools', provider: 'anthropic' },
  { name: 'unknown path', path: '/v1/complete', headers: ANTHROPIC, body: message(), status: 404, says: 'no such endpoint', provider: 'anthropic' },
  // OpenAI's own answer to an endpoint it lacks: no code (it is not a model that is missing).
  { name: 'an OpenAI endpoint the gateway lacks', path: '/v1/embeddings', headers: OPENAI, body: chat(), status: 404, says: 'POST /v1/embeddings: no such endpoint', provider: 'openai', code: null },
  { name: 'a model id that is not valid percent-encoding', method: 'GET', path: '/v1/models/%E0%A4%A', headers: { 'anthropic-version': '2023-06-01', 'x-api-key': KEY }, status: 404, says: 'model: %E0%A4%A', provider: 'anthropic' },
  { name: 'a model list page of 0', method: 'GET', path: '/v1/models?limit=0', headers: { 'anthropic-version': '2023-06-01', 'x-api-key': KEY }, status: 400, says: 'limit: expected an integer from 1 to 1000, got "0"', provider: 'anthropic' },
  { name: 'wrong method', method: 'GET', headers: { 'anthropic-version': '2023-06-01', 'x-api-key': KEY }, status: 405, says: 'method not allowed; use POST', provider: 'anthropic' },
  { name: 'a header with a newline (raw request)', raw: `POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: ${KEY}\r\nheadroom-tenant: acme\nevil: 1\r\ncontent-length: 2\r\n\r\n{}`, status: 400, says: 'malformed HTTP request', provider: 'anthropic' },
  { name: 'a head over the header limit (raw request)', raw: `POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: ${KEY}\r\nx-padding: ${'p'.repeat(10_000)}\r\ncontent-length: 2\r\n\r\n{}`, status: 431, says: 'malformed HTTP request', provider: 'anthropic' },
  // Anthropic's own answer to it (its SDK's BetaRequestBodyTimeoutError); OpenAI's SDK retries a 408.
  {
    name: 'a body that never finishes arriving (raw request)',
    raw: `POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\nx-api-key: ${KEY}\r\ncontent-length: 500\r\n\r\n{"model":`,
    status: 400,
    says: 'did not arrive within 500 ms',
    provider: 'anthropic',
    retried: true,
  },
  {
    name: 'a body that never finishes arriving (raw request, OpenAI)',
    raw: `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer ${KEY}\r\ncontent-length: 500\r\n\r\n{"model":`,
    status: 408,
    says: 'did not arrive within 500 ms',
    provider: 'openai',
    code: 'timeout',
    retried: true,
  },
  // The raw send gives up after 10 s of silence: a 408 only Node's 30 s sweep sends never comes.
  // Its path is not known (Node keeps an unfinished head to itself): one body both SDKs read.
  {
    name: 'a head that never finishes arriving (raw request)',
    raw: `POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n`,
    status: 408,
    says: 'the request head did not arrive in time (within 2000 ms: gateway.headersTimeoutMs)',
    provider: 'anthropic',
    retried: true,
  },
  {
    name: 'a head that never finishes arriving (raw request, OpenAI)',
    raw: `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n`,
    status: 408,
    says: 'the request head did not arrive in time',
    provider: 'openai',
    code: 'timeout',
    param: null,
    retried: true,
  },
];

/**
 * The `headroom-error-code` each case is answered with, where it is not `JOB_INVALID` (every other
 * 400): who refused and why, which the status alone cannot say, even for the raw requests Node's
 * parser refuses before the gateway's handler sees them.
 */
const CODES: Record<string, string | undefined> = {
  'oversized body': 'PAYLOAD_TOO_LARGE',
  'oversized chunked body (no content-length)': 'PAYLOAD_TOO_LARGE',
  'gzip body inflating past the limit': 'PAYLOAD_TOO_LARGE',
  'missing key': 'GATEWAY_KEY_INVALID',
  'wrong key': 'GATEWAY_KEY_INVALID',
  'wrong bearer key (OpenAI)': 'GATEWAY_KEY_INVALID',
  'a valid key beside a wrong one': 'GATEWAY_KEY_INVALID',
  'unknown model': 'UNKNOWN_MODEL',
  'an OpenAI model on the Anthropic API': 'UNKNOWN_MODEL',
  'OpenAI unknown model': 'UNKNOWN_MODEL',
  'unknown path': 'NOT_FOUND',
  'an OpenAI endpoint the gateway lacks': 'NOT_FOUND',
  'a model id that is not valid percent-encoding': 'UNKNOWN_MODEL',
  'wrong method': 'METHOD_NOT_ALLOWED',
  'a body that never finishes arriving (raw request)': 'BODY_TIMEOUT',
  'a body that never finishes arriving (raw request, OpenAI)': 'BODY_TIMEOUT',
  'a header with a newline (raw request)': 'MALFORMED_REQUEST',
  'a head over the header limit (raw request)': 'MALFORMED_REQUEST',
  'a head that never finishes arriving (raw request)': 'HEAD_TIMEOUT',
  'a head that never finishes arriving (raw request, OpenAI)': 'HEAD_TIMEOUT',
};
const codeOf = (c: Case) => (c.name in CODES ? CODES[c.name] : 'JOB_INVALID');

async function send(c: Case): Promise<{ status: number; body: string; code: string | undefined; shouldRetry?: string | undefined; requestId?: string | undefined }> {
  if (c.raw !== undefined) {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(c.raw!));
      let text = '';
      socket.on('data', (d) => { text += d.toString(); });
      socket.on('error', reject);
      socket.on('close', () => {
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
        const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
        const code = /^headroom-error-code: (\S+)\r$/im.exec(head)?.[1];
        const shouldRetry = /^x-should-retry: (\S+)\r$/im.exec(head)?.[1];
        resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4), code, shouldRetry });
      });
      socket.setTimeout(10_000, () => socket.destroy());
    });
  }
  const body = typeof c.body === 'function' ? c.body() : c.body;
  const res = await fetch(`${base}${c.path ?? '/v1/messages'}`, {
    method: c.method ?? 'POST',
    headers: c.headers ?? {},
    ...(body === undefined ? {} : { body, duplex: 'half' }),
  } as RequestInit);
  const requestId = res.headers.get(c.provider === 'anthropic' ? 'request-id' : 'x-request-id') ?? undefined;
  return { status: res.status, body: await res.text(), code: res.headers.get('headroom-error-code') ?? undefined, shouldRetry: res.headers.get('x-should-retry') ?? undefined, requestId };
}

describe('bad input through headroom gateway', () => {
  it.each(CASES)('$name: $status in its provider shape, naming the problem', async (c) => {
    const { status, body, code, shouldRetry, requestId } = await send(c);
    expect(status, body).toBe(c.status);
    expect(code).toBe(codeOf(c));
    // A request that was slow to come may come in time on a retry (docs/gateway.md: the SDKs retry
    // a 408, and what x-should-retry: true says); the others would fail the same way again, and say
    // so (docs/gateway.md#errors-and-what-the-sdks-do-with-them).
    if (c.retried ?? status === 408) expect(shouldRetry).not.toBe('false');
    else expect(shouldRetry).toBe('false');
    const parsed = JSON.parse(body) as Record<string, unknown>;
    // Anthropic: {type: 'error', error: {type, message}}; OpenAI: {error: {message, type, param, code}}.
    if (c.provider === 'anthropic') expect(parsed).toMatchObject({ type: 'error', error: { type: expect.any(String), message: expect.any(String) } });
    else expect(Object.keys(parsed.error as object).sort()).toEqual(['code', 'message', 'param', 'type']);
    if (c.code !== undefined) expect((parsed.error as { code: unknown }).code).toBe(c.code);
    if (c.param !== undefined) expect((parsed.error as { param: unknown }).param).toBe(c.param);
    const message = (parsed.error as { message: string }).message;
    if (typeof c.says === 'string') expect(message).toContain(c.says);
    else expect(message).toMatch(c.says);
    // The gateway's own id for its answer, where the provider's SDK reads one (and Anthropic's body
    // repeats it), and in the gateway's log line for it, so a user can quote it and an operator find it.
    if (c.raw === undefined) {
      expect(requestId, c.name).toMatch(/^req_headroom_[0-9a-f]{32}$/);
      if (c.provider === 'anthropic') expect(parsed.request_id).toBe(requestId);
      await until(() => gateway.output().includes(`"requestId":"${requestId}"`), 5_000, `${c.name}: its request id logged`);
    }
  });

  it("raises, through the official SDKs, the class and fields each raises for its provider's own refusal", async () => {
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: base, maxRetries: 0 });
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0 });
    const temperature = await openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, temperature: 3, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(temperature).toBeInstanceOf(OpenAI.BadRequestError);
    expect(temperature).toMatchObject({ status: 400, code: 'decimal_above_max_value', param: 'temperature', type: 'invalid_request_error' });
    const combination = await openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(combination).toMatchObject({ status: 400, code: null, param: 'stream_options' });
    const toolResult = await anthropic.messages
      .create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 5 as unknown as string }] }] })
      .catch((e: unknown) => e);
    expect(toolResult).toBeInstanceOf(Anthropic.BadRequestError);
    expect((toolResult as Error).message).toContain('messages.0.content.0.content: expected a string or an array of content blocks, got 5');
  });

  it('a body too slow to arrive: each SDK sends it again, then raises the class it raises for its provider', async () => {
    let sends = 0;
    // The SDK's own request, with only the first bytes of its body sent, and then nothing: the
    // gateway's body timeout (500 ms) answers it.
    const stalling = (async (url: string | URL | Request, init?: RequestInit) => {
      sends++;
      const head = new TextEncoder().encode(String(init?.body).slice(0, 10));
      const body = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(head) });
      return fetch(url, { ...init, body, duplex: 'half' } as RequestInit);
    }) as typeof fetch;
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: base, maxRetries: 1, fetch: stalling });
    const slow = await anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    // Anthropic's own answer (a 400 with details.error_code request_body_timeout), sent again by the SDK once.
    expect(slow).toBeInstanceOf(Anthropic.BetaRequestBodyTimeoutError);
    expect(slow).toMatchObject({ status: 400, errorCode: 'request_body_timeout' });
    expect(sends).toBe(2);
    sends = 0;
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 1, fetch: stalling });
    const slowOpenAI = await openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(slowOpenAI).toBeInstanceOf(OpenAI.APIError);
    expect(slowOpenAI).toMatchObject({ status: 408, code: 'timeout' });
    expect(sends).toBe(2);
  }, 20_000);

  it('a head too slow to arrive: each SDK sends it again, then raises the class it raises for a 408, with the code, type and request id it reads from its provider', async () => {
    let sends = 0;
    // The SDK's own request, with only its request line and one header sent, and then nothing: the
    // gateway's head timeout (2 s) answers it. fetch cannot send half a head: a raw socket does.
    const stalling = (async (url: string | URL | Request) => {
      sends++;
      const { pathname, search } = new URL(String(url));
      const text = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => socket.write(`POST ${pathname}${search} HTTP/1.1\r\nhost: 127.0.0.1\r\n`));
        let got = '';
        socket.on('data', (d) => { got += d.toString(); });
        socket.on('error', reject);
        socket.on('close', () => resolve(got));
      });
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = new Headers(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()] as [string, string]));
      return new Response(body, { status: Number(statusLine.split(' ')[1]), headers });
    }) as typeof fetch;
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: base, maxRetries: 1, fetch: stalling });
    const slow = await anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(Anthropic.RequestTimeoutError);
    expect(slow).toMatchObject({ status: 408, type: 'invalid_request_error', requestID: expect.stringMatching(/^req_headroom_/) });
    expect((slow as Error).message).toContain('the request head did not arrive in time');
    expect(sends).toBe(2);
    sends = 0;
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 1, fetch: stalling });
    const slowOpenAI = await openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(slowOpenAI).toBeInstanceOf(OpenAI.APIError);
    expect(slowOpenAI).toMatchObject({ status: 408, code: 'timeout', type: 'invalid_request_error', param: null, requestID: expect.stringMatching(/^req_headroom_/) });
    expect((slowOpenAI as Error).message).toBe('408 the request head did not arrive in time (within 2000 ms: gateway.headersTimeoutMs)');
    expect(sends).toBe(2);
    // Answered and logged with its id, and the gateway still serves (the last test's good call).
    await until(() => gateway.output().includes('"code":"HEAD_TIMEOUT"'), 5_000, 'the head timeout logged');
  }, 30_000);

  it('enqueued nothing for any of them, and still serves a good call', async () => {
    expect(CASES.length).toBeGreaterThanOrEqual(25);
    // Nothing but (once it has beaten) the gateway's own heartbeat, which says it is up.
    expect((await admin.keys(`{${PREFIX}:*`)).filter((key) => key !== fleetKeys(PREFIX).gateways)).toEqual([]);
    // No worker has published the fleet's settings: admission fails closed, and the SDKs retry.
    const unpublished = await fetch(`${base}/v1/messages`, { method: 'POST', headers: ANTHROPIC, body: message() });
    expect(unpublished.status).toBe(503);
    expect(unpublished.headers.get('headroom-error-code')).toBe('FLEET_UNPUBLISHED');
    expect(unpublished.headers.get('retry-after')).toBe('1');
    expect(await unpublished.json()).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('no fleet settings') } });
    // Published as a worker would, with no worker running: a good call is enqueued, waits its
    // 200 ms, is cancelled and told to retry.
    await publishFleetSettings(admin, loadConfig(configFile));
    const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { ...ANTHROPIC, 'headroom-max-wait-ms': '200' }, body: message() });
    expect(res.status).toBe(529);
    expect(res.headers.get('headroom-error-code')).toBe('DEADLINE_EXCEEDED');
    expect(res.headers.get('headroom-job-id')).toMatch(/^normal\./);
    expect(gateway.child.exitCode).toBeNull();
  });

  it('refuses to start without its client keys, naming the variable', async () => {
    const orphan = spawnHeadroom(['gateway', '--config', configFile, '--redis', redis.url, '--port', '0'], { BAD_INPUT_GATEWAY_KEY: '' });
    expect(await orphan.exited).toBe(2);
    expect(orphan.output()).toContain('gateway.keys.app.keyEnv: environment variable BAD_INPUT_GATEWAY_KEY is not set');
  });

  it("keeps an idle connection open past Node's 5 s default, so an SDK's pooled socket is still there when reused", async () => {
    // One socket: the second request goes on the first one's connection if it is still open.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ keepAlive: string | undefined; reused: boolean; status: number }>((resolve, reject) => {
        const req = request(`${base}/v1/models`, { agent, headers: { 'anthropic-version': '2023-06-01', 'x-api-key': KEY } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ keepAlive: res.headers['keep-alive'] as string | undefined, reused: req.reusedSocket, status: res.statusCode ?? 0 }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const first = await get();
      expect(first).toEqual({ keepAlive: 'timeout=65', reused: false, status: 200 });
      // Idle past Node's default (5 s), and past this gateway's headersTimeoutMs (2 s): an idle
      // connection is not a head that is late, and the next request is answered on it.
      await new Promise((r) => setTimeout(r, 6_000));
      expect(await get()).toEqual({ keepAlive: 'timeout=65', reused: true, status: 200 });
    } finally {
      agent.destroy();
    }
  }, 20_000);

  it('answers 503 with retry-after while Redis is down (the SDKs retry), and never crashes', async () => {
    await redis.stop();
    const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: ANTHROPIC, body: message() });
    expect(res.status).toBe(503);
    expect(res.headers.get('headroom-error-code')).toBe('REDIS_UNAVAILABLE');
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('the queue is unavailable') } });
    const o = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: OPENAI, body: chat() });
    expect(o.status).toBe(503);
    expect(await o.json()).toMatchObject({ error: { type: 'server_error' } });
    expect(gateway.child.exitCode).toBeNull();
  });
});
