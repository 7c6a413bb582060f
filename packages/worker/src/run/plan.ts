/**
 * Plans one provider call: walks the job's model ladder (model-ladder.ts) and draws the first model's need from
 * the shared bucket that can serve it now, or says how long to wait and why, or that no model of
 * the ladder can ever serve the job in its lane.
 */
import { isTenantDimension, maxOutputTokens, poolOf, reservesOutputP95, type HeadroomConfig, type LlmJob, type Reservation, type WaitReason } from '@headroom/queue';
import { inputReservation } from './input-reservation.js';
import { ladderOf } from './model-ladder.js';
import type { JobMeta, RunContext } from './run-context.js';

/** Why a plan waits: the bucket's reason, or an open breaker on every model that could serve. */
export type PlanWaitReason = WaitReason | 'breaker';

export type Plan =
  | { kind: 'granted'; model: string; pool: string; reservation: Reservation; estimate: number }
  | { kind: 'wait'; waitMs: number; reason: PlanWaitReason }
  | { kind: 'never_fits'; message: string };

/**
 * A wait that concerns this job alone (its model cooling down or broken, its tenant over quota),
 * not every job of its pool: the job is parked so the jobs behind it keep flowing.
 */
export function waitIsJobsOwn(reason: PlanWaitReason): boolean {
  return reason === 'cooldown' || reason === 'breaker' || isTenantDimension(reason);
}

/** Another model of the ladder is configured and not broken. */
export function hasAlternative(ctx: RunContext, job: LlmJob, failed: string): boolean {
  return ladderOf(ctx.config, job).some((m) => m !== failed && ctx.config.models[m] && ctx.breaker.canCall(m));
}

export async function planCall(ctx: RunContext, job: LlmJob, meta: JobMeta): Promise<Plan> {
  const laneCfg = ctx.config.lanes[meta.lane];
  const maxWaitMs = job.maxWaitMs ?? laneCfg.maxWaitMs;
  const waitedMs = ctx.now() - meta.enqueuedAt;
  const ladder = ladderOf(ctx.config, job).filter((m) => ctx.config.models[m]);
  let best: { waitMs: number; reason: PlanWaitReason } | undefined;
  const neverFits: string[] = [];

  for (const [i, model] of ladder.entries()) {
    const isLast = i === ladder.length - 1;
    // acquire() hands out the single half-open probe; every path below that does not call gives it back.
    if (!ctx.breaker.acquire(model)) {
      const retryIn = Math.max(1, ctx.breaker.msUntilProbe(model));
      if (!best || retryIn < best.waitMs) best = { waitMs: retryIn, reason: 'breaker' };
      continue;
    }
    const tenantFreeAt = job.tenant ? ctx.tenantWaits.get(job.tenant) : undefined;
    if (tenantFreeAt !== undefined) {
      if (tenantFreeAt > ctx.now()) {
        ctx.breaker.release(model);
        return { kind: 'wait', waitMs: tenantFreeAt - ctx.now(), reason: 'tenant_tpm' };
      }
      ctx.tenantWaits.delete(job.tenant!);
    }
    const modelCfg = ctx.config.models[model]!;
    const pool = poolOf(ctx.config, model);
    const request = { ...job.request, model } as LlmJob['request'];
    const input = inputReservation(ctx, model, request, job.provider);
    const { estimate } = input;
    const outputTokens = reservesOutputP95(ctx.config.dispatch.outputReservation, modelCfg)
      ? ctx.estimator.outputReserveFor(model, maxOutputTokens(job))
      : maxOutputTokens(job);
    const acquire = (inputTokens: number) =>
      ctx.bucket.acquire({
        pool,
        limits: modelCfg.limits,
        need: { requests: 1, inputTokens, outputTokens },
        lane: meta.lane,
        reserve: laneCfg.reserve,
        model,
        ...tenantOf(ctx.config, job.tenant),
      });
    let reserve = input.reserve;
    let res = await acquire(reserve);
    // A prompt that never fits in full may fit as the provider counts it, read from its cache.
    if (res.status === 'never_fits' && res.dimension === 'itpm' && input.ifCached !== undefined) {
      reserve = input.ifCached;
      res = await acquire(reserve);
    }
    if (res.status === 'granted') return { kind: 'granted', model, pool, reservation: res.reservation, estimate };
    ctx.breaker.release(model);
    if (res.status === 'never_fits') {
      const needed = res.dimension === 'otpm' ? outputTokens : res.dimension.endsWith('rpm') ? 1 : reserve;
      neverFits.push(`${model} needs ${needed} in ${res.dimension} but lane ${meta.lane} may draw at most ${Math.floor(res.maxDrawable)} per minute`);
      continue;
    }
    ctx.metrics.bucketWaits.inc({ pool, lane: meta.lane, reason: res.reason });
    if (isTenantDimension(res.reason) && job.tenant) {
      ctx.tenantWaits.set(job.tenant, ctx.now() + res.waitMs);
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason };
    }
    // Wait for the primary unless it is cooling down or would make the job late; then degrade.
    const tooLate = waitedMs + res.waitMs > maxWaitMs;
    if (res.reason !== 'cooldown' && (!tooLate || isLast)) {
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason };
    }
    if (!best || res.waitMs < best.waitMs) best = { waitMs: res.waitMs, reason: res.reason };
  }
  if (best) return { kind: 'wait', ...best };
  return { kind: 'never_fits', message: neverFits.join('; ') || 'no model on the ladder can serve this job' };
}

/** The tenant's tokens/min quota, drawn in the same atomic call as the pool. */
function tenantOf(config: HeadroomConfig, tenant: string | undefined): { tenant?: { id: string; limits: { tpm: number } } } {
  if (!tenant) return {};
  const tpm = config.tenants.overrides[tenant]?.tpm ?? config.tenants.default.tpm;
  return tpm ? { tenant: { id: tenant, limits: { tpm } } } : {};
}
