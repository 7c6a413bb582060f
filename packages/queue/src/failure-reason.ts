/**
 * A failed job's reason as callers see it. Every reason a Headroom worker records starts with a
 * code (`RETRIES_EXHAUSTED: ...`, `SHED: ...`) that callers match on; BullMQ fails a job in its
 * own words when the job's worker died with it more times than `maxStalledCount` allows (or it was
 * started too often), so those get the code `STALLED` here.
 */
const BULLMQ_STALL_REASONS = new Set(['job stalled more than allowable limit', 'job started more than allowable limit']);

export function failureReasonOf(stored: string): string {
  return BULLMQ_STALL_REASONS.has(stored) ? `STALLED: the worker running this job died during its call too many times (BullMQ: ${stored})` : stored;
}
