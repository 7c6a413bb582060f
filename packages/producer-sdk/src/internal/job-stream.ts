/**
 * A streamed job as its caller reads it: the provider's events in order, then the result. The
 * events come from the job's Redis stream (event-reader.ts); whether the job ended, and how, from
 * the result waiter. Every entry a worker relays is written before its job finishes (the error
 * entry of a stream that failed part-way, with it), so once the job has ended, what remains in the
 * stream is all there will ever be: it is read to the end and the stream is done.
 *
 * A job that ends without any event (refused by the provider, out of retries, shed, cancelled
 * while waiting) makes `started()` and the iteration throw the job's error, as `result()` does.
 * One that ended well but whose events are gone (a repeat of its idempotency key, or a coalesced
 * join, after they expired: `RELAY_TTL_MS`) is streamed its answer made from its result
 * (`replayEventsOf`), in the shapes the provider streams it.
 * One that ends after its first event ends with the error event it relayed (the provider's own),
 * or, when its worker could not write one (it died, or the job was cancelled), one in the
 * provider's shape made here; then the iteration throws `JobFailedError`. One that completed but
 * whose remaining events expired before this reader took them (it paused past `RELAY_TTL_MS`)
 * throws `TimeoutError`, never ends as if the answer were whole: `result()` holds all of it.
 * A stream Redis lost mid-way is a failure, never an end: the worker's next write is refused
 * (relay-2.lua's LOST) and the job fails, or, when an attempt's first write made it anew (a
 * second `start`), the reader fails it here, with an error event in the provider's shape.
 */
import type { Cluster, Redis } from 'ioredis';
import { errorEventOf, FailureCode, JobFailedError, jobFailure, RELAY_TTL_MS, replayEventsOf, TimeoutError, type JobEvent, type Lane, type LlmResult, type ProviderApi } from '@headroom/queue';
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

/**
 * A streamed job: iterate it for the provider's events, then read its result. Leaving the loop
 * before the answer's end (`break`, `return`, a throw) cancels the job for this caller, as an
 * abort of its signal does.
 */
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
  /** The provider API the job calls: the shape of an error event the stream ends with, or of a replay. */
  api: ProviderApi;
  /** The request asked for Chat Completions' usage chunk (`stream_options.include_usage`): a replay has it only then. */
  includeUsage: boolean;
  sub: EventSubscription;
  result: Promise<LlmResult>;
  command: Redis | Cluster;
  /** Deleted once read to the end and its job has ended, unless other readers may share it (coalesced, idempotent). */
  deleteKey: string | undefined;
  signal: AbortSignal | undefined;
  cancel(): Promise<void>;
  /** An entry of the job's relay was read: its stream lives (stream-guard.ts). */
  seen(): void;
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
  /** Its job ended (or the caller's wait for it did): nothing left to stop. */
  #ended = false;
  #abandoned = false;
  /** Out of the job before it streamed anything: there is nothing to read. */
  #out = false;

  constructor(parts: JobStreamParts) {
    this.#p = parts;
    this.id = parts.id;
    this.lane = parts.lane;
    this.existing = parts.existing;
    const onAbort = () => this.#abandon();
    // However the job ends, the stream holds all it will: stop waiting on it and read the rest.
    // Nothing is left for an abort to stop either (a wait that timed out left its job running: an
    // abort still stops that one), so its listener goes: a signal that outlives its streams (a
    // server's, given to every stream) kept each of them, and Node warned of a leak past ten.
    const ended = (err?: unknown) => {
      this.#ended = true;
      if (!(err instanceof TimeoutError)) parts.signal?.removeEventListener('abort', onAbort);
      parts.sub.close();
    };
    parts.result.then(() => ended(), (err: unknown) => {
      this.#settledError = err;
      // Not started in time: nothing was streamed for this caller, and what a job shared with
      // others streams after this caller left is theirs.
      if (err instanceof JobFailedError && err.failureCode === FailureCode.DEADLINE_EXCEEDED) this.#out = true;
      ended(err);
    });
    if (parts.signal?.aborted) onAbort();
    else parts.signal?.addEventListener('abort', onAbort, { once: true });
  }

  result(): Promise<LlmResult> {
    return this.#p.result;
  }

  cancel(): Promise<void> {
    return this.#p.cancel();
  }

  /** The caller is gone (its signal aborted, or it left the iteration early): stop the job for it and stop reading. */
  #abandon(): void {
    // Once: a loop left after its signal aborted (the gateway's, for a slow client) is one leave.
    if (this.#abandoned) return;
    this.#abandoned = true;
    void this.#p.cancel().catch(() => {});
    this.#p.sub.close();
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
      const result = await this.#p.result;
      // It ended well, and its events are gone: a repeat of its idempotency key (or a coalesced
      // join) after they expired. Its answer is in its result, already paid for: streamed from
      // there, as the client's SDK expects, rather than refused or run again.
      this.#tail = [...replayEventsOf(this.#p.api, result.response, { includeUsage: this.#p.includeUsage }).map((data): JobEvent => ({ kind: 'event', data })), { kind: 'end' }];
      this.#start = { model: result.model, waitMs: result.timings.waitMs, startedAt: result.timings.enqueuedAt + result.timings.waitMs, ...(result.providerRequestId === undefined ? {} : { providerRequestId: result.providerRequestId }) };
      return this.#start;
    })();
    return this.#startWait;
  }

  async *raw(): AsyncGenerator<string, void, undefined> {
    if (this.#iterating) throw new Error('a JobStream is read once: raw() or its iterator, not both');
    this.#iterating = true;
    this.#p.signal?.throwIfAborted();
    await this.started();
    // Suspended at an event's yield when the generator closes: the caller left the loop (a
    // `break`, a `return`, a throw in its body) before the answer's end. Left running, its job
    // streamed on to the end with no reader, every token charged (a probe: a caller that broke
    // out after 5 of 300 tokens paid for all 300), where an abort stops the call.
    let reading = false;
    try {
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
          // It completed, and its end was written before it did: the rest of its events are gone.
          // They expire RELAY_TTL_MS after the worker's last write, and this reader came back later
          // (or Redis lost them). Ending here handed the caller a cut-short answer as if whole.
          throw new TimeoutError(
            `reading the events of job ${this.id} (gone before the rest was read: they are kept ${RELAY_TTL_MS / 60_000} min after the worker's last write, and the job completed: result() holds its whole answer)`,
            RELAY_TTL_MS,
          );
        }
        if (entry.kind === 'event') {
          this.#events += 1;
          reading = true;
          yield entry.data;
          reading = false;
        } else if (entry.kind === 'error') {
          // Empty when the provider's own event already said it (a Responses stream's response.failed).
          if (entry.data !== '') yield entry.data;
          throw new JobFailedError(this.id, entry.failure);
        } else if (entry.kind === 'end') {
          this.#deleteOnceEnded();
          return;
        } else {
          // A second `start` (the first was `started()`'s): the stream was lost (Redis lost its
          // data) and an attempt's first write made it anew, past this reader's position. What
          // follows is another answer, or this one's rest after a gap: never read on as if whole.
          const failure = jobFailure(FailureCode.STREAM_FAILED, `the relay's stream of job ${this.id} was lost after ${this.#events} events (Redis lost its data) and began anew: the rest of the answer cannot follow them`);
          yield errorEventOf(this.#p.api, failure, this.#events);
          throw new JobFailedError(this.id, failure);
        }
      }
    } finally {
      if (reading && !this.#ended) this.#abandon();
    }
  }

  /**
   * The relay read to its end is deleted once its job has ended, not at once: a worker that lost
   * the job after relaying this end (its lock lapsed while Redis was away, so its finish was
   * refused) leaves it to a rerun, which finds the whole answer here and completes the job with it
   * (the worker's relayed-answer.ts). Deleted at once, the rerun found no relay and called the
   * provider again for an answer this client already had. Normally the job ends right after its
   * end is relayed, so the relay goes as soon as before; it never outlives its expiry
   * (`RELAY_TTL_MS` after the worker's last write), which nothing here renews, so a reader that
   * goes away before the job ends leaves nothing behind either.
   */
  #deleteOnceEnded(): void {
    const key = this.#p.deleteKey;
    if (key === undefined) return;
    const del = () => this.#p.command.del(key).catch(() => 0);
    void this.#p.result.then(del, del);
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
        this.#p.seen();
        this.#tail = page;
        continue;
      }
      const event = await this.#p.sub.next();
      if (event) {
        this.#p.seen();
        return event;
      }
      this.#draining = true;
    }
  }
}
