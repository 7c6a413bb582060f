// The OpenAI Responses API request (POST /v1/responses): validation with the API's own messages,
// params and codes, and the Response object it gets. Fields the simulator does not act on
// (temperature, tools, text, truncation, ...) pass over and are echoed back as OpenAI echoes them.

import { generateAnswer, newId, requestHash } from './answer.js';
import { responsesForcedTools, toolCalls } from './tool-call.js';
import { decimalOutOfRange, invalidRequest, isObject, type OpenAIErrorBody, outputCeilingTooLarge } from './openai-request.js';
import type { Range, ResolvedModel } from './options.js';
import { RESPONSES_NULLABLE, withoutNulls } from './nullable-fields.js';
import { jsonAnswer, responsesJsonFormat } from './structured-output.js';
import { type TokenLogprob, tokenLogprobs } from './logprobs.js';

export interface ResponsesParams {
  model: string;
  /** A string (one user message) or input items: messages, function calls and their outputs, ... */
  input?: string | Record<string, unknown>[];
  /** A saved prompt: its id, and values for its variables. Without `input`, the call's whole prompt. */
  prompt?: { id: string; variables?: Record<string, unknown> | null; version?: string | null };
  instructions?: string | null;
  max_output_tokens?: number | null;
  stream?: boolean | null;
  tools?: unknown[];
  [field: string]: unknown;
}

export type ResponsesValidation = { ok: true; value: ResponsesParams } | { ok: false; error: OpenAIErrorBody };

const MESSAGE_ROLES = ['user', 'assistant', 'system', 'developer'];
/** OpenAI's floor for `max_output_tokens`. */
const MIN_OUTPUT_TOKENS = 16;

/** A value's JSON kind as OpenAI names it in "expected ..., but got a string instead". */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number' && !Number.isInteger(value)) return 'a decimal';
  return typeof value === 'number' ? 'an integer' : `a ${typeof value}`;
}

const invalidType = (param: string, expected: string, value: unknown) =>
  invalidRequest(`Invalid type for '${param}': expected ${expected}, but got ${kindOf(value)} instead.`, param, 'invalid_type');

const missing = (param: string) => invalidRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');

function checkInputItem(item: unknown, at: string): OpenAIErrorBody | null {
  if (!isObject(item)) return invalidType(at, 'an object', item);
  const isMessage = item.type === undefined || item.type === 'message';
  if (!isMessage) return typeof item.type === 'string' ? null : invalidType(`${at}.type`, 'a string', item.type);
  if (item.role === undefined) return missing(`${at}.role`);
  if (typeof item.role !== 'string' || !MESSAGE_ROLES.includes(item.role)) {
    return invalidRequest(`Invalid value: '${String(item.role)}'. Supported values are: 'user', 'assistant', 'system', and 'developer'.`, `${at}.role`, 'invalid_value');
  }
  const { content } = item;
  if (content === undefined) return missing(`${at}.content`);
  if (typeof content === 'string') return null;
  if (!Array.isArray(content)) return invalidType(`${at}.content`, 'one of a string or array of input content parts', content);
  for (const [j, part] of content.entries()) {
    if (!isObject(part)) return invalidType(`${at}.content[${j}]`, 'an object', part);
    if (typeof part.type !== 'string') return missing(`${at}.content[${j}].type`);
  }
  return null;
}

export function validateResponseParams(given: unknown): ResponsesValidation {
  const fail = (error: OpenAIErrorBody) => ({ ok: false as const, error });
  if (!isObject(given)) return fail(invalidRequest('Invalid body: expected a JSON object.'));
  const body = withoutNulls(given, RESPONSES_NULLABLE);
  if (body.model === undefined || body.model === null) return fail(missing('model'));
  if (typeof body.model !== 'string' || body.model === '') return fail(invalidType('model', 'a non-empty string', body.model));

  const { input, prompt } = body;
  if (prompt !== undefined) {
    if (!isObject(prompt)) return fail(invalidType('prompt', 'an object', prompt));
    if (prompt.id === undefined || prompt.id === null) return fail(missing('prompt.id'));
    if (typeof prompt.id !== 'string') return fail(invalidType('prompt.id', 'a string', prompt.id));
    if (prompt.variables != null && !isObject(prompt.variables)) return fail(invalidType('prompt.variables', 'an object', prompt.variables));
  }
  // OpenAI's saved prompts (`prompt`) make input optional: the template is the prompt.
  if (input === undefined || input === null) {
    if (prompt === undefined) return fail(missing('input'));
  } else if (typeof input === 'string') {
    if (input === '') return fail(invalidRequest("Invalid 'input': empty string. Expected a string with minimum length 1, but got an empty string instead.", 'input', 'empty_string'));
  } else if (Array.isArray(input)) {
    if (input.length === 0) return fail(invalidRequest("Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'input', 'empty_array'));
    for (const [i, item] of input.entries()) {
      const error = checkInputItem(item, `input[${i}]`);
      if (error) return fail(error);
    }
  } else {
    return fail(invalidType('input', 'one of a string or array of input items', input));
  }

  if (body.instructions !== undefined && body.instructions !== null && typeof body.instructions !== 'string') {
    return fail(invalidType('instructions', 'a string', body.instructions));
  }
  const max = body.max_output_tokens;
  if (max !== undefined && max !== null) {
    if (typeof max !== 'number' || !Number.isInteger(max)) return fail(invalidType('max_output_tokens', 'an integer', max));
    if (max < MIN_OUTPUT_TOKENS) {
      return fail(invalidRequest(`Invalid 'max_output_tokens': integer below minimum value. Expected a value >= ${MIN_OUTPUT_TOKENS}, but got ${max} instead.`, 'max_output_tokens', 'integer_below_min_value'));
    }
  }
  for (const field of ['stream', 'background'] as const) {
    const value = body[field];
    if (value !== undefined && value !== null && typeof value !== 'boolean') return fail(invalidType(field, 'a boolean', value));
  }
  for (const [field, min, max] of [['temperature', 0, 2], ['top_p', 0, 1]] as const) {
    const error = decimalOutOfRange(field, body[field], min, max);
    if (error) return fail(error);
  }
  if (body.background === true) {
    // A background response is stored and polled (GET /v1/responses/{id}); the simulator keeps no responses.
    return fail(invalidRequest("Background responses are not supported by the simulator: it answers only in the foreground. Leave 'background' unset or false.", 'background', 'unsupported_value'));
  }
  if (body.tools !== undefined && body.tools !== null && !Array.isArray(body.tools)) return fail(invalidType('tools', 'an array', body.tools));
  return { ok: true, value: body as ResponsesParams };
}

/** The output ceiling: what the client allowed, else the model's. */
export function maxOutputTokensOf(params: ResponsesParams, model: ResolvedModel): number {
  return params.max_output_tokens ?? model.maxOutputTokens;
}

export function checkResponseAgainstModel(params: ResponsesParams, model: ResolvedModel, promptTokens: number): OpenAIErrorBody | null {
  const tooLarge = outputCeilingTooLarge('max_output_tokens', maxOutputTokensOf(params, model), model);
  if (tooLarge) return tooLarge;
  if (promptTokens > model.contextWindow) {
    return invalidRequest(
      `Your input exceeds the context window of this model: ${promptTokens} tokens, of at most ${model.contextWindow}. Please adjust your input and try again.`,
      'input',
      'context_length_exceeded',
    );
  }
  return null;
}

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: [];
  /** An entry per output token with `include: ['message.output_text.logprobs']`, else none. */
  logprobs: TokenLogprob[];
}

export interface OutputMessage {
  type: 'message';
  id: string;
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: [OutputText];
}

/** A call of a function tool, as the model makes it. */
export interface FunctionCallItem {
  type: 'function_call';
  id: string;
  call_id: string;
  name: string;
  arguments: string;
  status: 'in_progress' | 'completed';
}

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface OpenAIResponse {
  id: string;
  object: 'response';
  created_at: number;
  status: 'in_progress' | 'completed' | 'incomplete';
  background: false;
  /** Seconds; set once the response is completed, null otherwise. */
  completed_at: number | null;
  error: null;
  incomplete_details: { reason: 'max_output_tokens' } | null;
  instructions: string | null;
  max_output_tokens: number | null;
  max_tool_calls: unknown;
  model: string;
  /** One assistant message with one output_text part, or one function call (a forced tool). */
  output: [OutputMessage] | [FunctionCallItem];
  parallel_tool_calls: unknown;
  previous_response_id: unknown;
  prompt: unknown;
  prompt_cache_key: unknown;
  reasoning: unknown;
  safety_identifier: unknown;
  service_tier: 'default';
  store: unknown;
  temperature: unknown;
  text: unknown;
  tool_choice: unknown;
  tools: unknown[];
  top_logprobs: unknown;
  top_p: unknown;
  truncation: unknown;
  usage: ResponseUsage;
  user: unknown;
  metadata: unknown;
}

export interface PromptCount {
  promptTokens: number;
  /** The part of `promptTokens` served from the prompt cache (included in them, as OpenAI counts). */
  cachedTokens: number;
}

/**
 * The finished Response: the answer is the request hash's (plain and streamed alike), clipped
 * to `max_output_tokens`, and then `incomplete` as OpenAI reports a response cut short.
 */
export function buildResponse(params: ResponsesParams, model: ResolvedModel, prompt: PromptCount, outputLength: Range, createdMs: number): OpenAIResponse {
  const hash = requestHash(params);
  const maxTokens = maxOutputTokensOf(params, model);
  const call = toolCalls(responsesForcedTools(params), hash, maxTokens)?.[0];
  const json = responsesJsonFormat(params);
  const answer = call
    ? { text: '', outputTokens: call.outputTokens, clipped: false }
    : json
      ? jsonAnswer(json, hash, maxTokens, outputLength)
      : generateAnswer(hash, maxTokens, outputLength);
  const status = answer.clipped ? 'incomplete' : 'completed';
  const output: OpenAIResponse['output'] = call
    ? [{ type: 'function_call', id: newId('fc_', 48), call_id: newId('call_', 24), name: call.name, arguments: call.arguments, status: 'completed' }]
    : [{ type: 'message', id: newId('msg_', 48), status, role: 'assistant', content: [{ type: 'output_text', text: answer.text, annotations: [], logprobs: outputLogprobs(params, answer.text, hash) }] }];
  const given = (field: string, fallback: unknown): unknown => params[field] ?? fallback;
  return {
    id: newId('resp_', 48),
    object: 'response',
    created_at: Math.floor(createdMs / 1000),
    status,
    background: false,
    completed_at: null,
    error: null,
    incomplete_details: answer.clipped ? { reason: 'max_output_tokens' } : null,
    instructions: params.instructions ?? null,
    max_output_tokens: params.max_output_tokens ?? null,
    max_tool_calls: given('max_tool_calls', null),
    model: params.model,
    output,
    parallel_tool_calls: given('parallel_tool_calls', true),
    previous_response_id: given('previous_response_id', null),
    prompt: given('prompt', null),
    prompt_cache_key: given('prompt_cache_key', null),
    reasoning: given('reasoning', { effort: null, summary: null }),
    safety_identifier: given('safety_identifier', null),
    service_tier: 'default',
    store: given('store', true),
    temperature: given('temperature', 1),
    text: given('text', { format: { type: 'text' } }),
    tool_choice: given('tool_choice', 'auto'),
    tools: params.tools ?? [],
    top_logprobs: given('top_logprobs', 0),
    top_p: given('top_p', 1),
    truncation: given('truncation', 'disabled'),
    usage: {
      input_tokens: prompt.promptTokens,
      input_tokens_details: { cached_tokens: prompt.cachedTokens },
      output_tokens: answer.outputTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: prompt.promptTokens + answer.outputTokens,
    },
    user: given('user', null),
    metadata: given('metadata', {}),
  };
}

/** The include that asks for the output text's logprobs (`top_logprobs` alone gives none, as on the API). */
const LOGPROBS_INCLUDE = 'message.output_text.logprobs';

/** The output text's logprobs: made up as Chat's are, when the request includes them. */
function outputLogprobs(params: ResponsesParams, text: string, hash: string): TokenLogprob[] {
  if (!Array.isArray(params.include) || !params.include.includes(LOGPROBS_INCLUDE)) return [];
  const top = typeof params.top_logprobs === 'number' ? params.top_logprobs : 0;
  return tokenLogprobs(text, hash, top);
}

/** The response as it ends at `nowMs`: a completed one says when. */
export function finishedAt(response: OpenAIResponse, nowMs: number): OpenAIResponse {
  return { ...response, completed_at: response.status === 'completed' ? Math.floor(nowMs / 1000) : null };
}

export type InProgressResponse = Omit<OpenAIResponse, 'status' | 'completed_at' | 'incomplete_details' | 'output' | 'usage'> & {
  status: 'in_progress';
  completed_at: null;
  incomplete_details: null;
  output: [];
  usage: null;
};

/** The response as `response.created` and `response.in_progress` show it: nothing written yet, no usage. */
export function inProgress(response: OpenAIResponse): InProgressResponse {
  return { ...response, status: 'in_progress', completed_at: null, incomplete_details: null, output: [], usage: null };
}
