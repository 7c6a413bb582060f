// POST /v1/chat/completions, plain and streamed.

import { type Exchange, parseJsonBody, type Reply } from './http-exchange.js';
import { admitOpenAICall, poolHeaders, replyPlain, replyStream } from './openai-call.js';
import {
  buildCompletion,
  checkChatAgainstModel,
  invalidJson,
  modelNotFound,
  openaiError,
  reservedOutputOf,
  validateChatParams,
} from './openai-request.js';
import { streamCompletion } from './openai-stream.js';
import { openaiPromptTokens, openaiSegments } from './prompt-tokens.js';
import type { SimulatorState } from './state.js';

export async function handleChatCompletion(state: SimulatorState, exchange: Exchange, apiKey: string): Promise<Reply> {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return openaiError(400, invalidJson(body.message));
  const valid = validateChatParams(body.value);
  if (!valid.ok) return openaiError(400, valid.error);
  const params = valid.value;
  const model = state.model(params.model, 'openai');
  if (!model) return openaiError(404, modelNotFound(params.model));

  const segments = openaiSegments(params);
  const promptTokens = openaiPromptTokens(params, segments);
  const tooBig = checkChatAgainstModel(params, model, promptTokens);
  if (tooBig) return openaiError(400, tooBig, poolHeaders(state, apiKey, model));

  const admitted = admitOpenAICall(state, { model, apiKey, segments, promptTokens, reservedOutput: reservedOutputOf(params, model), streamed: params.stream === true });
  if (!admitted.ok) return admitted.reply;
  const { call } = admitted;
  const completion = buildCompletion(params, model, promptTokens, state.config.outputTokens, state.now(), call.cachedTokens);

  if (params.stream) {
    const includeUsage = params.stream_options?.include_usage === true;
    return replyStream(state, call, (res, pacing) => streamCompletion(res, completion, { includeUsage, ...pacing }));
  }
  return replyPlain(state, call, completion.usage.completion_tokens, () => completion);
}
