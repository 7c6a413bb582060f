// The OpenAI Chat Completions request: validation with the API's own messages, params and codes,
// the completion it gets, and the `{ error: { message, type, param, code } }` bodies.

import { generateAnswer, newId, requestHash, sha256 } from './answer.js';
import { openaiForcedTools, outputTokensOf, toolCalls } from './tool-call.js';
import { json, type Reply } from './http-exchange.js';
import { CHAT_NULLABLE, withoutNulls } from './nullable-fields.js';
import { CHAT_FIELDS, unknownField } from './known-fields.js';
import { chatJsonFormat, jsonAnswer } from './structured-output.js';
import { cutAtStop, stopStrings } from './stop-sequences.js';
import { MAX_TOP_LOGPROBS, type TokenLogprob, tokenLogprobs } from './logprobs.js';
import type { Range, ResolvedModel } from './options.js';
import { spokenAnswer, wantsAudio, type ChatAudio } from './openai-audio.js';
import type { HeaderMap } from './rate-limit-headers.js';

export interface ChatParams {
  model: string;
  messages: { role: string; content?: unknown; name?: unknown; tool_calls?: unknown }[];
  max_tokens?: number;
  max_completion_tokens?: number;
  /** How many choices to generate (1-128). */
  n?: number | null;
  tools?: unknown[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  logprobs?: boolean;
  top_logprobs?: number;
  [field: string]: unknown;
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function openaiErrorBody(message: string, type: string, param: string | null = null, code: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

export function openaiError(status: number, body: OpenAIErrorBody, headers?: HeaderMap): Reply {
  return json(status, body, headers);
}

export function invalidRequest(message: string, param: string | null = null, code: string | null = null): OpenAIErrorBody {
  return openaiErrorBody(message, 'invalid_request_error', param, code);
}

/** A body that is not JSON, as both OpenAI endpoints refuse it. */
export function invalidJson(message: string): OpenAIErrorBody {
  return invalidRequest(`We could not parse the JSON body of your request. (${message})`);
}

const ROLES = ['system', 'assistant', 'user', 'function', 'tool', 'developer'];

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export type ChatValidation = { ok: true; value: ChatParams } | { ok: false; error: OpenAIErrorBody };

export function validateChatParams(given: unknown): ChatValidation {
  const fail = (error: OpenAIErrorBody) => ({ ok: false as const, error });
  if (!isObject(given)) return fail(invalidRequest('Invalid body: expected a JSON object.'));
  const body = withoutNulls(given, CHAT_NULLABLE);
  const unknown = unknownField(body, CHAT_FIELDS);
  if (unknown !== undefined) return fail(invalidRequest(`Unrecognized request argument supplied: ${unknown}`));
  if (typeof body.model !== 'string' || body.model === '') return fail(invalidRequest('you must provide a model parameter'));
  if (body.messages === undefined) {
    return fail(invalidRequest("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter'));
  }
  if (!Array.isArray(body.messages)) {
    return fail(invalidRequest("Invalid type for 'messages': expected an array, but got another type instead.", 'messages', 'invalid_type'));
  }
  if (body.messages.length === 0) {
    return fail(invalidRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'messages', 'empty_array'));
  }
  for (const [i, message] of body.messages.entries()) {
    const at = `messages[${i}]`;
    if (!isObject(message)) return fail(invalidRequest(`Invalid type for '${at}': expected an object.`, at, 'invalid_type'));
    if (typeof message.role !== 'string' || !ROLES.includes(message.role)) {
      return fail(invalidRequest(`Invalid value: '${String(message.role)}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`, `${at}.role`, 'invalid_value'));
    }
    const content = message.content;
    const contentOptional = message.role === 'assistant' && message.tool_calls !== undefined && message.tool_calls !== null;
    if (content === undefined || (content === null && !contentOptional)) {
      if (!contentOptional) return fail(invalidRequest(`Missing required parameter: '${at}.content'.`, `${at}.content`, 'missing_required_parameter'));
    } else if (content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      return fail(invalidRequest(`Invalid type for '${at}.content': expected one of a string or array of objects.`, `${at}.content`, 'invalid_type'));
    }
    if (Array.isArray(content) && content.length === 0 && EMPTY_REFUSED.has(message.role)) {
      return fail(invalidRequest(`Invalid '${at}.content': empty array. Expected an array with minimum length 1, but got an empty array instead.`, `${at}.content`, 'empty_array'));
    }
    if (Array.isArray(content)) {
      for (const [j, part] of content.entries()) {
        const partAt = `${at}.content[${j}]`;
        if (!isObject(part)) return fail(invalidRequest(`Invalid type for '${partAt}': expected an object, but got ${part === null ? 'null' : typeof part} instead.`, partAt, 'invalid_type'));
        if (typeof part.type !== 'string') return fail(invalidRequest(`Missing required parameter: '${partAt}.type'.`, `${partAt}.type`, 'missing_required_parameter'));
      }
    }
  }
  const pairing = toolPairing(body.messages as Record<string, unknown>[]);
  if (pairing?.kind === 'orphan') {
    // The API's wording, its misspelling and its `messages.[N].role` param included.
    return fail(invalidRequest("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", `messages.[${pairing.at}].role`));
  }
  if (pairing?.kind === 'unanswered') {
    // The API's wording; its param (the calling message's role, as for an orphan) is the simulator's guess.
    return fail(invalidRequest(
      `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${pairing.ids.join(', ')}`,
      `messages.[${pairing.at}].role`,
    ));
  }
  const integers: [string, number, number][] = [
    ['max_tokens', 1, Number.POSITIVE_INFINITY],
    ['max_completion_tokens', 1, Number.POSITIVE_INFINITY],
    ['n', 1, MAX_CHOICES],
    ['top_logprobs', 0, MAX_TOP_LOGPROBS],
  ];
  for (const [field, min, max] of integers) {
    const error = integerOutOfRange(field, body[field], min, max);
    if (error) return fail(error);
  }
  if (body.max_tokens !== undefined && body.max_completion_tokens !== undefined) {
    return fail(invalidRequest("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.", 'max_tokens', 'invalid_parameter_combination'));
  }
  for (const [field, min, max] of [['temperature', 0, 2], ['top_p', 0, 1]] as const) {
    const error = decimalOutOfRange(field, body[field], min, max);
    if (error) return fail(error);
  }
  if (body.stream_options !== undefined && body.stream !== true) {
    // The API's wording; its param and code are the simulator's guess.
    return fail(invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options'));
  }
  if (body.logprobs !== undefined && typeof body.logprobs !== 'boolean') {
    return fail(invalidRequest(`Invalid type for 'logprobs': expected a boolean, but got ${typeof body.logprobs} instead.`, 'logprobs', 'invalid_type'));
  }
  if (body.tools !== undefined && !Array.isArray(body.tools)) {
    return fail(invalidRequest("Invalid type for 'tools': expected an array.", 'tools', 'invalid_type'));
  }
  const notATool = Array.isArray(body.tools) ? body.tools.findIndex((tool) => !isObject(tool)) : -1;
  if (notATool >= 0) return fail(invalidRequest(`Invalid type for 'tools[${notATool}]': expected an object.`, `tools[${notATool}]`, 'invalid_type'));
  return { ok: true, value: body as ChatParams };
}

/**
 * The first break of the rule that pairs tool calls with their answers: a `tool` message that
 * answers no call (one not right after an assistant message with `tool_calls`, or after another
 * tool message answering it), or an assistant message whose calls are not all answered by the
 * tool messages right after it (`ids`: those left, in the order called). Null when all pair up.
 */
function toolPairing(messages: Record<string, unknown>[]): { kind: 'orphan'; at: number } | { kind: 'unanswered'; at: number; ids: string[] } | null {
  let calling: { at: number; ids: string[] } | undefined;
  const unanswered = () => (calling && calling.ids.length > 0 ? { kind: 'unanswered' as const, ...calling } : null);
  for (const [i, message] of messages.entries()) {
    if (message.role === 'tool') {
      if (!calling) return { kind: 'orphan', at: i };
      const answers = message.tool_call_id;
      calling.ids = calling.ids.filter((id) => id !== answers);
      continue;
    }
    const left = unanswered();
    if (left) return left;
    const calls = message.role === 'assistant' && Array.isArray(message.tool_calls) ? message.tool_calls : [];
    calling = calls.length > 0 ? { at: i, ids: calls.map((call) => (isObject(call) ? String(call.id) : String(call))) } : undefined;
  }
  return unanswered();
}

/** The most `n` takes. */
const MAX_CHOICES = 128;

/** Roles whose content may not be an empty list (an assistant's that calls tools has none to give). */
const EMPTY_REFUSED = new Set(['user', 'system', 'developer']);

/** A number field (absent is fine) outside `min`..`max`, as the API words it. Both OpenAI endpoints check temperature and top_p. */
export function decimalOutOfRange(field: string, value: unknown, min: number, max: number): OpenAIErrorBody | null {
  if (value === undefined) return null;
  if (typeof value !== 'number') return invalidRequest(`Invalid type for '${field}': expected a decimal, but got ${typeof value} instead.`, field, 'invalid_type');
  if (value < min) return invalidRequest(`Invalid '${field}': decimal below minimum value. Expected a value >= ${min}, but got ${value} instead.`, field, 'decimal_below_min_value');
  if (value > max) return invalidRequest(`Invalid '${field}': decimal above maximum value. Expected a value <= ${max}, but got ${value} instead.`, field, 'decimal_above_max_value');
  return null;
}

/** An integer field (absent is fine) outside `min`..`max`, as the API words it. */
function integerOutOfRange(field: string, value: unknown, min: number, max: number): OpenAIErrorBody | null {
  if (value === undefined) return null;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    return invalidRequest(`Invalid type for '${field}': expected an integer, but got ${typeof value} instead.`, field, 'invalid_type');
  }
  if (value < min) return invalidRequest(`Invalid '${field}': integer below minimum value. Expected a value >= ${min}, but got ${value} instead.`, field, 'integer_below_min_value');
  if (value > max) return invalidRequest(`Invalid '${field}': integer above maximum value. Expected a value <= ${max}, but got ${value} instead.`, field, 'integer_above_max_value');
  return null;
}

/** One choice's output ceiling: what the client allowed, else the model's (as OpenAI assumes). */
export function maxTokensOf(params: ChatParams, model: ResolvedModel): number {
  return params.max_completion_tokens ?? params.max_tokens ?? model.maxOutputTokens;
}

/** The output reservation: each of the `n` choices may run to the ceiling, and all are billed. */
export function reservedOutputOf(params: ChatParams, model: ResolvedModel): number {
  return maxTokensOf(params, model) * (params.n ?? 1);
}

/** An output ceiling (`field`, as the client named it) above what the model can write. Both OpenAI endpoints check it. */
export function outputCeilingTooLarge(field: string, maxTokens: number, model: ResolvedModel): OpenAIErrorBody | null {
  if (maxTokens <= model.maxOutputTokens) return null;
  return invalidRequest(
    `${field} is too large: ${maxTokens}. This model supports at most ${model.maxOutputTokens} completion tokens, whereas you provided ${maxTokens}.`,
    field,
    'invalid_value',
  );
}

export function checkChatAgainstModel(params: ChatParams, model: ResolvedModel, promptTokens: number): OpenAIErrorBody | null {
  const field = params.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const tooLarge = outputCeilingTooLarge(field, maxTokensOf(params, model), model);
  if (tooLarge) return tooLarge;
  if (promptTokens > model.contextWindow) {
    return invalidRequest(
      `This model's maximum context length is ${model.contextWindow} tokens. However, your messages resulted in ${promptTokens} tokens. Please reduce the length of the messages.`,
      'messages',
      'context_length_exceeded',
    );
  }
  return null;
}

export function modelNotFound(name: string): OpenAIErrorBody {
  return invalidRequest(`The model \`${name}\` does not exist or you do not have access to it.`, null, 'model_not_found');
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: number;
    message: {
      role: 'assistant';
      content: string | null;
      refusal: null;
      annotations: [];
      tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
      /** A spoken answer (audio output asked for): its transcript is the text, and `content` is null. */
      audio?: ChatAudio;
    };
    /** With `logprobs: true`, an entry per output token of a text answer (none for tool calls). */
    logprobs: { content: TokenLogprob[] | null; refusal: null } | null;
    finish_reason: 'stop' | 'length' | 'tool_calls';
  }[];
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    total_tokens: number;
    prompt_tokens_details: { cached_tokens: number; audio_tokens: number };
    completion_tokens_details: { reasoning_tokens: number; audio_tokens: number; accepted_prediction_tokens: number; rejected_prediction_tokens: number };
  };
  service_tier: 'default' | 'batch';
  system_fingerprint: string;
}

/**
 * `cachedTokens`: the part of `promptTokens` served from the prompt cache (included in them, as
 * OpenAI counts). With `n`, each choice is its own answer (the first is the one a request without
 * `n` gets) and `completion_tokens` is their sum: every choice is billed.
 */
export function buildCompletion(params: ChatParams, model: ResolvedModel, promptTokens: number, outputLength: Range, createdMs: number, cachedTokens = 0): ChatCompletion {
  const hash = requestHash(params);
  const tools = openaiForcedTools(params);
  const wantsLogprobs = params.logprobs === true;
  const spoken = wantsAudio(params);
  const created = Math.floor(createdMs / 1000);
  const choices = Array.from({ length: params.n ?? 1 }, (_, index) => {
    const choiceHash = index === 0 ? hash : sha256(`${hash}:${index}`);
    const calls = toolCalls(tools, choiceHash, maxTokensOf(params, model));
    if (calls) {
      const made = calls.map((call) => ({ id: newId('call_', 24), type: 'function' as const, function: { name: call.name, arguments: call.arguments } }));
      return {
        tokens: outputTokensOf(calls),
        // The API's logprobs cover message content; a tool call's arguments are not content (the simulator's reading, not checked against the API).
        choice: { index, message: { role: 'assistant' as const, content: null, refusal: null, annotations: [] as [], tool_calls: made }, logprobs: wantsLogprobs ? { content: null, refusal: null } : null, finish_reason: 'tool_calls' as const },
      };
    }
    const json = chatJsonFormat(params);
    const written = json ? jsonAnswer(json, choiceHash, maxTokensOf(params, model), outputLength) : generateAnswer(choiceHash, maxTokensOf(params, model), outputLength);
    const answer = cutAtStop(written, stopStrings(params.stop));
    // Spoken, the answer's text is the audio's transcript; logprobs cover content, which it has none of.
    const audio = spoken ? spokenAnswer(answer.text, choiceHash, created) : undefined;
    return {
      tokens: answer.outputTokens,
      choice: {
        index,
        message: audio ? { role: 'assistant' as const, content: null, refusal: null, annotations: [] as [], audio } : { role: 'assistant' as const, content: answer.text, refusal: null, annotations: [] as [] },
        logprobs: wantsLogprobs ? { content: audio ? null : tokenLogprobs(answer.text, choiceHash, params.top_logprobs ?? 0), refusal: null } : null,
        finish_reason: answer.clipped ? ('length' as const) : ('stop' as const),
      },
    };
  });
  const completionTokens = choices.reduce((sum, c) => sum + c.tokens, 0);
  return {
    id: newId('chatcmpl-', 29),
    object: 'chat.completion',
    created,
    model: params.model,
    choices: choices.map((c) => c.choice),
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: cachedTokens, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_headroom_sim',
  };
}
