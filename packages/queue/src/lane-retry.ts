/**
 * Retrying a finished job (Bull Board's "retry" of a completed or failed job) through admission:
 * the job goes back to its lane only if a new job would be admitted (settings published, cap,
 * byte cap, tenant max), and is counted as unfinished again. See lua/retry-9.lua.
 *
 * ```ts
 * const r = await retryFinishedJob(redis, prefix, 'normal', jobId, 'failed', job.data.tenant);
 * if (r instanceof HeadroomError) reply(429, r.code);  // QUEUE_FULL, QUOTA_EXCEEDED, FLEET_UNPUBLISHED
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { ErrorCode, FleetUnpublishedError, HeadroomError, JobNotFoundError, QueueFullError, QuotaExceededError } from './errors.js';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';
import { runScript } from './scripts.js';

/** `retry-9.lua`'s first reply element. */
export const RetryReply = { RETRIED: 1, QUEUE_FULL: -1, TENANT_MAX_QUEUED: -5, UNPUBLISHED: -6, BYTES_FULL: -7, NOT_FINISHED: -8 } as const;

/**
 * Sends the finished job back to its lane if admission would take it. Returns true, or the error
 * that refuses it.
 */
export async function retryFinishedJob(
  redis: Redis | Cluster,
  prefix: string,
  lane: Lane,
  jobId: string,
  state: 'completed' | 'failed',
  tenant: string | undefined,
  opts: { lifo?: boolean } = {},
): Promise<true | HeadroomError> {
  const k = laneKeys(prefix, lane);
  const keys = [`${k.jobKeyPrefix}${jobId}`, k.events, state === 'failed' ? k.failed : k.completed, k.wait, k.meta, k.active, k.marker, k.prioritized, k.pc];
  const args = [jobId, opts.lifo ? 'RPUSH' : 'LPUSH', state === 'failed' ? 'failedReason' : 'returnvalue', state, '0', '0', k.ownPrefix, tenant ?? ''];
  const [code, a, b, c] = (await runScript<(string | number)[]>(redis, 'retry', keys, args)).map(Number) as [number, number, number, number];
  switch (code) {
    case RetryReply.RETRIED:
      return true;
    case RetryReply.QUEUE_FULL:
      return new QueueFullError(lane, a);
    case RetryReply.TENANT_MAX_QUEUED:
      return new QuotaExceededError(tenant ?? '', `max unfinished jobs in lane ${lane}`, a);
    case RetryReply.UNPUBLISHED:
      return new FleetUnpublishedError(lane);
    case RetryReply.BYTES_FULL:
      return new QueueFullError(lane, { maxBytes: a, bytes: b, jobBytes: c });
    case RetryReply.NOT_FINISHED:
      return a === -1 ? new JobNotFoundError(jobId) : new HeadroomError(ErrorCode.JOB_NOT_FOUND, `job ${jobId} is not ${state} any more: nothing to retry`);
    default:
      throw new Error(`retry script replied ${code}`);
  }
}
