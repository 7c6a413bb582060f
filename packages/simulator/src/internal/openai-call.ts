// The stages every interactive OpenAI call goes through, whichever endpoint it came by (Chat
// Completions, Responses): admission against its model's pool, with the prompt cache planned and
// injected faults and 429s answered in OpenAI's shape, then the answer's delivery, plain or
// streamed, with its transport faults and the settlement that corrects the reservation.

import type { ServerResponse } from 'node:http';
import { json, type Reply, sleep } from './http-exchange.js';
import { openaiFaultReply } from './openai-faults.js';
import { openaiError, openaiErrorBody } from './openai-request.js';
import type { ResolvedModel } from './options.js';
import { GIVEN_UP, type StreamDelivery, type StreamPacing } from './paced-stream.js';
import type { Segment } from './prompt-tokens.js';
import type { QuotaSnapshot } from './quota.js';
import { goDuration, type HeaderMap, openaiRateLimitHeaders, retryAfterSeconds } from './rate-limit-headers.js';
import type { AdmitResult, SimulatorState, Ticket } from './state.js';

export interface OpenAICallPlan {
  model: ResolvedModel;
  apiKey: string;
  /** The prompt as the cache sees it; their tokens (and the reply priming) make `promptTokens`. */
  segments: readonly Segment[];
  promptTokens: number;
  /** Output tokens reserved up front: every answer the call may write, each to its ceiling. */
  reservedOutput: number;
  streamed: boolean;
}

export interface AdmittedCall {
  model: ResolvedModel;
  apiKey: string;
  ticket: Ticket;
  /** Prompt tokens served from the prompt cache, part of `promptTokens` and still drawn from TPM. */
  cachedTokens: number;
  /** Ends the call charged `outputTokens`; the prompt was read (and cached) however the answer ended, unless given up. */
  finish(outputTokens: number, delivery?: StreamDelivery): QuotaSnapshot;
}

export type OpenAIAdmission = { ok: true; call: AdmittedCall } | { ok: false; reply: Reply };

/** The rate-limit headers of the key's pool as it stands now, for replies given before admission. */
export function poolHeaders(state: SimulatorState, apiKey: string, model: ResolvedModel): HeaderMap {
  return openaiRateLimitHeaders(state.quota.snapshot(apiKey, model.pool, state.now()));
}

export function admitOpenAICall(state: SimulatorState, plan: OpenAICallPlan): OpenAIAdmission {
  const { model, apiKey, promptTokens, reservedOutput } = plan;
  // Cached prompt tokens are reported but still drawn from TPM: OpenAI's caching does not touch limits.
  const cache = state.openaiPromptCache.plan(`${apiKey}\u0000${model.name}`, plan.segments, promptTokens, state.now());
  const result = state.admit({
    model,
    apiKey,
    input: promptTokens,
    cacheRead: cache.cached,
    cacheCreation: 0,
    maxTokens: reservedOutput,
    charge: { requests: 1, tokens: promptTokens + reservedOutput },
    streamed: plan.streamed,
  });
  if (result.kind === 'fault') return { ok: false, reply: openaiFaultReply(result.action, state.quota.snapshot(apiKey, model.pool, state.now())) };
  if (result.kind === 'refused') return { ok: false, reply: rateLimited(model, result, promptTokens + reservedOutput) };
  const { ticket } = result;
  return {
    ok: true,
    call: {
      model,
      apiKey,
      ticket,
      cachedTokens: cache.cached,
      finish: (outputTokens, delivery) => {
        if (!delivery?.givenUp) state.openaiPromptCache.commit(cache.writes, state.now());
        return state.settle(ticket, outputTokens, delivery);
      },
    },
  };
}

/** OpenAI's 429 for a call its pool turned away; one larger than the whole minute gets no retry-after, as waiting cannot help. */
function rateLimited(model: ResolvedModel, refused: Extract<AdmitResult, { kind: 'refused' }>, requestedTokens: number): Reply {
  const { admission, snapshot } = refused;
  const headers = openaiRateLimitHeaders(snapshot);
  const byTokens = admission.dimension === 'tokens';
  const limited = snapshot[admission.dimension];
  const limit = limited?.limit ?? 0;
  const unit = byTokens ? 'tokens per min (TPM)' : 'requests per min (RPM)';
  const requested = byTokens ? requestedTokens : 1;
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

/**
 * The answer as one JSON body after the call's latency, charged `outputTokens`. `body` is read
 * once the call has finished, so what it says about its own end (a completion time) is true.
 */
export async function replyPlain(state: SimulatorState, call: AdmittedCall, outputTokens: number, body: () => unknown): Promise<Reply> {
  await sleep(state.latencyMs());
  const fault = state.transportFault(call.model);
  if (fault?.kind === 'overloaded-mid-call') return openaiFaultReply({ kind: 'overloaded' }, call.finish(0, GIVEN_UP));
  if (fault?.kind === 'hang') return hang(call);
  const headers = openaiRateLimitHeaders(call.finish(outputTokens));
  const value = body();
  if (!fault) return json(200, value, headers);
  const text = JSON.stringify(value);
  if (fault.kind === 'cut' || fault.kind === 'stall') return { kind: fault.kind, status: 200, headers, contentType: 'application/json', body: text };
  // A truncated document: what a proxy that gave up half-way hands the client.
  return { kind: 'raw', status: 200, headers, contentType: 'application/json', body: text.slice(0, Math.floor(text.length / 2)) };
}

/**
 * The answer as server-sent events, written by `write` in the endpoint's own framing with the
 * pacing, transport fault and settlement every OpenAI stream shares.
 */
export function replyStream(state: SimulatorState, call: AdmittedCall, write: (res: ServerResponse, pacing: StreamPacing) => Promise<void>): Reply {
  const fault = state.transportFault(call.model);
  if (fault?.kind === 'hang') return hang(call);
  return {
    kind: 'stream',
    status: 200,
    headers: poolHeaders(state, call.apiKey, call.model),
    write: (res) =>
      write(res, {
        latencyMs: state.latencyMs(),
        tokenMs: () => state.streamTokenMs(),
        fault,
        progress: (outputSent) => state.progress(call.ticket, outputSent),
        settle: (delivery) => call.finish(delivery.charged, delivery),
      }),
  };
}

/** No answer at all: the call is given up (only its request charged), its client left waiting. */
function hang(call: AdmittedCall): Reply {
  call.finish(0, GIVEN_UP);
  return { kind: 'hang' };
}
