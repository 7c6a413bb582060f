/**
 * A repeat of an idempotency key whose job was shed to the BATCH lane (`onShed: 'batch'`) is
 * answered with the BATCH job it became: the pointer a worker's hand-off leaves (the run completed
 * with `{ movedTo }`) or the alias admission leaves (rememberHandOff). When that BATCH job failed
 * with a failure that told its caller to resubmit (expired, errored, canceled: anything but
 * REPLAYED_FAILURES, the rule add-9.lua applies to a key's own failed job), the repeat must run
 * the job again, not answer the failure again for the job's retention. The BATCH job is in another
 * hash slot than the key's lane, out of the add script's reach: it is read here, and the pointer is
 * then taken away only while it still names that job (release-hand-off-3.lua), so the producer's
 * next add runs the job afresh (and a second shed hands it off anew: add-9.lua runs a failed
 * hand-off job again under its id).
 *
 * ```ts
 * if (added.existing && (await releaseFailedHandOff(redis, prefix, 'low', id, handOffId))) added = await addAgain();
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { REPLAYED_FAILURES } from './failure.js';
import { laneOfJobId } from './job-ids.js';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';
import { runScript } from './scripts.js';

/** True when the key's pointer to `handOffId` was taken away (or already was): add the job again. */
export async function releaseFailedHandOff(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string, handOffId: string): Promise<boolean> {
  if (lane === 'batch' || laneOfJobId(handOffId) !== 'batch') return false;
  const batch = laneKeys(prefix, 'batch');
  const [finishedOn, failedReason, returnvalue] = await redis.hmget(`${batch.jobKeyPrefix}${handOffId}`, 'finishedOn', 'failedReason', 'returnvalue');
  if (!finishedOn || !failedReason || (returnvalue !== null && returnvalue !== 'null')) return false;
  // The code as add-9.lua's failedToRetry reads it (`CODE: message`), so both sides agree.
  const code = /^([A-Z_]+): /.exec(failedReason)?.[1];
  if (code !== undefined && (REPLAYED_FAILURES as ReadonlySet<string>).has(code)) return false;
  const k = laneKeys(prefix, lane);
  await runScript(redis, 'release-hand-off', [`${k.jobKeyPrefix}${jobId}`, k.completed, k.idempotentAlias(jobId)], [jobId, handOffId, k.ownPrefix]);
  return true;
}
