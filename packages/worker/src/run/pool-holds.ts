/**
 * What keeps a lane's jobs of one pool in lane order inside this worker, where the bucket alone
 * would serve whichever acquire arrives after a refill:
 *
 * - **The sleeper.** The one job per pool this worker lets sleep in place for a short bucket wait
 *   (the rest go back to their lane, so a saturated pool's slots are not a herd of sleepers
 *   racing for each refill). Until its acquire after the sleep has answered, the dispatcher treats
 *   the pool as backed off in the sleeper's lane (pool-backoff.ts): a job fetched behind it would
 *   otherwise reach the bucket as the refill comes in.
 * - **Jobs told to wait, ahead of later ones.** The dispatcher fetches a lane in its order, one
 *   job per free slot, each sending its acquire at once. A job told to wait (to sleep, or to go
 *   back to its place) is ahead of every job of its pool and lane fetched after it; one of those
 *   whose acquire arrives a moment later, once the refill is in, is granted it. So a job granted
 *   while a job fetched before it waits gives the grant back and goes back behind it (`ahead`).
 *   That holds until this worker fetches a job of that pool and lane again: the waiting job itself
 *   (then until it is granted), or another, which says the waiting job went to another worker, or
 *   is behind; but only a fetch sent after the job was back says so. A fetch sent while the job
 *   was still on its way back (its return and the fetch run on different connections, so their
 *   replies come in either order) took the job behind it from the lane's front: in CI the job
 *   behind was granted a refill 2 ms into a fair-share wait and called half a second ahead.
 *   Holding on for the whole wait instead made a 4-worker fleet, whose jobs mostly come back to
 *   another worker, a third slower. A job keeps the place of its first fetch here, so two
 *   jobs never each yield to the other. A fresh tenant's job passes a wait the fair reserve alone
 *   caused, as it passes the reserve itself.
 */
import type { InteractiveLane } from '@headroom/queue';

export interface PoolHold {
  pool: string;
  lane: InteractiveLane;
  /** When the sleep ends (epoch ms); the hold lasts until the sleeper's next acquire answers. */
  until: number;
}

export interface Waiting {
  lane: InteractiveLane;
  pool: string;
  /** The order in which this worker fetched it (the dispatcher's fetch count). */
  fetched: number;
  /** When the bucket's wait ends (epoch ms). */
  waitEnd: number;
  fairShare: boolean;
  /**
   * Back in its lane (no longer in this worker's hands), after this worker had sent that many
   * fetches: a later fetch saw it in the lane. Undefined while in hand.
   */
  backAfterFetch?: number;
}

/**
 * A job told to wait stops counting this long after its wait at the latest, if this worker has not
 * fetched from its pool and lane since: its trip back and a fetch, even on a loaded machine.
 */
export const WAITING_GRACE_MS = 1_000;
/** Places kept for jobs that went back and were not seen since: the most a worker keeps in mind. */
const MAX_PLACES = 10_000;

export class PoolHolds {
  readonly #byPool = new Map<string, PoolHold>();
  readonly #waiting = new Map<string, Waiting>();
  /**
   * Job -> the fetch count of its first fetch here: its place among this worker's jobs, kept when
   * it is fetched again after going back, so two jobs never each see the other as ahead.
   */
  readonly #places = new Map<string, number>();
  /** The dispatcher's count of fetches sent. */
  #sent = 0;

  has(pool: string): boolean {
    return this.#byPool.has(pool);
  }

  take(pool: string, lane: InteractiveLane, until: number): void {
    this.#byPool.set(pool, { pool, lane, until });
  }

  release(pool: string): void {
    this.#byPool.delete(pool);
  }

  /** The sleepers holding pools in the lane. */
  in(lane: InteractiveLane): PoolHold[] {
    return [...this.#byPool.values()].filter((s) => s.lane === lane);
  }

  /** Job `jobId`, fetched `fetched`-th, was told to wait for its pool until `waitEnd`. */
  waited(jobId: string, w: Waiting): void {
    const fetched = this.#placeOf(jobId, w.fetched);
    if (!this.#places.has(jobId)) {
      if (this.#places.size >= MAX_PLACES) this.#places.delete(this.#places.keys().next().value as string);
      this.#places.set(jobId, fetched);
    }
    this.#waiting.set(jobId, { ...w, fetched });
  }

  /** The dispatcher is sending its `fetch`-th fetch. */
  sending(fetch: number): void {
    this.#sent = fetch;
  }

  /** Job `jobId` is back in its lane (anyone may fetch it now). */
  back(jobId: string): void {
    const w = this.#waiting.get(jobId);
    if (w) w.backAfterFetch = this.#sent;
  }

  /**
   * This worker's `fetch`-th fetch took `jobId`, of `pool` in `lane`: it is in hand again if it
   * was waiting; any other job of the pool and lane that was back in the lane before that fetch
   * was sent waits no more here (another worker took it, or it is behind this one).
   */
  fetched(jobId: string, lane: InteractiveLane, pool: string, fetch: number): void {
    for (const [id, w] of this.#waiting) {
      if (id === jobId) w.backAfterFetch = undefined;
      else if (w.backAfterFetch !== undefined && w.backAfterFetch < fetch && w.lane === lane && w.pool === pool) this.#waiting.delete(id);
    }
  }

  /** Job `jobId` was granted, or ended: it no longer waits. */
  done(jobId: string): void {
    this.#waiting.delete(jobId);
    this.#places.delete(jobId);
  }

  /**
   * A job of this worker fetched before job `jobId` (`fetched`) that waits for the same pool in the
   * same lane, if any: how long its wait has left (at least 1 ms), and whether only the fair
   * reserve caused it.
   */
  ahead(jobId: string, lane: InteractiveLane, pool: string, fetched: number, fresh: boolean, now: number): { waitMs: number; fairShare: boolean } | undefined {
    const place = this.#placeOf(jobId, fetched);
    let found: { waitMs: number; fairShare: boolean } | undefined;
    for (const [id, w] of this.#waiting) {
      if (w.waitEnd + WAITING_GRACE_MS <= now) {
        this.#waiting.delete(id);
        continue;
      }
      if (id === jobId || w.lane !== lane || w.pool !== pool || w.fetched >= place || (fresh && w.fairShare)) continue;
      const waitMs = Math.max(1, w.waitEnd - now);
      if (!found || waitMs > found.waitMs) found = { waitMs, fairShare: w.fairShare };
    }
    return found;
  }

  /** A job fetched again after going back keeps the place of its first fetch here. */
  #placeOf(jobId: string, fetched: number): number {
    return Math.min(fetched, this.#places.get(jobId) ?? fetched);
  }
}
