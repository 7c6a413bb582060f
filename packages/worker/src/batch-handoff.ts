/**
 * Moves a shed job that asked for it (`onShed: 'batch'`) into the BATCH lane as a new job. The
 * original job completes with `{ movedTo }`, and the producer's `result()` follows the pointer,
 * so the caller still gets its answer, later and at half price.
 */
import type { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { admit, idempotentJobId, modelLadder, releaseReservation, type LlmJob } from '@headroom/queue';

export interface MovedToBatch {
  movedTo: string;
  reason: string;
}

export async function handOffToBatch(queue: Queue, redis: Redis | Cluster, prefix: string, originalId: string, job: LlmJob): Promise<string> {
  // Derived from the original id: a worker that dies between this add and completing the original
  // hands off again to the same job, never to a second one.
  const id = idempotentJobId('batch', `shed:${originalId}`);
  const moved: LlmJob = { ...job, sla: 'none' };
  const outcome = await admit(redis, prefix, { lane: 'batch', jobId: id, provider: job.provider, models: modelLadder(job), ...(job.tenant ? { tenant: job.tenant } : {}) });
  if (outcome === 'exists') return id;
  await queue.add(`${job.provider}:${job.request.model}`, moved, { jobId: id, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } });
  await releaseReservation(redis, prefix, 'batch', id);
  return id;
}
