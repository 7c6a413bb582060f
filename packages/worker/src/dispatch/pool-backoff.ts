/**
 * Which pools are backed off in which lane. A job the bucket told to wait goes back to the front
 * of its lane, and its pool backs off in that lane, fleet-wide, for the wait: this worker skips
 * the pool's jobs at once, and the others learn it from a ZSET per lane (`pool -> until`) that
 * they read at most every 100 ms while they know of work in a lane (dispatcher.ts). The lane's
 * jobs for other pools keep flowing (the dispatcher brings the first of them to the front). A
 * wait only the fair reserve caused (acquire.lua's
 * `fair_share`) backs off `fairShareOnly(pool)`: the pool's jobs of tenants with work queued wait,
 * a fresh tenant's may still run. A pool one of this worker's jobs sleeps in place for is backed
 * off in that job's lane too, here only, until the sleeper's acquire answers (run/pool-holds.ts).
 */
import type { Cluster, Redis } from 'ioredis';
import { fairShareOnly, INTERACTIVE_LANES, laneKeys, type InteractiveLane } from '@headroom/queue';
import { PoolHolds } from '../run/pool-holds.js';

/**
 * A pool (or a lane) never backs off longer than this, so its front job is looked at again (shed
 * checks, limits that changed) even while the bucket would keep it waiting for minutes.
 */
export const MAX_BACKOFF_MS = 1_000;
/**
 * A member `@<pool>` of a lane's backoff ZSET, scored with the end of the bucket's wait that
 * backed the pool off. `@` is in no pool name (config.ts); a worker of an older version reads it
 * as a pool no job has, which holds nothing back.
 */
const WAIT_END = '@';
/**
 * A member `+<pool>`, scored with when the bucket's wait for a second job like the one that backed
 * the pool off would end: `@<pool>`'s end plus the pool's pace (the refill of one such job's
 * draw). The jobs of the pool queued in the lane start that much apart, so a job behind them
 * whose fallback is open is taken for it at once, not when the bucket's wait alone would make it
 * late (lane-fetch.ts). `+` is in no pool name either.
 */
const NEXT_END = '+';
export const FLEET_BACKOFF_REFRESH_MS = 100;

export class PoolBackoffs {
  /** Per lane, pool -> until (epoch ms): this worker's and, refreshed, the fleet's. */
  readonly #until = new Map<InteractiveLane, Map<string, number>>(INTERACTIVE_LANES.map((lane) => [lane, new Map()]));
  /**
   * Per lane, pool -> when the bucket's wait that backed it off ends (epoch ms), uncapped: a job
   * behind the pool's backoff with a fallback is taken for it once that wait would make it late
   * (lane-fetch.ts). Kept in the same ZSET as `WAIT_END<pool>`.
   */
  readonly #waitEnd = new Map<InteractiveLane, Map<string, number>>(INTERACTIVE_LANES.map((lane) => [lane, new Map()]));
  /** Per lane, pool -> its pace (ms), learnt with its wait's end (`NEXT_END<pool>`). */
  readonly #pace = new Map<InteractiveLane, Map<string, number>>(INTERACTIVE_LANES.map((lane) => [lane, new Map()]));
  #lastRefresh = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly now: () => number,
    private readonly holds = new PoolHolds(),
  ) {}

  /**
   * The pools backed off in the lane now (expired entries are dropped), `fairShareOnly` ones and
   * those a sleeper of this worker holds included.
   */
  backedOff(lane: InteractiveLane): string[] {
    const now = this.now();
    const pools = this.#until.get(lane)!;
    for (const [pool, until] of pools) if (until <= now) pools.delete(pool);
    return [...pools.keys(), ...this.holds.in(lane).map((s) => s.pool)];
  }

  /** When the bucket's waits behind the lane's backoffs end (epoch ms), by pool: those not yet over. */
  waitEnds(lane: InteractiveLane): Map<string, number> {
    const now = this.now();
    const ends = this.#waitEnd.get(lane)!;
    for (const [pool, end] of ends) if (end <= now) ends.delete(pool);
    return ends;
  }

  /** The paces of the pools whose waits `waitEnds` gives (ms), where known. */
  paces(lane: InteractiveLane): Map<string, number> {
    return this.#pace.get(lane)!;
  }

  /**
   * Milliseconds until the first backed-off pool of the lane reopens (at least 1, at most
   * MAX_BACKOFF_MS); a sleeper's pool is looked at again when its sleep ends. With nothing holding
   * the lane any more, 1: the caller read `backedOff` before a round trip, during which the
   * sleeper's acquire may have answered (its hold released). The minimum of nothing was Infinity,
   * and the lane picker closed the lane for good: after a 40 s outage in bench:brownout, a
   * worker's CRITICAL lane stayed closed to the end of the run while it served LOW.
   */
  msUntilFirstReopens(lane: InteractiveLane): number {
    const untils = [...this.#until.get(lane)!.values(), ...this.holds.in(lane).map((s) => s.until)];
    if (untils.length === 0) return 1;
    return Math.min(MAX_BACKOFF_MS, Math.max(1, Math.min(...untils) - this.now()));
  }

  /**
   * Backs the pool off in the lane for `ms` (at most a second), here and fleet-wide; with
   * `fairShare`, only for the jobs of tenants with work queued. `paceMs`: how long the pool's
   * bucket takes to refill the draw of the job told to wait; unknown, the last one learnt stays.
   */
  async backOff(lane: InteractiveLane, pool: string, ms: number, fairShare = false, paceMs?: number): Promise<void> {
    const span = Math.min(ms, MAX_BACKOFF_MS);
    if (span < 1) return;
    const until = this.now() + span;
    const waitEnd = this.now() + ms;
    if (fairShare) pool = fairShareOnly(pool);
    this.#note(lane, pool, until);
    const key = laneKeys(this.prefix, lane).poolBackoff;
    // GT: a shorter wait learnt later never cuts a longer one short. The key outlives no backoff.
    const tx = this.redis.multi().zadd(key, 'GT', until, pool);
    if (!fairShare) {
      this.#noteWaitEnd(lane, pool, waitEnd);
      tx.zadd(key, waitEnd, WAIT_END + pool);
      const paces = this.#pace.get(lane)!;
      if (paceMs !== undefined) paces.set(pool, paceMs);
      const pace = paces.get(pool);
      if (pace !== undefined) tx.zadd(key, waitEnd + pace, NEXT_END + pool);
    }
    await tx.pexpire(key, MAX_BACKOFF_MS * 2).exec().catch(() => {});
  }

  /**
   * Learns other workers' pool backoffs, at most every 100 ms. One command per lane, sent
   * together: each lane is its own hash slot, and a Redis Cluster pipeline must stay within one
   * slot; on a single node ioredis writes them back to back, so it is still one round trip.
   * Times are the workers' clocks, so one learnt from the fleet is held to at most a second from
   * now here: a worker whose clock runs ahead cannot back the others off for longer.
   */
  async refresh(): Promise<void> {
    const now = this.now();
    if (now - this.#lastRefresh < FLEET_BACKOFF_REFRESH_MS) return;
    this.#lastRefresh = now;
    const all = await Promise.all(
      INTERACTIVE_LANES.map((lane) => this.redis.zrangebyscore(laneKeys(this.prefix, lane).poolBackoff, now, '+inf', 'WITHSCORES').catch(() => [] as string[])),
    );
    all.forEach((entries, i) => {
      const lane = INTERACTIVE_LANES[i]!;
      const nextEnds = new Map<string, number>();
      for (let j = 0; j < entries.length; j += 2) {
        const member = entries[j]!;
        const score = Number(entries[j + 1]);
        if (member.startsWith(WAIT_END)) this.#noteWaitEnd(lane, member.slice(WAIT_END.length), score);
        else if (member.startsWith(NEXT_END)) nextEnds.set(member.slice(NEXT_END.length), score);
        else this.#note(lane, member, Math.min(score, now + MAX_BACKOFF_MS));
      }
      // Both members of a pool are written in one transaction: their difference is its pace.
      for (const [pool, next] of nextEnds) {
        const end = this.#waitEnd.get(lane)!.get(pool);
        if (end !== undefined) this.#pace.get(lane)!.set(pool, Math.max(0, next - end));
      }
    });
  }

  /** The latest learnt: a wait is set afresh by every requeue, and only ever ends later when learnt again. */
  #noteWaitEnd(lane: InteractiveLane, pool: string, end: number): void {
    this.#waitEnd.get(lane)!.set(pool, end);
  }

  #note(lane: InteractiveLane, pool: string, until: number): void {
    const pools = this.#until.get(lane)!;
    if (until > (pools.get(pool) ?? 0)) pools.set(pool, until);
  }
}
