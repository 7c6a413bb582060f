/**
 * Moves a shed job that asked for it (`onShed: 'batch'`) into the BATCH lane as a new job. The
 * original job completes with `{ movedTo }`, and the producer's `result()` follows the pointer,
 * so the caller still gets its answer, later and at half price.
 */
import type { Job, Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { addToLane, handOffJobId, HeadroomError, type LaneEntry, type LlmJob } from '@headroom/queue';

export interface MovedToBatch {
  movedTo: string;
  reason: string;
}

/**
 * The BATCH job's option holding the original job's enqueue time: the caller has waited since
 * then, and its result's timings say so. (The BATCH job's own timestamp is the hand-off's, and
 * stays so: the claim's maxWaitMs counts from it, or every moved job would make its claim due.)
 */
const ENQUEUED_AT_OPTION = 'hrEnqueuedAt';

/** When the caller enqueued a BATCH job: its original's enqueue for a hand-off, else its own. */
export function enqueuedAtOf(job: Job): number {
  const at = (job.opts as Record<string, unknown>)[ENQUEUED_AT_OPTION];
  return typeof at === 'number' && at <= job.timestamp ? at : job.timestamp;
}

export async function handOffToBatch(queue: Queue, redis: Redis | Cluster, prefix: string, originalId: string, job: LlmJob, enqueuedAt: number): Promise<string> {
  // Derived from the original id: a worker that dies between this add and completing the original
  // hands off again to the same job, never to a second one; no idempotency key maps to it.
  const id = handOffJobId(originalId);
  const moved: LlmJob = { ...job, sla: 'none' };
  const [outcome] = await addToLane(redis, queue, prefix, 'batch', [
    { jobId: id, job: moved, opts: { removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 }, [ENQUEUED_AT_OPTION]: enqueuedAt } as LaneEntry['opts'] },
  ]);
  if (outcome instanceof HeadroomError) throw outcome;
  return outcome!.id;
}
