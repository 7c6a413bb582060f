/**
 * The one job per pool this worker lets sleep in place for a short bucket wait (the rest go back
 * to their lane, so a saturated pool's slots are not a herd of sleepers racing for each refill).
 *
 * The sleeper has its pool's next refill. Until its acquire after the sleep has answered, the
 * dispatcher treats the pool as backed off in the sleeper's lane: a job fetched behind it would
 * otherwise reach the bucket at the same moment, could take that refill first, and be served
 * before the sleeper (a later job before an earlier one). Jobs of other pools keep flowing.
 */
import type { InteractiveLane } from '@headroom/queue';

export interface PoolSleeper {
  pool: string;
  lane: InteractiveLane;
  /** When the sleep ends (epoch ms); the hold lasts until the sleeper's next acquire answers. */
  until: number;
}

export class PoolSleepers {
  readonly #byPool = new Map<string, PoolSleeper>();

  has(pool: string): boolean {
    return this.#byPool.has(pool);
  }

  take(pool: string, lane: InteractiveLane, until: number): void {
    this.#byPool.set(pool, { pool, lane, until });
  }

  release(pool: string): void {
    this.#byPool.delete(pool);
  }

  /** The sleepers holding pools in the lane. */
  in(lane: InteractiveLane): PoolSleeper[] {
    return [...this.#byPool.values()].filter((s) => s.lane === lane);
  }
}
