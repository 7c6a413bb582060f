/**
 * Applies a run's outcome to its BullMQ job: completed, failed (its failure stored beside
 * BullMQ's text), shed to the batch lane, back to the front of its lane (its pool backing off
 * there), delayed, or handed back on shutdown. Each transition is retried while Redis blinks; if
 * it still fails, the job's lock expires and another worker runs it again.
 */
import { Queue, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { FailureCode, failureText, jobFailure, laneKeys, poolOf, type HeadroomConfig, type InteractiveLane, type JobFailure, type LlmJob } from '@headroom/queue';
import type { JobProgress, RunContext, RunOutcome } from '../run/run-context.js';
import { handOffToBatch } from '../shedding/batch-handoff.js';
import type { PoolBackoffs } from './pool-backoff.js';

export interface OutcomeApplierOptions {
  ctx: RunContext;
  config: HeadroomConfig;
  redis: Redis | Cluster;
  backoffs: PoolBackoffs;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function readProgress(progress: unknown): JobProgress {
  if (typeof progress === 'object' && progress !== null && typeof (progress as JobProgress).attempts === 'number') return progress as JobProgress;
  return { attempts: 0 };
}

export class OutcomeApplier {
  #batch: Queue | undefined;

  constructor(private readonly o: OutcomeApplierOptions) {}

  async apply(job: Job, token: string, lane: InteractiveLane, outcome: RunOutcome): Promise<void> {
    const { ctx } = this.o;
    try {
      switch (outcome.kind) {
        case 'completed':
          await this.#attempt(() => job.moveToCompleted(outcome.result, token, false));
          ctx.metrics.jobs.inc({ lane, outcome: 'completed' });
          ctx.stats.jobEnded({ lane, outcome: 'completed', waitMs: outcome.result.timings.waitMs, model: outcome.result.model, usage: outcome.result.usage, costUsd: outcome.result.cost.usd });
          return;
        case 'failed':
          await this.#fail(job, token, lane, outcome.failure, outcome.progress);
          return;
        case 'requeue':
          await this.#saveProgress(job, outcome.progress);
          await this.#attempt(() => job.moveToWait(token));
          await this.o.backoffs.backOff(lane, poolOf(this.o.config, (job.data as LlmJob).request.model), outcome.waitMs);
          return;
        case 'to_batch': {
          let movedTo: string;
          try {
            movedTo = await handOffToBatch(this.#batchQueue(), this.o.redis, this.o.config.redis.prefix, job.id!, job.data as LlmJob);
          } catch (err) {
            // The batch lane refused it (full, say): the job is shed like any other.
            const failure = jobFailure(FailureCode.SHED, `${outcome.failure.message}; the batch lane refused it: ${(err as Error).message}`, outcome.failure.retryAfterMs);
            await this.#fail(job, token, lane, failure, outcome.progress);
            return;
          }
          await this.#attempt(() => job.moveToCompleted({ movedTo, reason: failureText(outcome.failure) }, token, false));
          ctx.metrics.jobs.inc({ lane, outcome: 'shed' });
          ctx.stats.jobEnded({ lane, outcome: 'shed' });
          await this.#countShed(lane);
          ctx.logger.info({ jobId: job.id, lane, movedTo }, 'job shed to the batch lane');
          return;
        }
        case 'delay':
          await this.#saveProgress(job, outcome.progress);
          await this.#attempt(() => job.moveToDelayed(ctx.now() + outcome.delayMs, token));
          return;
        case 'aborted':
          await this.#saveProgress(job, outcome.progress);
          await this.#attempt(() => job.moveToWait(token));
          return;
      }
    } catch (err) {
      ctx.logger.error({ jobId: job.id, lane, outcome: outcome.kind, err: (err as Error).message }, 'could not record the job outcome; its lock will expire and it runs again');
    }
  }

  async close(): Promise<void> {
    await this.#batch?.close();
  }

  /**
   * The failure goes into the job's progress first, then BullMQ fails the job with its text: a
   * reader trusts the stored code only while BullMQ's reason is that text (`failureOf`), so a
   * worker dying between the two leaves nothing misleading.
   */
  async #fail(job: Job, token: string, lane: InteractiveLane, failure: JobFailure, progress: JobProgress): Promise<void> {
    const { ctx } = this.o;
    await this.#attempt(() => job.updateProgress({ ...progress, failure } as unknown as object));
    await this.#attempt(() => job.moveToFailed(new Error(failureText(failure)), token, false));
    const ended = failure.code === FailureCode.SHED ? 'shed' : 'failed';
    ctx.metrics.jobs.inc({ lane, outcome: ended });
    ctx.stats.jobEnded({ lane, outcome: ended });
    if (ended === 'shed') await this.#countShed(lane);
    ctx.logger.info({ jobId: job.id, lane, failureCode: failure.code, reason: failure.message }, 'job failed');
  }

  /** Redis may blink: retry the transition while our lock is still ours. */
  async #attempt(fn: () => Promise<unknown>): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await fn();
        return;
      } catch (err) {
        if (i >= 5) throw err;
        await sleep(200 * 2 ** i);
      }
    }
  }

  /** The lane's all-time shed counter (admission refusals are counted by the admission script). */
  async #countShed(lane: InteractiveLane): Promise<void> {
    const key = laneKeys(this.o.config.redis.prefix, lane).stats;
    await this.o.redis.multi().hincrby(key, 'shed', 1).hincrby(key, 'shed:waiting', 1).exec().catch(() => {});
  }

  #batchQueue(): Queue {
    if (!this.#batch) {
      const k = laneKeys(this.o.config.redis.prefix, 'batch');
      this.#batch = new Queue(k.queueName, { prefix: k.bullPrefix, connection: this.o.redis as Redis });
    }
    return this.#batch;
  }

  async #saveProgress(job: Job, progress: JobProgress): Promise<void> {
    if (readProgress(job.progress).attempts !== progress.attempts) await job.updateProgress(progress as unknown as object);
  }
}
