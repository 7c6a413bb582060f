/**
 * What a Bucket has been handed but not yet sent, per pool: settles, the rate-limit headers
 * of the latest responses, and the outcomes of calls per model (for the adaptive throttle). The next acquire to that pool carries them (one round trip per
 * provider call); an idle bucket sends them on its own. Work is kept per pool because a script
 * runs in one Redis Cluster slot, and all of one pool's keys share one.
 */
import { POOL_DIMENSIONS, type PoolLimits, type Reservation, type SettleResult, type SyncResult } from '../bucket-types.js';
import type { Observed, ObservedLimit } from '../rate-limit-headers.js';

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

export interface CarriedSettle extends Waiter<SettleResult> {
  reservation: Reservation;
  inputTokens: number;
  outputTokens: number;
  /** Requests given back: the reservation's own for a grant never sent (`release`), else 0. */
  requestsBack: number;
}

export interface CarriedSync {
  limits: PoolLimits;
  observed: Observed;
  waiters: Waiter<SyncResult>[];
}

/**
 * Calls to one model since the last send, how many of them the provider served, and the retries
 * whose place in the retry budget goes back: those served, and those granted but never sent.
 */
export interface CarriedOutcomes {
  calls: number;
  oks: number;
  retriesBack: number;
}

/** One script call's worth of a pool's work. */
export interface CarriedBatch {
  settles: CarriedSettle[];
  sync: CarriedSync | undefined;
  /** Per model: counted, not listed, so a burst of outcomes costs the script one entry per model. */
  outcomes: Map<string, CarriedOutcomes> | undefined;
}

/**
 * Settles one script call carries at most: a burst (many calls ending while no acquire comes)
 * goes in a few calls rather than one long script that holds up every other client of Redis.
 */
export const SETTLES_PER_CALL = 32;

export class CarriedWork {
  readonly #pools = new Map<string, CarriedBatch>();

  get empty(): boolean {
    return this.#pools.size === 0;
  }

  pools(): string[] {
    return [...this.#pools.keys()];
  }

  addSettle(settle: CarriedSettle): void {
    this.#of(settle.reservation.pool).settles.push(settle);
  }

  /**
   * Headers that come while earlier ones wait are merged, not queued: per dimension the lower
   * ceiling wins, which is what applying both in turn would leave, since headers only lower.
   */
  addSync(pool: string, limits: PoolLimits, observed: Observed, waiter: Waiter<SyncResult>): void {
    const batch = this.#of(pool);
    if (batch.sync) {
      batch.sync.limits = limits;
      batch.sync.observed = mergeObserved(batch.sync.observed, observed);
      batch.sync.waiters.push(waiter);
    } else {
      batch.sync = { limits, observed, waiters: [waiter] };
    }
  }

  addOutcome(pool: string, model: string, ok: boolean, retry: boolean): void {
    const o = this.#outcomesOf(pool, model);
    o.calls += 1;
    if (ok) o.oks += 1;
    if (ok && retry) o.retriesBack += 1;
  }

  /** A retry granted whose call said nothing of the model (`Bucket.retryWithoutOutcome`): only its place back. */
  addRetryBack(pool: string, model: string): void {
    this.#outcomesOf(pool, model).retriesBack += 1;
  }

  #outcomesOf(pool: string, model: string): CarriedOutcomes {
    const batch = this.#of(pool);
    batch.outcomes ??= new Map();
    let o = batch.outcomes.get(model);
    if (!o) {
      o = { calls: 0, oks: 0, retriesBack: 0 };
      batch.outcomes.set(model, o);
    }
    return o;
  }

  /** Removes and returns up to one call's worth of `pool`'s work, oldest settles first. */
  take(pool: string): CarriedBatch | undefined {
    const batch = this.#pools.get(pool);
    if (!batch) return undefined;
    if (batch.settles.length <= SETTLES_PER_CALL) {
      this.#pools.delete(pool);
      return batch;
    }
    // The headers and outcomes stay for the call that carries the last of the settles before them.
    return { settles: batch.settles.splice(0, SETTLES_PER_CALL), sync: undefined, outcomes: undefined };
  }

  #of(pool: string): CarriedBatch {
    let batch = this.#pools.get(pool);
    if (!batch) {
      batch = { settles: [], sync: undefined, outcomes: undefined };
      this.#pools.set(pool, batch);
    }
    return batch;
  }
}

const ceiling = (o: ObservedLimit | undefined) => (o?.remaining === undefined ? Infinity : o.remaining + o.remainingSlack);

function mergeObserved(older: Observed, newer: Observed): Observed {
  const merged: Observed = { ...newer };
  for (const d of POOL_DIMENSIONS) {
    const a = older[d];
    const b = newer[d];
    if (!a) continue;
    if (!b) merged[d] = a;
    else {
      const lower = ceiling(a) < ceiling(b) ? a : b;
      merged[d] = { ...lower, limit: b.limit ?? a.limit };
    }
  }
  return merged;
}
