/**
 * A lane as the tests on a real Redis drive it: its keys, its BullMQ queue, and a worker's take,
 * as a dispatcher takes a job (by hand, no lock renewal). Not part of the package (excluded from
 * its build).
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';

export function laneHandle(redis: Redis, prefix: string, name: Lane, closers: { close(): Promise<unknown> }[]) {
  const k = laneKeys(prefix, name);
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis });
  const worker = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: redis, autorun: false, skipLockRenewal: true });
  closers.push(queue, worker);
  let n = 0;
  return {
    k,
    queue,
    backend: worker.backend,
    /** Takes the lane's next job, as a worker's dispatcher does. */
    take: async (): Promise<{ job: Job; token: string }> => {
      const token = `t${++n}`;
      const job = await worker.getNextJob(token, { block: false });
      if (!job) throw new Error(`lane ${name} empty`);
      return { job, token };
    },
  };
}
