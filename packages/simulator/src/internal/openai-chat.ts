// POST /v1/chat/completions, plain and streamed.

import { type Exchange, json, parseJsonBody, type Reply, sleep } from './http-exchange.js';
import { openaiFaultReply } from './openai-faults.js';
import {
  buildCompletion,
  checkChatAgainstModel,
  invalidRequest,
  modelNotFound,
  openaiError,
  openaiErrorBody,
  reservedOutputOf,
  validateChatParams,
} from './openai-request.js';
import { streamCompletion } from './openai-stream.js';
import type { StreamDelivery } from './paced-stream.js';
import { openaiPromptTokens, openaiSegments } from './prompt-tokens.js';
import type { QuotaSnapshot } from './quota.js';
import { goDuration, openaiRateLimitHeaders, retryAfterSeconds } from './rate-limit-headers.js';
import type { SimulatorState } from './state.js';

export async function handleChatCompletion(state: SimulatorState, exchange: Exchange, apiKey: string): Promise<Reply> {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return openaiError(400, invalidRequest(`We could not parse the JSON body of your request. (${body.message})`));
  const valid = validateChatParams(body.value);
  if (!valid.ok) return openaiError(400, valid.error);
  const params = valid.value;
  const model = state.model(params.model, 'openai');
  if (!model) return openaiError(404, modelNotFound(params.model));

  const segments = openaiSegments(params);
  const promptTokens = openaiPromptTokens(params, segments);
  const headersFor = (snapshot: QuotaSnapshot) => openaiRateLimitHeaders(snapshot);
  const tooBig = checkChatAgainstModel(params, model, promptTokens);
  if (tooBig) return openaiError(400, tooBig, headersFor(state.quota.snapshot(apiKey, model.pool, state.now())));

  const reservedOutput = reservedOutputOf(params, model);
  // Cached prompt tokens are reported but still drawn from TPM: OpenAI's caching does not touch limits.
  const cache = state.openaiPromptCache.plan(`${apiKey}\u0000${model.name}`, segments, promptTokens, state.now());
  const result = state.admit({
    model,
    apiKey,
    input: promptTokens,
    cacheRead: cache.cached,
    cacheCreation: 0,
    maxTokens: reservedOutput,
    charge: { requests: 1, tokens: promptTokens + reservedOutput },
    streamed: params.stream === true,
  });

  if (result.kind === 'fault') return openaiFaultReply(result.action, state.quota.snapshot(apiKey, model.pool, state.now()));

  if (result.kind === 'refused') {
    const { admission, snapshot } = result;
    const headers = headersFor(snapshot);
    const byTokens = admission.dimension === 'tokens';
    const limited = snapshot[admission.dimension];
    const limit = limited?.limit ?? 0;
    const unit = byTokens ? 'tokens per min (TPM)' : 'requests per min (RPM)';
    const requested = byTokens ? promptTokens + reservedOutput : 1;
    if (!Number.isFinite(admission.waitMs)) {
      return openaiError(429, openaiErrorBody(`Request too large for ${model.name} on ${unit}: Limit ${limit}, Requested ${requested}. The input or output tokens must be reduced in order to run successfully.`, 'tokens', null, 'rate_limit_exceeded'), headers);
    }
    const used = limit - (limited?.remaining ?? 0);
    return openaiError(
      429,
      openaiErrorBody(
        `Rate limit reached for ${model.name} on ${unit}: Limit ${limit}, Used ${used}, Requested ${requested}. Please try again in ${goDuration(admission.waitMs)}.`,
        byTokens ? 'tokens' : 'requests',
        null,
        'rate_limit_exceeded',
      ),
      { ...headers, 'retry-after': String(retryAfterSeconds(admission.waitMs)) },
    );
  }

  const { ticket } = result;
  const completion = buildCompletion(params, model, promptTokens, state.config.outputTokens, state.now(), cache.cached);
  const finish = (delivery?: StreamDelivery) => {
    state.openaiPromptCache.commit(cache.writes, state.now());
    return state.settle(ticket, delivery?.charged ?? completion.usage.completion_tokens, delivery);
  };

  if (params.stream) {
    const fault = state.transportFault(model);
    return {
      kind: 'stream',
      status: 200,
      headers: headersFor(state.quota.snapshot(apiKey, model.pool, state.now())),
      write: (res) =>
        streamCompletion(res, completion, {
          includeUsage: params.stream_options?.include_usage === true,
          latencyMs: state.latencyMs(),
          tokenMs: () => state.streamTokenMs(),
          fault,
          progress: (outputSent) => state.progress(ticket, outputSent),
          settle: finish,
        }),
    };
  }

  await sleep(state.latencyMs());
  const headers = headersFor(finish());
  const fault = state.transportFault(model);
  if (!fault) return json(200, completion, headers);
  const text = JSON.stringify(completion);
  if (fault.kind === 'cut') return { kind: 'cut', status: 200, headers, contentType: 'application/json', body: text };
  return { kind: 'raw', status: 200, headers, contentType: 'application/json', body: text.slice(0, Math.floor(text.length / 2)) };
}
