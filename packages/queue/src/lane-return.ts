/**
 * Putting a running job back into its lane under the lane's cap. A job that started left the
 * lane's count of jobs not yet started, and a new job may have taken its slot since: moving it
 * back with BullMQ alone (`moveToWait`, `moveToDelayed`) would exceed the cap. These do BullMQ's
 * own move inside a script that first checks the cap, and when the lane is full leave the job
 * with its worker (still active, its lock held) and record it as returning, so admission keeps the
 * next free slot for it. The worker tries again shortly (see the worker's held jobs).
 *
 * ```ts
 * const r = await returnToLane(redis, prefix, 'normal', job.id, token, { delayMs: 2_000 });
 * if (r.status !== 'moved') holdAndRetry(job);   // the lane is full: no slot for it yet
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { laneKeys } from './keys.js';
import type { Lane } from './lanes.js';
import { runScript } from './scripts.js';
import { parseTenantParkMark, TENANT_PARK_FIELD, tenantParkMark, type TenantPark } from './tenant-parks.js';

/** `requeue-9.lua` / `redelay-11.lua`'s first reply element. */
export const ReturnReply = { MOVED: 1, FULL: -1, UNPUBLISHED: -6 } as const;

export type ReturnOutcome =
  | { status: 'moved' }
  /** The lane holds its cap: the job is still the caller's (active, locked), recorded as returning. */
  | { status: 'full'; cap: number; size: number }
  /** No fleet settings on this Redis (fail closed): as `full`, until a worker publishes them. */
  | { status: 'unpublished' }
  /** BullMQ refused the move: the job is gone or its lock is not the caller's (BullMQ's code). */
  | { status: 'lost'; bullmqCode: number };

/**
 * How long a returning entry holds its slot without its worker trying again. A worker retries
 * well within it; a dead worker's entries are dropped after it (its job's lock lapses and BullMQ's
 * stalled check puts the job back).
 */
export const RETURNING_STALE_MS = 10_000;

export interface ReturnOptions {
  /** Into the delayed set for this long (BullMQ's `moveToDelayed`), instead of the front of the wait list. */
  delayMs?: number;
  /** @default Date.now: BullMQ dates a delay by the client's clock too. */
  now?: () => number;
  /** With `delayMs`: the job is parked behind its tenant's tokens/min quota, this one (tenant-parks.ts). */
  tenantPark?: TenantPark;
}

/** Moves the running job `jobId` (locked by `token`) back into `lane` if the lane has room. */
export async function returnToLane(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string, token: string, opts: ReturnOptions = {}): Promise<ReturnOutcome> {
  const k = laneKeys(prefix, lane);
  const jobKey = `${k.jobKeyPrefix}${jobId}`;
  let reply: [number, number, number];
  if (opts.delayMs === undefined) {
    reply = await runScript(redis, 'requeue', [k.active, k.wait, k.stalled, k.paused, k.meta, k.limiter, k.prioritized, k.marker, k.events], [
      jobId, token, jobKey, k.ownPrefix, RETURNING_STALE_MS,
    ]);
  } else {
    const now = (opts.now ?? Date.now)();
    const delay = Math.max(0, Math.round(opts.delayMs));
    reply = await runScript(redis, 'redelay', [k.marker, k.active, k.prioritized, k.delayed, jobKey, k.events, k.meta, k.stalled, k.wait, k.limiter, k.pc], [
      k.jobKeyPrefix, now, jobId, token, delay, '1', '', '0', '', k.ownPrefix, RETURNING_STALE_MS, opts.tenantPark ? tenantParkMark(opts.tenantPark) : '',
    ]);
  }
  const [code, a, b] = reply.map(Number) as [number, number, number];
  switch (code) {
    case ReturnReply.MOVED:
      return a < 0 ? { status: 'lost', bullmqCode: a } : { status: 'moved' };
    case ReturnReply.FULL:
      return { status: 'full', cap: a, size: b };
    case ReturnReply.UNPUBLISHED:
      return { status: 'unpublished' };
    default:
      throw new Error(`return script replied ${JSON.stringify(reply)}`);
  }
}

/**
 * Brings a job parked in `lane`'s delayed set back into the lane now, at the place its delay's end
 * would have given it (BullMQ's promote). False when it is not delayed any more (its delay ended,
 * a worker took it, it finished or was removed): nothing is changed then.
 */
export async function promoteDelayed(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string): Promise<boolean> {
  const k = laneKeys(prefix, lane);
  const reply = await runScript<number>(redis, 'promote', [k.delayed, k.wait, k.paused, k.meta, k.prioritized, k.active, k.pc, k.events, k.marker], [k.jobKeyPrefix, jobId]);
  return Number(reply) === 0;
}

/** Delayed jobs read per round trip when looking for parked ones: a tenant's flood can be thousands. */
const PARK_PAGE = 500;

/**
 * Brings back every job of `lane` parked behind a tenant quota lower than the one `quotaOf` gives
 * the tenant now (undefined: no quota at all). Returns how many were brought back. A job whose
 * park ended meanwhile, or that a worker took, is left as it is.
 */
export async function promoteRaisedTenantParks(redis: Redis | Cluster, prefix: string, lane: Lane, quotaOf: (tenant: string) => number | undefined): Promise<number> {
  const k = laneKeys(prefix, lane);
  let promoted = 0;
  for (let start = 0; ; start += PARK_PAGE) {
    const ids = await redis.zrange(k.delayed, String(start), String(start + PARK_PAGE - 1));
    if (ids.length === 0) return promoted;
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hget(`${k.jobKeyPrefix}${id}`, TENANT_PARK_FIELD);
    const marks = (await pipeline.exec()) ?? [];
    let gone = 0;
    for (const [i, id] of ids.entries()) {
      const mark = marks[i]?.[1];
      const park = typeof mark === 'string' ? parseTenantParkMark(mark) : undefined;
      if (!park) continue;
      const now = quotaOf(park.tenant);
      if (now !== undefined && now <= park.tpm) continue;
      if (await promoteDelayed(redis, prefix, lane, id)) {
        promoted += 1;
        gone += 1;
      }
    }
    // Promoted jobs left the delayed set: the next page starts that much earlier.
    start -= gone;
    if (ids.length < PARK_PAGE) return promoted;
  }
}

/**
 * Hands a running job back to its lane whatever the lane holds, for a worker that is stopping
 * (the alternative, letting its lock lapse, puts it back all the same later): BullMQ's move, and
 * the job's returning entry, if any, removed.
 */
export async function forceReturnToLane(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string, token: string): Promise<void> {
  const k = laneKeys(prefix, lane);
  const reply = await runScript<number>(redis, 'force-requeue', [k.active, k.wait, k.stalled, k.paused, k.meta, k.limiter, k.prioritized, k.marker, k.events], [
    jobId, token, `${k.jobKeyPrefix}${jobId}`, k.ownPrefix,
  ]);
  if (Number(reply) < 0) throw new Error(`BullMQ refused to move job ${jobId} back to lane ${lane} (code ${reply})`);
}
