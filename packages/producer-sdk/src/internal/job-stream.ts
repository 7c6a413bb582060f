/**
 * A streamed job as its caller reads it: the provider's events in order, then the result. The
 * events come from the job's Redis stream (event-reader.ts); whether the job ended, and how, from
 * the result waiter. Every entry a worker relays is written before its job finishes, so once the
 * job has ended, what remains in the stream is all there will ever be: it is read to the end and
 * the stream is done.
 *
 * A job that ends without any event (refused by the provider, out of retries, shed, cancelled
 * while waiting) makes `started()` and the iteration throw the job's error, as `result()` does.
 * One that ends after its first event ends with the error event it relayed (the provider's own),
 * or, when its worker could not write one (it died, or the job was cancelled), one in the
 * provider's shape made here; then the iteration throws `JobFailedError`.
 */
import type { Cluster, Redis } from 'ioredis';
import { errorEventOf, FailureCode, JobFailedError, JobValidationError, RELAY_TTL_MS, type JobEvent, type Lane, type LlmResult, type ProviderApi } from '@headroom/queue';
import type { EventSubscription } from './event-reader.js';

export interface StreamStart {
  /** The model answering (a fallback may). */
  model: string;
  /** How long the job waited before its call started. */
  waitMs: number;
  /** When its provider call started (epoch ms). */
  startedAt: number;
  /** The provider's id for the call, when it sent one (`LlmResult.providerRequestId`). */
  providerRequestId?: string;
}

/** A streamed job: iterate it for the provider's events, then read its result. */
export interface JobStream extends AsyncIterable<unknown> {
  readonly id: string;
  readonly lane: Lane;
  /** True when an earlier job was returned instead of a new one (same idempotency key, or coalesced). */
  readonly existing: boolean;
  /**
   * Resolves when the first event is in: which model answers and how long the job waited. Rejects
   * with the job's error when it ended without streaming anything.
   */
  started(): Promise<StreamStart>;
  /**
   * The provider's events as the JSON text it sent (an Anthropic SSE event's data, an OpenAI
   * chunk), for passing on untouched. Use this or the object iterator, not both.
   */
  raw(): AsyncIterable<string>;
  /** The job's result once the stream has ended (the message assembled from its events). */
  result(): Promise<LlmResult>;
  /** Cancels the job: removed if it has not started, its provider call stopped if it has. */
  cancel(): Promise<void>;
}

export interface JobStreamParts {
  id: string;
  lane: Lane;
  existing: boolean;
  /** The provider API the job calls: the shape of an error event the stream ends with. */
  api: ProviderApi;
  sub: EventSubscription;
  result: Promise<LlmResult>;
  command: Redis | Cluster;
  /** Deleted once read to the end, unless other readers may share it (coalesced, idempotent). */
  deleteKey: string | undefined;
  signal: AbortSignal | undefined;
  cancel(): Promise<void>;
}

export class JobEventStream implements JobStream {
  readonly id: string;
  readonly lane: Lane;
  readonly existing: boolean;
  readonly #p: JobStreamParts;
  #tail: JobEvent[] | undefined;
  #draining = false;
  #start: StreamStart | undefined;
  #startWait: Promise<StreamStart> | undefined;
  #events = 0;
  #iterating = false;
  #settledError: unknown;
  /** Out of the job before it streamed anything: there is nothing to read. */
  #out = false;

  constructor(parts: JobStreamParts) {
    this.#p = parts;
    this.id = parts.id;
    this.lane = parts.lane;
    this.existing = parts.existing;
    // However the job ends, the stream holds all it will: stop waiting on it and read the rest.
    parts.result.then(
      () => parts.sub.close(),
      (err: unknown) => {
        this.#settledError = err;
        // Not started in time: nothing was streamed for this caller, and what a job shared with
        // others streams after this caller left is theirs.
        if (err instanceof JobFailedError && err.failureCode === FailureCode.DEADLINE_EXCEEDED) this.#out = true;
        parts.sub.close();
      },
    );
    if (parts.signal) {
      const onAbort = () => {
        void parts.cancel().catch(() => {});
        parts.sub.close();
      };
      if (parts.signal.aborted) onAbort();
      else parts.signal.addEventListener('abort', onAbort, { once: true });
    }
  }

  result(): Promise<LlmResult> {
    return this.#p.result;
  }

  cancel(): Promise<void> {
    return this.#p.cancel();
  }

  started(): Promise<StreamStart> {
    if (this.#start) return Promise.resolve(this.#start);
    this.#startWait ??= (async () => {
      const first = await this.#next();
      // Aborted: the job was cancelled for the caller, who asked for that, not for its error.
      this.#p.signal?.throwIfAborted();
      if (first?.kind === 'start') {
        const { kind: _kind, ...start } = first;
        this.#start = start;
        return this.#start;
      }
      // Nothing was streamed: the job's own error, or its end without events.
      if (first) this.#tail = [first, ...(this.#tail ?? [])];
      await this.#p.result;
      if (this.existing) {
        // A repeat of an idempotency key whose job streamed and finished longer ago than its
        // events are kept: its answer is in its result, but can no longer be streamed.
        throw new JobValidationError([
          { path: 'idempotencyKey', message: `names job ${this.id}, which finished and whose stream has expired (events are kept ${RELAY_TTL_MS / 60_000} minutes after the last): its answer can no longer be streamed; read its result, or use a new key` },
        ]);
      }
      throw new Error(`job ${this.id} finished without streaming any event (its stream expired)`);
    })();
    return this.#startWait;
  }

  async *raw(): AsyncGenerator<string, void, undefined> {
    if (this.#iterating) throw new Error('a JobStream is read once: raw() or its iterator, not both');
    this.#iterating = true;
    this.#p.signal?.throwIfAborted();
    await this.started();
    for (;;) {
      this.#p.signal?.throwIfAborted();
      const entry = await this.#next();
      this.#p.signal?.throwIfAborted();
      if (entry === undefined) {
        // The stream ended without its end: the job failed part-way (or the wait timed out).
        await this.#p.result.then(
          () => undefined,
          () => undefined,
        );
        const err = this.#settledError;
        if (err instanceof JobFailedError) {
          yield errorEventOf(this.#p.api, err.failure, this.#events);
          throw err;
        }
        if (err !== undefined) throw err;
        return;
      }
      if (entry.kind === 'event') {
        this.#events += 1;
        yield entry.data;
      } else if (entry.kind === 'error') {
        // Empty when the provider's own event already said it (a Responses stream's response.failed).
        if (entry.data !== '') yield entry.data;
        throw new JobFailedError(this.id, entry.failure);
      } else if (entry.kind === 'end') {
        if (this.#p.deleteKey) await this.#p.command.del(this.#p.deleteKey).catch(() => 0);
        return;
      }
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    for await (const data of this.raw()) yield JSON.parse(data) as unknown;
  }

  /**
   * The next entry of the stream, or undefined once the job ended and the rest was read. After
   * the job ended, the rest is read a page at a time, as the consumer takes it: a slow consumer of
   * a long answer holds one page here, never the whole answer.
   */
  async #next(): Promise<JobEvent | undefined> {
    for (;;) {
      const queued = this.#tail?.shift();
      if (queued) return queued;
      if (this.#out) return undefined;
      if (this.#draining) {
        const page = await this.#p.sub.drain();
        if (page.length === 0) return undefined;
        this.#tail = page;
        continue;
      }
      const event = await this.#p.sub.next();
      if (event) return event;
      this.#draining = true;
    }
  }
}
