// What the simulator saw, for tests to assert on and for the demo to show. The admission log is
// the evidence behind "the fleet never exceeded a limit in any window": every admitted
// interactive call with its time and what it drew.

import type { Provider } from './options.js';

export interface AdmissionRecord {
  /** When the call was admitted (ms since the epoch, simulator clock). */
  t: number;
  model: string;
  pool: string;
  /** The API key the call used (the simulator only ever sees fake keys). */
  key: string;
  /** Tokens drawn from input tokens/min (Anthropic: input + cache creation; OpenAI: the whole prompt, cached part included). */
  input: number;
  /** Output tokens: `max_tokens` while in flight, the actual count once the call ended. */
  output: number;
  /**
   * Prompt tokens read from the cache. Anthropic: `cache_read_input_tokens`, not drawn from ITPM
   * and not part of `input`. OpenAI: `prompt_tokens_details.cached_tokens`, part of `input` and
   * drawn from TPM like the rest (OpenAI: caching does not affect rate limits).
   */
  cacheRead: number;
  /** False while the call is in flight. */
  done: boolean;
  /** Answered as a stream (SSE), token by token. */
  streamed: boolean;
  /** Anthropic: the betas the call opted into (its `anthropic-beta` header), when it sent any. */
  betas?: string[];
  /**
   * The client closed the connection before the stream's end. Its call was then charged only
   * `outputSent` output tokens, as `output` says. Always false for plain calls: the simulator
   * does not watch them, it charges their whole answer, as a provider that generated it does.
   */
  clientClosed: boolean;
  /**
   * Output tokens delivered: for a stream, those in the deltas written so far (live while in
   * flight); for a plain call, the answer's tokens once done.
   */
  outputSent: number;
}

export interface ModelStats {
  admitted: number;
  /** Refused by the simulated rate limits (injected 429s are counted under faultsInjected). */
  refused429: number;
  /** Injected faults by kind: '429', '529', ..., 'malformed', 'cut'. */
  faultsInjected: Record<string, number>;
  /** As each provider reports input: Anthropic `input_tokens` (cache reads and writes apart), OpenAI `prompt_tokens` (cached included). */
  inputTokens: number;
  /** Output tokens charged: a stream the client closed counts only what it had sent. */
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
  /** Streams the client closed before their end. */
  clientClosed: number;
}

export interface BatchStats {
  created: number;
  requests: number;
  succeeded: number;
  errored: number;
  expired: number;
  canceled: number;
}

export interface SimulatorStats {
  since: number;
  /** Requests by route, ids replaced by `:id`: `POST /v1/messages`, `GET /v1/batches/:id`. */
  requestsByPath: Record<string, number>;
  models: Record<string, ModelStats>;
  batches: Record<Provider, BatchStats>;
  /** Batches created per model (a batch mixing models counts once for each), to check grouping. */
  batchesByModel: Record<string, number>;
  /** The most recent admissions, oldest first, at most `admissionLogSize` of them. */
  admissions: AdmissionRecord[];
  /** Admissions that fell off the front of the log. */
  admissionsDropped: number;
}

function emptyModel(): ModelStats {
  return {
    admitted: 0,
    refused429: 0,
    faultsInjected: {},
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheCreationTokens: 0,
    clientClosed: 0,
  };
}

function emptyBatches(): BatchStats {
  return { created: 0, requests: 0, succeeded: 0, errored: 0, expired: 0, canceled: 0 };
}

export class StatsRecorder {
  readonly #logSize: number;
  #since: number;
  #paths = new Map<string, number>();
  #models = new Map<string, ModelStats>();
  #batches: Record<Provider, BatchStats> = { anthropic: emptyBatches(), openai: emptyBatches() };
  #batchesByModel = new Map<string, number>();
  #log: AdmissionRecord[] = [];
  #dropped = 0;

  constructor(logSize: number, now: number) {
    this.#logSize = logSize;
    this.#since = now;
  }

  request(route: string): void {
    this.#paths.set(route, (this.#paths.get(route) ?? 0) + 1);
  }

  refused(model: string): void {
    this.#model(model).refused429 += 1;
  }

  fault(model: string, kind: string): void {
    const faults = this.#model(model).faultsInjected;
    faults[kind] = (faults[kind] ?? 0) + 1;
  }

  admitted(record: Omit<AdmissionRecord, 'done' | 'clientClosed' | 'outputSent'>, cacheCreation: number): AdmissionRecord {
    const stats = this.#model(record.model);
    stats.admitted += 1;
    stats.inputTokens += record.input - cacheCreation;
    stats.cacheCreationTokens += cacheCreation;
    stats.cacheReadTokens += record.cacheRead;
    const entry: AdmissionRecord = { ...record, done: false, clientClosed: false, outputSent: 0 };
    this.#log.push(entry);
    // Trim in chunks so the log stays O(1) amortised per admission.
    if (this.#log.length >= this.#logSize * 2 || (this.#logSize < 1000 && this.#log.length > this.#logSize)) {
      const excess = this.#log.length - this.#logSize;
      this.#log = this.#log.slice(excess);
      this.#dropped += excess;
    }
    return entry;
  }

  /** A stream's progress: `outputSent` tokens are out so far. */
  sent(entry: AdmissionRecord, outputSent: number): void {
    entry.outputSent = outputSent;
  }

  /** The call ended having been charged `outputTokens` output tokens. */
  completed(entry: AdmissionRecord, outputTokens: number, delivery: { outputSent: number; clientClosed: boolean }): void {
    entry.output = outputTokens;
    entry.done = true;
    entry.outputSent = delivery.outputSent;
    entry.clientClosed = delivery.clientClosed;
    const stats = this.#model(entry.model);
    stats.outputTokens += outputTokens;
    if (delivery.clientClosed) stats.clientClosed += 1;
  }

  batch(provider: Provider, change: Partial<BatchStats>): void {
    const stats = this.#batches[provider];
    for (const [field, value] of Object.entries(change) as [keyof BatchStats, number][]) stats[field] += value;
  }

  /** One batch was created holding requests for these models. */
  batchModels(models: Iterable<string>): void {
    for (const model of new Set(models)) this.#batchesByModel.set(model, (this.#batchesByModel.get(model) ?? 0) + 1);
  }

  snapshot(): SimulatorStats {
    const excess = Math.max(0, this.#log.length - this.#logSize);
    return {
      since: this.#since,
      requestsByPath: Object.fromEntries(this.#paths),
      models: Object.fromEntries(
        [...this.#models].map(([name, s]) => [name, { ...s, faultsInjected: { ...s.faultsInjected } }]),
      ),
      batches: { anthropic: { ...this.#batches.anthropic }, openai: { ...this.#batches.openai } },
      batchesByModel: Object.fromEntries(this.#batchesByModel),
      admissions: this.#log.slice(excess).map((entry) => ({ ...entry })),
      admissionsDropped: this.#dropped + excess,
    };
  }

  reset(now: number): void {
    this.#since = now;
    this.#paths.clear();
    this.#models.clear();
    this.#batches = { anthropic: emptyBatches(), openai: emptyBatches() };
    this.#batchesByModel.clear();
    this.#log = [];
    this.#dropped = 0;
  }

  #model(name: string): ModelStats {
    let stats = this.#models.get(name);
    if (!stats) {
      stats = emptyModel();
      this.#models.set(name, stats);
    }
    return stats;
  }
}
