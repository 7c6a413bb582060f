/**
 * The BATCH leader's hold on the jobs of a claim (`batch-park-1.lua`): their locks lengthened
 * under the claim's token, as BullMQ's `extendJobLocks` does, and each marked for a cancel: filed
 * (`sending: false`) a job may still be cancelled, removed from the lane before its batch is made;
 * about to be sent (`sending: true`) it may not. Returns the ids that are no longer the claim's.
 *
 * ```ts
 * const lost = await parkBatchJobs(redis, prefix, ids, claim.token, parkLockMs, { sending: true });
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { laneKeys } from './keys.js';
import { runScript } from './scripts.js';

/** Ids per call: a claim may hold 100,000 jobs, and one script holds Redis while it runs. */
const CHUNK = 5_000;

export async function parkBatchJobs(redis: Redis | Cluster, prefix: string, jobIds: readonly string[], token: string, lockMs: number, opts: { sending: boolean }): Promise<string[]> {
  const k = laneKeys(prefix, 'batch');
  const lost: string[] = [];
  for (let i = 0; i < jobIds.length; i += CHUNK) {
    const chunk = jobIds.slice(i, i + CHUNK);
    lost.push(...(await runScript<string[]>(redis, 'batch-park', [k.stalled], [k.jobKeyPrefix, token, String(lockMs), opts.sending ? '1' : '0', ...chunk])));
  }
  return lost;
}
