/**
 * Pressure: one number per model pool, 0 (idle) to 1 (overloaded), from which LOW work is shed.
 * A full bucket is the goal, not a problem, so utilization alone never sheds: the bucket must be
 * drawn down AND either the queued work must take longer than the horizon to drain at the refill
 * rate, or the shed lane's oldest job must be past its max wait.
 * A pool whose every model is cooling down (the provider said 429) is under full pressure.
 * Capacity lost to a brownout counts as used: the bucket's level and refill are scaled by the share
 * of calls the pool's models' throttles still get served, so LOW sheds as under a quota squeeze.
 */
import { isTenantDimension, type BucketSnapshot, type ThrottleSnapshot } from './bucket.js';

export interface PressureInput {
  snapshot: Pick<BucketSnapshot, 'dimensions' | 'cooldowns'>;
  /** Models that draw from this pool. */
  models: readonly string[];
  /** Jobs queued in the interactive lanes (lanes mix pools, so this counts them all). */
  backlogJobs: number;
  /** Mean charge of one job per dimension (rpm: 1; token dimensions: observed means). */
  meanNeed: Partial<Record<string, number>>;
  /** Drain times past this count as full pressure. */
  horizonMs: number;
  /**
   * The reserve of the lane being shed (LOW: 0.4). That lane can never draw the bucket below its
   * reserve, so utilization is measured against what it may draw: a bucket sitting at LOW's
   * reserve is fully used, as far as LOW is concerned. @default 0
   */
  reserve?: number;
  /**
   * How long the oldest job of the shed lane has waited, and how long it may: a lane whose front
   * is past its max wait is not keeping up, whatever the drain estimate says (the estimate cannot
   * see new work arriving in the lanes above). @default 0
   */
  oldestWaitMs?: number;
  maxWaitMs?: number;
  /**
   * Share of the pool's capacity that still serves calls (its models' throttles: admit ratio x
   * success ratio, see `capacityOf`): 0.5 in a 50% brownout, 0 for a dead model. @default 1
   */
  capacityFactor?: number;
}

/**
 * The share of a pool's capacity its models still get served, from their throttles: the mean over
 * the pool's models of admit ratio x success ratio; a model with no throttle state counts 1.
 */
export function capacityOf(models: readonly string[], throttles: readonly Pick<ThrottleSnapshot, 'model' | 'admitRatio' | 'successRatio'>[]): number {
  if (models.length === 0) return 1;
  let sum = 0;
  for (const m of models) {
    const t = throttles.find((x) => x.model === m);
    sum += t ? t.admitRatio * t.successRatio : 1;
  }
  return sum / models.length;
}

export interface Pressure {
  value: number;
  /** How much of what the shed lane may draw is used, in the most drawn-down dimension. */
  utilization: number;
  /** Time the backlog needs at the refill rate of its binding dimension, beyond what the bucket holds. */
  drainMs: number;
  coolingModels: number;
  binding: string | null;
}

const clamp01 = (x: number) => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 1);

export function computePressure(input: PressureInput): Pressure {
  let utilization = 0;
  let drainMs = 0;
  let binding: string | null = null;
  const served = clamp01(input.capacityFactor ?? 1);
  for (const d of input.snapshot.dimensions) {
    if (isTenantDimension(d.dimension) || d.capacity <= 0) continue;
    const level = d.level * served;
    const used = clamp01((1 - level / d.capacity) / (1 - Math.min(0.99, input.reserve ?? 0)));
    if (used > utilization) utilization = used;
    const need = input.meanNeed[d.dimension] ?? (d.dimension === 'rpm' ? 1 : 0);
    const short = Math.max(0, input.backlogJobs * need - Math.max(0, level));
    const rate = d.ratePerSec * served;
    const ms = short <= 0 ? 0 : rate > 0 ? (short / rate) * 1000 : Number.POSITIVE_INFINITY;
    if (ms > drainMs) {
      drainMs = ms;
      binding = d.dimension;
    }
  }
  const cooling = new Set(input.snapshot.cooldowns.filter((c) => c.remainingMs > 0).map((c) => c.model));
  const coolingModels = input.models.filter((m) => cooling.has(m)).length;
  const cooldownFactor = input.models.length > 0 ? coolingModels / input.models.length : 0;
  const drainFactor = clamp01(drainMs / input.horizonMs);
  const ageFactor = input.maxWaitMs ? clamp01((input.oldestWaitMs ?? 0) / input.maxWaitMs) : 0;
  const value = Math.max(Math.min(utilization, Math.max(drainFactor, ageFactor)), cooldownFactor);
  return { value, utilization, drainMs, coolingModels, binding };
}
