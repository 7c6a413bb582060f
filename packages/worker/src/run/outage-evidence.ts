/**
 * What this worker has seen of each model since the latest call the model served started: the
 * calls started after it that failed as a dead model does (5xx, 529, no answer), and whose they
 * were. A job's failure costs it no attempt when other jobs' calls fail too (failed-call.ts): the
 * outage is the fleet's, not the job's.
 *
 * Ordered by when calls started, not when they ended: at an outage's onset the calls started
 * before it keep coming back served for as long as they take, and a run of outcomes (the fleet's
 * throttle counts those) keeps being reset by them, while every call started after it fails. In
 * `bench:brownout`'s full outage a HIGH job spent its six attempts in 0.6 s of that onset, before
 * the fleet-wide throttle and retry budget could tell. Local to the worker (no round trip); the
 * acquire's unhealthy run covers a worker that has seen too little (a probe, failed-call.ts).
 */

/** Failed calls, of at least OUTAGE_JOBS other jobs, since the latest served start: an outage. At 50% failures, 1 in 256. */
export const OUTAGE_CALLS = 8;
export const OUTAGE_JOBS = 2;
/** Failures kept per model: enough to count OUTAGE_CALLS of others beside a job's own. */
const KEEP = 32;

interface ModelSeen {
  /** When the latest call the model served started (-Infinity: none seen). */
  servedStart: number;
  /** Calls started after it that failed unhealthy, oldest first, at most KEEP. */
  failed: { jobId: string; startedAt: number }[];
}

export class OutageEvidence {
  readonly #models = new Map<string, ModelSeen>();

  /** A call of `jobId` to `model`, started at `startedAt`: served (any answer but an unhealthy one) or not. */
  record(model: string, jobId: string, startedAt: number, served: boolean): void {
    let seen = this.#models.get(model);
    if (!seen) {
      seen = { servedStart: Number.NEGATIVE_INFINITY, failed: [] };
      this.#models.set(model, seen);
    }
    if (served) {
      if (startedAt > seen.servedStart) {
        seen.servedStart = startedAt;
        seen.failed = seen.failed.filter((f) => f.startedAt > startedAt);
      }
      return;
    }
    // Started before a call that was served: says nothing of the model now.
    if (startedAt <= seen.servedStart) return;
    seen.failed.push({ jobId, startedAt });
    if (seen.failed.length > KEEP) seen.failed.shift();
  }

  /** Other jobs' calls to `model` fail as a dead model's do, and none started later was served. */
  othersFailing(model: string, jobId: string): boolean {
    const seen = this.#models.get(model);
    if (!seen) return false;
    const others = seen.failed.filter((f) => f.jobId !== jobId);
    return others.length >= OUTAGE_CALLS && new Set(others.map((f) => f.jobId)).size >= OUTAGE_JOBS;
  }
}
