/**
 * Pressure: one number per model pool, 0 (idle) to 1 (overloaded), from which LOW work is shed.
 * A full bucket is the goal, not a problem, so utilization alone never sheds: the bucket must be
 * drawn down AND either the queued work must take longer than the horizon to drain at the refill
 * rate, or the shed lane's oldest job must be past its max wait.
 * A pool whose every model is cooling down (the provider said 429) is under full pressure.
 */
import { isTenantDimension, type BucketSnapshot } from './bucket.js';

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
  for (const d of input.snapshot.dimensions) {
    if (isTenantDimension(d.dimension) || d.capacity <= 0) continue;
    const used = clamp01((1 - d.level / d.capacity) / (1 - Math.min(0.99, input.reserve ?? 0)));
    if (used > utilization) utilization = used;
    const need = input.meanNeed[d.dimension] ?? (d.dimension === 'rpm' ? 1 : 0);
    const ms = d.ratePerSec > 0 ? (Math.max(0, input.backlogJobs * need - Math.max(0, d.level)) / d.ratePerSec) * 1000 : 0;
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
