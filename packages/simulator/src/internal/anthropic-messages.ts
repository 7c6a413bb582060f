// POST /v1/messages and POST /v1/messages/count_tokens.

import { anthropicFaultReply } from './anthropic-faults.js';
import {
  type AnthropicMessage,
  anthropicError,
  buildMessage,
  checkAgainstModel,
  type MessageParams,
  validateMessageParams,
} from './anthropic-request.js';
import { streamMessage } from './anthropic-stream.js';
import type { TransportFaultAction } from './faults.js';
import { GIVEN_UP, type StreamDelivery } from './paced-stream.js';
import { type Exchange, json, parseJsonBody, type Reply, sleep } from './http-exchange.js';
import { anthropicInputTokens, anthropicSegments } from './prompt-tokens.js';
import type { Dimension, QuotaSnapshot } from './quota.js';
import { anthropicRateLimitHeaders, type HeaderMap, retryAfterSeconds } from './rate-limit-headers.js';
import type { SimulatorState } from './state.js';

const DIMENSION_LABEL: Record<Dimension, string> = {
  requests: 'requests',
  input: 'input tokens',
  output: 'output tokens',
  tokens: 'tokens',
};

function parseParams(exchange: Exchange, forCounting: boolean): { ok: true; params: MessageParams } | { ok: false; reply: Reply } {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return { ok: false, reply: anthropicError(400, 'invalid_request_error', body.message) };
  const valid = validateMessageParams(body.value, forCounting);
  if (!valid.ok) return { ok: false, reply: anthropicError(400, 'invalid_request_error', valid.message) };
  return { ok: true, params: valid.value };
}

/** The betas a call opts into: its `anthropic-beta` header, comma-separated (a repeated header joined). */
function betasFromHeader(exchange: Exchange): { betas?: string[] } {
  const header = exchange.headers['anthropic-beta'];
  const betas = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((b) => b.trim()).filter((b) => b !== '');
  return betas.length > 0 ? { betas } : {};
}

export async function handleCreateMessage(state: SimulatorState, exchange: Exchange, apiKey: string): Promise<Reply> {
  const parsed = parseParams(exchange, false);
  if (!parsed.ok) return parsed.reply;
  const { params } = parsed;
  const model = state.model(params.model, 'anthropic');
  if (!model) return anthropicError(404, 'not_found_error', `model: ${params.model}`);

  const segments = anthropicSegments(params);
  const totalInput = anthropicInputTokens(segments);
  const now = state.now();
  const headersFor = (snapshot: QuotaSnapshot): HeaderMap => anthropicRateLimitHeaders(snapshot, state.now());
  const tooBig = checkAgainstModel(params, model, totalInput);
  if (tooBig) {
    return anthropicError(400, 'invalid_request_error', tooBig, headersFor(state.quota.snapshot(apiKey, model.pool, now)));
  }

  const cache = state.promptCache.plan(`${apiKey}\u0000${model.name}`, segments, totalInput, now);
  const drawnInput = cache.input + cache.cacheCreation;
  const result = state.admit({
    model,
    apiKey,
    input: drawnInput,
    cacheRead: cache.cacheRead,
    cacheCreation: cache.cacheCreation,
    maxTokens: params.max_tokens,
    charge: { requests: 1, input: drawnInput, output: params.max_tokens },
    streamed: params.stream === true,
    ...betasFromHeader(exchange),
  });

  if (result.kind === 'fault') {
    const at = state.now();
    return anthropicFaultReply(result.action, state.quota.snapshot(apiKey, model.pool, at), at);
  }

  if (result.kind === 'refused') {
    const { admission, snapshot } = result;
    const headers = headersFor(snapshot);
    const limit = snapshot[admission.dimension]?.limit ?? 0;
    const label = DIMENSION_LABEL[admission.dimension];
    if (!Number.isFinite(admission.waitMs)) {
      // Larger than the whole minute's quota: waiting cannot help, so no retry-after.
      return anthropicError(429, 'rate_limit_error', `This request would exceed your organization's rate limit of ${limit} ${label} per minute (model: ${model.name}) on its own. Please reduce the prompt length or the maximum tokens requested.`, headers);
    }
    return anthropicError(
      429,
      'rate_limit_error',
      `This request would exceed the rate limit for your organization of ${limit} ${label} per minute (model: ${model.name}). You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.`,
      { ...headers, 'retry-after': String(retryAfterSeconds(admission.waitMs)) },
    );
  }

  const { ticket } = result;
  const message = buildMessage(
    params,
    { input_tokens: cache.input, cache_creation_input_tokens: cache.cacheCreation, cache_read_input_tokens: cache.cacheRead, cache_creation: { ephemeral_5m_input_tokens: cache.cacheCreation - cache.cacheCreation1h, ephemeral_1h_input_tokens: cache.cacheCreation1h } },
    state.config.outputTokens,
  );
  // The prompt was read (and cached) however the answer ends, a stream cut short included, unless
  // the provider gave the call up.
  const finish = (delivery?: StreamDelivery): QuotaSnapshot => {
    if (!delivery?.givenUp) state.promptCache.commit(cache.writes, state.now());
    return state.settle(ticket, delivery?.charged ?? message.usage.output_tokens, delivery);
  };

  if (params.stream) {
    const fault = state.transportFault(model);
    if (fault?.kind === 'hang') return hang(finish);
    return {
      kind: 'stream',
      status: 200,
      headers: headersFor(state.quota.snapshot(apiKey, model.pool, state.now())),
      write: (res) =>
        streamMessage(res, message, {
          latencyMs: state.latencyMs(),
          tokenMs: () => state.streamTokenMs(),
          fault,
          progress: (outputSent) => state.progress(ticket, outputSent),
          settle: finish,
        }),
    };
  }

  await sleep(state.latencyMs());
  const fault = state.transportFault(model);
  if (fault?.kind === 'overloaded-mid-call') return anthropicFaultReply({ kind: 'overloaded' }, finish(GIVEN_UP), state.now());
  if (fault?.kind === 'hang') return hang(finish);
  const headers = headersFor(finish());
  return withFault(json(200, message, headers), fault, message);
}

/** No answer at all: the call is given up (only its request charged), its client left waiting. */
function hang(finish: (delivery: StreamDelivery) => unknown): Reply {
  finish(GIVEN_UP);
  return { kind: 'hang' };
}

function withFault(reply: Reply, fault: Exclude<TransportFaultAction, { kind: 'overloaded-mid-call' | 'hang' }> | null, message: AnthropicMessage): Reply {
  if (!fault) return reply;
  const text = JSON.stringify(message);
  if (fault.kind === 'cut' || fault.kind === 'stall') return { kind: fault.kind, status: 200, headers: reply.headers ?? {}, contentType: 'application/json', body: text };
  // A truncated document: what a proxy that gave up half-way hands the client.
  return { kind: 'raw', status: 200, headers: reply.headers ?? {}, contentType: 'application/json', body: text.slice(0, Math.floor(text.length / 2)) };
}

export function handleCountTokens(state: SimulatorState, exchange: Exchange): Reply {
  const parsed = parseParams(exchange, true);
  if (!parsed.ok) return parsed.reply;
  const { params } = parsed;
  if (!state.model(params.model, 'anthropic')) return anthropicError(404, 'not_found_error', `model: ${params.model}`);
  return json(200, { input_tokens: anthropicInputTokens(anthropicSegments(params)) });
}
