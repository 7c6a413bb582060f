/**
 * Moves a shed job that asked for it (`onShed: 'batch'`) into the BATCH lane as a new job. The
 * original job completes with `{ movedTo }`, and the producer's `result()` follows the pointer,
 * so the caller still gets its answer, later and at half price.
 */
import type { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { addToLane, handOffJobId, HeadroomError, type LlmJob } from '@headroom/queue';

export interface MovedToBatch {
  movedTo: string;
  reason: string;
}

export async function handOffToBatch(queue: Queue, redis: Redis | Cluster, prefix: string, originalId: string, job: LlmJob): Promise<string> {
  // Derived from the original id: a worker that dies between this add and completing the original
  // hands off again to the same job, never to a second one; no idempotency key maps to it.
  const id = handOffJobId(originalId);
  const moved: LlmJob = { ...job, sla: 'none' };
  const [outcome] = await addToLane(redis, queue, prefix, 'batch', [
    { jobId: id, job: moved, opts: { removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } } },
  ]);
  if (outcome instanceof HeadroomError) throw outcome;
  return outcome!.id;
}
