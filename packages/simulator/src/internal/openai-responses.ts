// POST /v1/responses, plain and streamed: the same call as a chat completion (one prompt count,
// the model's pool, the prompt cache, faults, 429s and pacing), answered as a Response.

import { type Exchange, parseJsonBody, type Reply } from './http-exchange.js';
import { admitOpenAICall, poolHeaders, replyPlain, replyStream } from './openai-call.js';
import { invalidJson, modelNotFound, openaiError } from './openai-request.js';
import { buildResponse, checkResponseAgainstModel, finishedAt, maxOutputTokensOf, validateResponseParams } from './openai-responses-request.js';
import { streamResponse } from './openai-responses-stream.js';
import { openaiPromptTokens, openaiSegments, responsesPrompt } from './prompt-tokens.js';
import type { SimulatorState } from './state.js';

export async function handleCreateResponse(state: SimulatorState, exchange: Exchange, apiKey: string): Promise<Reply> {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return openaiError(400, invalidJson(body.message));
  const valid = validateResponseParams(body.value);
  if (!valid.ok) return openaiError(400, valid.error);
  const params = valid.value;
  const model = state.model(params.model, 'openai');
  if (!model) return openaiError(404, modelNotFound(params.model));

  const prompt = responsesPrompt(params);
  const segments = openaiSegments(prompt);
  const promptTokens = openaiPromptTokens(prompt, segments);
  const tooBig = checkResponseAgainstModel(params, model, promptTokens);
  if (tooBig) return openaiError(400, tooBig, poolHeaders(state, apiKey, model));

  const admitted = admitOpenAICall(state, { model, apiKey, segments, promptTokens, reservedOutput: maxOutputTokensOf(params, model), streamed: params.stream === true });
  if (!admitted.ok) return admitted.reply;
  const { call } = admitted;
  const response = buildResponse(params, model, { promptTokens, cachedTokens: call.cachedTokens }, state.config.outputTokens, state.now());

  if (params.stream) return replyStream(state, call, (res, pacing) => streamResponse(res, response, { ...pacing, now: () => state.now() }));
  return replyPlain(state, call, response.usage.output_tokens, () => finishedAt(response, state.now()));
}
