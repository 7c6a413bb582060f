/**
 * Cancelling a job that has not started, in one call (`cancel-3.lua`): removed with BullMQ's own
 * script, its admission counts given back, a short-lived note of how it ended (`cancelledFailure`
 * reads it), and the producer waiting on it told through its replies stream (a `removed` entry
 * beside the `completed` / `failed` ones `finishJob` writes). A job that has started and no other
 * caller shares is flagged cancelled in the same call (its worker stops it at its next look);
 * telling its worker at once is the caller's next step (`publishCancel`).
 *
 * ```ts
 * if ((await cancelIfNotStarted(redis, prefix, jobId)) === 'flagged') await publishCancel(redis, prefix, jobId);
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { asJobFailure, FailureCode, jobFailure, type JobFailure } from './failure.js';
import { CANCEL_FLAG_TTL_MS } from './job-events.js';
import { laneOfJobId } from './job-ids.js';
import { laneKeys } from './keys.js';
import { runScript } from './scripts.js';

/**
 * How long a cancelled job's note lives. It is for the waiters there at the cancel, in any
 * process: they hear at once (a reply, the lane's `removed` event) or at their next sweep (5 s),
 * so minutes cover a Redis blip, and a late `result()` soon after. Not longer: a gateway's leaving
 * clients cancel jobs at their own rate, and each note is a key.
 */
export const CANCELLED_NOTE_TTL_MS = 10 * 60_000;

/**
 * `removed`: gone from its lane (a BATCH job in a claim not yet sent included); `flagged`: a
 * worker has it, and it is flagged cancelled (its worker stops it); `started`: a worker has it,
 * left running (`ifNotStarted`, or a BATCH job whose batch is being sent or was: it runs to its
 * end); `finished` or `missing`: nothing to cancel; `shared`:
 * (`keepShared` only) other callers share the job, so it stays for them and only this caller's
 * share was given back.
 */
export type CancelOutcome = 'removed' | 'flagged' | 'started' | 'finished' | 'missing' | 'shared';

const OUTCOMES: Record<number, CancelOutcome> = { 1: 'removed', 3: 'flagged', 0: 'started', [-1]: 'finished', [-2]: 'missing', 2: 'shared' };

/**
 * `keepShared`: the caller only stops waiting (a client gone, a stream aborted, a wait timed out):
 * a job that idempotent repeats or coalesced joins share stays for the others. With
 * `ifNotStarted` too, a started job is not touched at all, its caller's share included: that
 * caller waits on for it (a start deadline that passed just after the start). `atDeadline`, with
 * both: the caller's start deadline passed; a job no one else shares that a worker took before
 * (and put back, to wait for its bucket or its retry) counts as started too: its worker ends it
 * at the deadline, its attempts on record, where a removal would lose them. `callerDeadline`: the
 * leaving caller's (`Added.callerDeadline`): giving back its share of a job still waiting moves the
 * job's start deadline back to the latest of the callers left, where it was that caller's.
 */
export async function cancelIfNotStarted(
  redis: Redis | Cluster,
  prefix: string,
  jobId: string,
  opts: { keepShared?: boolean; ifNotStarted?: boolean; atDeadline?: boolean; callerDeadline?: string } = {},
): Promise<CancelOutcome> {
  const lane = laneOfJobId(jobId);
  if (!lane) return 'missing';
  const k = laneKeys(prefix, lane);
  const mode = modeOf(opts);
  const note = JSON.stringify(cancelledAs(mode));
  // A started batch job is in its leader's claim, or going out or gone out in a provider batch.
  // In a claim not yet sent it is removed as a waiting job is (nothing reached the provider). Once
  // sent, both providers cancel only a whole batch, never one request of it, and nothing in the
  // batch lane reads the flag: the job runs to its end, and no flag is left to outlive it by
  // CANCEL_FLAG_TTL_MS.
  const batch = lane === 'batch';
  const flagMs = batch ? '' : String(CANCEL_FLAG_TTL_MS);
  const reply = Number(await runScript(redis, 'cancel', [k.jobKeyPrefix + jobId, `${k.jobKeyPrefix}repeat`, k.active], [jobId, k.jobKeyPrefix, k.ownPrefix, mode, note, String(CANCELLED_NOTE_TTL_MS), flagMs, opts.callerDeadline ?? '', batch ? '1' : '']));
  const outcome = OUTCOMES[reply];
  if (!outcome) throw new Error(`cancel-3.lua: unexpected reply ${reply}`);
  return outcome;
}

function modeOf(opts: { keepShared?: boolean; ifNotStarted?: boolean; atDeadline?: boolean }): string {
  if (!opts.keepShared) return '0';
  if (!opts.ifNotStarted) return '1';
  return opts.atDeadline ? '3' : '2';
}

/**
 * What the waiters of a job removed by this cancel are told: an explicit cancel is `CANCELLED` for
 * everyone; a removal because its last caller left is the same code, saying so. (That caller hears
 * its own reason: the signal's, `TIMEOUT` with `cancelled`, or `DEADLINE_EXCEEDED`.)
 */
function cancelledAs(mode: string): JobFailure {
  if (mode === '0') return jobFailure(FailureCode.CANCELLED, 'cancelled before it started (Producer.cancel); no provider call was made');
  if (mode === '3') return jobFailure(FailureCode.DEADLINE_EXCEEDED, "not started within its caller's maxWaitMs; withdrawn, no provider call was made");
  return jobFailure(FailureCode.CANCELLED, 'withdrawn before it started: its last caller stopped waiting; no provider call was made');
}

/**
 * Why a job that is gone ended, when `cancel-3.lua` removed it within `CANCELLED_NOTE_TTL_MS`:
 * its failure, else undefined (a job never there, trimmed by retention, or removed another way).
 */
export async function cancelledFailure(redis: Redis | Cluster, prefix: string, jobId: string): Promise<JobFailure | undefined> {
  const lane = laneOfJobId(jobId);
  if (!lane) return undefined;
  const raw = await redis.get(laneKeys(prefix, lane).jobCancelled(jobId));
  if (raw === null) return undefined;
  try {
    return asJobFailure(JSON.parse(raw));
  } catch {
    return undefined;
  }
}
