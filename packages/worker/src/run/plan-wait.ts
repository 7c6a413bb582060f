/**
 * What a job does when its plan says wait, and its place in its primary pool's holds
 * (pool-holds.ts) meanwhile: slept in place (a short wait, as its pool's sleeper), back to its
 * lane with its pool backed off (a wait that concerns every job of the pool), or parked alone (one
 * that is the job's own); ended now when the wait is sure to outlast its deadline.
 */
import { isTenantDimension, tenantTpmOf, type LlmJob } from '@headroom/queue';
import { deadlineOf, pastDeadline } from './deadline.js';
import { type Plan, waitIsJobsOwn } from './plan.js';
import type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';

/** Waits this short are slept in place: cheaper than a requeue round trip. */
const INLINE_WAIT_MS = 25;
const MAX_INLINE_WAITS = 4;
/**
 * Jobs parked by a cooldown come back spread over up to this long after it ends (uniformly, by
 * the injected randomness), not all in the same millisecond: with the bucket pacing them from
 * there, a 429 storm's backlog resumes at the refill rate instead of as one burst.
 */
export const COOLDOWN_RESUME_SPREAD_MS = 2_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One run's waits; `left()` must end it, whatever way the run ends. */
export class PlanWaits {
  #inlineWaits = 0;
  /** Sleeping in place as its pool's sleeper: it holds the pool until its next acquire answers. */
  #sleeping = false;
  /** Back to its lane told to wait for its pool: it stays ahead of the jobs fetched after it. */
  #waitsForPool = false;

  /** `primaryPool`: the pool a requeue backs off (its primary's), and the one whose sleeper slot it may take. */
  constructor(
    private readonly ctx: RunContext,
    private readonly job: LlmJob,
    private readonly meta: JobMeta,
    private readonly progress: JobProgress,
    readonly primaryPool: string,
  ) {}

  /** Its acquire answered, granted or told to wait again: a sleeper no longer holds its pool. */
  acquired(): void {
    if (this.#sleeping) {
      this.ctx.poolHolds.release(this.primaryPool);
      this.#sleeping = false;
    }
  }

  /** The job's outcome for a plan that says wait, or undefined once it has slept the wait in place. */
  async wait(plan: Extract<Plan, { kind: 'wait' }>): Promise<RunOutcome | undefined> {
    const { ctx, job, meta, progress, primaryPool } = this;
    // A sure wait (one the refunds of the calls in flight cannot cover) already past the
    // deadline ends the job now, with the whole foreseen wait as its retry-after. A wait only
    // those refunds could shorten parks it no later than its deadline, looked at again then.
    const sureMs = plan.sureWaitMs ?? plan.waitMs;
    const tooLate = pastDeadline(job, meta, ctx.now(), sureMs) && pastDeadline(job, meta, ctx.now(), Math.max(plan.waitMs, sureMs), `its ${plan.reason} wait`, progress);
    if (tooLate) return { kind: 'failed', failure: tooLate, progress };
    const waitMs = Math.min(plan.waitMs, untilDeadline(job, meta, ctx.now()));
    const jobsOwn = waitIsJobsOwn(plan.reason);
    if (!jobsOwn && meta.fetched !== undefined) {
      ctx.poolHolds.waited(meta.id, { lane: meta.lane, pool: primaryPool, fetched: meta.fetched, waitEnd: ctx.now() + waitMs, fairShare: plan.reason === 'fair_share' });
    }
    // A fair-share wait is never slept in place: the jobs it holds back (all of one pool, and
    // short waits) would race a sleeper for the same refill and come back out of lane order.
    const inline = plan.reason !== 'fair_share' && (jobsOwn || !ctx.poolHolds.has(primaryPool));
    if (waitMs <= INLINE_WAIT_MS && this.#inlineWaits < MAX_INLINE_WAITS && inline) {
      this.#inlineWaits++;
      if (!jobsOwn) {
        ctx.poolHolds.take(primaryPool, meta.lane, ctx.now() + waitMs);
        this.#sleeping = true;
      }
      await sleep(waitMs);
      return undefined;
    }
    // A cooling model, a retry over the model's budget, or a tenant over its quota is that
    // job's problem, not the lane's: park the job alone so the jobs behind it keep flowing. A
    // pool out of quota or a throttled model concerns every job of it: requeued, it backs the
    // pool off in the lane.
    if (!jobsOwn) {
      this.#waitsForPool = true;
      return {
        kind: 'requeue',
        waitMs,
        progress,
        ...(plan.reason === 'fair_share' ? { fairShare: true } : {}),
        // The backoff is its primary's pool's: so is the pace it records.
        ...(plan.pace?.pool === primaryPool ? { paceMs: plan.pace.ms } : {}),
      };
    }
    const spread = plan.reason === 'cooldown' ? Math.floor(ctx.random() * Math.min(COOLDOWN_RESUME_SPREAD_MS, plan.waitMs)) : 0;
    const tpm = isTenantDimension(plan.reason) && job.tenant ? tenantTpmOf(ctx.config, job.tenant) : undefined;
    return { kind: 'delay', delayMs: Math.min((plan.parkMs ?? plan.waitMs) + spread, untilDeadline(job, meta, ctx.now())), progress, ...(tpm === undefined ? {} : { tenantPark: { tenant: job.tenant!, tpm } }) };
  }

  /**
   * A job of this pool fetched before this one waits: the refill this one was granted is that
   * job's, ahead of it in the lane (pool-holds.ts). Undefined: none does.
   */
  ahead(pool: string): { waitMs: number; fairShare: boolean } | undefined {
    const { ctx, meta } = this;
    return pool === this.primaryPool && meta.fetched !== undefined ? ctx.poolHolds.ahead(meta.id, meta.lane, pool, meta.fetched, meta.fresh === true, ctx.now()) : undefined;
  }

  /** Its grant given back to the job `ahead` of it: the job goes back behind that one. */
  behind(pool: string, ahead: { waitMs: number; fairShare: boolean }): RunOutcome {
    const { ctx, meta } = this;
    ctx.poolHolds.waited(meta.id, { lane: meta.lane, pool, fetched: meta.fetched!, waitEnd: ctx.now() + ahead.waitMs, fairShare: ahead.fairShare });
    this.#waitsForPool = true;
    return { kind: 'requeue', waitMs: ahead.waitMs, progress: this.progress, ...(ahead.fairShare ? { fairShare: true } : {}) };
  }

  /** Its call is going out: it no longer waits for its pool ahead of others. */
  calling(): void {
    this.ctx.poolHolds.done(this.meta.id);
  }

  /**
   * A job leaving its run (stopped, late, an error) no longer holds its pool for a refill, nor
   * waits for it ahead of others, unless it went back to its lane to wait.
   */
  left(): void {
    if (this.#sleeping) this.ctx.poolHolds.release(this.primaryPool);
    if (!this.#waitsForPool) this.ctx.poolHolds.done(this.meta.id);
  }
}

/**
 * The longest a waiting job may be parked: until its deadline (at least 1 ms, so the look then
 * comes after it), when it is looked at again; unbounded without one.
 */
function untilDeadline(job: LlmJob, meta: JobMeta, now: number): number {
  const deadline = deadlineOf(job, meta);
  return deadline === undefined ? Number.POSITIVE_INFINITY : Math.max(1, deadline - now);
}
