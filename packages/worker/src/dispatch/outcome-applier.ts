/**
 * Applies a run's outcome to its BullMQ job: completed, failed (its failure stored beside
 * BullMQ's text), shed to the batch lane, back to the front of its lane (its pool backing off
 * there), delayed, or handed back on shutdown. Each transition is retried while Redis blinks; if
 * it still fails, the job's lock expires and another worker runs it again.
 *
 * Putting a job back (requeue, delay) goes through the lane's cap (`returnToLane`): a full lane
 * leaves the job held by this worker until it has room (held-jobs.ts). A finished job gives back
 * what admission counted for it (its bytes, its tenant's slot) in the same call (`finishJob`).
 */
import { ErrorCode, Queue, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { FailureCode, failureText, finishJob, isStreamed, relayEvents, forceReturnToLane, isConnectionError, jobFailure, laneKeys, poolOf, returnToLane, type FinishArgsBuilder, type HeadroomConfig, type InteractiveLane, type JobEnd, type JobFailure, type LlmJob, type ReturnOutcome, type StreamErrorEvent, type TenantPark } from '@headroom/queue';
import type { JobProgress, RunContext, RunOutcome } from '../run/run-context.js';
import { handOffToBatch } from '../shedding/batch-handoff.js';
import type { HeldJob, HeldJobs } from './held-jobs.js';
import type { PoolBackoffs } from './pool-backoff.js';

export interface OutcomeApplierOptions {
  ctx: RunContext;
  config: HeadroomConfig;
  redis: Redis | Cluster;
  backoffs: PoolBackoffs;
  /** Where a job goes that cannot go back into its full lane yet. */
  held: HeldJobs;
  /** The lane's BullMQ backend (`worker.backend`): it builds a finish's keys and arguments. */
  backendOf(lane: InteractiveLane): FinishArgsBuilder;
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
          if (!(await this.#finish(job, token, lane, { completed: outcome.result }))) return;
          ctx.metrics.jobs.inc({ lane, outcome: 'completed' });
          ctx.stats.jobEnded({ lane, outcome: 'completed', waitMs: outcome.result.timings.waitMs, model: outcome.result.model, usage: outcome.result.usage, costUsd: outcome.result.cost.usd });
          return;
        case 'failed':
          await this.#fail(job, token, lane, outcome.failure, outcome.progress, outcome.streamError);
          return;
        case 'requeue': {
          const held: HeldJob = { job, token, lane, waitMs: outcome.waitMs, ...(outcome.fairShare ? { fairShare: true } : {}), ...(outcome.paceMs === undefined ? {} : { paceMs: outcome.paceMs }) };
          // The pool backs off before the job's two round trips back: meanwhile this worker's
          // loop would fetch more of its jobs only to be told the same wait (a saturated pool's
          // churn). A job held for room gets the backoff again when it is back (onReturned).
          const backedOff = this.backOff(held);
          await this.#saveProgress(job, outcome.progress);
          this.#returned(held, await this.#return(job, token, lane));
          ctx.poolHolds.back(job.id!);
          await backedOff;
          return;
        }
        case 'to_batch': {
          let movedTo: string;
          try {
            movedTo = await handOffToBatch(this.#batchQueue(), this.o.redis, this.o.config.redis.prefix, job.id!, job.data as LlmJob, job.timestamp);
          } catch (err) {
            // The batch lane refused it (full, say): the job is shed like any other.
            const failure = jobFailure(FailureCode.SHED, `${outcome.failure.message}; the batch lane refused it: ${(err as Error).message}`, outcome.failure.retryAfterMs);
            await this.#fail(job, token, lane, failure, outcome.progress);
            return;
          }
          if (!(await this.#finish(job, token, lane, { completed: { movedTo, reason: failureText(outcome.failure) } }))) return;
          ctx.metrics.jobs.inc({ lane, outcome: 'shed' });
          ctx.stats.jobEnded({ lane, outcome: 'shed' });
          await this.#countShed(lane);
          ctx.logger.info({ jobId: job.id, lane, movedTo }, 'job shed to the batch lane');
          return;
        }
        case 'delay': {
          await this.#saveProgress(job, outcome.progress);
          const delayUntil = ctx.now() + outcome.delayMs;
          const tenantPark = outcome.tenantPark === undefined ? {} : { tenantPark: outcome.tenantPark };
          this.#returned({ job, token, lane, delayUntil, ...tenantPark }, await this.#return(job, token, lane, { delayMs: outcome.delayMs, ...tenantPark }));
          return;
        }
        case 'aborted':
          // The worker is stopping: back whatever the lane holds (a lapsed lock would do the same).
          await this.#saveProgress(job, outcome.progress);
          await this.#attempt(() => forceReturnToLane(this.o.redis, this.o.config.redis.prefix, lane, job.id!, token));
          return;
      }
    } catch (err) {
      if (isGone(err)) ctx.logger.warn({ jobId: job.id, lane, outcome: outcome.kind }, `could not record the job outcome: ${whyLost(ErrorCode.JobNotExist)}`);
      else ctx.logger.error({ jobId: job.id, lane, outcome: outcome.kind, err: (err as Error).message }, 'could not record the job outcome; its lock will expire and it runs again');
    }
  }

  async close(): Promise<void> {
    await this.#batch?.close();
  }

  /** A requeued job's pool backs off in its lane for the wait the bucket gave. */
  async backOff(held: HeldJob): Promise<void> {
    await this.o.backoffs.backOff(held.lane, poolOf(this.o.config, (held.job.data as LlmJob).request.model), held.waitMs ?? 0, held.fairShare === true, held.paceMs);
  }

  /** Into the lane under its cap (the delayed set with `delayMs`); retried while Redis blinks. */
  async #return(job: Job, token: string, lane: InteractiveLane, delay?: { delayMs: number; tenantPark?: TenantPark }): Promise<ReturnOutcome> {
    let outcome: ReturnOutcome = { status: 'lost', bullmqCode: 0 };
    const { now } = this.o.ctx;
    await this.#attempt(async () => {
      outcome = await returnToLane(this.o.redis, this.o.config.redis.prefix, lane, job.id!, token, delay === undefined ? {} : { ...delay, now });
    });
    return outcome;
  }

  /** A job that did not go back: a full lane hands it to the held jobs, a lost lock is logged. */
  #returned(held: HeldJob, outcome: ReturnOutcome): void {
    if (outcome.status === 'moved') return;
    if (outcome.status === 'lost') {
      this.o.ctx.logger.warn({ jobId: held.job.id, lane: held.lane, bullmqCode: outcome.bullmqCode }, `could not put the job back: ${whyLost(outcome.bullmqCode)}`);
    } else {
      this.o.held.hold(held);
    }
  }

  /**
   * Ends the job and gives back its admission counts, retried while Redis blinks. A job whose lock
   * is no longer ours (it stalled and another worker took it) is left to that worker, which ends
   * it (a streamed one whose answer was relayed whole, with that answer: relayed-answer.ts).
   * Returns whether this end is the job's one, to be counted: false when the job runs again, so
   * the metrics count it once, when it ends there.
   */
  async #finish(job: Job, token: string, lane: InteractiveLane, end: JobEnd): Promise<boolean> {
    let lostCode: number | undefined;
    await this.#attempt(async () => {
      const r = await finishJob(this.o.redis, this.o.config.redis.prefix, lane, this.o.backendOf(lane), job, token, end);
      lostCode = r.status === 'lost' ? r.bullmqCode : undefined;
    });
    if (lostCode === undefined) return true;
    const next = lostCode === ErrorCode.JobNotExist ? undefined : await this.#handOver(job, end);
    this.o.ctx.logger.warn({ jobId: job.id, lane, bullmqCode: lostCode }, `could not finish the job: ${whyLost(lostCode, next)}`);
    // Gone, it ends nowhere else: what it did here (a call made, an answer streamed) is its end.
    return lostCode === ErrorCode.JobNotExist;
  }

  /**
   * The failure goes into the job's progress first, then BullMQ fails the job with its text: a
   * reader trusts the stored code only while BullMQ's reason is that text (`failureOf`), so a
   * worker dying between the two leaves nothing misleading.
   */
  async #fail(job: Job, token: string, lane: InteractiveLane, failure: JobFailure, progress: JobProgress, streamError?: StreamErrorEvent): Promise<void> {
    const { ctx } = this.o;
    // A job gone from Redis has no progress to write: its finish says it is gone, and counts its end.
    await this.#attempt(() => job.updateProgress({ ...progress, failure } as unknown as object)).catch((err: unknown) => {
      if (!isGone(err)) throw err;
    });
    if (!(await this.#finish(job, token, lane, { failed: failureText(failure), ...(streamError ? { streamError } : {}) }))) return;
    const ended = failure.code === FailureCode.SHED ? 'shed' : 'failed';
    ctx.metrics.jobs.inc({ lane, outcome: ended });
    ctx.stats.jobEnded({ lane, outcome: ended });
    if (ended === 'shed') await this.#countShed(lane);
    ctx.logger.info({ jobId: job.id, lane, failureCode: failure.code, reason: failure.message }, 'job failed');
  }

  /**
   * What happens to a job whose lock this worker lost, once it ran here to its end: a plain job
   * runs again. A streamed one that relayed part of an answer cannot (the client has that part):
   * the worker that took it follows its relay to the end (relay-follow.ts). A whole answer there
   * completes the job; a failed stream's error event, which the finish refused to write, is
   * relayed now, so the follower fails the job with it rather than wait for an end that will
   * not come.
   */
  async #handOver(job: Job, end: JobEnd): Promise<string | undefined> {
    if (!isStreamed(job.data as LlmJob)) return undefined;
    if ('completed' in end) return 'the worker that took it again completes it with the answer relayed here whole (no second provider call)';
    if (!('failed' in end) || end.streamError === undefined) return 'the worker that took it again ends it';
    const relayed = await relayEvents(this.o.redis, this.o.config.redis.prefix, job.id!, [end.streamError], { first: false }).catch((err: Error) => err);
    if (relayed === 'written') return "its stream's error, relayed now, fails it where it was taken again";
    return `the worker that took it again ends it (its stream's error could not be relayed: ${relayed instanceof Error ? relayed.message : relayed})`;
  }

  /** Redis may blink: retry the transition while our lock is still ours. */
  async #attempt(fn: () => Promise<unknown>): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await fn();
        return;
      } catch (err) {
        // A connection ended by a stop that gave up on Redis does not come back: no use waiting.
        // Nor does a job gone from Redis: retried, it only held up the answer that it is gone.
        if (i >= 5 || this.o.redis.status === 'end' || isGone(err)) throw err;
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
      // A Queue re-emits its connection's errors, and one with no listener throws them: the
      // worker's main connection reports its outages; anything else is logged here.
      this.#batch.on('error', (err) => {
        if (!isConnectionError(err)) this.o.ctx.logger.warn({ lane: 'batch', err: err.message }, 'batch queue error');
      });
    }
    return this.#batch;
  }

  async #saveProgress(job: Job, progress: JobProgress): Promise<void> {
    if (readProgress(job.progress).attempts !== progress.attempts) await job.updateProgress(progress as unknown as object);
  }
}

/** BullMQ's refusal of a command on a job whose hash is gone (its error carries the code). */
function isGone(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === ErrorCode.JobNotExist;
}

/**
 * Why BullMQ refused a job's move (its code): the job is gone from Redis (a Redis restarted
 * without its data: nothing runs it again, and no result or failure of it is kept), or its lock
 * lapsed (Redis away, or this worker paused, longer than `dispatch.lockMs`) and another worker
 * takes it: it runs again, unless `next` says otherwise (a streamed job, `#handOver`).
 */
function whyLost(bullmqCode: number, next = 'it runs again'): string {
  if (bullmqCode === ErrorCode.JobNotExist) return 'it is gone from Redis (restarted without its data); it does not run again and nothing of it is kept';
  return `its lock is no longer ours; ${next}`;
}
