/**
 * The latest jobs across the lanes, for the Headroom page. Only what an operator needs to find a
 * job: ids, lane, model, state, attempts, the failure reason and the producer's `metadata`. The
 * request (prompts) is never read out: it may hold user data the dashboard has no business with.
 */
import type { Job } from 'bullmq';
import { failureOf, failureText, type Lane } from '@headroom/queue';
import type { LaneQueues } from './fleet-state.js';

export const RECENT_JOB_STATES = ['active', 'waiting', 'prioritized', 'delayed', 'failed', 'completed'] as const;
export type RecentJobState = (typeof RECENT_JOB_STATES)[number];

export interface RecentJob {
  id: string;
  lane: Lane;
  /** `provider:model`, as the producer names the BullMQ job. */
  name: string;
  state: RecentJobState;
  enqueuedAt: number;
  finishedAt?: number;
  attempts: number;
  tenant?: string;
  failureCode?: string;
  failedReason?: string;
  /** The producer's metadata, as JSON text (cut at 500 characters). Render it as text. */
  metadata?: string;
}

const METADATA_MAX_CHARS = 500;

/** Provider calls so far: the result's count once completed, else the count kept in `progress`. */
function attemptsOf(job: Job): number {
  for (const holder of [job.returnvalue, job.progress]) {
    const a = typeof holder === 'object' && holder !== null ? (holder as { attempts?: unknown }).attempts : undefined;
    if (typeof a === 'number') return a;
  }
  return 0;
}

function toRecent(job: Job, lane: Lane, state: RecentJobState): RecentJob {
  const data = (job.data ?? {}) as { tenant?: unknown; metadata?: unknown };
  const out: RecentJob = { id: String(job.id), lane, name: job.name, state, enqueuedAt: job.timestamp, attempts: attemptsOf(job) };
  if (job.finishedOn) out.finishedAt = job.finishedOn;
  if (typeof data.tenant === 'string') out.tenant = data.tenant;
  if (job.failedReason) {
    const failure = failureOf(job);
    out.failureCode = failure.code;
    out.failedReason = failureText(failure);
  }
  if (data.metadata !== undefined) {
    const text = JSON.stringify(data.metadata);
    out.metadata = text.length > METADATA_MAX_CHARS ? `${text.slice(0, METADATA_MAX_CHARS)}…` : text;
  }
  return out;
}

/** Up to `perState` jobs of each state per lane, newest first overall, at most `limit`. */
export async function readRecentJobs(queues: LaneQueues, opts: { perState?: number; limit?: number } = {}): Promise<RecentJob[]> {
  const perState = opts.perState ?? 5;
  const reads: Promise<RecentJob[]>[] = [];
  for (const [lane, queue] of queues) {
    for (const state of RECENT_JOB_STATES) {
      reads.push(queue.getJobs([state], 0, perState - 1, false).then((jobs) => jobs.filter(Boolean).map((j) => toRecent(j, lane, state))));
    }
  }
  const all = (await Promise.all(reads)).flat();
  all.sort((a, b) => (b.finishedAt ?? b.enqueuedAt) - (a.finishedAt ?? a.enqueuedAt));
  return all.slice(0, opts.limit ?? 25);
}
