/**
 * What this worker last heard of each tenant's tokens/min bucket in each pool: a runaway tenant's
 * flood is then parked without a Redis round trip per job, so the jobs of other tenants queued
 * behind it reach the bucket sooner.
 *
 * A tenant has its own bucket in each pool (acquire.lua), so a wait is remembered per pool and
 * tenant: a tenant over its quota for one pool still draws from its untouched bucket in another.
 *
 * The bucket's wait assumes nothing is given back, but every call of the tenant still in flight
 * refunds what it did not use when it settles (its output reservation is `max_tokens`; a call
 * rarely uses it all). So a wait is remembered, and a parked job comes back, for at most
 * `TENANT_RECHECK_MS`; then one job asks the bucket again and the others are held by its answer.
 * Re-asking on this worker's own settles would miss the other workers' refunds, which a recheck
 * catches; a second is what a pool's wait is rechecked within too (`MAX_BACKOFF_MS`).
 */
import type { TenantDimension } from '@headroom/queue';

export const TENANT_RECHECK_MS = 1_000;

export interface TenantHold {
  /** Until the tenant's bucket in the pool is asked again. */
  waitMs: number;
  reason: TenantDimension;
}

export class TenantWaits {
  /** Pool -> tenant -> when its bucket is asked again (epoch ms), and the dimension that held it. */
  readonly #until = new Map<string, Map<string, { at: number; reason: TenantDimension }>>();

  /** The tenant's jobs for the pool are still held by the bucket's last answer; undefined: ask the bucket. */
  heldFor(pool: string, tenant: string, now: number): TenantHold | undefined {
    const tenants = this.#until.get(pool);
    const held = tenants?.get(tenant);
    if (!held) return undefined;
    if (held.at > now) return { waitMs: held.at - now, reason: held.reason };
    tenants!.delete(tenant);
    if (tenants!.size === 0) this.#until.delete(pool);
    return undefined;
  }

  /**
   * The bucket told a job of the tenant to wait `waitMs` in the pool: holds the tenant's jobs for
   * the pool until the recheck, and returns how long that is (the job's own park).
   */
  told(pool: string, tenant: string, reason: TenantDimension, waitMs: number, now: number): number {
    const recheckMs = Math.min(waitMs, TENANT_RECHECK_MS);
    const tenants = this.#until.get(pool) ?? new Map<string, { at: number; reason: TenantDimension }>();
    tenants.set(tenant, { at: now + recheckMs, reason });
    this.#until.set(pool, tenants);
    return recheckMs;
  }
}
