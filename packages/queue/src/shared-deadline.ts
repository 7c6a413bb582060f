/**
 * The start deadline of a job several callers share. A coalesced join, or a repeat of the job's
 * idempotency key, is a caller of its own with its own `maxWaitMs`, counted from its own enqueue:
 * the job waits for the latest deadline any of its callers wants, and for ever (the lane's
 * `maxWaitMs` applies, as to any job without its own) once one of them set none. Each caller
 * still hears `DEADLINE_EXCEEDED` at its own deadline: its producer withdraws it then
 * (producer-sdk's `StartDeadline`), leaving the job to the others.
 *
 * The add script (`add-9.lua`) moves the job's deadline when such a caller joins: in its hash
 * (`hrMaxWait`, what `front-runnable-4.lua` reads) and in its BullMQ options under this name, which
 * a worker's fetch hands back with the job, so neither admission nor the worker reads the job's
 * data for it. A caller leaving moves it back to the latest of the callers still waiting
 * (`cancel-3.lua`, with the caller's mark the add script answered: `Added.callerDeadline`), so the
 * job does not wait for a caller that has gone, nor run past what the callers left want (the list
 * of their deadlines: `lua/includes/shared-deadline.lua`).
 */
import type { LlmJob } from './job.js';

/**
 * In a job's options: its `maxWaitMs` since a caller with a later deadline joined it, counted from
 * the job's enqueue; `null` once a caller with none did. Absent: the job's own `maxWaitMs` holds.
 */
export const SHARED_MAX_WAIT_OPTION = 'hrMaxWait';

/** The job as its worker should run it: its `maxWaitMs` the latest its callers want (see above). */
export function withSharedDeadline(job: LlmJob, opts: object): LlmJob {
  if (!(SHARED_MAX_WAIT_OPTION in opts)) return job;
  const shared = (opts as Record<string, unknown>)[SHARED_MAX_WAIT_OPTION];
  const { maxWaitMs: _own, ...rest } = job;
  return typeof shared === 'number' ? { ...rest, maxWaitMs: shared } : rest;
}
