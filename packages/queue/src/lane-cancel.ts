/**
 * Cancelling a job that has not started, in one call (`cancel-3.lua`): removed with BullMQ's own
 * script, its admission counts given back, and the producer waiting on it told through its
 * replies stream (a `removed` entry beside the `completed` / `failed` ones `finishJob` writes).
 * A job that has started is not touched: stopping it is the caller's next step (`flagCancelled`).
 *
 * ```ts
 * if ((await cancelIfNotStarted(redis, prefix, jobId)) === 'started') await flagCancelled(redis, prefix, jobId);
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { laneOfJobId } from './job-ids.js';
import { laneKeys } from './keys.js';
import { runScript } from './scripts.js';

/**
 * `removed`: gone from its lane; `started`: a worker has it (left running); `finished` or
 * `missing`: nothing to cancel; `shared`: (`keepShared` only) other callers share the job, so it
 * stays for them and only this caller's share was given back.
 */
export type CancelOutcome = 'removed' | 'started' | 'finished' | 'missing' | 'shared';

const OUTCOMES: Record<number, CancelOutcome> = { 1: 'removed', 0: 'started', [-1]: 'finished', [-2]: 'missing', 2: 'shared' };

/**
 * `keepShared`: the caller only stops waiting (a client gone, a stream aborted, a wait timed out):
 * a job that idempotent repeats or coalesced joins share stays for the others. With
 * `ifNotStarted` too, a started job is not touched at all, its caller's share included: that
 * caller waits on for it (a start deadline that passed just after the start). `atDeadline`, with
 * both: the caller's start deadline passed; a job no one else shares that a worker took before
 * (and put back, to wait for its bucket or its retry) counts as started too: its worker ends it
 * at the deadline, its attempts on record, where a removal would lose them.
 */
export async function cancelIfNotStarted(
  redis: Redis | Cluster,
  prefix: string,
  jobId: string,
  opts: { keepShared?: boolean; ifNotStarted?: boolean; atDeadline?: boolean } = {},
): Promise<CancelOutcome> {
  const lane = laneOfJobId(jobId);
  if (!lane) return 'missing';
  const k = laneKeys(prefix, lane);
  const reply = Number(await runScript(redis, 'cancel', [k.jobKeyPrefix + jobId, `${k.jobKeyPrefix}repeat`, k.active], [jobId, k.jobKeyPrefix, k.ownPrefix, modeOf(opts)]));
  const outcome = OUTCOMES[reply];
  if (!outcome) throw new Error(`cancel-3.lua: unexpected reply ${reply}`);
  return outcome;
}

function modeOf(opts: { keepShared?: boolean; ifNotStarted?: boolean; atDeadline?: boolean }): string {
  if (!opts.keepShared) return '0';
  if (!opts.ifNotStarted) return '1';
  return opts.atDeadline ? '3' : '2';
}
