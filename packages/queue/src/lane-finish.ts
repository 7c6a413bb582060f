/**
 * Ending a running job: BullMQ's move to completed or failed, the release of what admission
 * counted for it (its bytes, its tenant's slot), and the reply to the producer waiting on it (the
 * job's `hrReplyTo` option: see keys.ts `replies`), in one script call (`finish-14.lua`).
 *
 * BullMQ builds the move's keys and arguments itself (its backend's `moveToCompletedArgs` /
 * `moveToFailedArgs`), so the job hash, retention and events are what `job.moveToCompleted`
 * writes.
 *
 * ```ts
 * const r = await finishJob(redis, prefix, 'normal', worker.backend, job, token, { completed: result });
 * if (r.status === 'lost') log('another worker has it');
 * ```
 */
import type { Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { encodeJobEvent, RELAY_TTL_MS, type StreamErrorEvent } from './job-events.js';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';
import { runScript } from './scripts.js';

type BullmqArg = string | number | boolean | Buffer;

/** The part of a BullMQ queue's backend (`worker.backend`) that builds a finish. */
export interface FinishArgsBuilder {
  moveToCompletedArgs(job: Job, returnvalue: string, removeOnComplete: Job['opts']['removeOnComplete'], token: string, fetchNext?: boolean): BullmqArg[];
  moveToFailedArgs(job: Job, failedReason: string, removeOnFail: Job['opts']['removeOnFail'], token: string, fetchNext?: boolean, fieldsToUpdate?: Record<string, unknown>): BullmqArg[];
}

/** The option a producer sets on a job it will wait for: its reader id, naming its replies stream. */
export const REPLY_TO_OPTION = 'hrReplyTo';

/**
 * The option a producer with a result cache (`resultCacheTtlMs`) sets on a coalesced job: how long
 * its deduplication key is kept once the job completed, so identical requests get its result.
 */
export const CACHE_TTL_OPTION = 'hrCacheTtl';

/** The reader id a job's producer asked its result to be sent to, if any. */
function replyToOf(job: Job): string | undefined {
  const to = (job.opts as Record<string, unknown>)[REPLY_TO_OPTION];
  return typeof to === 'string' && to !== '' ? to : undefined;
}

/**
 * How the job ends: its result, or the failure text BullMQ stores as `failedReason`. A streamed
 * job that failed after its first event ends its stream with `streamError`, written by the call
 * that fails the job (lua/finish-14.lua says why).
 */
export type JobEnd = { completed: unknown } | { failed: string; streamError?: StreamErrorEvent };

/** moveToFinished's key count: the rest of what BullMQ builds are its arguments. */
const MOVE_KEYS = 14;

/** What became of the job: ended, or refused by BullMQ (the job is gone or its lock is not the caller's: another worker runs it, or ran it). */
export type FinishOutcome = { status: 'finished' } | { status: 'lost'; bullmqCode: number };

export async function finishJob(redis: Redis | Cluster, prefix: string, lane: Lane, backend: FinishArgsBuilder, job: Job, token: string, end: JobEnd): Promise<FinishOutcome> {
  const all =
    'completed' in end
      ? backend.moveToCompletedArgs(job, JSON.stringify(end.completed), job.opts.removeOnComplete, token, false)
      : // The reason is the whole failure record (failure.ts); a stack trace of the worker's own
        // code would say nothing about it, so none is stored.
        backend.moveToFailedArgs(job, end.failed, job.opts.removeOnFail, token, false, { failedReason: end.failed, stacktrace: '[]' });
  const keys = all.slice(0, MOVE_KEYS) as string[];
  // BullMQ leaves its optional last argument undefined when there are no fields to update; a
  // boolean (none today) goes as ioredis would send it.
  const args = all.slice(MOVE_KEYS).flatMap((a) => (a === undefined ? [] : [typeof a === 'boolean' ? String(a) : a]));
  const k = laneKeys(prefix, lane);
  const replyTo = replyToOf(job);
  const dedupKey = job.deduplicationId ? `${k.jobKeyPrefix}de:${job.deduplicationId}` : '';
  const cacheTtl = (job.opts as Record<string, unknown>)[CACHE_TTL_OPTION];
  const [lastField, lastValue] = 'failed' in end && end.streamError ? encodeJobEvent(end.streamError) : ['', ''];
  const reply = Number(
    await runScript(redis, 'finish', keys, [
      k.ownPrefix,
      replyTo === undefined ? '' : k.replies(replyTo),
      dedupKey,
      typeof cacheTtl === 'number' && cacheTtl > 0 ? cacheTtl : '',
      lastField,
      lastValue,
      lastField === '' ? '' : RELAY_TTL_MS,
      ...args,
    ]),
  );
  return reply < 0 ? { status: 'lost', bullmqCode: reply } : { status: 'finished' };
}
