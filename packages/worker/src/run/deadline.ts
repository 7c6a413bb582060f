/**
 * A job's own `maxWaitMs` is its deadline, in every lane: the latest time any provider call of
 * the job may start, counted from its enqueue. A job not started by then ends DEADLINE_EXCEEDED
 * without a call, so a caller that gave up is not billed for an answer nobody reads. It applies
 * to retries too (a retry due past the deadline is not made), and it ends the job as soon as a
 * sure wait the bucket names already passes it, rather than when the deadline comes: sure is a
 * wait the refunds of the calls in flight cannot cover (requests/min, input tokens, cooldowns, and
 * a tokens/min wait beyond all the output those calls reserved; the bucket's `sureWaitMs`). A job
 * whose wait only those refunds could shorten is parked no later than its deadline and looked at
 * again then (plan-wait.ts). A call already in flight is never cut short: the provider is charging
 * for it, and the answer still reaches a caller who waits. A job several callers share has the
 * latest deadline any of them wants: the dispatcher hands the job here with it
 * (`withSharedDeadline`), each caller being withdrawn at its own by its producer.
 *
 * The lanes' configured `maxWaitMs` is not a deadline: it is when a job tries its next model
 * rather than wait, and when a waiting LOW job may be shed under pressure.
 */
import { FailureCode, jobFailure, type JobFailure, type LlmJob } from '@headroom/queue';
import type { JobMeta, JobProgress } from './run-context.js';

/** The epoch ms by which the job's calls must start, when the job set `maxWaitMs`. */
export function deadlineOf(job: Pick<LlmJob, 'maxWaitMs'>, meta: Pick<JobMeta, 'enqueuedAt'>): number | undefined {
  return job.maxWaitMs === undefined ? undefined : meta.enqueuedAt + job.maxWaitMs;
}

/**
 * The failure when a call starting `inMs` from `now` would start after the deadline (0: now);
 * `why` says what keeps it waiting. `progress`: the calls the job made before, named in the
 * failure, so that a job whose calls the provider kept failing (in an outage, which costs no
 * attempt) does not read as one that never started: it read `not started within its maxWaitMs`
 * after 11 calls answered 500, which neither the client nor Bull Board could tell from a queue.
 */
export function pastDeadline(
  job: Pick<LlmJob, 'maxWaitMs'>,
  meta: Pick<JobMeta, 'enqueuedAt'>,
  now: number,
  inMs = 0,
  why?: string,
  progress?: Pick<JobProgress, 'attempts' | 'lastError'>,
): JobFailure | undefined {
  const deadline = deadlineOf(job, meta);
  if (deadline === undefined || now + inMs <= deadline) return undefined;
  const waited = Math.max(0, Math.round(now - meta.enqueuedAt));
  const calls = progress !== undefined && progress.attempts > 0 ? callsMade(progress) : undefined;
  const message =
    inMs <= 0
      ? calls === undefined
        ? `not started within its maxWaitMs of ${job.maxWaitMs} ms (waited ${waited} ms)`
        : `not started again within its maxWaitMs of ${job.maxWaitMs} ms (waited ${waited} ms; ${calls})`
      : `cannot start within its maxWaitMs of ${job.maxWaitMs} ms: waited ${waited} ms, and ${why ?? 'the wait'} needs ${Math.ceil(inMs)} ms more${calls === undefined ? '' : ` (${calls})`}`;
  // The wait that passes the deadline is when a retry could start (a lower bound: others draw
  // too); a client told to retry sooner only fails again (the gateway's `retry-after`).
  return jobFailure(FailureCode.DEADLINE_EXCEEDED, message, inMs > 0 ? Math.ceil(inMs) : undefined);
}

const callsMade = (progress: Pick<JobProgress, 'attempts' | 'lastError'>) => {
  const made = `${progress.attempts} ${progress.attempts === 1 ? 'call' : 'calls'} made`;
  return progress.lastError === undefined ? made : `${made}, the last failed: ${progress.lastError}`;
};
