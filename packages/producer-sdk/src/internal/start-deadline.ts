/**
 * A caller's start deadline: its job's `maxWaitMs`, counted from this caller's own enqueue. A job
 * not started by then is left: removed when it was this caller's alone, or, when others share it
 * (coalesced, an idempotent repeat), this caller's share given back while it waits on for them.
 * The caller hears `DEADLINE_EXCEEDED` at its deadline, not when a worker next reaches the job
 * (which fails it then, but on a busy fleet that can be long after), and a caller that joined a
 * job another made keeps its own deadline, not the first caller's. A job that started in time is
 * waited for: its call is being paid for. So is one that a worker took and put back (to wait for
 * its bucket, or for a retry) and no one else shares: its worker ends it at the deadline, with
 * its attempts on record, where removing it would lose them.
 */
import { FailureCode, JobFailedError, jobFailure } from '@headroom/queue';

export class StartDeadline {
  readonly #timer: NodeJS.Timeout;
  readonly #left: Promise<never>;
  readonly #gone = new AbortController();
  readonly #error: JobFailedError;
  /** The leave's outcome (true: out of the job), once the deadline passed. */
  #leaving: Promise<boolean> | undefined;

  /**
   * `leave` withdraws the caller if the job has not started, and says whether it did (the
   * producer's `cancel(id, { ifNotStarted: true, keepShared: true })`).
   */
  constructor(jobId: string, maxWaitMs: number, enqueuedAt: number, leave: () => Promise<boolean>, now = Date.now()) {
    this.#error = new JobFailedError(jobId, jobFailure(FailureCode.DEADLINE_EXCEEDED, `did not start within ${maxWaitMs} ms; withdrawn for this caller`));
    let fail: (err: JobFailedError) => void = () => {};
    this.#left = new Promise<never>((_resolve, reject) => (fail = reject));
    this.#left.catch(() => undefined);
    this.#timer = setTimeout(
      () => {
        // Redis away: not left; the wait's own timeout still bounds it.
        this.#leaving = leave().catch(() => false);
        void this.#leaving.then((out) => {
          if (!out) return;
          this.#gone.abort();
          fail(this.#error);
        });
      },
      Math.max(0, enqueuedAt + maxWaitMs - now),
    );
  }

  /** Aborted once the caller is out of the job: a wait on it can stop listening. */
  get signal(): AbortSignal {
    return this.#gone.signal;
  }

  /** `wait`, or `DEADLINE_EXCEEDED` once the caller left the job at its deadline. */
  async guard<T>(wait: Promise<T>): Promise<T> {
    try {
      return await Promise.race([wait, this.#left]);
    } catch (err) {
      // The leave's removal can end the wait (as cancelled) before the leave's own answer is in.
      if (this.#leaving && (await this.#leaving)) throw this.#error;
      throw err;
    }
  }

  /** Once the wait is over, however it ended. */
  clear(): void {
    clearTimeout(this.#timer);
  }
}
