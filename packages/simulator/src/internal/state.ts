// Everything the simulator remembers, and the admission of one interactive call: the part both
// providers share (fault, then all-or-nothing charge, then correction when the call ends).

import type { AnthropicBatch } from './anthropic-batches.js';
import { BatchFaultTable, FaultTable, faultLabel, isStatusFault, type StatusFaultAction, type TransportFaultAction } from './faults.js';
import type { OpenAIBatch } from './openai-batches.js';
import type { StoredFile } from './openai-files.js';
import { checkStreamTokenMs, type Provider, type Range, type ResolvedModel, type SimulatorResolved, toRange } from './options.js';
import { AutomaticPromptCache } from './openai-prompt-cache.js';
import { PromptCache } from './prompt-cache.js';
import { type Admission, type Charge, Quota, type QuotaSnapshot } from './quota.js';
import { type AdmissionRecord, StatsRecorder } from './stats.js';

export interface CallPlan {
  model: ResolvedModel;
  apiKey: string;
  /** Tokens drawn from input tokens/min (Anthropic: input + cache creation; OpenAI: prompt, cached part included). */
  input: number;
  /** Anthropic: cache reads, not drawn from ITPM. OpenAI: cached prompt tokens, part of `input` and drawn from TPM. */
  cacheRead: number;
  cacheCreation: number;
  maxTokens: number;
  /** Everything charged up front, in every dimension. */
  charge: Charge;
  streamed: boolean;
  /** Anthropic: the `anthropic-beta` header's betas. */
  betas?: string[];
}

export interface Ticket {
  plan: CallPlan;
  record: AdmissionRecord;
}

export type AdmitResult =
  | { kind: 'fault'; action: StatusFaultAction }
  | { kind: 'refused'; admission: Extract<Admission, { ok: false }>; snapshot: QuotaSnapshot }
  | { kind: 'admitted'; ticket: Ticket };

/** How fast calls go; a runtime setting, kept across reset() as limits are. */
export interface Pace {
  latencyMs: Range;
  /** null: a stream's deltas are spread over its latency. */
  streamTokenMs: number | null;
}

export interface PaceChange {
  latencyMs?: number | Range;
  streamTokenMs?: number | null;
}

export class SimulatorState {
  readonly config: SimulatorResolved;
  readonly quota: Quota;
  readonly faults = new FaultTable();
  readonly batchFaults = new BatchFaultTable();
  readonly stats: StatsRecorder;
  /** Anthropic's, driven by cache_control breakpoints. */
  readonly promptCache = new PromptCache();
  /** OpenAI's, automatic for prompts of 1024 tokens or more. */
  readonly openaiPromptCache = new AutomaticPromptCache();
  readonly anthropicBatches = new Map<string, AnthropicBatch>();
  readonly openaiFiles = new Map<string, StoredFile>();
  readonly openaiBatches = new Map<string, OpenAIBatch>();

  #pace: Pace;

  constructor(config: SimulatorResolved) {
    this.config = config;
    this.#pace = { latencyMs: config.latencyMs, streamTokenMs: config.streamTokenMs };
    this.quota = new Quota(config.poolLimits);
    this.stats = new StatsRecorder(config.admissionLogSize, config.clock());
  }

  now(): number {
    return this.config.clock();
  }

  latencyMs(): number {
    const { min, max } = this.#pace.latencyMs;
    return min + (max - min) * this.config.random();
  }

  /** Read per token by running streams, so a change slows (or speeds) them from their next token. */
  streamTokenMs(): number | null {
    return this.#pace.streamTokenMs;
  }

  pace(): Pace {
    return { latencyMs: { ...this.#pace.latencyMs }, streamTokenMs: this.#pace.streamTokenMs };
  }

  /** Fields not given keep their value; checked before any is applied. */
  setPace(change: PaceChange): void {
    const latencyMs = change.latencyMs === undefined ? this.#pace.latencyMs : toRange(change.latencyMs, this.#pace.latencyMs, 'latencyMs');
    const streamTokenMs = change.streamTokenMs === undefined ? this.#pace.streamTokenMs : checkStreamTokenMs(change.streamTokenMs);
    this.#pace = { latencyMs, streamTokenMs };
  }

  /** The model if the simulator serves it for this provider; another provider's model is unknown here too. */
  model(name: unknown, provider: Provider): ResolvedModel | undefined {
    const model = typeof name === 'string' ? this.config.models.get(name) : undefined;
    return model?.provider === provider ? model : undefined;
  }

  acceptsKey(key: string): boolean {
    if (key === '') return false;
    return this.config.apiKeys === null || this.config.apiKeys.has(key);
  }

  admit(plan: CallPlan): AdmitResult {
    const { model, apiKey } = plan;
    const now = this.now();
    const fault = this.faults.take(model.name, 'before-admission', this.config.random, now);
    if (fault && isStatusFault(fault)) {
      this.stats.fault(model.name, faultLabel(fault, model.provider));
      return { kind: 'fault', action: fault };
    }
    const admission = this.quota.acquire(apiKey, model.pool, plan.charge, now);
    if (!admission.ok) {
      this.stats.refused(model.name);
      return { kind: 'refused', admission, snapshot: this.quota.snapshot(apiKey, model.pool, now) };
    }
    const record = this.stats.admitted(
      {
        t: now,
        model: model.name,
        pool: model.pool,
        key: apiKey,
        input: plan.input,
        output: plan.maxTokens,
        cacheRead: plan.cacheRead,
        streamed: plan.streamed,
        ...(plan.betas ? { betas: plan.betas } : {}),
      },
      plan.cacheCreation,
    );
    return { kind: 'admitted', ticket: { plan, record } };
  }

  /** A stream's live count of output tokens sent, for stats. */
  progress(ticket: Ticket, outputSent: number): void {
    this.stats.sent(ticket.record, outputSent);
  }

  /**
   * Ends an admitted call charged `outputTokens`: the unused part of the output reservation goes
   * back to the bucket. `delivery` defaults to a plain call's: every charged token delivered.
   */
  settle(ticket: Ticket, outputTokens: number, delivery: { outputSent: number; clientClosed: boolean; givenUp?: boolean } = { outputSent: outputTokens, clientClosed: false }): QuotaSnapshot {
    const { plan } = ticket;
    const now = this.now();
    if (delivery.givenUp) {
      // A call the provider gave up (a mid-call overload) costs only its request, as an overload does.
      const { requests: _kept, ...tokens } = plan.charge;
      this.quota.refund(plan.apiKey, plan.model.pool, tokens, now);
    } else {
      const unused = Math.max(0, plan.maxTokens - outputTokens);
      const dimension = plan.model.provider === 'anthropic' ? 'output' : 'tokens';
      this.quota.refund(plan.apiKey, plan.model.pool, { [dimension]: unused }, now);
    }
    this.stats.completed(ticket.record, outputTokens, delivery);
    return this.quota.snapshot(plan.apiKey, plan.model.pool, now);
  }

  /** A fault that strikes after admission (malformed body, cut connection), if one is armed. */
  transportFault(model: ResolvedModel): TransportFaultAction | null {
    const fault = this.faults.take(model.name, 'after-admission', this.config.random, this.now());
    if (!fault || isStatusFault(fault)) return null;
    this.stats.fault(model.name, faultLabel(fault, model.provider));
    return fault;
  }

  reset(): void {
    const now = this.now();
    this.quota.reset();
    this.faults.clear();
    this.batchFaults.clear();
    this.promptCache.clear();
    this.openaiPromptCache.clear();
    this.stats.reset(now);
  }
}
