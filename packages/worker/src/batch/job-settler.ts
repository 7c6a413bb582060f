/**
 * Ends one parked job from its batch entry: completed with its own result (the same LlmResult
 * shape an interactive call gives, cost at the batch rate), failed with the provider's reason, or
 * handed back to the BATCH lane for a later batch when the entry failed on the provider's side or
 * its batch said nothing about it.
 *
 * Safe to repeat: every transition is BullMQ's own, checked against the claim's lock token, so a
 * job settled once (by this leader before a crash, or by a deposed one) refuses a second
 * settlement, and the refusal is recognised by reading the job or from the finish's answer,
 * never by parsing an error. A job ends as an interactive one does (`finishJob`): what admission
 * counted for it (its bytes, its tenant's slot) is given back in the same call, so no crash can
 * leave it counted.
 */
import { Job, type Worker as BullWorker } from 'bullmq';
import { failureText, finishJob, jobFailure, type HeadroomConfig, type JobEnd, type JobFailure, type LlmJob, type LlmResult, type Provider, type FleetStatsWriter, type Logger } from '@headroom/queue';
import type { EntryOutcome } from './batch-api.js';
import type { Cluster, Redis } from 'ioredis';
import { costOf } from '../run/cost.js';
import { enqueuedAtOf } from '../shedding/batch-handoff.js';
import type { WorkerMetrics } from '../metrics.js';

/**
 * A job its batches keep failing on the provider's side (errored, expired, or said nothing about)
 * goes back to the lane this many times, all causes counted together, then fails with the last.
 */
export const MAX_BATCH_REQUEUES = 3;

/** `requeue`: back to the BATCH lane, or ended with its `failure` (and how many sends) once used up. */
export type JobFate = EntryOutcome;

export type Settled = 'completed' | 'failed' | 'requeued' | 'skipped';

export interface SettleContext {
  /** The BATCH lane's BullMQ worker (jobs are read and moved through it). */
  lane: BullWorker;
  config: HeadroomConfig;
  metrics: WorkerMetrics;
  stats: FleetStatsWriter;
  logger: Logger;
  now: () => number;
  /** Lock duration of a parked job (`batch.parkLockMs`). */
  parkLockMs: number;
  /** Where jobs are ended (with their admission counts: bytes, tenant). */
  redis: Redis | Cluster;
}

export interface SettleClaim {
  provider: Provider;
  model: string;
  token: string;
  submittedAt?: number | undefined;
}

interface BatchProgress {
  batchRequeues?: number;
}

export async function settleJob(ctx: SettleContext, claim: SettleClaim, jobId: string, fate: JobFate, endedAt: number | undefined): Promise<Settled> {
  const job = await Job.fromId(ctx.lane, jobId);
  if (!job || job.finishedOn) return 'skipped';
  try {
    return await apply(ctx, claim, job, fate, endedAt);
  } catch (err) {
    // Still ours (our token holds its lock)? Then the failure is real: the claim is settled again
    // later. Not ours (settled already, or its lock ran out and it went back): nothing to do.
    const ours = await job.extendLock(claim.token, ctx.parkLockMs).catch(() => 0);
    if (!ours) return 'skipped';
    throw err;
  }
}

async function apply(ctx: SettleContext, claim: SettleClaim, job: Job, fate: JobFate, endedAt: number | undefined): Promise<Settled> {
  switch (fate.kind) {
    case 'succeeded': {
      const result = resultOf(ctx, claim, job, fate, endedAt);
      if (!(await end(ctx, claim, job, { completed: result }))) return 'skipped';
      const { provider, model } = claim;
      ctx.metrics.jobs.inc({ lane: 'batch', outcome: 'completed' });
      ctx.metrics.cost.inc({ provider, model, batch: 'true' }, result.cost.usd);
      ctx.metrics.tokens.inc({ provider, model, dimension: 'input' }, fate.usage.inputTokens);
      ctx.metrics.tokens.inc({ provider, model, dimension: 'output' }, fate.usage.outputTokens);
      ctx.metrics.waitSeconds.observe({ lane: 'batch' }, result.timings.waitMs / 1000);
      ctx.stats.jobEnded({ lane: 'batch', outcome: 'completed', waitMs: result.timings.waitMs, model, usage: fate.usage, costUsd: result.cost.usd });
      return 'completed';
    }
    case 'failed':
      return (await fail(ctx, claim, job, fate.failure)) ? 'failed' : 'skipped';
    case 'requeue': {
      const requeues = ((job.progress ?? {}) as BatchProgress).batchRequeues ?? 0;
      const { code, message } = fate.failure;
      if (requeues >= MAX_BATCH_REQUEUES) {
        return (await fail(ctx, claim, job, jobFailure(code, `${message}, ${requeues + 1} times`))) ? 'failed' : 'skipped';
      }
      await job.updateProgress({ ...(typeof job.progress === 'object' ? job.progress : {}), batchRequeues: requeues + 1 });
      await job.moveToWait(claim.token);
      ctx.logger.warn({ jobId: job.id, model: claim.model, why: message, failureCode: code, lane: 'batch' }, 'job handed back to the BATCH lane');
      return 'requeued';
    }
  }
}

/** Ends the job under the claim's lock; false when the lock is no longer the claim's (another settled it, or it went back). */
async function end(ctx: SettleContext, claim: SettleClaim, job: Job, how: JobEnd): Promise<boolean> {
  const r = await finishJob(ctx.redis, ctx.config.redis.prefix, 'batch', ctx.lane.backend, job, claim.token, how);
  return r.status === 'finished';
}

/** As the interactive path records a failure: stored beside BullMQ's text (see `failureOf`). False when the job was not the claim's to fail. */
async function fail(ctx: SettleContext, claim: SettleClaim, job: Job, failure: JobFailure): Promise<boolean> {
  // A batch's failure ends the attempts the job had (one per batch it went out in), as a completed
  // batch job's result counts them: the dashboard reads attempts from here.
  const attempts = failure.code.startsWith('BATCH_') ? { attempts: batchesSentIn(job) } : {};
  await job.updateProgress({ ...(typeof job.progress === 'object' ? job.progress : {}), ...attempts, failure });
  if (!(await end(ctx, claim, job, { failed: failureText(failure) }))) return false;
  ctx.metrics.jobs.inc({ lane: 'batch', outcome: 'failed' });
  ctx.stats.jobEnded({ lane: 'batch', outcome: 'failed' });
  ctx.logger.info({ jobId: job.id, lane: 'batch', failureCode: failure.code, reason: failure.message }, 'job failed');
  return true;
}

/** Its first batch, and one more for each time it was sent back to the lane. */
function batchesSentIn(job: Job): number {
  return 1 + (((job.progress ?? {}) as BatchProgress).batchRequeues ?? 0);
}

function resultOf(ctx: SettleContext, claim: SettleClaim, job: Job, fate: Extract<JobFate, { kind: 'succeeded' }>, endedAt: number | undefined): LlmResult {
  const data = job.data as LlmJob;
  // A job shed to the batch lane while it waited: its caller has waited since its first enqueue.
  const enqueuedAt = enqueuedAtOf(job);
  // The batch ran from its submission to its end; until then the job only waited.
  const startedAt = claim.submittedAt ?? job.processedOn ?? ctx.now();
  const finishedAt = Math.max(startedAt, endedAt ?? ctx.now());
  const usd = costOf(ctx.config.models[claim.model]?.pricing, fate.usage, { provider: claim.provider, model: claim.model, batch: true });
  return {
    provider: claim.provider,
    model: claim.model,
    response: fate.response,
    usage: fate.usage,
    attempts: batchesSentIn(job),
    timings: { enqueuedAt, startedAt, finishedAt, waitMs: Math.max(0, startedAt - enqueuedAt), runMs: finishedAt - startedAt },
    cost: { usd, batch: true },
    ...(data.metadata ? { metadata: data.metadata } : {}),
  };
}
