/**
 * Gathers the enqueues a producer has in flight for one lane and admits them in one script call,
 * then adds them in one `addBulk`: a service enqueueing concurrently pays two round trips per
 * batch instead of two per job. A lone enqueue is a batch of one, so nothing waits for company:
 * the batch closes at the end of the current microtask queue.
 */
import type { JobsOptions, Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { admitMany, asRedisError, HeadroomError, modelLadder, releaseReservation, type Lane, type LlmJob } from '@headroom/queue';

export interface Enqueued {
  id: string;
  /** True when an existing job was returned: same idempotency key, or coalesced into one in flight. */
  existing: boolean;
}

interface Pending {
  id: string;
  job: LlmJob;
  resolve(e: Enqueued): void;
  reject(err: unknown): void;
}

/** Large batches would hold Redis in one script for long; past this, several calls. */
const MAX_BATCH = 200;

export class EnqueueBatcher {
  private readonly pending = new Map<Lane, Pending[]>();

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly queueOf: (lane: Lane) => Queue,
    private readonly optionsOf: (id: string, job: LlmJob) => JobsOptions,
  ) {}

  submit(lane: Lane, id: string, job: LlmJob): Promise<Enqueued> {
    return new Promise((resolve, reject) => {
      let list = this.pending.get(lane);
      if (!list) {
        list = [];
        this.pending.set(lane, list);
        queueMicrotask(() => void this.flush(lane));
      }
      list.push({ id, job, resolve, reject });
    });
  }

  private async flush(lane: Lane): Promise<void> {
    const all = this.pending.get(lane) ?? [];
    this.pending.delete(lane);
    for (let i = 0; i < all.length; i += MAX_BATCH) await this.run(lane, all.slice(i, i + MAX_BATCH));
  }

  private async run(lane: Lane, batch: Pending[]): Promise<void> {
    try {
      const outcomes = await admitMany(
        this.redis,
        this.prefix,
        lane,
        batch.map((p) => ({ lane, jobId: p.id, provider: p.job.provider, models: modelLadder(p.job), ...(p.job.tenant ? { tenant: p.job.tenant } : {}) })),
      );
      const toAdd = batch.filter((_, i) => outcomes[i] === 'admitted');
      const queue = this.queueOf(lane);
      const entries = toAdd.map((p) => ({ name: `${p.job.provider}:${p.job.request.model}`, data: p.job, opts: this.optionsOf(p.id, p.job) }));
      const added = entries.length === 0 ? [] : entries.length === 1 ? [await queue.add(entries[0]!.name, entries[0]!.data, entries[0]!.opts)] : await queue.addBulk(entries);
      if (toAdd.length > 0) {
        releaseReservation(this.redis, this.prefix, lane, ...toAdd.map((p) => p.id)).catch(() => {
          // The reservations expire by themselves; nothing is lost if this one command fails.
        });
      }
      let next = 0;
      for (const [i, p] of batch.entries()) {
        const outcome = outcomes[i];
        if (outcome instanceof HeadroomError) {
          p.reject(outcome);
        } else if (outcome === 'exists') {
          p.resolve({ id: p.id, existing: true });
        } else {
          // A coalesced add returns the job already in flight (with our data, not its own): use its id.
          const job = added[next++];
          p.resolve(job?.id && job.id !== p.id ? { id: job.id, existing: true } : { id: p.id, existing: false });
        }
      }
    } catch (err) {
      const mapped = asRedisError(err);
      for (const p of batch) p.reject(mapped);
    }
  }
}
