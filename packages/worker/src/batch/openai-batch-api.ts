/**
 * OpenAI Batch through the openai SDK (retries off): the claim's requests go up as one JSONL file
 * (`purpose: 'batch'`, one model per file, as the API requires), then a batch is created on it
 * with the claim id in its `metadata`, so a batch whose create answer was lost is found for sure
 * by listing batches (`find`). The file id is kept on the claim: a retry of the same jobs never
 * uploads twice (a claim that lost a job drops it, see ClaimSteps.forget).
 */
import { FailureCode, jobFailure, type Usage } from '@headroom/queue';
import OpenAI, { toFile } from 'openai';
import { z } from 'zod';
import type { AdapterOptions } from '../providers/anthropic.js';
import { OPENAI_DEFAULT_BASE_URL } from '../providers/openai.js';
import { redact, runSdkCall, SDK_LOGGING, type SdkCallSpec } from '../providers/sdk-call.js';
import { OPENAI_SDK_ERRORS } from '../providers/openai.js';
import type { BatchApi, BatchEntry, BatchStatus, FindInput, ResultEntry, SubmitInput, SubmitOutcome } from './batch-api.js';
import { CLOCK_SKEW_MS } from './batch-api.js';
import { openaiEntryOutcome, parseOpenAIBatchLine } from './batch-results.js';
import { linesOf } from './jsonl-lines.js';
import { submitOutcomeOf } from './submit-outcome.js';

/** A batch's endpoint, and each line's url: one batch holds one API's requests. */
const ENDPOINTS = { chat: '/v1/chat/completions', responses: '/v1/responses' } as const;
const endpointOf = (api: 'responses' | undefined) => ENDPOINTS[api ?? 'chat'];
/** The metadata key that ties a batch to its claim. */
export const CLAIM_METADATA_KEY = 'headroom_claim';
const NO_USAGE: Usage = { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
const Created = z.looseObject({ id: z.string().min(1) });
const UPLOAD_RETRY_MS = 5_000;
const ENDED = new Set(['completed', 'failed', 'expired', 'cancelled']);

function lineOf(entry: BatchEntry, model: string, api: 'responses' | undefined): string {
  const { stream: _stream, ...request } = entry.request as Record<string, unknown>;
  return JSON.stringify({ custom_id: entry.customId, method: 'POST', url: endpointOf(api), body: { ...request, model } });
}

export class OpenAIBatchApi implements BatchApi {
  readonly provider = 'openai' as const;
  readonly findsByCount = false;
  readonly #client: OpenAI;
  readonly #options: AdapterOptions;
  readonly #now: () => number;

  constructor(options: AdapterOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
    this.#client = new OpenAI({ apiKey: options.apiKey, baseURL: options.baseURL ?? OPENAI_DEFAULT_BASE_URL, maxRetries: 0, timeout: options.timeoutMs, ...SDK_LOGGING });
  }

  entryBytes(entry: BatchEntry, model: string, api?: 'responses'): number {
    return Buffer.byteLength(lineOf(entry, model, api), 'utf8') + 1;
  }

  async submit(input: SubmitInput): Promise<SubmitOutcome> {
    const deadline = this.#now() + input.timeoutMs;
    let fileId = input.fileId;
    if (fileId === undefined) {
      const jsonl = `${input.entries.map((e) => lineOf(e, input.model, input.api)).join('\n')}\n`;
      const file = await toFile(Buffer.from(jsonl, 'utf8'), `headroom-${input.claimId}.jsonl`, { type: 'application/jsonl' });
      const uploaded = await runSdkCall(this.#spec(Math.max(1, deadline - this.#now())), input.signal, ({ timeout, signal }) =>
        this.#client.files.create({ file, purpose: 'batch' }, { timeout, signal }).asResponse(),
      );
      if (!uploaded.ok) {
        // No batch exists whatever happened to the upload (at worst an unused file is left), so
        // an unanswered upload is simply tried again; a refusal (bad key, bad file) is final.
        const outcome = submitOutcomeOf(uploaded);
        return outcome.kind === 'uncertain' ? { kind: 'retry', afterMs: UPLOAD_RETRY_MS, reason: `file upload failed: ${outcome.reason}` } : outcome;
      }
      fileId = (uploaded.response as { id: string }).id;
      await input.onFileUploaded?.(fileId);
    }
    const inputFileId = fileId;
    const res = await runSdkCall(this.#spec(Math.max(1, deadline - this.#now())), input.signal, ({ timeout, signal }) =>
      this.#client.batches
        .create({ input_file_id: inputFileId, endpoint: endpointOf(input.api), completion_window: '24h', metadata: { [CLAIM_METADATA_KEY]: input.claimId } }, { timeout, signal })
        .asResponse(),
    );
    if (!res.ok) return submitOutcomeOf(res);
    return { kind: 'created', batchId: (res.response as { id: string }).id };
  }

  async find(input: FindInput): Promise<string | undefined> {
    const from = input.intentAt - CLOCK_SKEW_MS;
    for await (const batch of this.#client.batches.list({ limit: 100 })) {
      if (batch.created_at * 1000 < from) break;
      if (batch.metadata?.[CLAIM_METADATA_KEY] === input.claimId) return batch.id;
      if (input.fileId !== undefined && batch.input_file_id === input.fileId) return batch.id;
    }
    return undefined;
  }

  async status(batchId: string): Promise<BatchStatus> {
    const batch = await this.#client.batches.retrieve(batchId);
    if (!ENDED.has(batch.status)) return { ended: false };
    const endedSec = batch.completed_at ?? batch.failed_at ?? batch.expired_at ?? batch.cancelled_at;
    const endedAt = endedSec ? endedSec * 1000 : undefined;
    switch (batch.status) {
      case 'failed': {
        const errors = (batch.errors?.data ?? []).slice(0, 3).map((e) => `${e.code ?? 'error'}${e.line ? ` (line ${e.line})` : ''}: ${e.message ?? ''}`);
        return { ended: true, status: batch.status, endedAt, missing: { kind: 'failed', failure: jobFailure(FailureCode.BATCH_FAILED, this.#scrub(errors.join('; ') || 'the batch failed validation')) } };
      }
      case 'expired':
        return { ended: true, status: batch.status, endedAt, missing: { kind: 'requeue', failure: jobFailure(FailureCode.BATCH_EXPIRED, 'the batch reached its 24 h window before this request ran') } };
      case 'cancelled':
        return { ended: true, status: batch.status, endedAt, missing: { kind: 'failed', failure: jobFailure(FailureCode.BATCH_CANCELED, 'the batch was cancelled before this request ran') } };
      default:
        return { ended: true, status: batch.status, endedAt };
    }
  }

  async *results(batchId: string): AsyncIterable<ResultEntry> {
    const batch = await this.#client.batches.retrieve(batchId);
    const scrub = (m: string) => this.#scrub(m);
    for (const fileId of [batch.output_file_id, batch.error_file_id]) {
      if (!fileId) continue;
      const content = await this.#client.files.content(fileId);
      for await (const text of linesOf(content.body)) {
        const line = parseOpenAIBatchLine(text);
        // A line we cannot read names no job: that job is treated as missing from the results.
        if (line) yield { customId: line.custom_id, outcome: openaiEntryOutcome(line, scrub) };
      }
    }
  }

  async cancel(batchId: string): Promise<void> {
    await this.#client.batches.cancel(batchId);
  }

  async discard(batchId: string): Promise<void> {
    const batch = await this.#client.batches.retrieve(batchId);
    for (const fileId of [batch.input_file_id, batch.output_file_id, batch.error_file_id]) {
      if (!fileId) continue;
      try {
        await this.#client.files.delete(fileId);
      } catch (err) {
        // Already gone (a discard redone after a crash) is what we wanted.
        if (!(err instanceof OpenAI.NotFoundError)) throw err;
      }
    }
  }

  #scrub(message: string): string {
    return redact(message, this.#options.apiKey);
  }

  #spec(timeoutMs: number): SdkCallSpec<z.infer<typeof Created>> {
    return {
      provider: 'openai',
      apiKey: this.#options.apiKey,
      timeoutMs,
      errors: OPENAI_SDK_ERRORS,
      requestIdHeader: 'x-request-id',
      schema: Created,
      usageOf: () => NO_USAGE,
    };
  }
}
