// OpenAI Batch: a JSONL file of requests to one endpoint (Chat Completions or Responses) becomes an output file (successes) and an error file
// (failures). Timeline over `batchCompletionMs`: validating (first 10%), in_progress, finalizing
// (last 10%), then completed; advanced lazily when read. Draws nothing from interactive limits.

import { newId } from './answer.js';
import { type BatchEntryFate, garbledLine } from './faults.js';
import { type Exchange, json, parseJsonBody, type Reply, replyAfter } from './http-exchange.js';
import { BATCH_ENDPOINTS, type BatchEndpoint, isBatchEndpoint, type LineContext } from './openai-batch-endpoints.js';
import { cursorPage, findFile, storeFile } from './openai-files.js';
import { invalidJson, invalidRequest, type OpenAIErrorBody, openaiError, openaiErrorBody } from './openai-request.js';
import type { SimulatorState } from './state.js';

const DAY_S = 24 * 60 * 60;
const CANCEL_GRACE_MS = 100;

interface BatchLine {
  custom_id: string;
  body: unknown;
}

interface LineError {
  code: string;
  line: number | null;
  message: string;
  param: string | null;
}

export interface OpenAIBatch {
  id: string;
  apiKey: string;
  inputFileId: string;
  /** Every line's `url` must name it; it decides how each line is validated and answered. */
  endpoint: BatchEndpoint;
  createdAt: number;
  metadata: unknown;
  cancelAt: number | null;
  /** Parsed once validation time has passed; null until then. */
  lines: BatchLine[] | null;
  fates: Map<string, BatchEntryFate>;
  errors: LineError[] | null;
  outcome: { status: 'completed' | 'expired' | 'cancelled' | 'failed'; at: number; outputFileId: string | null; errorFileId: string | null; completed: number; failed: number; inputTokens: number; outputTokens: number } | null;
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

/** Validates the input file the way the validating phase does: one bad line fails the whole batch. */
function parseLines(content: string, endpoint: BatchEndpoint): { lines: BatchLine[] } | { errors: LineError[] } {
  const errors: LineError[] = [];
  const lines: BatchLine[] = [];
  const seen = new Set<string>();
  let model: string | undefined;
  const raw = content.split('\n').filter((l) => l.trim() !== '');
  if (raw.length === 0) return { errors: [{ code: 'empty_file', line: null, message: 'The batch input file is empty.', param: null }] };
  raw.forEach((text, i) => {
    const line = i + 1;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(text) as Record<string, unknown>;
    } catch {
      errors.push({ code: 'invalid_json_line', line, message: 'This line is not parseable as valid JSON.', param: null });
      return;
    }
    for (const field of ['custom_id', 'method', 'url', 'body']) {
      if (entry[field] === undefined) errors.push({ code: 'missing_required_parameter', line, message: `Missing required parameter: '${field}'.`, param: field });
    }
    if (entry.method !== undefined && entry.method !== 'POST') errors.push({ code: 'invalid_method', line, message: "Only 'POST' is supported.", param: 'method' });
    if (entry.url !== undefined && entry.url !== endpoint) {
      errors.push({ code: 'invalid_url', line, message: 'The URL provided for this request does not match the batch endpoint.', param: 'url' });
    }
    const customId = String(entry.custom_id);
    if (seen.has(customId)) errors.push({ code: 'duplicate_custom_id', line, message: 'The custom_id for this request is a duplicate of another request.', param: 'custom_id' });
    seen.add(customId);
    const lineModel = (entry.body as { model?: unknown } | undefined)?.model;
    if (typeof lineModel === 'string') {
      model ??= lineModel;
      // The real API refuses a file that mixes models, so a batcher must group per model.
      if (lineModel !== model) errors.push({ code: 'mismatched_model', line, message: 'All requests in a batch must use the same model.', param: 'body.model' });
    }
    lines.push({ custom_id: customId, body: entry.body });
  });
  return errors.length ? { errors } : { lines };
}

function outputLine(customId: string, statusCode: number, body: unknown): string {
  return JSON.stringify({ id: newId('batch_req_', 24), custom_id: customId, response: { status_code: statusCode, request_id: newId('req_', 24), body }, error: null });
}

function refresh(state: SimulatorState, batch: OpenAIBatch): void {
  if (batch.outcome) return;
  const now = state.now();
  const span = state.config.batchCompletionMs;
  if (batch.lines === null && batch.errors === null && now >= batch.createdAt + span * 0.1) {
    const file = findFile(state, batch.inputFileId, batch.apiKey);
    const parsed = file ? parseLines(file.content.toString('utf8'), batch.endpoint) : { errors: [{ code: 'file_not_found', line: null, message: 'The input file was deleted.', param: null }] };
    if ('errors' in parsed) {
      batch.errors = parsed.errors;
      batch.outcome = { status: 'failed', at: batch.createdAt + span * 0.1, outputFileId: null, errorFileId: null, completed: 0, failed: 0, inputTokens: 0, outputTokens: 0 };
      return;
    }
    batch.lines = parsed.lines;
    batch.fates = state.batchFaults.fates(batch.id, parsed.lines.map((l) => l.custom_id));
  }
  if (batch.cancelAt !== null && now >= batch.cancelAt + CANCEL_GRACE_MS && batch.cancelAt + CANCEL_GRACE_MS < batch.createdAt + span) {
    batch.outcome = { status: 'cancelled', at: batch.cancelAt + CANCEL_GRACE_MS, outputFileId: null, errorFileId: null, completed: 0, failed: 0, inputTokens: 0, outputTokens: 0 };
    return;
  }
  if (now < batch.createdAt + span || batch.lines === null) return;
  finish(state, batch, batch.lines, batch.createdAt + span);
}

function finish(state: SimulatorState, batch: OpenAIBatch, lines: BatchLine[], at: number): void {
  const output: string[] = [];
  const failures: string[] = [];
  let expired = 0;
  let inputTokens = 0;
  let outputTokens = 0;
  const fail = (customId: string, status: number, body: OpenAIErrorBody) => failures.push(outputLine(customId, status, body));
  const answer = BATCH_ENDPOINTS[batch.endpoint];
  const context: LineContext = { model: (name) => state.model(name, 'openai'), outputLength: state.config.outputTokens, at };
  for (const { custom_id, body } of lines) {
    const fate = batch.fates.get(custom_id);
    if (fate === 'expired') {
      expired += 1;
      failures.push(JSON.stringify({ id: newId('batch_req_', 24), custom_id, response: null, error: { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' } }));
      continue;
    }
    if (fate === 'errored') {
      fail(custom_id, 500, openaiErrorBody('The server had an error while processing your request. Sorry about that!', 'server_error'));
      continue;
    }
    const answered = answer(body, context);
    if (answered.status !== 200) {
      fail(custom_id, answered.status, answered.body);
      continue;
    }
    inputTokens += answered.inputTokens;
    outputTokens += answered.outputTokens;
    const line = outputLine(custom_id, 200, answered.body);
    output.push(fate === 'garbled' ? garbledLine(line) : line);
  }
  const outputFile = output.length ? storeFile(state, batch.apiKey, `${batch.id}_output.jsonl`, 'batch_output', `${output.join('\n')}\n`) : null;
  const errorFile = failures.length ? storeFile(state, batch.apiKey, `${batch.id}_error.jsonl`, 'batch_output', `${failures.join('\n')}\n`) : null;
  batch.outcome = {
    status: expired > 0 ? 'expired' : 'completed',
    at,
    outputFileId: outputFile?.id ?? null,
    errorFileId: errorFile?.id ?? null,
    completed: output.length,
    failed: failures.length,
    inputTokens,
    outputTokens,
  };
  state.stats.batch('openai', { succeeded: output.length, errored: failures.length - expired, expired });
}

function view(state: SimulatorState, batch: OpenAIBatch) {
  refresh(state, batch);
  const span = state.config.batchCompletionMs;
  const now = state.now();
  const { outcome } = batch;
  const inProgressAt = batch.createdAt + span * 0.1;
  const finalizingAt = batch.createdAt + span * 0.9;
  const status = outcome?.status ?? (batch.cancelAt !== null ? 'cancelling' : now < inProgressAt ? 'validating' : now < finalizingAt ? 'in_progress' : 'finalizing');
  const processed = outcome?.status === 'completed' || outcome?.status === 'expired';
  const validated = outcome ? outcome.status !== 'failed' && outcome.at >= inProgressAt : now >= inProgressAt;
  const finalizing = processed || (!outcome && batch.cancelAt === null && now >= finalizingAt);
  const total = batch.lines?.length ?? 0;
  return {
    id: batch.id,
    object: 'batch' as const,
    endpoint: batch.endpoint,
    model: (batch.lines?.[0]?.body as { model?: string } | undefined)?.model ?? null,
    errors: batch.errors ? { object: 'list', data: batch.errors } : null,
    input_file_id: batch.inputFileId,
    completion_window: '24h',
    status,
    output_file_id: outcome?.outputFileId ?? null,
    error_file_id: outcome?.errorFileId ?? null,
    created_at: seconds(batch.createdAt),
    in_progress_at: validated ? seconds(inProgressAt) : null,
    expires_at: seconds(batch.createdAt) + DAY_S,
    finalizing_at: finalizing ? seconds(finalizingAt) : null,
    completed_at: outcome?.status === 'completed' ? seconds(outcome.at) : null,
    failed_at: outcome?.status === 'failed' ? seconds(outcome.at) : null,
    expired_at: outcome?.status === 'expired' ? seconds(outcome.at) : null,
    cancelling_at: batch.cancelAt === null ? null : seconds(batch.cancelAt),
    cancelled_at: outcome?.status === 'cancelled' ? seconds(outcome.at) : null,
    request_counts: { total, completed: outcome?.completed ?? 0, failed: outcome?.failed ?? 0 },
    usage: outcome
      ? {
          input_tokens: outcome.inputTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: outcome.outputTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: outcome.inputTokens + outcome.outputTokens,
        }
      : null,
    metadata: batch.metadata ?? null,
  };
}

export function handleCreateOpenAIBatch(state: SimulatorState, exchange: Exchange, apiKey: string): Reply | Promise<Reply> {
  const body = parseJsonBody(exchange.body);
  if (!body.ok) return openaiError(400, invalidJson(body.message));
  const params = (body.value ?? {}) as Record<string, unknown>;
  for (const field of ['input_file_id', 'endpoint', 'completion_window']) {
    if (params[field] === undefined) return openaiError(400, invalidRequest(`Missing required parameter: '${field}'.`, field, 'missing_required_parameter'));
  }
  const { endpoint } = params;
  if (!isBatchEndpoint(endpoint)) {
    const supported = Object.keys(BATCH_ENDPOINTS).map((e) => `'${e}'`);
    return openaiError(400, invalidRequest(`Invalid value for 'endpoint': the simulator supports ${supported.join(' and ')}.`, 'endpoint', 'invalid_value'));
  }
  if (params.completion_window !== '24h') {
    return openaiError(400, invalidRequest("Invalid value for 'completion_window': supported values are: '24h'.", 'completion_window', 'invalid_value'));
  }
  const file = findFile(state, String(params.input_file_id), apiKey);
  if (!file) return openaiError(404, invalidRequest(`No such File object: ${String(params.input_file_id)}`, 'input_file_id'));
  if (file.purpose !== 'batch') {
    return openaiError(400, invalidRequest(`File ${file.id} has purpose '${file.purpose}'; batches need purpose 'batch'.`, 'input_file_id', 'invalid_value'));
  }
  const batch: OpenAIBatch = {
    id: newId('batch_', 32),
    apiKey,
    inputFileId: file.id,
    endpoint,
    createdAt: state.now(),
    metadata: params.metadata,
    cancelAt: null,
    lines: null,
    fates: new Map(),
    errors: null,
    outcome: null,
  };
  state.openaiBatches.set(batch.id, batch);
  const lines = file.content.toString('utf8').split('\n').filter((l) => l.trim() !== '');
  state.stats.batch('openai', { created: 1, requests: lines.length });
  state.stats.batchModels(lines.map(modelOfLine));
  return replyAfter(json(200, view(state, batch)), state.batchFaults.holdCreateReplyMs());
}

/** The model a JSONL line asks for, for stats only (validation comes later, as on the API). */
function modelOfLine(line: string): string {
  try {
    return String((JSON.parse(line) as { body?: { model?: unknown } }).body?.model);
  } catch {
    return 'undefined';
  }
}

function owned(state: SimulatorState, id: string, apiKey: string): OpenAIBatch | undefined {
  const batch = state.openaiBatches.get(id);
  return batch?.apiKey === apiKey ? batch : undefined;
}

function noSuchBatch(id: string): Reply {
  return openaiError(404, invalidRequest(`No batch found with id '${id}'.`, null, 'not_found'));
}

export function handleGetOpenAIBatch(state: SimulatorState, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  return batch ? json(200, view(state, batch)) : noSuchBatch(id);
}

export function handleCancelOpenAIBatch(state: SimulatorState, id: string, apiKey: string): Reply {
  const batch = owned(state, id, apiKey);
  if (!batch) return noSuchBatch(id);
  refresh(state, batch);
  if (batch.outcome) {
    return openaiError(409, invalidRequest(`Cannot cancel a batch with status '${batch.outcome.status}'.`, null, 'invalid_state'));
  }
  batch.cancelAt ??= state.now();
  return json(200, view(state, batch));
}

export function handleListOpenAIBatches(state: SimulatorState, exchange: Exchange, apiKey: string): Reply {
  const batches = [...state.openaiBatches.values()].filter((b) => b.apiKey === apiKey).reverse();
  const limit = Math.min(100, Math.max(1, Number(exchange.query.get('limit') ?? 20) || 20));
  return json(200, cursorPage(batches.map((b) => view(state, b)), exchange.query.get('after'), limit));
}
