// POST /v1/chat/completions, plain and streamed.

import type { ServerResponse } from 'node:http';
import { type Exchange, json, parseJsonBody, type Reply, sleep } from './http-exchange.js';
import { openaiFaultReply } from './openai-faults.js';
import {
  type ChatCompletion,
  type ChatParams,
  buildCompletion,
  checkChatAgainstModel,
  invalidRequest,
  maxTokensOf,
  modelNotFound,
  openaiError,
  openaiErrorBody,
  validateChatParams,
} from './openai-request.js';
import { openaiPromptTokens } from './prompt-tokens.js';
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

  const promptTokens = openaiPromptTokens(params);
  const headersFor = (snapshot: QuotaSnapshot) => openaiRateLimitHeaders(snapshot);
  const tooBig = checkChatAgainstModel(params, model, promptTokens);
  if (tooBig) return openaiError(400, tooBig, headersFor(state.quota.snapshot(apiKey, model.pool, state.now())));

  const maxTokens = maxTokensOf(params, model);
  const result = state.admit({
    model,
    apiKey,
    input: promptTokens,
    cacheRead: 0,
    cacheCreation: 0,
    maxTokens,
    charge: { requests: 1, tokens: promptTokens + maxTokens },
  });

  if (result.kind === 'fault') return openaiFaultReply(result.action, state.quota.snapshot(apiKey, model.pool, state.now()));

  if (result.kind === 'refused') {
    const { admission, snapshot } = result;
    const headers = headersFor(snapshot);
    const byTokens = admission.dimension === 'tokens';
    const limited = snapshot[admission.dimension];
    const limit = limited?.limit ?? 0;
    const unit = byTokens ? 'tokens per min (TPM)' : 'requests per min (RPM)';
    const requested = byTokens ? promptTokens + maxTokens : 1;
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
  const completion = buildCompletion(params, model, promptTokens, state.config.outputTokens, state.now());
  const finish = () => state.settle(ticket, completion.usage.completion_tokens);

  if (params.stream) {
    const fault = state.transportFault(model);
    return {
      kind: 'stream',
      status: 200,
      headers: headersFor(state.quota.snapshot(apiKey, model.pool, state.now())),
      write: (res) => streamCompletion(res, completion, params, state.latencyMs(), finish, fault !== null),
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

async function streamCompletion(
  res: ServerResponse,
  completion: ChatCompletion,
  params: ChatParams,
  latencyMs: number,
  finish: () => unknown,
  cut: boolean,
): Promise<void> {
  let finished = false;
  const settle = () => {
    if (!finished) {
      finished = true;
      finish();
    }
  };
  res.once('close', settle);
  const choice = completion.choices[0];
  const base = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model: completion.model, system_fingerprint: completion.system_fingerprint };
  const send = (data: unknown) => {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };
  send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }] });
  const words = (choice?.message.content ?? '').split(/(?<= )/);
  const size = Math.max(1, Math.ceil(words.length / 8));
  const pause = latencyMs / (Math.ceil(words.length / size) + 1);
  for (let i = 0; i < words.length; i += size) {
    await sleep(pause);
    if (cut && i >= words.length / 2) {
      settle();
      res.destroy();
      return;
    }
    send({ ...base, choices: [{ index: 0, delta: { content: words.slice(i, i + size).join('') }, logprobs: null, finish_reason: null }] });
  }
  settle();
  send({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: choice?.finish_reason ?? 'stop' }] });
  if (params.stream_options?.include_usage) send({ ...base, choices: [], usage: completion.usage });
  if (!res.destroyed) res.write('data: [DONE]\n\n');
}
