/**
 * The priority lanes. Interactive lanes are served in this order; BATCH holds work with no
 * deadline, which goes to the providers' batch APIs instead of the shared bucket.
 */

export const INTERACTIVE_LANES = ['critical', 'high', 'normal', 'low'] as const;
export type InteractiveLane = (typeof INTERACTIVE_LANES)[number];
export const LANES = [...INTERACTIVE_LANES, 'batch'] as const;
export type Lane = (typeof LANES)[number];

/** Job-level priority as a producer writes it. */
export const PRIORITIES = ['CRITICAL', 'HIGH', 'NORMAL', 'LOW'] as const;
export type Priority = (typeof PRIORITIES)[number];

export function laneOfPriority(priority: Priority): InteractiveLane {
  return priority.toLowerCase() as InteractiveLane;
}

export interface LaneDefaults {
  /** Jobs not yet started (waiting, prioritized, delayed). */
  cap: number;
  /**
   * Bytes of job data the lane's unfinished jobs (not yet started, or running) may hold together:
   * a cap on the memory the lane takes in Redis, whatever the size of its jobs.
   */
  maxBytes: number;
  weight: number;
  /** Fraction of each bucket dimension this lane must leave untouched. */
  reserve: number;
  /**
   * In a fair lane, the further fraction of each pool dimension that a job whose tenant already
   * had work queued ahead of it leaves untouched, for a tenant with nothing queued: that tenant's
   * job is then served from it at once, not behind a flooding tenant's jobs racing for each
   * refill. A standing level, not a rate: throughput is unchanged (docs/architecture.md).
   */
  fairReserve: number;
  /** How long a job may wait before pressure may shed it (LOW) or it is reported late. */
  maxWaitMs: number;
  /**
   * Fraction of a model's retry budget this lane must leave for the lanes above: CRITICAL and
   * HIGH retry first in a brownout; a lower lane's retry waits (no attempt spent) instead.
   */
  retryReserve: number;
  /**
   * While the model's throttle is closed (it serves at least 1/k of its calls, and fewer than 8
   * unhealthy answers in a row came back), the lane's retries
   * are not held by the retry budget (they still count in it, so the lanes below retry less): the
   * bucket and the job's attempts bound them. CRITICAL's default: the budget protects the provider
   * from piled-up retries and first calls from being crowded out by them, and neither is served by
   * holding a CRITICAL retry while a LOW job's first call goes (a brownout's CRITICAL jobs waited
   * seconds per retry under it, tens of seconds on a busy machine). The bucket's lane reserves
   * then give CRITICAL's retries the capacity the lower lanes' first calls would have used. Once
   * the throttle binds, the budget paces them too (model-throttle.lua says why).
   */
  retryBudgetExempt: boolean;
  /**
   * `tenants`: start-time fair order by tokens across the tenants with work waiting; `fifo`:
   * enqueue order (BATCH: its jobs leave in provider batches, where order buys nothing).
   */
  fairness: 'tenants' | 'fifo';
}

const MiB = 1024 * 1024;

// maxBytes: 64 MiB of CRITICAL up to 512 MiB of BATCH, 1.2 GiB in all at most: what a Redis sized
// for the job counts at typical (few-KiB) jobs can hold, where the counts alone at the 1 MiB job
// limit would allow 5 GB of LOW and 100 GB of BATCH.
export const LANE_DEFAULTS: Record<Lane, LaneDefaults> = {
  critical: { cap: 50, maxBytes: 64 * MiB, weight: 5, reserve: 0, fairReserve: 0.02, maxWaitMs: 60_000, retryReserve: 0, retryBudgetExempt: true, fairness: 'tenants' },
  high: { cap: 200, maxBytes: 128 * MiB, weight: 3, reserve: 0.05, fairReserve: 0.02, maxWaitMs: 5 * 60_000, retryReserve: 0.2, retryBudgetExempt: false, fairness: 'tenants' },
  normal: { cap: 1000, maxBytes: 256 * MiB, weight: 1, reserve: 0.2, fairReserve: 0.02, maxWaitMs: 30 * 60_000, retryReserve: 0.8, retryBudgetExempt: false, fairness: 'tenants' },
  low: { cap: 5000, maxBytes: 256 * MiB, weight: 0.1, reserve: 0.4, fairReserve: 0.02, maxWaitMs: 60 * 60_000, retryReserve: 0.9, retryBudgetExempt: false, fairness: 'tenants' },
  batch: { cap: 100_000, maxBytes: 512 * MiB, weight: 0, reserve: 0, fairReserve: 0, maxWaitMs: 24 * 60 * 60_000, retryReserve: 0, retryBudgetExempt: false, fairness: 'fifo' },
};
