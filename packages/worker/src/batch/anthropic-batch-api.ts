/**
 * Anthropic Message Batches through @anthropic-ai/sdk (retries off). A Message Batch has no
 * metadata field, so a batch whose create answer was lost is found by what it does carry: its
 * creation time (inside the intent's window), its request count, and not being any other claim's
 * batch. Its results then prove it (every custom_id is a job id of the claim); see `find`.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { Usage } from '@headroom/queue';
import { z } from 'zod';
import { ANTHROPIC_DEFAULT_BASE_URL, type AdapterOptions } from '../providers/anthropic.js';
import { redact, runSdkCall, SDK_LOGGING, type SdkCallSpec } from '../providers/sdk-call.js';
import { ANTHROPIC_SDK_ERRORS } from '../providers/anthropic.js';
import type { BatchApi, BatchEntry, BatchStatus, FindInput, ResultEntry, SubmitInput, SubmitOutcome } from './batch-api.js';
import { CLOCK_SKEW_MS } from './batch-api.js';
import { anthropicEntryOutcome, parseAnthropicBatchLine } from './batch-results.js';
import { linesOf } from './jsonl-lines.js';
import { submitOutcomeOf } from './submit-outcome.js';

const NO_USAGE: Usage = { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
const CreatedBatch = z.looseObject({ id: z.string().min(1) });

function paramsOf(entry: BatchEntry, model: string) {
  // Only the model may change (it is the claim's); `stream` is never sent to a batch.
  const { stream: _stream, ...request } = entry.request as Record<string, unknown>;
  return { custom_id: entry.customId, params: { ...request, model } };
}

function totalOf(counts: Anthropic.Messages.MessageBatchRequestCounts): number {
  return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired;
}

export class AnthropicBatchApi implements BatchApi {
  readonly provider = 'anthropic' as const;
  readonly findsByCount = true;
  readonly #client: Anthropic;
  readonly #options: AdapterOptions;

  constructor(options: AdapterOptions) {
    this.#options = options;
    this.#client = new Anthropic({ apiKey: options.apiKey, baseURL: options.baseURL ?? ANTHROPIC_DEFAULT_BASE_URL, maxRetries: 0, timeout: options.timeoutMs, ...SDK_LOGGING });
  }

  entryBytes(entry: BatchEntry, model: string): number {
    // +1 for the comma between entries.
    return Buffer.byteLength(JSON.stringify(paramsOf(entry, model)), 'utf8') + 1;
  }

  async submit(input: SubmitInput): Promise<SubmitOutcome> {
    const requests = input.entries.map((e) => paramsOf(e, input.model)) as unknown as Anthropic.Messages.BatchCreateParams.Request[];
    const res = await runSdkCall(this.#spec(input.timeoutMs), input.signal, ({ timeout, signal }) =>
      this.#client.messages.batches.create({ requests }, { timeout, signal }).asResponse(),
    );
    if (!res.ok) return submitOutcomeOf(res);
    return { kind: 'created', batchId: (res.response as { id: string }).id };
  }

  async find(input: FindInput): Promise<string | undefined> {
    const from = input.intentAt - CLOCK_SKEW_MS;
    const to = input.intentAt + input.windowMs + CLOCK_SKEW_MS;
    let best: { id: string; distance: number } | undefined;
    // Newest first: stop at the first batch older than the window.
    for await (const batch of this.#client.messages.batches.list({ limit: 100 })) {
      const created = Date.parse(batch.created_at);
      if (created < from) break;
      if (created > to || input.knownBatchIds.has(batch.id) || totalOf(batch.request_counts) !== input.count) continue;
      const distance = Math.abs(created - input.intentAt);
      if (!best || distance < best.distance) best = { id: batch.id, distance };
    }
    return best?.id;
  }

  async status(batchId: string): Promise<BatchStatus> {
    const batch = await this.#client.messages.batches.retrieve(batchId);
    if (batch.processing_status !== 'ended') return { ended: false };
    return { ended: true, status: 'ended', endedAt: batch.ended_at ? Date.parse(batch.ended_at) : undefined };
  }

  async *results(batchId: string): AsyncIterable<ResultEntry> {
    const scrub = (m: string) => redact(m, this.#options.apiKey);
    // Read line by line here, not with the SDK's `batches.results`, whose decoder throws at the
    // first line that is not JSON (see parseAnthropicBatchLine).
    const batch = await this.#client.messages.batches.retrieve(batchId);
    if (!batch.results_url) throw new Error(`batch ${batchId} has no results_url yet (${batch.processing_status})`);
    const res = await this.#client.get(batch.results_url, { headers: { Accept: 'application/binary' }, __binaryResponse: true }).asResponse();
    for await (const text of linesOf(res.body)) {
      const line = parseAnthropicBatchLine(text);
      if (line) yield { customId: line.custom_id, outcome: anthropicEntryOutcome(line.result, scrub) };
    }
  }

  async cancel(batchId: string): Promise<void> {
    await this.#client.messages.batches.cancel(batchId);
  }

  #spec(timeoutMs: number): SdkCallSpec<z.infer<typeof CreatedBatch>> {
    return {
      provider: 'anthropic',
      apiKey: this.#options.apiKey,
      timeoutMs,
      errors: ANTHROPIC_SDK_ERRORS,
      requestIdHeader: 'request-id',
      schema: CreatedBatch,
      usageOf: () => NO_USAGE,
    };
  }
}
