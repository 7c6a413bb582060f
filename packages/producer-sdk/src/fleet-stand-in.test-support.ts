/**
 * Stands in for the fleet on one lane in this package's tests (the fleet is not this package's):
 * takes jobs as a Headroom worker does and ends each the same way (`finishJob`: its result, its
 * release and the reply to its producer in one call). A processor that throws fails the job with
 * its message. BullMQ's stalled check runs as in a worker; locks are not renewed.
 */
import { EventEmitter } from 'node:events';
import { Worker, type Job, type WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { finishJob, laneKeys, type InteractiveLane, type JobEnd } from '@headroom/queue';

export interface StandInWorker {
  on(event: 'completed' | 'failed', fn: (job: Job) => void): void;
  close(force?: boolean): Promise<void>;
}

export function standInWorker(redisUrl: string, prefix: string, lane: InteractiveLane, processor: (job: Job) => unknown, opts: Partial<WorkerOptions> = {}): StandInWorker {
  const k = laneKeys(prefix, lane);
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection, autorun: false, ...opts });
  const events = new EventEmitter();
  let stopped = false;
  const run = async (job: Job, token: string) => {
    let end: JobEnd;
    try {
      end = { completed: await processor(job) };
    } catch (err) {
      end = { failed: (err as Error).message };
    }
    if (stopped) return;
    await finishJob(connection, prefix, lane, w.backend, job, token, end);
    events.emit('completed' in end ? 'completed' : 'failed', job);
  };
  void (async () => {
    await w.waitUntilReady();
    await w.startStalledCheckTimer();
    for (let n = 1; !stopped; n++) {
      const token = `stand-in:${n}`;
      const job = await w.getNextJob(token, { block: false }).catch(() => undefined);
      if (job) void run(job, token);
      else await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    on: (event, fn) => void events.on(event, fn),
    close: async (force = false) => {
      stopped = true;
      await w.close(force);
      connection.disconnect();
    },
  };
}

/** Resolves once `condition` holds: polled, within a bound only a broken build reaches. */
export async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
