/**
 * Waits for job results. A job this producer enqueued in an interactive lane names the producer's
 * replies stream (`hrReplyTo`), and the worker that finishes it writes its result there in the same
 * call (queue's lane-finish.ts): the producer reads its own results, one entry per job, on the
 * lane's blocking reader it already has for streamed jobs (event-reader.ts). Any other job (one
 * enqueued elsewhere, a coalesced or idempotent repeat, the batch lane) is waited for through one
 * QueueEvents subscription per lane, which reads every event of the lane: five per job, anyone's.
 *
 * Either way a waiter can miss its end (a trimmed stream, a connection down, a job ended by
 * BullMQ's stalled check or removed outside Headroom, as in Bull Board; a `Producer.cancel` in any
 * process replies, and leaves a note that the job was cancelled: its waiters are told CANCELLED,
 * not JOB_NOT_FOUND), so every waiter is also re-read from the job itself: once right after it
 * starts waiting when the job may already be done, and by one periodic sweep for all waiters. A
 * read takes only the fields that say whether the job ended (never its data, up to 1 MiB), and
 * the result only once it has; a timeout finds its waiter directly, whatever else is waiting.
 */
import { QueueEvents } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import {
  cancelledFailure,
  ClosedError,
  duplicateFor,
  FailureCode,
  failureOf,
  JobFailedError,
  JobNotFoundError,
  laneKeys,
  laneOfJobId,
  RedisUnavailableError,
  refusalOn,
  ShedError,
  TimeoutError,
  type JobFailure,
  type Lane,
  type LlmResult,
} from '@headroom/queue';
import type { EventReader } from './event-reader.js';

/**
 * How a waiter learns its job ended: `reply` from this producer's replies stream; `fresh` from the
 * lane's events, all of which it will see (enqueued after the subscription was live); `read` from
 * the lane's events after one read of the job (it may have ended already).
 */
export type WaitMode = 'reply' | 'fresh' | 'read';

interface Waiter {
  /** The job it waits on now: a job shed to the batch lane hands its waiters to the job it became. */
  jobId: string;
  resolve(result: LlmResult): void;
  reject(err: Error): void;
}

/** The longest delay a Node timer takes; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer for any delay: chained past what one Node timer can hold. */
function longTimer(ms: number, fn: () => void): () => void {
  let handle: NodeJS.Timeout | undefined;
  const arm = (left: number) => {
    if (left === Number.POSITIVE_INFINITY) return;
    handle = setTimeout(() => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fn()), Math.min(left, MAX_TIMER_MS));
  };
  arm(ms);
  return () => clearTimeout(handle);
}

/** `result({ timeoutMs })` takes a positive number of ms, or Infinity to wait as long as it takes. */
export function checkTimeoutMs(timeoutMs: unknown, caller = 'result()'): number {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`${caller}: timeoutMs must be a positive number of milliseconds (or Infinity), got ${String(timeoutMs)}`);
  }
  return timeoutMs;
}

export type Settled =
  | { state: 'completed'; result: LlmResult }
  | { state: 'failed'; failure: JobFailure }
  /** Shed to the batch lane under pressure: the answer will come from the job it became. */
  | { state: 'moved'; to: string }
  | { state: 'pending' }
  | { state: 'missing' };

/** The BATCH job a job shed while it waited became (`{ movedTo }`, its return value), or undefined. */
export function movedTo(returnvalue: unknown): string | undefined {
  const to = (returnvalue as { movedTo?: unknown } | null)?.movedTo;
  return typeof to === 'string' ? to : undefined;
}

const SWEEP_INTERVAL_MS = 5_000;

export class ResultWaiter {
  private readonly waiters = new Map<string, { lane: Lane; set: Set<Waiter> }>();
  private readonly events = new Map<Lane, Promise<QueueEvents>>();
  private readonly live = new Set<Lane>();
  /**
   * Jobs whose end was heard with nobody waiting yet, most recent last. A job can end before its
   * enqueue's reply is read (another connection's event got here first): its waiter, arriving
   * just after, reads the job instead of waiting for an event already gone.
   */
  private readonly endedUnwaited = new Set<string>();
  /** BullMQ never closes a connection it was handed: these are ours to close. */
  private readonly connections: (Redis | Cluster)[] = [];
  /** Every lane's QueueEvents once made, ready or not, for `close`. */
  private readonly subscriptions: { events: QueueEvents; connection: Redis | Cluster }[] = [];
  private closed = false;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connection: Redis | Cluster,
    private readonly prefix: string,
    private readonly replies: EventReader,
  ) {}

  /**
   * What a job enqueued now in `lane` sets as its `hrReplyTo` for its result to come to this
   * producer: starts reading the lane's replies stream (once per lane).
   */
  replyTo(lane: Lane): string {
    this.replies.listen(lane, (fields) => this.#onReply(fields));
    return this.replies.id;
  }

  /**
   * Whether the lane's subscription was live: a job enqueued after that has all its events read,
   * so its waiter need not read the job first.
   */
  isLive(lane: Lane): boolean {
    return this.live.has(lane);
  }

  /**
   * `signal`: the caller stopped waiting; the wait rejects with its reason and is forgotten.
   *
   * The timeout is armed before anything touches Redis: the lane's subscription waits for its
   * connection, which, with Redis unreachable (never reached, or lost), retries for ever. A wait
   * that awaited it first hung past its timeout; now it rejects TIMEOUT at its time, saying Redis
   * was unreachable, and a subscription that comes up in time registers the waiter as before.
   */
  async wait(lane: Lane, jobId: string, timeoutMs: number, mode: WaitMode, signal?: AbortSignal): Promise<LlmResult> {
    checkTimeoutMs(timeoutMs);
    signal?.throwIfAborted();
    return new Promise<LlmResult>((resolve, reject) => {
      let over = false;
      const onAbort = () => {
        this.remove(waiter);
        waiter.reject(signal?.reason as Error);
      };
      const cancel = longTimer(timeoutMs, () => {
        this.remove(waiter);
        waiter.reject(new TimeoutError(`waiting for the result of job ${jobId}`, timeoutMs, this.unreachable()));
      });
      const done = () => {
        over = true;
        cancel();
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        jobId,
        resolve: (r) => { done(); resolve(r); },
        reject: (e) => { done(); reject(e); },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const register = () => {
        if (over) return;
        // Closed while its subscription came up: nothing would ever answer it.
        if (this.closed) return waiter.reject(new ClosedError(`this producer's wait for the result of job ${jobId}`));
        const entry = this.waiters.get(jobId) ?? { lane, set: new Set<Waiter>() };
        entry.set.add(waiter);
        this.waiters.set(jobId, entry);
        this.ensureSweep();
        // A job that may have finished before anyone listened is read once; a fresh one or one
        // that replies is not (a read per call was a round trip and a job parse for nothing on the
        // gateway's hot path), unless its end was heard before this waiter was registered.
        if (this.endedUnwaited.delete(jobId) || mode === 'read') void this.check(jobId);
      };
      // A subscription that failed leaves the waiter to the sweep, which reads the job itself.
      if (mode === 'reply') register();
      else this.subscribe(lane).then(register, register);
    });
  }

  /** Why a wait that timed out may have heard nothing: Redis out of reach, or refusing it, as it timed out. */
  unreachable(): Error | undefined {
    const status = this.connection.status;
    return status === 'ready' ? undefined : (refusalOn(this.connection) ?? new RedisUnavailableError(`the connection is ${status}`));
  }

  /**
   * Reads the job's stored state: the truth that events only announce. Only the fields that say
   * whether it ended, never its data: a sweep over many waiting jobs of 1 MiB each stays small.
   */
  async read(lane: Lane, jobId: string): Promise<Settled> {
    const key = `${laneKeys(this.prefix, lane).jobKeyPrefix}${jobId}`;
    const [timestamp, finishedOn, failedReason, returnvalue, progress] = await this.connection.hmget(key, 'timestamp', 'finishedOn', 'failedReason', 'returnvalue', 'progress');
    if (timestamp === null) {
      // Gone: cancelled before it started (cancel-3.lua left a note of why), or missing.
      const cancelled = await cancelledFailure(this.connection, this.prefix, jobId);
      return cancelled ? { state: 'failed', failure: cancelled } : { state: 'missing' };
    }
    if (!finishedOn) return { state: 'pending' };
    const value = parseJson(returnvalue);
    if (failedReason && (value === undefined || value === null)) return { state: 'failed', failure: failureOf({ failedReason, progress: parseJson(progress) }) };
    const to = movedTo(value);
    if (to) return { state: 'moved', to };
    if (value !== undefined && value !== null) return { state: 'completed', result: value as LlmResult };
    return { state: 'pending' };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    // Nothing will tell these waits their jobs ended: rejected now, not left to their timeouts.
    for (const [jobId, entry] of this.waiters) {
      for (const w of entry.set) w.reject(new ClosedError(`this producer's wait for the result of job ${jobId}`));
    }
    this.waiters.clear();
    // Not the subscriptions' promises: one whose connection never came up (Redis out of reach)
    // never settles. Nor is a QueueEvents' close awaited while its connection is down: it waits
    // for the connection to be ready or to end, and ioredis emits no end for a connection cut
    // between reconnect attempts. Such a one is cut (its reconnects stop) and let go.
    const subscriptions = this.subscriptions.splice(0);
    this.events.clear();
    this.live.clear();
    await Promise.all(
      subscriptions.map(({ events, connection }) => {
        const closing = events.close().catch(() => undefined);
        return connection.status === 'ready' ? closing : undefined;
      }),
    );
    for (const conn of this.connections.splice(0)) conn.disconnect();
  }

  private async check(jobId: string): Promise<void> {
    const entry = this.waiters.get(jobId);
    if (!entry) return;
    try {
      const settled = await this.read(entry.lane, jobId);
      if (settled.state === 'completed') this.settle(jobId, (w) => w.resolve(settled.result));
      else if (settled.state === 'failed') this.settle(jobId, (w) => w.reject(failedJobError(jobId, entry.lane, settled.failure)));
      else if (settled.state === 'missing') this.settle(jobId, (w) => w.reject(new JobNotFoundError(jobId)));
      else if (settled.state === 'moved') await this.forward(jobId, settled.to);
    } catch {
      // Redis away: the next sweep or event tries again; the caller's timeout still bounds the wait.
    }
  }

  /** Hands a moved job's waiters to the job it became, keeping their own timeouts. */
  private async forward(from: string, to: string): Promise<void> {
    const entry = this.waiters.get(from);
    const lane = laneOfJobId(to);
    if (!entry || !lane) return;
    this.waiters.delete(from);
    const target = this.waiters.get(to) ?? { lane, set: new Set<Waiter>() };
    for (const w of entry.set) {
      w.jobId = to;
      target.set.add(w);
    }
    this.waiters.set(to, target);
    await this.subscribe(lane);
    await this.check(to);
  }

  private settle(jobId: string, fn: (w: Waiter) => void): void {
    const entry = this.waiters.get(jobId);
    if (!entry) return;
    this.waiters.delete(jobId);
    for (const w of entry.set) fn(w);
    if (this.waiters.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** On timeout: the waiter knows the job it waits on now (forwarding keeps it up to date). */
  private remove(waiter: Waiter): void {
    const entry = this.waiters.get(waiter.jobId);
    if (!entry?.set.delete(waiter)) return;
    if (entry.set.size === 0) this.waiters.delete(waiter.jobId);
  }

  private ensureSweep(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      for (const id of this.waiters.keys()) void this.check(id);
    }, SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  private subscribe(lane: Lane): Promise<QueueEvents> {
    let pending = this.events.get(lane);
    if (!pending) {
      const k = laneKeys(this.prefix, lane);
      const connection = duplicateFor(this.connection, 'worker');
      // While Redis is away it reports every reconnect attempt; the sweep covers what is missed.
      connection.on('error', () => {});
      this.connections.push(connection);
      // Read from the stream's last entry now, not from `$` when the first read happens to go
      // out: a job finishing in between (a fast fleet) would otherwise be missed, and its waiter
      // would hang until the next sweep.
      const lastEventId = this.connection
        .xrevrange(k.events, '+', '-', 'COUNT', 1)
        .then((last) => last[0]?.[0] ?? '0-0', () => '$');
      pending = lastEventId.then((id) => {
        if (this.closed) throw new ClosedError('this producer\'s result waiter');
        const events = new QueueEvents(k.queueName, { prefix: k.bullPrefix, connection: connection as Redis, lastEventId: id });
        this.subscriptions.push({ events, connection });
        return this.#listen(events);
      });
      pending.then(() => this.live.add(lane), () => this.events.delete(lane));
      this.events.set(lane, pending);
    }
    return pending;
  }

  #endedUnwaited(jobId: string): void {
    this.endedUnwaited.add(jobId);
    // Only the last few matter (a waiter follows its enqueue within moments): keep 1024 ids.
    if (this.endedUnwaited.size > 1024) this.endedUnwaited.delete(this.endedUnwaited.values().next().value as string);
  }

  /** An entry of the replies stream: `j` job id, `e` completed | failed | removed, `v` its value (lane-finish.ts, lane-cancel.ts). */
  #onReply(fields: string[]): void {
    const entry: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
    if (entry.j === undefined) return;
    // A failure's record is in the job's progress beside BullMQ's text, a removal is the job's
    // absence: either is read from the job.
    if (entry.e === 'completed') this.#completed(entry.j, parseJson(entry.v));
    else this.#ended(entry.j);
  }

  /** A job completed (its replies stream or the lane's events said so) with this return value. */
  #completed(jobId: string, returnvalue: unknown): void {
    if (!this.waiters.has(jobId)) {
      this.#endedUnwaited(jobId);
      return;
    }
    const to = movedTo(returnvalue);
    if (to) void this.forward(jobId, to);
    else this.settle(jobId, (w) => w.resolve(returnvalue as LlmResult));
  }

  /** A job ended without its result in hand (failed, removed): its waiters read it from the job. */
  #ended(jobId: string): void {
    if (this.waiters.has(jobId)) void this.check(jobId);
    else this.#endedUnwaited(jobId);
  }

  #listen(events: QueueEvents): Promise<QueueEvents> {
    events.on('completed', ({ jobId, returnvalue }) => this.#completed(jobId, returnvalue));
    // A 'failed' event may precede a retry in some BullMQ paths: confirm from the job itself.
    events.on('failed', ({ jobId }) => this.#ended(jobId));
    events.on('removed', ({ jobId }) => this.#ended(jobId));
    events.on('error', () => {
      // Reconnects by itself; results missed meanwhile are picked up by the sweep.
    });
    return events.waitUntilReady().then(() => events);
  }
}

/**
 * The error `result()` rejects with for a failed job. A job shed while it waited is refused for
 * the same reason a new one is refused at enqueue, so the caller sees the same `SHED` code.
 */
export function failedJobError(jobId: string, lane: Lane, failure: JobFailure): JobFailedError | ShedError {
  return failure.code === FailureCode.SHED ? new ShedError(lane, failure.message, failure.retryAfterMs ?? 0, jobId) : new JobFailedError(jobId, failure);
}

function parseJson(raw: string | null | undefined): unknown {
  if (raw === null || raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
