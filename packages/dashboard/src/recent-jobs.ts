/**
 * The latest jobs across the lanes, for the Headroom page. Only what an operator needs to find a
 * job: ids, lane, model, state, attempts, the failure reason, the tenant and the producer's
 * `metadata`. The request (prompts) is never read out: it may hold user data the dashboard has no
 * business with, and it may be 1 MiB a job. So a job's hash is read field by field (HMGET): its
 * tenant and the start of its metadata come from the summary admission stored beside the job
 * (`hrSummary`), attempts from its progress, or its result once completed; never its `data`.
 */
import type { Cluster, Redis } from 'ioredis';
import { failureOf, failureText, laneKeys, type Lane } from '@headroom/queue';
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

/** The job hash's fields a listing reads; `returnvalue` only for completed jobs. */
const FIELDS = ['name', 'timestamp', 'finishedOn', 'failedReason', 'progress', 'hrSummary'] as const;

function parse(raw: string | null | undefined): unknown {
  if (raw === null || raw === undefined || raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** Provider calls so far: the result's count once completed, else the count kept in `progress`. */
function attemptsOf(returnvalue: unknown, progress: unknown): number {
  for (const holder of [returnvalue, progress]) {
    const a = typeof holder === 'object' && holder !== null ? (holder as { attempts?: unknown }).attempts : undefined;
    if (typeof a === 'number') return a;
  }
  return 0;
}

function toRecent(id: string, lane: Lane, state: RecentJobState, fields: (string | null)[]): RecentJob | undefined {
  const [name, timestamp, finishedOn, failedReason, progressRaw, summaryRaw, returnRaw] = fields;
  // Removed between the listing and the read.
  if (timestamp === null || timestamp === undefined) return undefined;
  const progress = parse(progressRaw);
  const out: RecentJob = { id, lane, name: name ?? '', state, enqueuedAt: Number(timestamp), attempts: attemptsOf(parse(returnRaw), progress) };
  if (finishedOn) out.finishedAt = Number(finishedOn);
  const summary = parse(summaryRaw) as { tenant?: unknown; metadata?: unknown } | undefined;
  if (typeof summary?.tenant === 'string') out.tenant = summary.tenant;
  if (failedReason) {
    const failure = failureOf({ failedReason, progress });
    out.failureCode = failure.code;
    out.failedReason = failureText(failure);
  }
  if (typeof summary?.metadata === 'string') out.metadata = summary.metadata;
  return out;
}

/** Up to `perState` jobs of each state per lane, newest first overall, at most `limit`. */
export async function readRecentJobs(redis: Redis | Cluster, prefix: string, queues: LaneQueues, opts: { perState?: number; limit?: number } = {}): Promise<RecentJob[]> {
  const perState = opts.perState ?? 5;
  const reads: Promise<(RecentJob | undefined)[]>[] = [];
  for (const [lane, queue] of queues) {
    const jobKey = (id: string) => `${laneKeys(prefix, lane).jobKeyPrefix}${id}`;
    for (const state of RECENT_JOB_STATES) {
      reads.push(
        queue.getRanges([state], 0, perState - 1, false).then((ids) =>
          Promise.all(
            ids.map(async (id) => {
              const fields = state === 'completed' ? [...FIELDS, 'returnvalue'] : [...FIELDS];
              return toRecent(id, lane, state, await redis.hmget(jobKey(id), ...fields));
            }),
          ),
        ),
      );
    }
  }
  const all = (await Promise.all(reads)).flat().filter((j): j is RecentJob => j !== undefined);
  all.sort((a, b) => (b.finishedAt ?? b.enqueuedAt) - (a.finishedAt ?? a.enqueuedAt));
  return all.slice(0, opts.limit ?? 25);
}
