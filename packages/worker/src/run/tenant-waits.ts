/**
 * What this worker last heard of each tenant's tokens/min bucket in each pool, and which of the
 * tenant's jobs it parked behind it: a runaway tenant's flood is then held without a Redis round
 * trip per job, and without cycling every queued job through the lane each second, so the jobs of
 * other tenants queued behind it reach the bucket sooner.
 *
 * A tenant has its own bucket in each pool (acquire.lua), so a wait is remembered per pool and
 * tenant: a tenant over its quota for one pool still draws from its untouched bucket in another.
 *
 * The bucket's wait assumes nothing is given back, but every call of the tenant still in flight
 * refunds what it did not use when it settles (its output reservation is `max_tokens`; a call
 * rarely uses it all). So:
 * - The job the bucket told to wait (the asker) is parked for at most `TENANT_RECHECK_MS` and asks
 *   again; until then the tenant's next jobs for the pool are held without asking. One asker per
 *   pool, tenant and worker: a second is what a pool's wait is rechecked within too.
 * - A held job is parked for its place in the tenant's line on this worker: the bucket's wait,
 *   then one refill of its own draw (`paceMs`) per job parked ahead of it, at most
 *   `TENANT_HOLD_MAX_MS`. Parking every held job for the recheck instead sent a tenant's whole
 *   backlog (2,000 jobs) through fetch, park and promote each second: 2.2x the Redis commands
 *   of a full-wait park and 14x its neighbour's p95 wait (docs/benchmarks.md).
 * - When the tenant's bucket grants a job of the pool, the hold ends and its earliest parked job
 *   is brought back now (`granted`, promoted by the caller): its refunds are used by a chain of
 *   one job per grant, at the tenant's real pace, not at its reservations' pace.
 * A held job with a deadline of its own is parked for the recheck only, as an asker: the line's
 * place could pass a deadline the tenant's refunds would have met.
 */
import type { InteractiveLane, TenantDimension } from '@headroom/queue';

export const TENANT_RECHECK_MS = 1_000;
/**
 * The longest a held job is parked: a job a grant's chain did not bring back (its worker stopped,
 * say) is asked about again within this. A tenant's bucket holds a minute of its quota.
 */
export const TENANT_HOLD_MAX_MS = 60_000;
/** Parked jobs a grant tries to promote before giving up (the others came back on their own). */
const PROMOTE_TRIES = 3;

export interface TenantHold {
  /** Until the tenant's bucket in the pool is asked again. */
  waitMs: number;
  /**
   * What is left of the bucket's last sure wait (the part the tenant's calls in flight could not
   * refund): the deadline's view of the wait, which may pass `waitMs`.
   */
  sureWaitMs: number;
  reason: TenantDimension;
  /** How long to park the job. */
  parkMs: number;
}

/** A job parked behind its tenant's quota by this worker. */
export interface ParkedJob {
  id: string;
  lane: InteractiveLane;
}

interface Held {
  /** When the bucket is asked again (epoch ms); 0 once a grant ended the hold. */
  at: number;
  /** When the bucket's last wait ends if nothing is refunded. */
  until: number;
  /** When it ends if every call in flight refunded all it reserved: no sooner. */
  sureUntil: number;
  reason: TenantDimension;
  /** Job id -> the job and when its park ends, in park-end order. */
  parked: Map<string, ParkedJob & { returnAt: number }>;
  /** The last park's end: the next held job's place is behind it. */
  lastReturnAt: number;
}

export class TenantWaits {
  /** Pool -> tenant -> what its bucket last said there, and the jobs parked behind it. */
  readonly #held = new Map<string, Map<string, Held>>();

  /**
   * The tenant's jobs for the pool are still held by the bucket's last answer: how long to park
   * `job` (its draw refills in `paceMs`; `ownDeadline`: the job has one). Undefined: ask the bucket.
   */
  heldFor(pool: string, tenant: string, job: ParkedJob & { paceMs: number; ownDeadline: boolean }, now: number): TenantHold | undefined {
    const held = this.#of(pool, tenant);
    if (!held) return undefined;
    held.parked.delete(job.id);
    if (held.at <= now) {
      held.at = 0;
      this.#prune(pool, tenant, held, now);
      return undefined;
    }
    const waitMs = held.at - now;
    const sureWaitMs = Math.max(0, held.sureUntil - now);
    if (job.ownDeadline) return { waitMs, reason: held.reason, sureWaitMs, parkMs: waitMs };
    const returnAt = Math.min(now + TENANT_HOLD_MAX_MS, Math.max(held.until, held.lastReturnAt) + job.paceMs);
    held.parked.set(job.id, { id: job.id, lane: job.lane, returnAt });
    held.lastReturnAt = returnAt;
    return { waitMs, reason: held.reason, sureWaitMs, parkMs: Math.max(waitMs, returnAt - now) };
  }

  /**
   * The bucket told job `jobId` of the tenant to wait `waitMs` in the pool (`sureWaitMs` of it
   * sure): holds the tenant's jobs for the pool until the recheck, and returns how long that is
   * (the job's own park).
   */
  told(pool: string, tenant: string, jobId: string, reason: TenantDimension, wait: { waitMs: number; sureWaitMs: number }, now: number): number {
    const { waitMs, sureWaitMs } = wait;
    const recheckMs = Math.min(waitMs, TENANT_RECHECK_MS);
    const tenants = this.#held.get(pool) ?? new Map<string, Held>();
    const held = tenants.get(tenant) ?? { at: 0, until: 0, sureUntil: 0, reason, parked: new Map(), lastReturnAt: 0 };
    held.parked.delete(jobId);
    Object.assign(held, { at: now + recheckMs, until: now + waitMs, sureUntil: now + sureWaitMs, reason });
    tenants.set(tenant, held);
    this.#held.set(pool, tenants);
    return recheckMs;
  }

  /**
   * The tenant's bucket in the pool granted job `jobId`: the hold ends, and the jobs to bring back
   * now are returned, earliest parked first: the caller promotes the first it can
   * (`PROMOTE_TRIES` at most), and `unpark`s each it tried.
   */
  granted(pool: string, tenant: string, jobId: string, now: number): ParkedJob[] {
    const held = this.#of(pool, tenant);
    if (!held) return [];
    held.parked.delete(jobId);
    held.at = 0;
    this.#prune(pool, tenant, held, now);
    const next: ParkedJob[] = [];
    for (const p of held.parked.values()) {
      if (next.length === PROMOTE_TRIES) break;
      next.push({ id: p.id, lane: p.lane });
    }
    return next;
  }

  /** A job the caller brought back, or found back already: no longer parked by this worker. */
  unpark(pool: string, tenant: string, jobId: string): void {
    this.#of(pool, tenant)?.parked.delete(jobId);
  }

  #of(pool: string, tenant: string): Held | undefined {
    return this.#held.get(pool)?.get(tenant);
  }

  /** Parks that ended are the lane's again; a tenant with no hold and nothing parked is forgotten. */
  #prune(pool: string, tenant: string, held: Held, now: number): void {
    for (const [id, p] of held.parked) {
      if (p.returnAt > now) break;
      held.parked.delete(id);
    }
    if (held.at !== 0 || held.parked.size > 0) return;
    const tenants = this.#held.get(pool)!;
    tenants.delete(tenant);
    if (tenants.size === 0) this.#held.delete(pool);
  }
}
