// The Anthropic Messages request: validation with the API's own wording (`field: problem`), the
// answer it gets, and the error bodies the SDK parses into its APIError subclasses.

import { createHmac } from 'node:crypto';
import { generateAnswer, newId, requestHash, sha256 } from './answer.js';
import { anthropicForcedTools, outputTokensOf, toolCalls } from './tool-call.js';
import { json, type Reply } from './http-exchange.js';
import type { Range, ResolvedModel } from './options.js';
import { MESSAGES_NULLABLE, withoutNulls } from './nullable-fields.js';
import { MESSAGES_FIELDS, unknownField } from './known-fields.js';
import { cutAtStop, stopStrings } from './stop-sequences.js';
import type { HeaderMap } from './rate-limit-headers.js';

type Block = Record<string, unknown>;

export interface MessageParams {
  model: string;
  max_tokens: number;
  messages: { role: 'user' | 'assistant'; content: string | Block[] }[];
  system?: string | Block[];
  tools?: unknown[];
  stream?: boolean;
  [field: string]: unknown;
}

export type Validation<T> = { ok: true; value: T } | { ok: false; message: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function checkBlocks(blocks: unknown[], at: string): string | null {
  for (const [i, block] of blocks.entries()) {
    if (!isObject(block) || typeof block.type !== 'string') return `${at}.${i}: Input should be a valid content block`;
    if (block.type === 'text' && typeof block.text !== 'string') return `${at}.${i}.text: Field required`;
    if (block.type === 'tool_result' && block.content !== undefined) {
      // A tool result's content is optional, a string or blocks; anything else (null included) is
      // refused, as the API's schema refuses it (the wording here is the simulator's guess).
      if (Array.isArray(block.content)) {
        const problem = checkBlocks(block.content, `${at}.${i}.content`);
        if (problem) return problem;
      } else if (typeof block.content !== 'string') {
        return `${at}.${i}.content: Input should be a valid string or a list of content blocks`;
      }
    }
  }
  return null;
}

/** `forCounting`: count_tokens takes the same body without `max_tokens`. */
export function validateMessageParams(given: unknown, forCounting = false): Validation<MessageParams> {
  const fail = (message: string) => ({ ok: false as const, message });
  if (!isObject(given)) return fail('Input should be a valid dictionary');
  const body = withoutNulls(given, MESSAGES_NULLABLE);
  const unknown = unknownField(body, MESSAGES_FIELDS);
  if (unknown !== undefined) return fail(`${unknown}: Extra inputs are not permitted`);
  if (body.model === undefined) return fail('model: Field required');
  if (typeof body.model !== 'string' || body.model === '') return fail('model: Input should be a valid string');
  if (!forCounting) {
    if (body.max_tokens === undefined) return fail('max_tokens: Field required');
    if (typeof body.max_tokens !== 'number' || !Number.isInteger(body.max_tokens)) {
      return fail('max_tokens: Input should be a valid integer');
    }
    if (body.max_tokens < 1) return fail('max_tokens: Input should be greater than or equal to 1');
  }
  if (body.messages === undefined) return fail('messages: Field required');
  if (!Array.isArray(body.messages)) return fail('messages: Input should be a valid list');
  if (body.messages.length === 0) return fail('messages: at least one message is required');
  for (const [i, message] of body.messages.entries()) {
    if (!isObject(message)) return fail(`messages.${i}: Input should be a valid dictionary`);
    if (message.role !== 'user' && message.role !== 'assistant') {
      return fail(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
    if (message.content === undefined) return fail(`messages.${i}.content: Field required`);
    const last = i === body.messages.length - 1;
    if ((message.content === '' || (Array.isArray(message.content) && message.content.length === 0)) && !(last && message.role === 'assistant')) {
      // The API's wording, as far as the simulator knows it; its `messages.N` prefix is a guess.
      return fail(`messages.${i}: all messages must have non-empty content except for the optional final assistant message`);
    }
    if (Array.isArray(message.content)) {
      const problem = checkBlocks(message.content, `messages.${i}.content`);
      if (problem) return fail(problem);
    } else if (typeof message.content !== 'string') {
      return fail(`messages.${i}.content: Input should be a valid string or a list of content blocks`);
    }
  }
  if (body.system !== undefined) {
    if (Array.isArray(body.system)) {
      for (const [i, block] of body.system.entries()) {
        if (!isObject(block) || block.type !== 'text' || typeof block.text !== 'string') {
          return fail(`system.${i}: Input should be a text block`);
        }
      }
    } else if (typeof body.system !== 'string') {
      return fail('system: Input should be a valid string or a list of text blocks');
    }
  }
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return fail('tools: Input should be a valid list');
    const notATool = body.tools.findIndex((tool) => !isObject(tool));
    if (notATool >= 0) return fail(`tools.${notATool}: Input should be a valid dictionary`);
  }
  if (body.temperature !== undefined) {
    if (typeof body.temperature !== 'number') return fail('temperature: Input should be a valid number');
    if (body.temperature < 0 || body.temperature > 1) return fail('temperature: Input should be between 0 and 1');
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') return fail('stream: Input should be a valid boolean');
  if (body.stop_sequences !== undefined) {
    if (!Array.isArray(body.stop_sequences)) return fail('stop_sequences: Input should be a valid list');
    const notAString = body.stop_sequences.findIndex((s) => typeof s !== 'string');
    if (notAString >= 0) return fail(`stop_sequences.${notAString}: Input should be a valid string`);
  }
  const thinking = checkThinking(body, forCounting);
  if (thinking) return fail(thinking);
  const signatures = checkSignatures(body.messages as { content: unknown }[]);
  if (signatures) return fail(signatures);
  return { ok: true, value: body as MessageParams };
}

const THINKING_TYPES = ['enabled', 'disabled', 'adaptive', 'between_tools'];
/** The API's floor for a thinking budget. */
const MIN_THINKING_BUDGET = 1024;

/** `thinking` as the API checks it: a known type; `enabled` with a budget of at least 1,024 below `max_tokens`. */
function checkThinking(body: Record<string, unknown>, forCounting: boolean): string | null {
  const { thinking } = body;
  if (thinking === undefined) return null;
  if (!isObject(thinking)) return 'thinking: Input should be a valid dictionary';
  if (typeof thinking.type !== 'string' || !THINKING_TYPES.includes(thinking.type)) {
    return `thinking.type: Input should be ${THINKING_TYPES.map((t) => `'${t}'`).join(', ')}`;
  }
  if (thinking.display !== undefined && thinking.display !== null && thinking.display !== 'summarized' && thinking.display !== 'omitted') {
    return `thinking.${thinking.type}.display: Input should be 'summarized' or 'omitted'`;
  }
  if (thinking.type !== 'enabled') return null;
  const budget = thinking.budget_tokens;
  if (budget === undefined) return 'thinking.enabled.budget_tokens: Field required';
  if (typeof budget !== 'number' || !Number.isInteger(budget)) return 'thinking.enabled.budget_tokens: Input should be a valid integer';
  if (budget < MIN_THINKING_BUDGET) return `thinking.enabled.budget_tokens: Input should be greater than or equal to ${MIN_THINKING_BUDGET}`;
  if (!forCounting && typeof body.max_tokens === 'number' && body.max_tokens <= budget) {
    return '`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size';
  }
  if (anthropicForcedTools(body).length > 0) return 'Thinking may not be enabled when tool_choice forces tool use.';
  return null;
}

/**
 * The key the simulator signs its thinking with. Fixed, so answers stay the same across runs;
 * what matters is that a block passed back is checked, as the API checks its own signatures.
 */
const SIGNING_KEY = 'headroom-simulator-thinking';

/** A thinking block's signature: over its text and the request it answered, opaque to clients. */
export function thinkingSignature(thinking: string, requestHashHex: string): string {
  const nonce = Buffer.from(requestHashHex, 'hex').subarray(0, 16);
  return Buffer.concat([nonce, signatureMac(nonce, thinking)]).toString('base64');
}

const signatureMac = (nonce: Buffer, thinking: string) => createHmac('sha256', SIGNING_KEY).update(nonce).update(thinking).digest();

function signatureHolds(thinking: string, signature: string): boolean {
  const raw = Buffer.from(signature, 'base64');
  return raw.length === 48 && signatureMac(raw.subarray(0, 16), thinking).equals(raw.subarray(16));
}

/**
 * Thinking blocks passed back (required with tools) must be as the API sent them: the API checks
 * each `signature` against its text. The simulator checks its own, by the request-hash prefix it
 * signed with (the nonce, its first 16 bytes, is the request's hash: a block from another request
 * still verifies, as a real one would).
 */
function checkSignatures(messages: { content: unknown }[]): string | null {
  for (const [i, message] of messages.entries()) {
    if (!Array.isArray(message.content)) continue;
    for (const [j, block] of message.content.entries()) {
      if (!isObject(block) || block.type !== 'thinking') continue;
      if (typeof block.thinking !== 'string') return `messages.${i}.content.${j}.thinking: Field required`;
      if (typeof block.signature !== 'string') return `messages.${i}.content.${j}.signature: Field required`;
      if (!signatureHolds(block.thinking, block.signature)) return `messages.${i}.content.${j}: Invalid \`signature\` in \`thinking\` block`;
    }
  }
  return null;
}

/** Limits that need the model: the output ceiling and the context window. */
export function checkAgainstModel(params: MessageParams, model: ResolvedModel, inputTokens: number): string | null {
  if (params.max_tokens > model.maxOutputTokens) {
    return `max_tokens: ${params.max_tokens} > ${model.maxOutputTokens}, which is the maximum allowed number of output tokens for ${model.name}`;
  }
  if (inputTokens > model.contextWindow) {
    return `prompt is too long: ${inputTokens} tokens > ${model.contextWindow} maximum`;
  }
  if (inputTokens + params.max_tokens > model.contextWindow) {
    return `input length and \`max_tokens\` exceed context limit: ${inputTokens} + ${params.max_tokens} > ${model.contextWindow}, decrease input length or \`max_tokens\` and try again`;
  }
  return null;
}

export interface MessageUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** The cache writes by TTL, as Anthropic breaks `cache_creation_input_tokens` down. */
export interface CacheCreation {
  ephemeral_5m_input_tokens: number;
  ephemeral_1h_input_tokens: number;
}

export type AnthropicBlock =
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'text'; text: string; citations: null }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicBlock[];
  stop_reason: 'end_turn' | 'max_tokens' | 'tool_use' | 'stop_sequence';
  stop_sequence: string | null;
  stop_details: null;
  container: null;
  diagnostics: null;
  usage: MessageUsage & {
    cache_creation: CacheCreation;
    server_tool_use: null;
    service_tier: 'standard' | 'batch';
    inference_geo: null;
    output_tokens_details: null;
    speed: null;
  };
}

export function buildMessage(
  params: MessageParams,
  usage: Omit<MessageUsage, 'output_tokens'> & { cache_creation?: CacheCreation },
  outputLength: Range,
  serviceTier: 'standard' | 'batch' = 'standard',
): AnthropicMessage {
  const hash = requestHash(params);
  const thought = thinkingOf(params, hash, outputLength);
  const room = params.max_tokens - (thought?.tokens ?? 0);
  const calls = toolCalls(anthropicForcedTools(params), hash, room);
  const answer = calls ? { text: '', outputTokens: outputTokensOf(calls), clipped: false, stopSequence: null } : cutAtStop(generateAnswer(hash, room, outputLength), stopStrings(params.stop_sequences));
  const content: AnthropicBlock[] = calls
    ? calls.map((call) => ({ type: 'tool_use' as const, id: newId('toolu_01', 22), name: call.name, input: JSON.parse(call.arguments) as Record<string, unknown> }))
    : [{ type: 'text', text: answer.text, citations: null }];
  return {
    id: newId('msg_01', 22),
    type: 'message',
    role: 'assistant',
    model: params.model,
    content: thought ? [thought.block, ...content] : content,
    stop_reason: calls ? 'tool_use' : answer.stopSequence !== null ? 'stop_sequence' : answer.clipped ? 'max_tokens' : 'end_turn',
    stop_sequence: answer.stopSequence,
    // Every field the SDK's Message declares is sent, null where the simulator models nothing
    // (no refusals, containers, diagnostics, geo or speed options), as the API sends them.
    stop_details: null,
    container: null,
    diagnostics: null,
    usage: {
      ...usage,
      output_tokens: (thought?.tokens ?? 0) + answer.outputTokens,
      cache_creation: usage.cache_creation ?? { ephemeral_5m_input_tokens: usage.cache_creation_input_tokens, ephemeral_1h_input_tokens: 0 },
      server_tool_use: null,
      service_tier: serviceTier,
      inference_geo: null,
      output_tokens_details: null,
      speed: null,
    },
  };
}

export interface Thought {
  block: { type: 'thinking'; thinking: string; signature: string };
  /** Output tokens the thinking cost: billed whether its text is shown or omitted. */
  tokens: number;
}

/**
 * The thinking a request with `thinking` enabled (or adaptive) opens its answer with: as
 * deterministic as the answer, within the budget and leaving at least one token of `max_tokens`
 * for the answer. `display: 'omitted'` keeps the tokens and the signature and drops the text.
 */
export function thinkingOf(params: MessageParams, hash: string, length: Range): Thought | undefined {
  const thinking = isObject(params.thinking) ? params.thinking : undefined;
  if (thinking?.type !== 'enabled' && thinking?.type !== 'adaptive') return undefined;
  const budget = thinking.type === 'enabled' ? Number(thinking.budget_tokens) : params.max_tokens - 1;
  const thought = generateAnswer(sha256(`${hash}:thinking`), Math.max(0, Math.min(budget, params.max_tokens - 1)), length);
  const text = thinking.display === 'omitted' ? '' : thought.text;
  return { block: { type: 'thinking', thinking: text, signature: thinkingSignature(text, hash) }, tokens: thought.outputTokens };
}

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

/** `details.error_code` names a case within a status (the SDK maps e.g. `429 enforced_spend_limit_reached` to its own class). */
export function anthropicErrorBody(type: AnthropicErrorType, message: string, errorCode?: string) {
  return { type: 'error' as const, error: { type, message, ...(errorCode === undefined ? {} : { details: { error_code: errorCode } }) } };
}

export function anthropicError(status: number, type: AnthropicErrorType, message: string, headers?: HeaderMap, errorCode?: string): Reply {
  return json(status, anthropicErrorBody(type, message, errorCode), headers);
}
