/**
 * Taking around a backed-off pool: a lane's jobs may draw from several pools, and a job told to
 * wait for its pool's quota must not hold up the jobs behind it that draw from another. The lane's
 * order is BullMQ's: its wait list, then its prioritized set (a fair lane's jobs).
 */
import type { Cluster, Redis } from 'ioredis';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';
import { runScript } from './scripts.js';

export type FrontOutcome = 'front' | 'moved' | 'blocked' | 'empty';

/** What bringing a runnable job to the front did. */
export interface FrontResult {
  outcome: FrontOutcome;
  /**
   * The job at the front runs only on a fallback: its primary could not start it within its
   * maxWaitMs (the bucket's wait, then the jobs of its pool ahead of it). The worker that takes it
   * passes over its primary's pool, whose refills those jobs wait for.
   */
  fallsBack?: string;
}

/** How far into a lane the dispatcher looks for a job whose pool is not backed off. */
export const FRONT_SEARCH_DEPTH = 50;

/**
 * Marks a pool backed off only for the jobs of tenants with work queued (the fair reserve held
 * them back, lua/acquire.lua): a fresh tenant's job of that pool may still run. `~` is in no pool
 * name (config.ts), so `~<pool>` never names one.
 */
export const FAIR_SHARE_ONLY = '~';
export const fairShareOnly = (pool: string): string => FAIR_SHARE_ONLY + pool;
/** Every entry holds back only queued-up tenants' jobs: a fresh job may still run. */
export const allFairShareOnly = (backedOff: readonly string[]): boolean => backedOff.every((p) => p.startsWith(FAIR_SHARE_ONLY));

/** What a lane's backoffs say, for taking around them. */
export interface LaneBackoffs {
  /** The backed-off pools (`fairShareOnly(pool)` for those held back only for queued-up tenants). */
  pools: readonly string[];
  /** When the bucket's wait for a backed-off pool ends (epoch ms), where known: the backoff itself lasts at most a second. */
  waitEnds?: ReadonlyMap<string, number>;
  /**
   * A backed-off pool's pace (ms): how long its bucket takes to refill one job's draw, so each job
   * of the pool ahead of another in the lane starts it that much later. Unknown: 0.
   */
  paces?: ReadonlyMap<string, number>;
  /**
   * Models whose fleet-wide throttle binds, as the worker last heard (failing): a job of one with
   * an open fallback goes down its ladder at once, as the worker's plan would send it.
   */
  failingModels?: readonly string[];
  /** The lane's configured maxWaitMs: a job without its own falls back past it. */
  laneMaxWaitMs: number;
  now: number;
}

/**
 * Brings the first job of the lane (within `depth`) that may run to the front, where BullMQ's
 * next fetch takes it: one whose primary model's pool is not backed off, or, when it is, one that
 * would go down its ladder now (a fallback's pool open, and the primary failing, or its wait plus
 * the jobs of its pool ahead of it past the job's maxWaitMs: `fallsBack`). 'blocked': every job looked at
 * waits on a backed-off pool, so the whole lane may back off. A `fairShareOnly(pool)` entry holds
 * back that pool's jobs except a fresh tenant's (`hrFresh` in its options).
 */
export async function bringRunnableToFront(redis: Redis | Cluster, prefix: string, lane: Lane, backoffs: LaneBackoffs, depth = FRONT_SEARCH_DEPTH): Promise<FrontResult> {
  const k = laneKeys(prefix, lane);
  const waits = [...(backoffs.waitEnds ?? new Map<string, number>())].flatMap(([pool, end]) => [pool, end, backoffs.paces?.get(pool) ?? 0]);
  const reply = await runScript<FrontOutcome | [FrontOutcome, string]>(redis, 'front-runnable', [k.wait, k.prioritized, k.models, k.fallbacks], [
    depth,
    backoffs.laneMaxWaitMs,
    backoffs.now,
    backoffs.pools.length,
    ...backoffs.pools,
    backoffs.failingModels?.length ?? 0,
    ...(backoffs.failingModels ?? []),
    ...waits,
  ]);
  return Array.isArray(reply) ? { outcome: reply[0], fallsBack: reply[1] } : { outcome: reply };
}

/**
 * How many jobs each lane could hand a fetch now (waiting, prioritized, delayed and due; 0 when
 * paused), in one round trip for all: cheaper than BullMQ's fetch run on each lane to find it
 * empty. Clears an empty lane's stale base marker (lua/ready-lanes.lua). One Redis node only: the
 * lanes live in different Cluster slots.
 */
export async function readyJobs(redis: Redis | Cluster, prefix: string, lanes: readonly Lane[], nowMs: number): Promise<number[]> {
  const keys = lanes.flatMap((lane) => {
    const k = laneKeys(prefix, lane);
    return [k.wait, k.prioritized, k.delayed, k.marker, k.meta];
  });
  return runScript<number[]>(redis, 'ready-lanes', keys, [nowMs]);
}
