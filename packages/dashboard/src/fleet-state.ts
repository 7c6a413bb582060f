/**
 * Reads of the fleet's shared state in Redis, for the dashboard page, its /metrics and its
 * alerts: lane depths (BullMQ's own counts), the lanes' shed counters, the pressure the workers
 * publish, and the lane queues themselves (which Bull Board also uses).
 */
import { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { answeredWithin, fleetKeys, laneKeys, LANES, type Lane } from '@headroom/queue';

/**
 * BullMQ's states, as Bull Board and `getJobCounts` name them. No `paused`: BullMQ 6 pauses a
 * queue with a flag and leaves its jobs in `waiting`.
 */
export const LANE_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const;
export type LaneState = (typeof LANE_STATES)[number];

export interface LaneDepth {
  lane: Lane;
  counts: Record<LaneState, number>;
  /**
   * Jobs not yet started: what the lane's cap counts, as admission counts it (add-9.lua): BullMQ's
   * waiting, prioritized and delayed jobs, and the jobs workers hold to put back (`returning`).
   */
  queued: number;
  /**
   * Jobs a worker took and must put back while the lane is full (lane-return.ts): active in
   * BullMQ, but running no call, and counted against the cap. Left out of the queued count, a
   * lane refusing QUEUE_FULL in a cooldown read as below its cap.
   */
  returning: number;
  /** All-time counters the fleet keeps in the lane's stats hash. */
  shedTotal: number;
  /** What holds the lane back beside the quota, set on its BullMQ queue (Bull Board's pause, its global concurrency and rate limit). */
  held: LaneHold;
}

/**
 * A lane's BullMQ settings that hold its jobs back: Bull Board sets them on a writable dashboard
 * (pause, "global concurrency", "rate limit"), and the dispatcher's fetch honours them. They stay
 * in the lane's meta hash until cleared, and nothing else showed them: a paused lane looked like
 * a fleet that had stopped taking work, a concurrency of 1 like a slow provider.
 */
export interface LaneHold {
  paused: boolean;
  /** Jobs of the lane running at once, fleet-wide; null: not set. */
  concurrency: number | null;
  /** At most `max` jobs of the lane start per `durationMs`; null: not set. */
  rateLimit: { max: number; durationMs: number } | null;
}

export type LaneQueues = ReadonlyMap<Lane, Queue>;

/**
 * How long one read of the fleet's state may wait for Redis's answer. The connection fails fast
 * while Redis is away, but a Redis that stops answering without closing it (paused, stuck on a
 * long command, a node mid-failover, a network black hole) held each read for as long as the
 * stall lasted: the page kept its last figures under "updated <time>" with no error, a /metrics
 * scrape timed out (the target down, where `headroom_dashboard_redis_up 0` says why), and
 * `headroom status --watch` hung on its last table. A read normally takes milliseconds.
 */
export const FLEET_READ_WAIT_MS = 3_000;

/** `read`, or `RedisUnavailableError` once Redis has not answered it within `FLEET_READ_WAIT_MS`. */
export function boundedRead<T>(read: Promise<T>, what: string): Promise<T> {
  return answeredWithin(read, FLEET_READ_WAIT_MS, what, 'read');
}

/** One BullMQ Queue per lane, all on `redis` (shared, not owned: closing them leaves it open). */
export function openLaneQueues(redis: Redis | Cluster, prefix: string): Map<Lane, Queue> {
  const queues = new Map<Lane, Queue>();
  for (const lane of LANES) {
    const k = laneKeys(prefix, lane);
    const q = new Queue(k.queueName, { connection: redis as Redis, prefix: k.bullPrefix });
    // Connection errors surface through the reads that hit them.
    q.on('error', () => {});
    queues.set(lane, q);
  }
  return queues;
}

export async function closeLaneQueues(queues: LaneQueues): Promise<void> {
  await Promise.all([...queues.values()].map((q) => q.close().catch(() => {})));
}

export async function readLanes(redis: Redis | Cluster, prefix: string, queues: LaneQueues): Promise<LaneDepth[]> {
  // Each lane is its own hash slot: separate commands (sent together), not one pipeline, so this
  // also works on Redis Cluster.
  const lanes = [...queues.keys()];
  const [shed, returning, counts, metas] = await Promise.all([
    Promise.all(lanes.map((lane) => redis.hget(laneKeys(prefix, lane).stats, 'shed'))),
    Promise.all(lanes.map((lane) => redis.zcard(laneKeys(prefix, lane).returning))),
    Promise.all([...queues.values()].map((q) => q.getJobCounts(...LANE_STATES))),
    Promise.all([...queues.values()].map((q) => q.getMeta())),
  ]);
  return lanes.map((lane, i) => {
    const raw = counts[i] ?? {};
    const c = Object.fromEntries(LANE_STATES.map((s) => [s, Number(raw[s] ?? 0)])) as Record<LaneState, number>;
    const back = returning[i] ?? 0;
    return { lane, counts: c, queued: c.waiting + c.prioritized + c.delayed + back, returning: back, shedTotal: Number(shed[i] ?? 0) || 0, held: holdOf(metas[i]) };
  });
}

/** The pressure (0..1) each pool's workers last published; pools with none are absent. */
export async function readPressure(redis: Redis | Cluster, prefix: string): Promise<Record<string, number>> {
  const hash = await redis.hgetall(fleetKeys(prefix).pressure);
  const out: Record<string, number> = {};
  for (const [pool, raw] of Object.entries(hash)) {
    try {
      const v = (JSON.parse(raw) as { value?: unknown }).value;
      if (typeof v === 'number' && Number.isFinite(v)) out[pool] = v;
    } catch {
      // A value written by another version: skip it rather than fail the page.
    }
  }
  return out;
}

/** The hold in a lane's BullMQ meta (`Queue.getMeta()`: `paused`, `concurrency`, `max` and `duration`). */
export function holdOf(meta: { paused?: boolean; concurrency?: number; max?: number; duration?: number } | undefined): LaneHold {
  const { paused = false, concurrency, max, duration } = meta ?? {};
  return {
    paused,
    concurrency: concurrency ?? null,
    rateLimit: max !== undefined && duration !== undefined ? { max, durationMs: duration } : null,
  };
}
