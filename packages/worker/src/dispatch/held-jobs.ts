/**
 * Jobs this worker must put back into a lane that is full. A job that started left its lane's
 * count of jobs not yet started, and a new job may have taken the slot since, so putting it back
 * (told to wait for quota, delayed for a retry) is admitted against the cap like a new job
 * (`returnToLane`). Refused, it stays here: still active in BullMQ under this worker's lock,
 * holding no dispatch slot, recorded in the lane as returning (so the next slot that frees is its
 * own, not a new job's), and tried again every `retryMs` until it goes back. A delayed job goes
 * back with what is left of its delay.
 *
 * On stop, held jobs are handed back whatever the lane holds (`forceReturnToLane`): a stopping
 * worker cannot keep them, and letting their locks lapse would put them back all the same.
 */
import type { Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { forceReturnToLane, returnToLane, type InteractiveLane, type Logger, type TenantPark } from '@headroom/queue';

export interface HeldJobsOptions {
  redis: Redis | Cluster;
  prefix: string;
  logger: Logger;
  now: () => number;
  /** How often a held job asks its lane again. @default 200 */
  retryMs?: number;
  /** Once the job is back in its lane (a requeue backs its pool off then). */
  onReturned?: (held: HeldJob) => Promise<void>;
}

export interface HeldJob {
  job: Job;
  token: string;
  lane: InteractiveLane;
  /** Delayed: back into the delayed set until then (ms, this process's clock); else to the front. */
  delayUntil?: number;
  /** Delayed behind its tenant's tokens/min quota, this one (lane-return.ts `promoteRaisedTenantParks`). */
  tenantPark?: TenantPark;
  /** A requeue's wait, for the pool backoff applied once it is back. */
  waitMs?: number;
  /** The wait was the fair reserve's: the backoff holds back only queued-up tenants' jobs. */
  fairShare?: boolean;
  /** The pool's pace (the refill of the job's draw, ms), for the backoff. */
  paceMs?: number;
}

export class HeldJobs {
  readonly #o: HeldJobsOptions;
  readonly #held = new Map<string, { held: HeldJob; timer: NodeJS.Timeout }>();
  #stopped = false;

  constructor(options: HeldJobsOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#held.size;
  }

  /** The held jobs and their tokens: their locks are renewed with the running jobs'. */
  locks(): { job: Job; token: string }[] {
    return [...this.#held.values()].map(({ held }) => ({ job: held.job, token: held.token }));
  }

  hold(held: HeldJob): void {
    if (this.#stopped) {
      void this.#handBack(held);
      return;
    }
    this.#o.logger.debug({ jobId: held.job.id, lane: held.lane }, 'lane full: job held by its worker until it has room');
    this.#schedule(held);
  }

  /** Hands every held job back to its lane (the worker is stopping). */
  async releaseAll(): Promise<void> {
    this.#stopped = true;
    const all = [...this.#held.values()];
    this.#held.clear();
    await Promise.all(
      all.map(async ({ held, timer }) => {
        clearTimeout(timer);
        await this.#handBack(held);
      }),
    );
  }

  async #handBack(held: HeldJob): Promise<void> {
    await forceReturnToLane(this.#o.redis, this.#o.prefix, held.lane, held.job.id!, held.token).catch((err: Error) =>
      this.#o.logger.warn({ jobId: held.job.id, lane: held.lane, err: err.message }, 'could not hand a held job back; its lock lapses and it runs again'),
    );
  }

  #schedule(held: HeldJob): void {
    const timer = setTimeout(() => void this.#retry(held), this.#o.retryMs ?? 200);
    this.#held.set(held.job.id!, { held, timer });
  }

  async #retry(held: HeldJob): Promise<void> {
    if (this.#stopped || !this.#held.has(held.job.id!)) return;
    const delayMs = held.delayUntil === undefined ? undefined : Math.max(0, held.delayUntil - this.#o.now());
    try {
      const tenantPark = held.tenantPark === undefined ? {} : { tenantPark: held.tenantPark };
      const r = await returnToLane(this.#o.redis, this.#o.prefix, held.lane, held.job.id!, held.token, delayMs === undefined ? {} : { delayMs, now: this.#o.now, ...tenantPark });
      if (this.#stopped) return;
      if (r.status === 'moved') {
        this.#held.delete(held.job.id!);
        await this.#o.onReturned?.(held);
        return;
      }
      if (r.status === 'lost') {
        // Its lock lapsed (Redis was away longer than the lock): the stalled check has it now.
        this.#held.delete(held.job.id!);
        this.#o.logger.warn({ jobId: held.job.id, lane: held.lane, bullmqCode: r.bullmqCode }, "held job is no longer this worker's");
        return;
      }
    } catch (err) {
      // Redis away: keep holding; the lock is renewed meanwhile.
      this.#o.logger.warn({ jobId: held.job.id, lane: held.lane, err: (err as Error).message }, 'could not put a held job back yet; trying again');
    }
    if (!this.#stopped) this.#schedule(held);
  }
}
