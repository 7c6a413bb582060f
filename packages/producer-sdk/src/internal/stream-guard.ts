/**
 * A streamed job's bounds as its caller keeps them. The caller's `timeoutMs` bounds its wait for
 * the stream to start (its first entry: the answer's start, or the job's end without one); from
 * there the stream is its worker's to bound, as a plain call's answer is: the worker cuts a stream
 * silent past `streamIdleMs` or longer than `streamTimeoutMs` and relays the failure as the
 * stream's last event. A stream of an hour that keeps producing is read to its end.
 *
 * What the worker cannot report is its own death (SIGKILL, a lost machine) or a relay it stopped
 * writing. A rerun on another worker notices and fails the job (the worker's relay-follow.ts), but
 * only once its lock lapses and only if some worker is left. So once the relay has been quiet for
 * `QUIET_MS`, this asks the relay's writer, as that rerun does (relay-writer.ts): a worker that
 * beats and still lists the job is streaming (a model may think silently between outputs, within
 * the worker's own bounds) and is left alone; one whose heartbeat is gone, or that no longer lists
 * the job, twice in a row a check apart with nothing read between (a Redis pause shows every
 * heartbeat expired until each beats again, within one interval), has stopped. The caller's stream
 * then ends `STREAM_FAILED` (`streamCut: WORKER_LOST`) within some 15 s of the writer's last beat
 * plus these bounds, never a hang.
 */
import type { Cluster, Redis } from 'ioredis';
import { answeredWithin, FailureCode, firstRelayEntry, HEARTBEAT_INTERVAL_MS, heartbeatTtlMs, JobFailedError, jobFailure, relayWriterOf, StreamCut, type TimeoutError } from '@headroom/queue';

/** A relay quiet this long gets its writer checked: a live worker's beat vouches for this long. */
export const QUIET_MS = heartbeatTtlMs(HEARTBEAT_INTERVAL_MS);
/** How often a quiet relay's writer is checked: one heartbeat interval. */
export const CHECK_MS = HEARTBEAT_INTERVAL_MS;

export interface StreamGuardParts {
  jobId: string;
  /** The caller's `timeoutMs`: the longest wait for the stream's first entry. */
  startWithinMs: number;
  redis: Redis | Cluster;
  prefix: string;
  /** How long a look at the relay may wait for Redis (`connectTimeoutMs`): a stalled Redis must not hold the start's bound past its time. */
  answerWithinMs: number;
  /** The error a stream not started in time ends with (with its cause, Redis out of reach, when known). */
  timedOut(): TimeoutError;
  /** Ends the caller's wait for the job with this error (the job itself is not touched). */
  end(err: Error): void;
  /** @default Date.now */
  now?: () => number;
}

export class StreamGuard {
  readonly #p: StreamGuardParts;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;
  /** When the last entry was read (local clock). */
  #seenAt = 0;
  /** The last check found the writer not writing, and nothing has been read since. */
  #suspect = false;

  constructor(parts: StreamGuardParts) {
    this.#p = parts;
    this.#now = parts.now ?? Date.now;
    this.#armStart(parts.startWithinMs);
  }

  /** An entry of the stream was read. */
  seen(): void {
    this.#seenAt = this.#now();
    this.#suspect = false;
    if (this.#started) return;
    this.#started = true;
    this.#arm(CHECK_MS);
  }

  /** The caller's wait is over (the job ended, or the wait did). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #armStart(leftMs: number): void {
    // Infinity waits as long as it takes; a Node timer past 2^31-1 ms fires at once, so longer waits are re-armed.
    if (leftMs === Number.POSITIVE_INFINITY) return;
    const stepMs = Math.min(leftMs, 2 ** 31 - 1);
    this.#timer = setTimeout(() => (leftMs > stepMs ? this.#armStart(leftMs - stepMs) : void this.#startDue()), stepMs);
  }

  /**
   * Its time to start is up: started after all when the relay holds its first entry (a caller that
   * has not read yet, its entries waiting in Redis); else the wait ends TIMEOUT. With Redis out of
   * reach it ends at once, as a result() wait does; a connected Redis that stalls holds it at most
   * `answerWithinMs` more.
   */
  async #startDue(): Promise<void> {
    if (this.#started || this.#stopped) return;
    const first = this.#p.redis.status === 'ready' ? await this.#firstEntry().catch(() => undefined) : undefined;
    if (this.#started || this.#stopped) return;
    if (first === undefined) return this.#p.end(this.#p.timedOut());
    this.seen();
  }

  #firstEntry(): ReturnType<typeof firstRelayEntry> {
    return answeredWithin(firstRelayEntry(this.#p.redis, this.#p.prefix, this.#p.jobId), this.#p.answerWithinMs, 'the relay read', 'read');
  }

  #arm(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#check(), ms);
  }

  async #check(): Promise<void> {
    if (this.#stopped) return;
    const quietMs = this.#now() - this.#seenAt;
    if (quietMs < QUIET_MS) return this.#arm(Math.max(CHECK_MS, QUIET_MS - quietMs));
    const suspect = this.#suspect;
    const seenAt = this.#seenAt;
    // Redis out of reach: no verdict (the stream's reader and the result wait have their own say).
    const writer = await this.#firstEntry()
      .then((start) => answeredWithin(relayWriterOf(this.#p.redis, this.#p.prefix, this.#p.jobId, start), this.#p.answerWithinMs, 'the heartbeat read', 'read'))
      .catch(() => undefined);
    if (this.#stopped) return;
    // An entry read while the check was out: the stream lives.
    if (this.#seenAt !== seenAt) return this.#arm(CHECK_MS);
    if (writer === undefined || writer.state === 'writing') {
      this.#suspect = false;
      return this.#arm(CHECK_MS);
    }
    if (!suspect) {
      this.#suspect = true;
      return this.#arm(CHECK_MS);
    }
    const why = writer.state === 'stopped' ? writer.why : `its worker ${writer.worker} is gone: its heartbeat expired`;
    const quietS = Math.round((this.#now() - this.#seenAt) / 1000);
    this.stop();
    this.#p.end(
      new JobFailedError(this.#p.jobId, {
        ...jobFailure(FailureCode.STREAM_FAILED, `the rest of this stream will not come: ${why}, and nothing was relayed for ${quietS} s`),
        streamCut: StreamCut.WORKER_LOST,
      }),
    );
  }
}
