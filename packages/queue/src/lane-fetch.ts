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

/** How far into a lane the dispatcher looks for a job whose pool is not backed off. */
export const FRONT_SEARCH_DEPTH = 50;

/**
 * Brings the first job of the lane (within `depth`) whose primary model's pool is not in
 * `blocked` to the front, where BullMQ's next fetch takes it. 'blocked': every job looked at
 * waits on a backed-off pool, so the whole lane may back off.
 */
export async function bringRunnableToFront(
  redis: Redis | Cluster,
  prefix: string,
  lane: Lane,
  blocked: readonly string[],
  depth = FRONT_SEARCH_DEPTH,
): Promise<FrontOutcome> {
  const k = laneKeys(prefix, lane);
  return runScript<FrontOutcome>(redis, 'front-runnable', [k.wait, k.prioritized, k.models], [depth, ...blocked]);
}
