/**
 * Gathers the enqueues a producer has in flight for one lane and admits and adds them with few
 * script calls: a service enqueueing concurrently pays a round trip per batch instead of one per
 * job. A lone enqueue is a batch of one, so nothing waits for company: the batch closes at the end
 * of the current microtask queue.
 */
import type { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { addToLane, asRedisError, HeadroomError, type Added, type Lane, type LaneEntry, type LlmJob } from '@headroom/queue';

interface Pending {
  id: string;
  job: LlmJob;
  resolve(e: Added): void;
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
    private readonly optionsOf: (lane: Lane, job: LlmJob) => LaneEntry['opts'],
  ) {}

  submit(lane: Lane, id: string, job: LlmJob): Promise<Added> {
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
    // Two calls, not one: Redis runs the first half while this process serializes the second, and
    // the callers of the first half prepare their next enqueues while Redis runs the second. One
    // call kept callers and Redis taking turns: with 8 in flight, one call per flush measured
    // 0.37-0.48x raw Queue.add, two 0.58-0.69x, four or eight no better (one run each, loaded machine).
    const size = all.length > 1 ? Math.min(MAX_BATCH, Math.ceil(all.length / 2)) : 1;
    const runs: Promise<void>[] = [];
    for (let i = 0; i < all.length; i += size) runs.push(this.run(lane, all.slice(i, i + size)));
    await Promise.all(runs);
  }

  private async run(lane: Lane, batch: Pending[]): Promise<void> {
    try {
      const outcomes = await addToLane(
        this.redis,
        this.queueOf(lane),
        this.prefix,
        lane,
        batch.map((p) => ({ jobId: p.id, job: p.job, opts: this.optionsOf(lane, p.job) })),
      );
      for (const [i, p] of batch.entries()) {
        const outcome = outcomes[i]!;
        if (outcome instanceof HeadroomError) p.reject(outcome);
        else p.resolve(outcome);
      }
    } catch (err) {
      const mapped = asRedisError(err);
      for (const p of batch) p.reject(mapped);
    }
  }
}
