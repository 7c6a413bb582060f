// The endpoints an OpenAI batch may target, and how one line of each is answered. Every line goes
// through the same step whatever its endpoint: validate the body as that endpoint does, find the
// model (404 if unknown), count the prompt and check it against the model as the interactive call
// would, then build the same answer the interactive call gives (same request, same text), marked
// `service_tier: 'batch'`. Batch lines read no prompt cache and draw nothing from interactive
// limits, so none of that is here.

import {
  buildCompletion,
  type ChatParams,
  checkChatAgainstModel,
  invalidRequest,
  modelNotFound,
  type OpenAIErrorBody,
  validateChatParams,
} from './openai-request.js';
import { buildResponse, checkResponseAgainstModel, finishedAt, type ResponsesParams, validateResponseParams } from './openai-responses-request.js';
import type { Range, ResolvedModel } from './options.js';
import { openaiPromptTokens, responsesPrompt } from './prompt-tokens.js';

/** One line's outcome: the status and body its output (200) or error (otherwise) file line carries. */
export type LineAnswer = { status: 200; body: unknown; inputTokens: number; outputTokens: number } | { status: 400 | 404; body: OpenAIErrorBody };

export interface LineContext {
  /** The model by name, among the simulator's OpenAI models; undefined when it has none. */
  model(name: string): ResolvedModel | undefined;
  outputLength: Range;
  /** When the batch finishes (ms): the answers' creation time. */
  at: number;
}

interface Endpoint<P extends { model: string }> {
  validate(body: unknown): { ok: true; value: P } | { ok: false; error: OpenAIErrorBody };
  promptTokens(params: P): number;
  check(params: P, model: ResolvedModel, promptTokens: number): OpenAIErrorBody | null;
  build(params: P, model: ResolvedModel, promptTokens: number, context: LineContext): { body: unknown; inputTokens: number; outputTokens: number };
}

/** The one per-line step, specialised by an endpoint's own validation, count and answer. */
function answering<P extends { model: string }>(endpoint: Endpoint<P>): (body: unknown, context: LineContext) => LineAnswer {
  return (body, context) => {
    const valid = endpoint.validate(body);
    if (!valid.ok) return { status: 400, body: valid.error };
    const model = context.model(valid.value.model);
    if (!model) return { status: 404, body: modelNotFound(valid.value.model) };
    const promptTokens = endpoint.promptTokens(valid.value);
    const tooBig = endpoint.check(valid.value, model, promptTokens);
    if (tooBig) return { status: 400, body: tooBig };
    return { status: 200, ...endpoint.build(valid.value, model, promptTokens, context) };
  };
}

const chatCompletions: Endpoint<ChatParams> = {
  validate: validateChatParams,
  promptTokens: (params) => openaiPromptTokens(params),
  check: checkChatAgainstModel,
  build: (params, model, promptTokens, { outputLength, at }) => {
    const completion = { ...buildCompletion(params, model, promptTokens, outputLength, at), service_tier: 'batch' as const };
    return { body: completion, inputTokens: completion.usage.prompt_tokens, outputTokens: completion.usage.completion_tokens };
  },
};

const responses: Endpoint<ResponsesParams> = {
  validate: (body) => {
    const valid = validateResponseParams(body);
    // A batch line's answer is written to the output file whole; there is no connection to stream it on.
    if (valid.ok && valid.value.stream === true) {
      return { ok: false, error: invalidRequest("Streaming is not supported in a batch: leave 'stream' unset or false.", 'stream', 'unsupported_value') };
    }
    return valid;
  },
  promptTokens: (params) => openaiPromptTokens(responsesPrompt(params)),
  check: checkResponseAgainstModel,
  build: (params, model, promptTokens, { outputLength, at }) => {
    const response = { ...finishedAt(buildResponse(params, model, { promptTokens, cachedTokens: 0 }, outputLength, at), at), service_tier: 'batch' as const };
    return { body: response, inputTokens: response.usage.input_tokens, outputTokens: response.usage.output_tokens };
  },
};

/** Keyed by the batch's `endpoint`, which each line's `url` must match. */
export const BATCH_ENDPOINTS = {
  '/v1/chat/completions': answering(chatCompletions),
  '/v1/responses': answering(responses),
} as const;

export type BatchEndpoint = keyof typeof BATCH_ENDPOINTS;

export function isBatchEndpoint(value: unknown): value is BatchEndpoint {
  return typeof value === 'string' && Object.hasOwn(BATCH_ENDPOINTS, value);
}
