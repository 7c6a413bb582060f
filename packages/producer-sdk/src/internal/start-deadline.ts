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
  readonly #jobId: string;
  readonly #maxWaitMs: number;
  /** The leave's outcome (true: out of the job), once the deadline passed. */
  #leaving: Promise<boolean> | undefined;
  #error: JobFailedError | undefined;

  /**
   * `leave` withdraws the caller if the job has not started, and says whether the caller is out
   * (the handle's one way out: `lane-cancel.ts` with `atDeadline`); `end` then ends the caller's
   * wait with the deadline's error.
   */
  constructor(jobId: string, maxWaitMs: number, enqueuedAt: number, leave: () => Promise<boolean>, end: (err: JobFailedError) => void, now = Date.now()) {
    this.#jobId = jobId;
    this.#maxWaitMs = maxWaitMs;
    this.#timer = setTimeout(
      () => {
        // Redis away: not left; the wait's own timeout still bounds it.
        const leaving = leave().catch(() => false);
        this.#leaving = leaving;
        void leaving.then((out) => out && end(this.#deadlineError()));
      },
      Math.max(0, enqueuedAt + maxWaitMs - now),
    );
  }

  /**
   * What the caller's wait ended with, as the caller should hear it: the deadline's error once the
   * caller left at it (the leave's removal can end the wait, as cancelled, before the leave's own
   * answer is in).
   */
  async settle(err: unknown): Promise<unknown> {
    return this.#leaving && (await this.#leaving) ? this.#deadlineError() : err;
  }

  /** Once the wait is over, however it ended. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** Made when needed: an error captures a stack, a cost no call that starts in time should pay. */
  #deadlineError(): JobFailedError {
    this.#error ??= new JobFailedError(this.#jobId, jobFailure(FailureCode.DEADLINE_EXCEEDED, `did not start within ${this.#maxWaitMs} ms; withdrawn for this caller`));
    return this.#error;
  }
}
