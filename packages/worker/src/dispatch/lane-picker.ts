/**
 * Chooses which lane a free slot takes from next. Strict: the highest lane with work. Weighted:
 * smooth weighted round-robin (nginx's), so every lane with work gets its share and none starves.
 * Lanes known to be empty or backed off are skipped; time is injected so tests are exact.
 *
 * A lane is skipped for one of three reasons, kept apart because they end differently:
 * - empty: a fetch found nothing. It ends after `emptyForMs`, or at once when the lane's marker
 *   says work arrived (`wake`). While busy with lower lanes, this bounds how long a new job in a
 *   higher lane can go unseen; while idle, the dispatcher blocks on the markers instead.
 * - closed: the bucket told the lane (or all its front jobs' pools) to wait. Ends at its time, or
 *   when a marker says work arrived: a job just added may be for another pool, may go to an idle
 *   fallback that waiting would make late, or (a lane closed only by the fair reserve) may be a
 *   fresh tenant's. Left closed, such a job waited up to a second, its deadline passing meanwhile.
 *   A full closure is looked behind at most once per `emptyForMs`, so a lane flooded with jobs
 *   that must wait costs a look per 20 ms, not one per job added.
 * - due: the lane's next delayed job is due then (BullMQ's delay marker): it opens at that time.
 */
import type { InteractiveLane } from '@headroom/queue';

export interface LanePickerOptions {
  order: 'strict' | 'weighted';
  lanes: readonly InteractiveLane[];
  weights: Record<InteractiveLane, number>;
  /** How long an empty fetch marks a lane empty: bounds both idle polling and pickup latency. */
  emptyForMs: number;
  now: () => number;
}

export class LanePicker {
  private readonly emptyUntil = new Map<InteractiveLane, number>();
  private readonly closedUntil = new Map<InteractiveLane, number>();
  /** When the lane was last closed: a marker opens a full closure no sooner than `emptyForMs` after. */
  private readonly closedAt = new Map<InteractiveLane, number>();
  /** Lanes closed only by the fair reserve: a marker opens them. */
  private readonly closedForFairShare = new Set<InteractiveLane>();
  private readonly dueAt = new Map<InteractiveLane, number>();
  private readonly current = new Map<InteractiveLane, number>();

  constructor(private readonly opts: LanePickerOptions) {}

  /** Lanes to try, best first. */
  candidates(): InteractiveLane[] {
    const now = this.opts.now();
    for (const [lane, at] of this.dueAt) {
      if (at <= now) {
        this.dueAt.delete(lane);
        this.emptyUntil.delete(lane);
      }
    }
    const open = this.opts.lanes.filter((l) => (this.emptyUntil.get(l) ?? 0) <= now && (this.closedUntil.get(l) ?? 0) <= now);
    if (this.opts.order === 'strict' || open.length <= 1) return open;
    // Smooth weighted round-robin: raise every open lane by its weight, take the largest.
    let total = 0;
    for (const lane of open) {
      const w = this.opts.weights[lane];
      total += w;
      this.current.set(lane, (this.current.get(lane) ?? 0) + w);
    }
    const ranked = [...open].sort((a, b) => (this.current.get(b) ?? 0) - (this.current.get(a) ?? 0));
    const first = ranked[0]!;
    this.current.set(first, (this.current.get(first) ?? 0) - total);
    return ranked;
  }

  markEmpty(lane: InteractiveLane): void {
    this.emptyUntil.set(lane, this.opts.now() + this.opts.emptyForMs);
  }

  /**
   * The bucket told this lane to wait: skip it until then. `fairShare`: only the jobs of tenants
   * with work queued must wait, so work arriving (a marker) opens the lane again.
   */
  backOff(lane: InteractiveLane, ms: number, fairShare = false): void {
    // A closure that never ends would hide the lane from this worker for good (only a time ends it).
    if (!Number.isFinite(ms)) throw new RangeError(`lane ${lane}: a back-off must be a finite time, got ${ms}`);
    const now = this.opts.now();
    const closed = this.closedUntil.get(lane) ?? 0;
    const active = closed > now;
    // A closure for every job, still running, is not loosened by a fair-share one.
    if (fairShare && active && !this.closedForFairShare.has(lane)) return;
    this.closedUntil.set(lane, Math.max(active ? closed : 0, now + ms));
    this.closedAt.set(lane, now);
    if (fairShare) this.closedForFairShare.add(lane);
    else this.closedForFairShare.delete(lane);
  }

  /**
   * Work arrived in the lane (its marker): try it again now; if it is backed off for every job,
   * once `emptyForMs` has passed since it was closed.
   */
  wake(lane: InteractiveLane): void {
    this.emptyUntil.delete(lane);
    if (this.closedForFairShare.delete(lane)) this.closedUntil.delete(lane);
    const closed = this.closedUntil.get(lane);
    if (closed !== undefined) this.closedUntil.set(lane, Math.min(closed, (this.closedAt.get(lane) ?? 0) + this.opts.emptyForMs));
  }

  /**
   * The lane's marker was the first one set, in priority order: the lanes above it had none, so
   * they hold nothing ready and are not fetched from for `emptyForMs` (a NORMAL job then costs
   * one fetch, not three). Only the priority order of the markers says so, not the picker's order.
   */
  wakeFromMarker(lane: InteractiveLane, priorityOrder: readonly InteractiveLane[]): void {
    for (const above of priorityOrder.slice(0, priorityOrder.indexOf(lane))) this.markEmpty(above);
    this.wake(lane);
  }

  /** Every lane may have work again (a blocking wait timed out): try each once more. */
  wakeAll(): void {
    this.emptyUntil.clear();
  }

  /** The lane's next delayed job is due at `at` (epoch ms): try the lane then. */
  dueAtTime(lane: InteractiveLane, at: number): void {
    const known = this.dueAt.get(lane);
    if (known === undefined || at < known) this.dueAt.set(lane, at);
  }

  /** Milliseconds until some lane may have work again, empties included (polling). */
  msUntilNextOpen(): number {
    return this.#msUntil(true);
  }

  /**
   * Milliseconds until a backed-off lane reopens or a delayed job is due: what a blocking wait on
   * the markers must not sleep past (an empty lane wakes it through its marker).
   */
  msUntilTimedOpen(): number {
    return this.#msUntil(false);
  }

  #msUntil(withEmpty: boolean): number {
    const now = this.opts.now();
    let next = Number.POSITIVE_INFINITY;
    for (const lane of this.opts.lanes) {
      const closed = this.closedUntil.get(lane) ?? 0;
      const empty = withEmpty ? (this.emptyUntil.get(lane) ?? 0) : 0;
      const due = this.dueAt.get(lane);
      // A lane both empty and closed opens when the later of the two ends; a due delayed job opens
      // it at its time unless it is closed longer.
      let opensAt = Math.max(closed, empty);
      if (!withEmpty) opensAt = due === undefined ? (closed > now ? closed : Number.POSITIVE_INFINITY) : Math.max(closed, due);
      else if (due !== undefined) opensAt = Math.max(closed, Math.min(empty, due));
      next = Math.min(next, Math.max(0, opensAt - now));
    }
    return next;
  }
}
