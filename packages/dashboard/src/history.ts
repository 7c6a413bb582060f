/**
 * The dashboard's short memory: bucket levels and lane depths sampled every few seconds, for the
 * live charts and for the burn rate. Redis holds only the bucket's level now; how fast it is
 * falling needs two readings, so the dashboard keeps them (a restart costs a minute of charts).
 */

export interface Sample {
  atMs: number;
  /** pool -> dimension -> reading. */
  pools: Record<string, Record<string, { level: number; capacity: number; utilization: number; ratePerSec?: number }>>;
  /** lane -> depth (not yet started) and running. */
  lanes: Record<string, { queued: number; active: number }>;
}

export interface HistoryOptions {
  /** How much to keep. @default 15 min */
  keepMs?: number;
  /** The window the burn rate is averaged over. @default 30 s */
  drainWindowMs?: number;
}

export class History {
  readonly keepMs: number;
  readonly drainWindowMs: number;
  #samples: Sample[] = [];

  constructor(options: HistoryOptions = {}) {
    this.keepMs = options.keepMs ?? 15 * 60_000;
    this.drainWindowMs = options.drainWindowMs ?? 30_000;
  }

  record(sample: Sample): void {
    const last = this.#samples.at(-1);
    // Out-of-order samples (two overlapping reads) would break the fit: keep the newest only.
    if (last && sample.atMs <= last.atMs) return;
    this.#samples.push(sample);
    const cutoff = sample.atMs - this.keepMs;
    let drop = 0;
    while (drop < this.#samples.length && this.#samples[drop]!.atMs < cutoff) drop++;
    if (drop > 0) this.#samples.splice(0, drop);
  }

  latest(): Sample | undefined {
    return this.#samples.at(-1);
  }

  samples(sinceMs = 0): readonly Sample[] {
    return this.#samples.filter((s) => s.atMs >= sinceMs);
  }

  /**
   * The rate a dimension is drawn from (units per second, gross of refill), averaged over the
   * drain window. Between two samples the bucket refilled `ratePerSec` (limit / 60; the capacity
   * may hold less than a minute of it, see the pool's `burst`), so what was
   * drawn is what the level would have reached minus what it did reach. Refill beyond capacity is
   * lost, which only a reading at capacity can reveal: then the projection is capped (an idle
   * full bucket burns nothing). Null with fewer than two readings in the window.
   */
  burnPerSec(pool: string, dimension: string, nowMs?: number): number | null {
    const points = this.#points(pool, dimension, nowMs);
    if (points.length < 2) return null;
    let drawn = 0;
    for (let i = 1; i < points.length; i++) {
      const [t0, a] = points[i - 1]!;
      const [t1, b] = points[i]!;
      const projected = a.level + ((a.ratePerSec ?? a.capacity / 60) / 1000) * (t1 - t0);
      const refilled = a.level >= a.capacity || b.level >= b.capacity ? Math.min(a.capacity, projected) : projected;
      drawn += Math.max(0, refilled - b.level);
    }
    const spanMs = points.at(-1)![0] - points[0]![0];
    return spanMs > 0 ? (drawn / spanMs) * 1000 : null;
  }

  /**
   * Whether the level fell between the last two readings. A burn averaged over the window still
   * counts a burst that has since stopped; a level that is rising again is not running out.
   */
  fallingNow(pool: string, dimension: string, nowMs?: number): boolean {
    const points = this.#points(pool, dimension, nowMs);
    return points.length >= 2 && points.at(-1)![1].level < points.at(-2)![1].level;
  }

  #points(pool: string, dimension: string, nowMs?: number): [number, { level: number; capacity: number; ratePerSec?: number }][] {
    const end = nowMs ?? this.latest()?.atMs ?? 0;
    const points: [number, { level: number; capacity: number; ratePerSec?: number }][] = [];
    for (const s of this.#samples) {
      if (s.atMs < end - this.drainWindowMs || s.atMs > end) continue;
      const d = s.pools[pool]?.[dimension];
      if (d) points.push([s.atMs, d]);
    }
    return points;
  }
}

/**
 * Time until a dimension's level reaches zero at the current burn: level / (burn - refill), the
 * refill being the dimension's `ratePerSec`.
 * 0 when it is empty already; null when it is not falling now, or the burn does not outrun the
 * refill (it then never runs out).
 */
export function exhaustInMs(level: number, refillPerSec: number, burnPerSec: number | null, fallingNow: boolean): number | null {
  if (level <= 0) return 0;
  if (burnPerSec === null || !fallingNow) return null;
  const net = burnPerSec - refillPerSec;
  return net > 0 ? (level / net) * 1000 : null;
}
