// Anthropic Message Batches. A batch is in_progress for `batchCompletionMs`, then ended with one
// JSONL result per request. State advances lazily when a batch is read, so no timer outlives the
// server. Batches draw nothing from the interactive limits (they have a pool of their own).

import { anthropicError, anthropicErrorBody, buildMessage, validateMessageParams } from './anthropic-request.js';
import { newId } from './answer.js';
import { type BatchEntryFate, garbledLine } from './faults.js';
import { type Exchange, json, parseJsonBody, type Reply, replyAfter } from './http-exchange.js';
import { anthropicInputTokens, anthropicSegments } from './prompt-tokens.js';
import type { SimulatorState } from './state.js';

export interface AnthropicBatch {
  id: string;
  apiKey: string;
  createdAt: number;
  /** When processing ends unless canceled first. */
  endsAt: number;
  cancelAt: number | null;
  requests: { custom_id: string; params: unknown }[];
  fates: Map<string, BatchEntryFate>;
  /** Set once the batch has ended. */
  outcome: { endedAt: number; jsonl: string; counts: RequestCounts } | null;
}

interface RequestCounts {
  processing: number;
  succeeded: number;
  errored: number;
  canceled: number;
  expired: number;
}

const MAX_REQUESTS = 100_000;
const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const DAY_MS = 24 * 60 * 60_000;
// A canceled batch winds down quickly but not instantly: clients see `canceling` first.
const CANCEL_GRACE_MS = 100;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function notFound(id: string): Reply {
  return anthropicError(404, 'not_found_error', `Message Batch ${id} not found`);
}

/** Brings a batch up to date with the clock: ends it, and computes its results, once its time has come. */
function refresh(state: SimulatorState, batch: AnthropicBatch): void {
  if (batch.outcome) return;
  const canceledAt = batch.cancelAt === null ? Number.POSITIVE_INFINITY : batch.cancelAt + CANCEL_GRACE_MS;
  const endAt = Math.min(batch.endsAt, canceledAt);
  if (state.now() < endAt) return;
  const canceled = canceledAt < batch.endsAt;
  const counts: RequestCounts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
  const lines: string[] = [];
  for (const { custom_id, params } of batch.requests) {
    const fate = batch.fates.get(custom_id);
    const result = resultOf(state, params, fate, canceled);
    counts[result.type] += 1;
    const line = JSON.stringify({ custom_id, result });
    lines.push(fate === 'garbled' ? garbledLine(line) : line);
  }
  batch.outcome = { endedAt: endAt, jsonl: lines.length ? `${lines.join('\n')}\n` : '', counts };
  const { processing: _none, ...ended } = counts;
  state.stats.batch('anthropic', ended);
}

type EntryResult =
  | { type: 'succeeded'; message: unknown }
  | { type: 'errored'; error: ReturnType<typeof anthropicErrorBody> }
  | { type: 'canceled' }
  | { type: 'expired' };

function resultOf(state: SimulatorState, params: unknown, fate: BatchEntryFate | undefined, canceled: boolean): EntryResult {
  if (fate === 'expired') return { type: 'expired' };
  if (fate === 'errored') return { type: 'errored', error: anthropicErrorBody('api_error', 'Internal server error') };
  if (canceled) return { type: 'canceled' };
  // Params are validated when the batch is processed, not when it is created, as the API does.
  const valid = validateMessageParams(params);
  if (!valid.ok) return { type: 'errored', error: anthropicErrorBody('invalid_request_error', valid.message) };
  if (valid.value.stream) {
    return { type: 'errored', error: anthropicErrorBody('invalid_request_error', 'stream: streaming is not supported in batches') };
  }
  if (!state.model(valid.value.model, 'anthropic')) {
    return { type: 'errored', error: anthropicErrorBody('not_found_error', `model: ${valid.value.model}`) };
  }
  const inputTokens = anthropicInputTokens(anthropicSegments(valid.value));
  const message = buildMessage(
    valid.value,
    { input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    state.config.outputTokens,
    'batch',
  );
  return { type: 'succeeded', message };
}

function view(state: SimulatorState, batch: AnthropicBatch, origin: string) {
  refresh(state, batch);
  const { outcome } = batch;
  const status = outcome ? 'ended' : batch.cancelAt !== null ? 'canceling' : 'in_progress';
  return {
    id: batch.id,
    type: 'message_batch' as const,
    processing_status: status,
    request_counts: outcome?.counts ?? { processing: batch.requests.length, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
    ended_at: outcome ? iso(outcome.endedAt) : null,
    created_at: iso(batch.createdAt),
    expires_at: iso(batch.createdAt + DAY_MS),
    archived_at: null,
    cancel_initiated_at: batch.cancelAt === null ? null : iso(batch.cancelAt),
    results_url: outcome ? `${origin}/v1/messages/batches/${batch.id}/results` : null,
  };
}

export function handleCreateBatch(state: SimulatorState, exchange: Exchange, apiKey: string): Reply | Promise<Reply> {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return anthropicError(400, 'invalid_request_error', body.message);
  const requests = (body.value as { requests?: unknown } | null)?.requests;
  if (!Array.isArray(requests)) return anthropicError(400, 'invalid_request_error', 'requests: Field required');
  if (requests.length === 0) return anthropicError(400, 'invalid_request_error', 'requests: List should have at least 1 item after validation, not 0');
  if (requests.length > MAX_REQUESTS) {
    return anthropicError(400, 'invalid_request_error', `requests: List should have at most ${MAX_REQUESTS} items after validation, not ${requests.length}`);
  }
  const seen = new Set<string>();
  for (const [i, request] of requests.entries()) {
    const { custom_id, params } = (request ?? {}) as { custom_id?: unknown; params?: unknown };
    if (typeof custom_id !== 'string' || !CUSTOM_ID.test(custom_id)) {
      return anthropicError(400, 'invalid_request_error', `requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
    }
    if (seen.has(custom_id)) return anthropicError(400, 'invalid_request_error', `requests.${i}.custom_id: duplicate custom_id '${custom_id}'`);
    seen.add(custom_id);
    if (params === null || typeof params !== 'object') return anthropicError(400, 'invalid_request_error', `requests.${i}.params: Field required`);
  }
  const now = state.now();
  const id = newId('msgbatch_01', 22);
  const batch: AnthropicBatch = {
    id,
    apiKey,
    createdAt: now,
    endsAt: now + state.config.batchCompletionMs,
    cancelAt: null,
    requests: requests as AnthropicBatch['requests'],
    fates: state.batchFaults.fates(id, [...seen]),
    outcome: null,
  };
  state.anthropicBatches.set(id, batch);
  state.stats.batch('anthropic', { created: 1, requests: requests.length });
  state.stats.batchModels(batch.requests.map((r) => String((r.params as { model?: unknown }).model)));
  return replyAfter(json(200, view(state, batch, exchange.origin)), state.batchFaults.holdCreateReplyMs());
}

function owned(state: SimulatorState, id: string, apiKey: string): AnthropicBatch | undefined {
  const batch = state.anthropicBatches.get(id);
  return batch?.apiKey === apiKey ? batch : undefined;
}

export function handleGetBatch(state: SimulatorState, exchange: Exchange, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  return batch ? json(200, view(state, batch, exchange.origin)) : notFound(id);
}

export function handleCancelBatch(state: SimulatorState, exchange: Exchange, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  if (!batch) return notFound(id);
  refresh(state, batch);
  if (!batch.outcome && batch.cancelAt === null) batch.cancelAt = state.now();
  return json(200, view(state, batch, exchange.origin));
}

export function handleDeleteBatch(state: SimulatorState, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  if (!batch) return notFound(id);
  refresh(state, batch);
  if (!batch.outcome) {
    return anthropicError(400, 'invalid_request_error', `Message Batch ${id} cannot be deleted while it is processing; cancel it first.`);
  }
  state.anthropicBatches.delete(id);
  return json(200, { id, type: 'message_batch_deleted' });
}

export function handleBatchResults(state: SimulatorState, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  if (!batch) return notFound(id);
  refresh(state, batch);
  if (!batch.outcome) return anthropicError(400, 'invalid_request_error', `Message Batch ${id} has not yet ended processing.`);
  return { kind: 'raw', status: 200, contentType: 'application/binary', body: batch.outcome.jsonl };
}

/** The SDK's `Page` shape: newest first, with `after_id` / `before_id` cursors. */
export function handleListBatches(state: SimulatorState, exchange: Exchange, apiKey: string): Reply {
  const all = [...state.anthropicBatches.values()].filter((b) => b.apiKey === apiKey).reverse();
  const limit = Math.min(1000, Math.max(1, Number(exchange.query.get('limit') ?? 20) || 20));
  const afterId = exchange.query.get('after_id');
  const beforeId = exchange.query.get('before_id');
  let start = 0;
  let end = all.length;
  if (afterId !== null) start = all.findIndex((b) => b.id === afterId) + 1 || all.length;
  if (beforeId !== null) end = Math.max(0, all.findIndex((b) => b.id === beforeId));
  const page = beforeId !== null ? all.slice(Math.max(start, end - limit), end) : all.slice(start, Math.min(end, start + limit));
  const data = page.map((batch) => view(state, batch, exchange.origin));
  const hasMore = beforeId !== null ? end - limit > start : start + limit < end;
  return json(200, { data, has_more: hasMore, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null });
}
