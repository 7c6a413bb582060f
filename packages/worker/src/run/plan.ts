/**
 * Plans one provider call: walks the job's model ladder (model-ladder.ts) and draws the first model's need from
 * the shared bucket that can serve it now, or says how long to wait and why, or that no model of
 * the ladder can ever serve the job in its lane.
 */
import { choicesOf, isStreamed, isTenantDimension, maxOutputTokens, promoteDelayed, outputBoundField, outputBoundFor, poolOf, reservesOutputP95, tenantTpmOf, type HeadroomConfig, type LlmJob, type PoolLimits, type Reservation, type WaitReason } from '@headroom/queue';
import { deadlineOf } from './deadline.js';
import { inputReservation } from './input-reservation.js';
import { ladderOf } from './model-ladder.js';
import type { JobMeta, RunContext } from './run-context.js';

/** Why a plan waits: the bucket's reason (a dimension, a cooldown, the throttle, the retry budget). */
export type PlanWaitReason = WaitReason;

export type Plan =
  /**
   * `retry`: granted as a retry of the model (the job called it before), drawing on its retry
   * budget. `probeRun`: granted while the model's throttle was open (a dead model, called once per
   * probe interval fleet-wide), with the model's unhealthy outcomes in a row, fleet-wide, at the grant.
   */
  | { kind: 'granted'; model: string; pool: string; reservation: Reservation; estimate: number; retry: boolean; probeRun?: number }
  /**
   * `sureWaitMs`: the wait even if every call in flight gave back all the output it reserved
   * (absent: `waitMs`, all of it sure); a job's deadline is held against it (plan-wait.ts).
   * `parkMs`: park the job this long, though the bucket said `waitMs` (a tenant's quota: its calls
   * in flight refund what they do not use when they settle; its held jobs wait their turn,
   * tenant-waits.ts). `pace`:
   * the pool whose bucket said wait, and how long it takes to refill this job's draw (ms): how
   * far apart that pool's queued jobs will start (pool-backoff.ts).
   */
  | { kind: 'wait'; waitMs: number; reason: PlanWaitReason; sureWaitMs?: number; parkMs?: number; pace?: { pool: string; ms: number } }
  | { kind: 'never_fits'; message: string };

export type Grant = Extract<Plan, { kind: 'granted' }>;

/**
 * A wait that concerns this job alone (its model cooling down, its retry not yet in the model's
 * budget, its tenant over quota), not every job of its pool: the job is parked so the jobs behind
 * it keep flowing. A throttle wait concerns every job of the model, like a pool out of quota: the
 * job is requeued and the pool backs off in the lane, so a dead model's backlog costs the fleet a
 * few acquires a second, not one per job.
 */
export function waitIsJobsOwn(reason: PlanWaitReason): boolean {
  return reason === 'cooldown' || reason === 'retry_budget' || isTenantDimension(reason);
}

/**
 * A job told to wait goes back to its lane and must be fetched again before its deadline: on a
 * loaded fleet that trip takes tens of ms (the jobs that missed in the fallback probe were fetched
 * 3-40 ms late), and the other workers learn a pool's backoff every 100 ms. A job with another
 * model to go to does not bet its deadline on a wait that ends closer to it than this.
 */
export const REQUEUE_TRIP_MS = 100;

/** Waits that send a job down its ladder at once rather than wait for its primary. */
function degrades(reason: PlanWaitReason): boolean {
  return reason === 'cooldown' || reason === 'throttle' || reason === 'retry_budget';
}

/** Another model of the ladder is configured and not known to be dead (its throttle open). */
export function hasAlternative(ctx: RunContext, job: LlmJob, failed: string): boolean {
  return ladderOf(ctx.config, job).some((m) => m !== failed && ctx.config.models[m] && !ctx.throttles.isOpen(m));
}

/**
 * How long a pool's bucket takes, at its configured limits, to refill one draw of `need` (ms): once
 * it is drained, its queued jobs of that size start this far apart. It counts the reservation
 * (the output bound), so it is at most that when calls give unused output back.
 */
export function paceOf(limits: PoolLimits, need: { inputTokens: number; outputTokens: number }): number {
  const draws: [number, number | undefined][] = [
    [1, limits.rpm],
    [need.inputTokens, limits.itpm],
    [need.outputTokens, limits.otpm],
    [need.inputTokens + need.outputTokens, limits.tpm],
  ];
  return Math.max(0, ...draws.map(([n, perMinute]) => (perMinute ? (n * 60_000) / perMinute : 0)));
}

/**
 * `avoid`: models this run just failed on and chose to fall back from: the ladder below them is
 * tried first (no cooldown steers it away from a 529 any more), and they only when nothing else is
 * configured. The models of the pool the job was taken past (`meta.lateOn`) are passed over the
 * same way.
 */
export async function planCall(ctx: RunContext, job: LlmJob, meta: JobMeta, avoid: ReadonlySet<string> = new Set()): Promise<Plan> {
  const laneCfg = ctx.config.lanes[meta.lane];
  const maxWaitMs = job.maxWaitMs ?? laneCfg.maxWaitMs;
  const waitedMs = ctx.now() - meta.enqueuedAt;
  const configured = ladderOf(ctx.config, job).filter((m) => ctx.config.models[m]);
  const rest = configured.filter((m) => !avoid.has(m) && (meta.lateOn === undefined || poolOf(ctx.config, m) !== meta.lateOn));
  const ladder = rest.length > 0 ? rest : configured;
  let best: { waitMs: number; reason: PlanWaitReason; sureWaitMs: number; pace: { pool: string; ms: number } } | undefined;
  const neverFits: string[] = [];
  const quota = tenantOf(ctx.config, job.tenant);

  for (const [i, model] of ladder.entries()) {
    const isLast = i === ladder.length - 1;
    const modelCfg = ctx.config.models[model]!;
    const pool = poolOf(ctx.config, model);
    const request = { ...job.request, model } as LlmJob['request'];
    const input = inputReservation(ctx, model, request, job.provider);
    const { estimate } = input;
    const bound = outputBoundFor(job, modelCfg);
    if (bound === undefined) {
      // Admission refused this against the published config; a worker whose own config differs.
      neverFits.push(`${model} has no maxOutputTokens in this worker's config and the request sets no ${outputBoundField(job)}`);
      continue;
    }
    const outputTokens = reservesOutputP95(ctx.config.dispatch.outputReservation, modelCfg) ? ctx.estimator.outputReserveFor(model, bound, choicesOf(job)) : bound;
    // The tenant's last wait in the pool holds the jobs its quota can serve, each parked for its
    // turn (its draw's refill at the tenant's quota apart). One larger than the lane may ever draw
    // from it goes to the bucket, which fails it NEVER_FITS now, not after the wait.
    const draw = input.reserve + outputTokens;
    if (quota.tenant && draw <= quota.tenant.limits.tpm * (1 - laneCfg.reserve)) {
      const paceMs = (draw * 60_000) / quota.tenant.limits.tpm;
      const held = ctx.tenantWaits.heldFor(pool, quota.tenant.id, { id: meta.id, lane: meta.lane, paceMs, ownDeadline: deadlineOf(job, meta) !== undefined }, ctx.now());
      if (held) return { kind: 'wait', ...held };
    }
    const retry = meta.progress.triedModels?.includes(model) ?? false;
    const acquire = (inputTokens: number) =>
      ctx.bucket.acquire({
        pool,
        limits: modelCfg.limits,
        need: { requests: 1, inputTokens, outputTokens },
        lane: meta.lane,
        reserve: laneCfg.reserve,
        model,
        retry,
        retryReserve: laneCfg.retryReserve,
        retryBudgetExempt: laneCfg.retryBudgetExempt,
        // A call ends (and settles) by its timeout, a stream by its own: an entry left after it is a dead worker's.
        callLifeMs: callLifeOf(ctx.config, job),
        ...quota,
        // A job of a tenant with work queued ahead leaves the fair reserve to a fresh tenant's.
        fairReserve: laneCfg.fairness === 'tenants' && !meta.fresh ? laneCfg.fairReserve : 0,
      });
    let reserve = input.reserve;
    let res = await acquire(reserve);
    // A prompt that never fits in full may fit as the provider counts it, read from its cache.
    if (res.status === 'never_fits' && res.dimension === 'itpm' && input.ifCached !== undefined) {
      reserve = input.ifCached;
      res = await acquire(reserve);
    }
    if (res.status !== 'never_fits') ctx.throttles.note(model, res.throttle);
    if (res.status === 'granted') {
      if (quota.tenant) releaseParked(ctx, pool, quota.tenant.id, meta.id);
      const granted = { kind: 'granted', model, pool, reservation: res.reservation, estimate, retry } as const;
      return res.throttle === 'open' ? { ...granted, probeRun: res.unhealthyRun ?? 0 } : granted;
    }
    if (res.status === 'never_fits') {
      // OpenAI's tpm, and a tenant's, count the prompt and the output bound together.
      const needed = res.dimension === 'otpm' ? outputTokens : res.dimension.endsWith('rpm') ? 1 : res.dimension === 'tpm' || res.dimension === 'tenant_tpm' ? reserve + outputTokens : reserve;
      // An output bound taken from the model's cap is the caller's to lower.
      const capped = res.dimension !== 'itpm' && !res.dimension.endsWith('rpm') && maxOutputTokens(job) === undefined;
      neverFits.push(
        `${model} needs ${needed} in ${res.dimension} but lane ${meta.lane} may draw at most ${drawableText(res.dimension, res.limit, modelCfg.limits.burst, laneCfg.reserve)}${capped ? ` (its output cap of ${bound} is reserved for a request with no ${outputBoundField(job)}: set one to reserve less)` : ''}`,
      );
      continue;
    }
    ctx.metrics.bucketWaits.inc({ pool, lane: meta.lane, reason: res.reason });
    if (isTenantDimension(res.reason) && job.tenant) {
      const parkMs = ctx.tenantWaits.told(pool, job.tenant, meta.id, res.reason, res, ctx.now());
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason, sureWaitMs: res.sureWaitMs, parkMs };
    }
    // Wait for the primary unless it is cooling down, throttled, out of retry budget, or would
    // make the job late; then degrade.
    const tooLate = waitedMs + res.waitMs + REQUEUE_TRIP_MS > maxWaitMs;
    const pace = { pool, ms: paceOf(modelCfg.limits, { inputTokens: reserve, outputTokens }) };
    if (!degrades(res.reason) && (!tooLate || isLast)) {
      return { kind: 'wait', waitMs: res.waitMs, reason: res.reason, sureWaitMs: res.sureWaitMs, pace };
    }
    if (!best || res.waitMs < best.waitMs) best = { waitMs: res.waitMs, reason: res.reason, sureWaitMs: res.sureWaitMs, pace };
  }
  if (best) return { kind: 'wait', ...best };
  return { kind: 'never_fits', message: neverFits.join('; ') || 'no model on the ladder can serve this job' };
}

/** Up to two decimals, rounded down: a most. */
const atMost = (n: number): string => String(Math.floor(n * 100 + 1e-9) / 100);

/**
 * What a lane may ever draw from a dimension, and how that comes about (acquire.lua): the bucket
 * holds `burst` seconds of the per-minute limit (a tenant's quota a minute of it), and the lane
 * leaves its reserve of that. "0 per minute" said neither where the 0 came from nor that it was
 * no rate at all.
 */
function drawableText(dimension: string, limit: number, burst: number, reserve: number): string {
  const seconds = isTenantDimension(dimension) ? 60 : burst;
  const capacity = (limit * seconds) / 60;
  return `${atMost(capacity * (1 - reserve))} at once: the bucket holds ${dimension} ${limit} x burst ${seconds} / 60 = ${atMost(capacity)}, less the lane's reserve of ${reserve} (${atMost(capacity * reserve)})`;
}

/**
 * The tenant's bucket in the pool granted a job: its earliest job parked here behind the quota is
 * brought back now, to ask with what the tenant's settled calls refunded (tenant-waits.ts). Not
 * awaited: the granted call does not wait on it, and a promote that fails leaves the job to its
 * park's end.
 */
function releaseParked(ctx: RunContext, pool: string, tenant: string, jobId: string): void {
  const next = ctx.tenantWaits.granted(pool, tenant, jobId, ctx.now());
  if (next.length === 0) return;
  void (async () => {
    for (const parked of next) {
      ctx.tenantWaits.unpark(pool, tenant, parked.id);
      if (await promoteDelayed(ctx.redis, ctx.config.redis.prefix, parked.lane, parked.id)) return;
    }
  })().catch((err: Error) => ctx.logger.warn({ err: err.message, pool, tenant }, 'could not bring back a job parked behind its tenant quota; it comes back when its park ends'));
}

/** The tenant's tokens/min quota, drawn in the same atomic call as the pool. */
function tenantOf(config: HeadroomConfig, tenant: string | undefined): { tenant?: { id: string; limits: { tpm: number } } } {
  if (!tenant) return {};
  const tpm = tenantTpmOf(config, tenant);
  return tpm ? { tenant: { id: tenant, limits: { tpm } } } : {};
}

/** How long a job's provider call can live: `streamTimeoutMs` for a stream, `timeoutMs` for a plain call. */
export function callLifeOf(config: HeadroomConfig, job: LlmJob): number {
  const bounds = config.providers[job.provider];
  return isStreamed(job) ? bounds.streamTimeoutMs : bounds.timeoutMs;
}
