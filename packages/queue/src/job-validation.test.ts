import { describe, expect, it } from 'vitest';
import { JobValidationError, PayloadTooLargeError, type Issue } from './errors.js';
import { apiOf, callOptionsOf, choicesOf, isStreamed, maxOutputTokens, outputBoundField, outputBoundFor } from './job.js';
import { coalesceKeyOf } from './job-ids.js';
import { countTokensIssues, parseJob } from './job-validation.js';
import { MAX_JSON_DEPTH } from './json-value.js';

const anthropic = (request: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  priority: 'HIGH',
  provider: 'anthropic',
  request: { model: 'claude-sonnet-4-6', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }], ...request },
  ...extra,
});
const responses = (request: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  priority: 'HIGH',
  provider: 'openai',
  api: 'responses',
  request: { model: 'gpt-4.1', max_output_tokens: 64, input: 'Hi', ...request },
  ...extra,
});
const openai = (request: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  priority: 'LOW',
  provider: 'openai',
  request: { model: 'gpt-4.1', max_completion_tokens: 64, messages: [{ role: 'user', content: 'Hi' }], ...request },
  ...extra,
});

function issuesOf(input: unknown): Issue[] {
  try {
    parseJob(input);
  } catch (err) {
    expect(err).toBeInstanceOf(JobValidationError);
    return [...(err as JobValidationError).issues];
  }
  throw new Error('expected a JobValidationError');
}

describe('parseJob', () => {
  it('accepts well-formed Anthropic and OpenAI jobs', () => {
    expect(parseJob(anthropic()).job.provider).toBe('anthropic');
    expect(parseJob(openai()).job.provider).toBe('openai');
    const rich = anthropic({
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBOR' } }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: 1 } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'found' }] },
      ],
      tools: [{ name: 'lookup', input_schema: { type: 'object' } }],
    }, { tenant: 'acme', fallback: ['claude-haiku-4-5'], metadata: { userId: 7 }, coalesce: true, maxWaitMs: 1000, onShed: 'batch' });
    expect(parseJob(rich).job.tenant).toBe('acme');
  });

  it("stores a job that writes a default out (api 'chat', sla 'interactive', coalesce false, onShed 'fail') as the one that leaves it out", () => {
    // The data is what a repeat of an idempotency key is compared with: written out, the gateway's
    // `headroom-sla: interactive` and a producer's job without it were two jobs under one key.
    const defaults = { sla: 'interactive', coalesce: false, onShed: 'fail' };
    expect(parseJob(openai({}, { api: 'chat', ...defaults })).json).toBe(parseJob(openai()).json);
    expect(parseJob(anthropic({}, defaults)).json).toBe(parseJob(anthropic()).json);
    expect(parseJob(openai({}, { api: 'chat' })).job).not.toHaveProperty('api');
    // What is not a default stays.
    expect(parseJob(responses()).job).toMatchObject({ api: 'responses' });
    expect(parseJob(anthropic({}, { sla: 'none', coalesce: true })).job).toMatchObject({ sla: 'none', coalesce: true });
    expect(parseJob(openai({}, { priority: 'LOW', onShed: 'batch' })).job).toMatchObject({ onShed: 'batch' });
  });

  it('accepts streamed Anthropic and OpenAI jobs (the worker relays their events)', () => {
    expect(parseJob(anthropic({ stream: true })).job.request.stream).toBe(true);
    expect(parseJob(openai({ stream: true, stream_options: { include_usage: true } })).job.request.stream).toBe(true);
  });

  it("takes an Anthropic job's betas for its interactive calls, and nowhere they would be lost", () => {
    const betas = ['context-1m-2025-08-07'];
    const { job } = parseJob(anthropic({}, { betas }));
    expect(job.provider === 'anthropic' && job.betas).toEqual(betas);
    expect(callOptionsOf(job)).toEqual({ betas });
    expect(callOptionsOf(parseJob(anthropic()).job)).toEqual({});
    expect(issuesOf(anthropic({}, { betas, sla: 'none' }))).toEqual([{ path: 'betas', message: expect.stringContaining('interactive calls only') }]);
    expect(issuesOf(anthropic({}, { betas, onShed: 'batch' }))[0]?.path).toBe('betas');
    expect(issuesOf(anthropic({}, { betas: ['Not A Beta'] }))[0]?.path).toBe('betas.0');
    expect(issuesOf(anthropic({}, { betas: [] }))[0]?.path).toBe('betas');
    expect(issuesOf(openai({}, { betas }))[0]?.message).toMatch(/betas/);
    // Two calls that differ only in their betas are not the same call.
    expect(coalesceKeyOf({ ...job, betas: undefined })).not.toBe(coalesceKeyOf(job));
    expect(coalesceKeyOf({ ...job, betas: undefined })).toBe(coalesceKeyOf(parseJob(anthropic()).job));
  });

  it("takes the content blocks and messages Headroom does not read as the provider would, to be checked there: a server tool's turn sent back, a search result, a custom tool's call, a function's answer", () => {
    const serverToolTurn = [
      { role: 'user', content: [{ type: 'search_result', source: 'https://example.com', title: 'A page', content: [{ type: 'text', text: 'found' }] }] },
      {
        role: 'assistant',
        content: [
          { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: { query: 'q' } },
          { type: 'web_search_tool_result', tool_use_id: 'srvtoolu_1', content: [{ type: 'web_search_result', url: 'https://example.com', title: 't', encrypted_content: 'e' }] },
          { type: 'text', text: 'Answer', citations: [{ type: 'web_search_result_location', url: 'https://example.com', title: 't', encrypted_index: 'i', cited_text: 'c' }] },
        ],
      },
      { role: 'user', content: 'And then?' },
    ];
    expect(parseJob(anthropic({ messages: serverToolTurn })).job.request).toMatchObject({ messages: serverToolTurn });
    const customToolCall = [
      { role: 'user', content: 'x' },
      { role: 'assistant', tool_calls: [{ id: 'call_1', type: 'custom', custom: { name: 'grep', input: 'foo' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'bar' },
    ];
    expect(parseJob(openai({ messages: customToolCall })).job.request).toMatchObject({ messages: customToolCall });
    const functionAnswer = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } },
      { role: 'function', name: 'f', content: 'res' },
    ];
    expect(parseJob(openai({ messages: functionAnswer })).job.request).toMatchObject({ messages: functionAnswer });
    expect(issuesOf(openai({ messages: [{ role: 'function', content: 'res' }] }))[0]?.path).toBe('request.messages.0.name');
  });

  it('coalesces within a tenant only: the same request from two tenants, or from a tenant and none, is two jobs', () => {
    const { job } = parseJob(anthropic());
    expect(coalesceKeyOf({ ...job, tenant: 'acme' })).toBe(coalesceKeyOf({ ...job, tenant: 'acme', metadata: { user: 'u1' } } as typeof job));
    expect(coalesceKeyOf({ ...job, tenant: 'acme' })).not.toBe(coalesceKeyOf({ ...job, tenant: 'globex' }));
    expect(coalesceKeyOf({ ...job, tenant: 'acme' })).not.toBe(coalesceKeyOf({ ...job, tenant: undefined }));
  });

  // Each malformed job is refused with the path of what is wrong.
  const cases: [string, unknown, string, RegExp][] = [
    ['not an object', 'hello', '', /expected/],
    ['missing priority', { ...anthropic(), priority: undefined }, 'priority', /CRITICAL, HIGH, NORMAL or LOW/],
    ['lower-case priority', anthropic({}, { priority: 'high' }), 'priority', /CRITICAL/],
    ['unknown provider', anthropic({}, { provider: 'gemini' }), 'provider', /"anthropic" or "openai"/],
    ['missing model', anthropic({ model: undefined }), 'request.model', /string/],
    ['empty model', anthropic({ model: '' }), 'request.model', /must not be empty/],
    ['model id with a space', anthropic({ model: 'claude sonnet' }), 'request.model', /no whitespace/],
    ['fallback model id with a newline', anthropic({}, { fallback: ['claude-haiku-4-5\nclaude-opus-4-1'] }), 'fallback.0', /no whitespace/],
    ['max_tokens zero', anthropic({ max_tokens: 0 }), 'request.max_tokens', /positive integer, got 0/],
    ['max_tokens fractional', anthropic({ max_tokens: 1.5 }), 'request.max_tokens', /positive integer/],
    ['max_tokens as string', anthropic({ max_tokens: '64' }), 'request.max_tokens', /positive integer/],
    ['no messages', anthropic({ messages: [] }), 'request.messages', /must not be empty/],
    ['messages not an array', anthropic({ messages: 'Hi' }), 'request.messages', /array of messages/],
    ['system role in Anthropic messages', anthropic({ messages: [{ role: 'system', content: 'x' }] }), 'request.messages.0.role', /"user" or "assistant"/],
    ['empty content', anthropic({ messages: [{ role: 'user', content: '' }] }), 'request.messages.0.content', /must not be empty/],
    ['block without a type', anthropic({ messages: [{ role: 'user', content: [{ text: 'x' }] }] }), 'request.messages.0.content.0.type', /string/],
    ['tool_use block without an id', anthropic({ messages: [{ role: 'assistant', content: [{ type: 'tool_use', name: 'f', input: {} }] }] }), 'request.messages.0.content.0.id', /string/],
    ['text block without text', anthropic({ messages: [{ role: 'user', content: [{ type: 'text' }] }] }), 'request.messages.0.content.0.text', /string/],
    ['bad image media type', anthropic({ messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/bmp', data: 'x' } }] }] }), 'request.messages.0.content.0.source.media_type', /image\/jpeg/],
    ['system as number', anthropic({ system: 42 }), 'request.system', /./],
    ['tools not an array', anthropic({ tools: 'nope' }), 'request.tools', /array of tools/],
    ['temperature too high', anthropic({ temperature: 3 }), 'request.temperature', /1/],
    ['streaming with sla none', anthropic({ stream: true }, { sla: 'none' }), 'request.stream', /must be interactive: sla "none" goes to the batch API/],
    ['streaming with onShed batch', anthropic({ stream: true }, { priority: 'LOW', onShed: 'batch' }), 'onShed', /streamed job cannot be shed to the batch API/],
    ['stream as a string', anthropic({ stream: 'yes' }), 'request.stream', /true or false/],
    ['OpenAI stream_options without stream', openai({ stream_options: { include_usage: true } }), 'request.stream_options', /only allowed with "stream": true/],
    ['unknown job field', anthropic({}, { priorty: 'HIGH' }), '', /unknown key "priorty"/],
    ['bad tenant', anthropic({}, { tenant: 'a b/c' }), 'tenant', /letters, digits/],
    ['bad sla', anthropic({}, { sla: 'later' }), 'sla', /interactive/],
    ['negative maxWaitMs', anthropic({}, { maxWaitMs: -1 }), 'maxWaitMs', /positive integer, got -1/],
    ['fallback not a list', anthropic({}, { fallback: 'claude-haiku-4-5' }), 'fallback', /array/],
    ['OpenAI with both output bounds', openai({ max_tokens: 10 }), 'request.max_tokens', /only one/],
    ['OpenAI unknown role', openai({ messages: [{ role: 'bot', content: 'x' }] }), 'request.messages.0.role', /role/],
    ['OpenAI tool message without id', openai({ messages: [{ role: 'tool', content: 'x' }] }), 'request.messages.0.tool_call_id', /string/],
  ];

  it.each(cases)('refuses %s', (_name, input, path, message) => {
    const issues = issuesOf(input);
    const hit = issues.find((i) => i.path === path);
    expect(hit, `issues were ${JSON.stringify(issues)}`).toBeDefined();
    expect(hit?.message).toMatch(message);
  });

  it("takes an OpenAI request with no output bound (OpenAI's default), which reserves its model's output cap per choice", () => {
    const { job } = parseJob(openai({ max_completion_tokens: undefined, n: 3 }));
    expect(maxOutputTokens(job)).toBeUndefined();
    expect(outputBoundFor(job, { maxOutputTokens: 32_768 })).toBe(3 * 32_768);
    expect(outputBoundFor(job, {})).toBeUndefined();
    // A bound of its own wins over the model's cap, for every choice.
    const bounded = parseJob(openai({ max_completion_tokens: undefined, max_tokens: 100, n: 2 })).job;
    expect(outputBoundFor(bounded, { maxOutputTokens: 32_768 })).toBe(200);
    expect(outputBoundFor(parseJob(anthropic()).job, { maxOutputTokens: 32_768 })).toBe(64);
  });

  it("takes OpenAI Responses jobs (api \"responses\"), with their own output bound, call options and coalescing key", () => {
    const { job } = parseJob(responses({ instructions: 'Be brief.', input: [{ role: 'user', content: 'Hi' }, { type: 'function_call_output', call_id: 'c1', output: '4' }] }));
    expect(apiOf(job)).toBe('responses');
    expect(apiOf(parseJob(openai()).job)).toBe('chat');
    expect(apiOf(parseJob(openai({}, { api: 'chat' })).job)).toBe('chat');
    expect(apiOf(parseJob(anthropic()).job)).toBe('messages');
    expect(maxOutputTokens(job)).toBe(64);
    expect(outputBoundField(job)).toBe('max_output_tokens');
    const unbounded = parseJob(responses({ max_output_tokens: null })).job;
    expect(maxOutputTokens(unbounded)).toBeUndefined();
    expect(outputBoundFor(unbounded, { maxOutputTokens: 32_768 })).toBe(32_768);
    expect(callOptionsOf(job)).toEqual({ api: 'responses' });
    expect(callOptionsOf(parseJob(openai()).job)).toEqual({});
    expect(parseJob(responses({ stream: true })).job.request.stream).toBe(true);
    // The batch lane takes them too (a Responses batch of their own).
    expect(parseJob(responses({}, { sla: 'none', priority: 'LOW' })).job.sla).toBe('none');
    expect(parseJob(responses({}, { onShed: 'batch', priority: 'LOW' })).job.onShed).toBe('batch');
    // The same body asks a different API for a different thing: never coalesced with it.
    const body = { model: 'gpt-4.1', input: 'Hi' };
    expect(coalesceKeyOf({ provider: 'openai', api: 'responses', request: body })).not.toBe(coalesceKeyOf({ provider: 'openai', request: body }));
    expect(coalesceKeyOf({ provider: 'openai', request: body })).toBe(coalesceKeyOf({ provider: 'openai', api: undefined, request: body }));
  });

  it('takes a Responses job with a saved prompt and no input, and names both when it has neither', () => {
    expect(parseJob(responses({ input: undefined, prompt: { id: 'pmpt_123', variables: { city: 'Oslo' } } })).job.request).toMatchObject({ input: undefined, prompt: { id: 'pmpt_123' } });
    expect(issuesOf(responses({ input: undefined }))).toEqual([
      { path: 'request.input', message: 'required unless the call names a saved prompt: set input, prompt, or both', code: 'missing_required_parameter' },
    ]);
    expect(issuesOf(responses({ input: undefined, prompt: null }))[0]?.path).toBe('request.input');
    expect(issuesOf(responses({ input: undefined, prompt: { id: '' } }))[0]?.path).toBe('request.prompt.id');
  });

  it('refuses a Responses job the queue cannot serve, naming the field', () => {
    expect(issuesOf(responses({ background: true }))).toEqual([{ path: 'request.background', message: expect.stringContaining('background responses are not supported') }]);
    expect(issuesOf(responses({ stream_options: {} }))[0]?.path).toBe('request.stream_options');
    expect(issuesOf(responses({ input: [] }))[0]?.path).toBe('request.input');
    expect(issuesOf(responses({ input: '' }))[0]?.path).toBe('request.input');
    expect(issuesOf(responses({ input: [{ content: 'neither role nor type' }] }))[0]?.path).toBe('request.input.0');
    expect(issuesOf(responses({ max_output_tokens: 0 }))[0]?.path).toBe('request.max_output_tokens');
    // A Chat Completions body under api "responses" (and the other way round) names what is missing.
    expect(issuesOf(responses({ input: undefined, messages: [{ role: 'user', content: 'Hi' }] })).map((i) => i.path)).toContain('request.input');
    expect(issuesOf(openai({}, { api: 'assistants' }))[0]).toEqual({ path: 'api', message: 'expected api "chat" (or none) or "responses", got "assistants"', code: 'invalid_value' });
    expect(issuesOf(anthropic({}, { provider: 'gemini' }))[0]).toEqual({ path: 'provider', message: 'expected "anthropic" or "openai", got "gemini"', code: 'invalid_value' });
  });

  it('says a job must be an object when it is not one', () => {
    for (const [input, got] of [[null, 'null'], [[], 'an array'], ['job', 'string'], [undefined, 'undefined']] as const) {
      expect(issuesOf(input)).toEqual([{ path: '', message: `expected a job (an object), got ${got}` }]);
    }
  });

  it("says what was found only where the value's type or value is what is wrong, not for a rule across fields", () => {
    // Rules over several fields are raised on the object holding them: "got an object" misled.
    expect(issuesOf(anthropic({ stream: true }, { sla: 'none' }))).toEqual([{ path: 'request.stream', message: 'a streamed job must be interactive: sla "none" goes to the batch API, which does not stream' }]);
    expect(issuesOf(anthropic({}, { sla: 'none', betas: ['context-1m-2025-08-07'] }))).toEqual([{ path: 'betas', message: 'betas go with interactive calls only: the batch lane (sla "none", onShed "batch") sends none' }]);
    expect(issuesOf(responses({ background: true }))).toEqual([
      { path: 'request.background', message: 'background responses are not supported: Headroom queues the call itself (leave background out, or use sla "none" for work with no deadline)' },
    ]);
    // A value of the wrong type or out of range still says what it was.
    expect(issuesOf(responses({ background: 'yes' }))[0]?.message).toMatch(/, got "yes"$/);
    expect(issuesOf(anthropic({ max_tokens: -1 }))[0]?.message).toMatch(/, got -1$/);
  });

  it('takes an idempotency key of any characters: it only feeds a hashed job id', () => {
    const { job } = parseJob(anthropic({}, { idempotencyKey: 'héllo wörld 日本' }));
    expect(job.idempotencyKey).toBe('héllo wörld 日本');
  });

  it('lists every bad field, not just the first', () => {
    const issues = issuesOf(anthropic({ max_tokens: -1, messages: [] }, { priority: 'URGENT' }));
    expect(issues.map((i) => i.path).sort()).toEqual(['priority', 'request.max_tokens', 'request.messages']);
  });

  it('refuses a job nested deeper than MAX_JSON_DEPTH before walking it, naming where', () => {
    let schema: object = {};
    for (let i = 0; i < 10_000; i++) schema = { a: schema };
    // Recursion (zod, JSON.stringify) overflowed the stack at some thousands of levels.
    const issues = issuesOf(anthropic({ tools: [{ name: 't', input_schema: { type: 'object', properties: schema } }] }));
    expect(issues).toEqual([{ path: 'request.tools.0.input_schema.properties.a.a.a...', message: `nests deeper than ${MAX_JSON_DEPTH} levels` }]);
  });

  it('refuses what JSON cannot carry with a coded error, where it used to be dropped or throw a TypeError', () => {
    // A BigInt threw JSON.stringify's bare TypeError; a function vanished from the metadata
    // handed back with the result.
    expect(issuesOf(anthropic({}, { metadata: { ticket: 10n } }))).toEqual([{ path: 'metadata.ticket', message: 'a BigInt is not JSON (send it as a string or a number)' }]);
    expect(issuesOf(anthropic({}, { metadata: { onDone: () => 1 } }))).toEqual([{ path: 'metadata.onDone', message: 'a function is not JSON' }]);
    expect(issuesOf(anthropic({ tools: [{ name: 't', input_schema: { type: 'object', default: Number.NaN } }] }))).toEqual([{ path: 'request.tools.0.input_schema.default', message: 'NaN is not JSON' }]);
  });

  it("takes null where the provider's API does, keeps it for the provider, and reads it as absent", () => {
    // The openai SDK's types say `T | null` for these; a client passing its own null got a 400.
    const chat = parseJob(openai({ temperature: null, n: null, max_completion_tokens: null, max_tokens: null, stream: null, stream_options: null, messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello', tool_calls: null }] })).job;
    expect(chat.request).toMatchObject({ temperature: null, n: null, max_completion_tokens: null, max_tokens: null, stream: null });
    expect(isStreamed(chat)).toBe(false);
    expect(choicesOf(chat)).toBe(1);
    // No bound of its own: the model's default is reserved (a null bound read as 0 reserved nothing).
    expect(maxOutputTokens(chat)).toBeUndefined();
    expect(outputBoundFor(chat, { maxOutputTokens: 32_768 })).toBe(32_768);
    // One of the two bounds set, the other null: not "both set".
    expect(maxOutputTokens(parseJob(openai({ max_completion_tokens: null, max_tokens: 100, n: 2 })).job)).toBe(200);
    expect(maxOutputTokens(parseJob(openai({ max_completion_tokens: 50, max_tokens: null })).job)).toBe(50);
    const reply = parseJob(responses({ stream: null, max_output_tokens: null })).job;
    expect(reply.request.stream).toBeNull();
    expect(isStreamed(reply)).toBe(false);
    expect(outputBoundFor(reply, { maxOutputTokens: 32_768 })).toBe(32_768);
    // Where the API takes no null, neither does Headroom: Anthropic's refuses `temperature: null`.
    expect(issuesOf(anthropic({ temperature: null }))[0]?.path).toBe('request.temperature');
    expect(issuesOf(anthropic({ max_tokens: null }))[0]?.path).toBe('request.max_tokens');
    expect(issuesOf(openai({ messages: null }))[0]?.path).toBe('request.messages');
  });

  it('takes an empty final assistant message (a prefill), and no other empty message, as Anthropic does', () => {
    for (const empty of ['', []]) {
      expect(parseJob(anthropic({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: empty }] })).job.request.messages).toHaveLength(2);
      expect(issuesOf(anthropic({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: empty }, { role: 'user', content: 'Go on' }] }))).toEqual([
        { path: 'request.messages.1.content', message: 'must not be empty (only a final assistant message may be)' },
      ]);
      expect(issuesOf(anthropic({ messages: [{ role: 'user', content: empty }] }))[0]?.path).toBe('request.messages.0.content');
    }
  });

  it('says what kind of problem each issue is, as OpenAI codes it', () => {
    const codeAt = (input: unknown, path: string) => issuesOf(input).find((i) => i.path === path)?.code;
    expect(codeAt(openai({ model: undefined }), 'request.model')).toBe('missing_required_parameter');
    expect(codeAt(openai({ n: 'two' }), 'request.n')).toBe('invalid_type');
    expect(codeAt(openai({ n: 0 }), 'request.n')).toBe('integer_below_min_value');
    // OpenAI's bound on n: "Invalid 'n': integer above maximum value. Expected a value <= 128".
    expect(codeAt(openai({ n: 129 }), 'request.n')).toBe('integer_above_max_value');
    expect(issuesOf(openai({ n: 129 })).find((i) => i.path === 'request.n')?.message).toBe('expected at most 128, got 129');
    expect(parseJob(openai({ n: 128 })).job.request).toMatchObject({ n: 128 });
    // A decimal out of its range is no integer's: OpenAI answers `temperature: 3` with
    // "Invalid 'temperature': decimal above maximum value", code decimal_above_max_value.
    expect(codeAt(openai({ temperature: 3 }), 'request.temperature')).toBe('decimal_above_max_value');
    expect(codeAt(openai({ temperature: -1 }), 'request.temperature')).toBe('decimal_below_min_value');
    expect(codeAt(responses({ top_p: 2 }), 'request.top_p')).toBe('decimal_above_max_value');
    // An array that must hold one item at least, as OpenAI codes `messages: []`.
    expect(codeAt(openai({ messages: [] }), 'request.messages')).toBe('empty_array');
    expect(codeAt(openai({ messages: [{ role: 'user', content: [] }] }), 'request.messages.0.content')).toBe('empty_array');
    expect(codeAt(openai({ messages: [{ role: 'bot', content: 'x' }] }), 'request.messages.0.role')).toBe('invalid_value');
    // A value of none of the types a union takes is of the wrong type, as OpenAI codes `content: 7`.
    expect(codeAt(openai({ messages: [{ role: 'user', content: 7 }] }), 'request.messages.0.content')).toBe('invalid_type');
    // Both output bounds: the one rule across fields OpenAI codes (langchain-ai/langgraph#5943); the others have none (OpenAI's own such 400s send code null).
    expect(codeAt(openai({ max_tokens: 10 }), 'request.max_tokens')).toBe('invalid_parameter_combination');
    expect(codeAt(openai({ stream_options: { include_usage: true } }), 'request.stream_options')).toBeUndefined();
  });

  it('names what a union-typed field takes when the value is none of it, and the closest branch when one got further', () => {
    const user = (content: unknown) => anthropic({ messages: [{ role: 'user', content }] });
    const toolResult = (content: unknown) => user([{ type: 'tool_result', tool_use_id: 't1', content }]);
    // Zod's bare "Invalid input" for the union, passed on as it was.
    expect(issuesOf(toolResult(5))).toEqual([{ path: 'request.messages.0.content.0.content', message: 'expected a string or an array of content blocks, got 5', code: 'invalid_type' }]);
    // Into the array branch, its element is what is wrong.
    expect(issuesOf(toolResult([5]))).toEqual([{ path: 'request.messages.0.content.0.content.0', message: 'expected an object, got 5', code: 'invalid_type' }]);
    // A checked block's own field keeps its code and what was found.
    expect(issuesOf(user([{ type: 'text', text: 5 }]))).toEqual([{ path: 'request.messages.0.content.0.text', message: 'expected a string, got 5', code: 'invalid_type' }]);
    expect(issuesOf(user([{ type: 'image', source: { type: 'weird' } }]))[0]).toMatchObject({ path: 'request.messages.0.content.0.source.type', message: 'expected a source of type "base64", "url" or "file", got "weird"' });
    // The message's own content said "expected a string" only, though an array of blocks is as good.
    expect(issuesOf(user(5))).toEqual([{ path: 'request.messages.0.content', message: 'expected a string or an array of content blocks, got 5', code: 'invalid_type' }]);
    expect(issuesOf(anthropic({ system: 5 }))[0]?.message).toBe('expected a string or an array of text blocks, got 5');
    expect(issuesOf(openai({ messages: [{ role: 'assistant', content: 5 }] }))[0]?.message).toBe('expected a string, an array of content parts or null, got 5');
    expect(issuesOf(openai({ messages: [{ role: 'tool', tool_call_id: 'c', content: 5 }] }))[0]?.message).toBe('expected a string or an array of content parts, got 5');
    expect(issuesOf(responses({ input: 5 }))[0]?.message).toBe('expected a string or an array of input items, got 5');
    // Zod's own wording for a type or a bound reads as the rest.
    expect(issuesOf(openai({ temperature: 3 }))[0]?.message).toBe('expected at most 2, got 3');
    expect(issuesOf(openai({ messages: [] }))[0]?.message).toBe('must not be empty');
  });

  it("checks a count_tokens body as a Messages job's request, without the max_tokens count_tokens does not take", () => {
    const messages = [{ role: 'user', content: 'Hi' }];
    expect(countTokensIssues({ model: 'claude-sonnet-4-6', messages })).toEqual([]);
    expect(countTokensIssues({ model: 'claude-sonnet-4-6', messages, tools: [{ name: 't', input_schema: { type: 'object' } }] })).toEqual([]);
    const pathOf = (body: Record<string, unknown>) => countTokensIssues({ model: 'claude-sonnet-4-6', messages, ...body })[0]?.path;
    expect(pathOf({ messages: [{ role: 'system', content: 'x' }] })).toBe('request.messages.0.role');
    expect(pathOf({ messages: [{ role: 'user', content: 5 }] })).toBe('request.messages.0.content');
    expect(pathOf({ messages: [{ role: 'user' }] })).toBe('request.messages.0.content');
    expect(pathOf({ system: 5 })).toBe('request.system');
    expect(pathOf({ model: undefined })).toBe('request.model');
    expect(countTokensIssues([])).toEqual([expect.objectContaining({ path: 'request' })]);
  });

  it('refuses a job over the size limit with PAYLOAD_TOO_LARGE', () => {
    const big = anthropic({ messages: [{ role: 'user', content: 'x'.repeat(2000) }] });
    expect(() => parseJob(big, 1000)).toThrow(PayloadTooLargeError);
    try {
      parseJob(big, 1000);
    } catch (err) {
      expect((err as PayloadTooLargeError).code).toBe('PAYLOAD_TOO_LARGE');
      expect((err as PayloadTooLargeError).limitBytes).toBe(1000);
    }
  });
});
