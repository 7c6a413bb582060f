/**
 * Chooses which lane a free slot takes from next. Strict: the highest lane with work. Weighted:
 * smooth weighted round-robin (nginx's), so every lane with work gets its share and none starves.
 * Lanes known to be empty or backed off are skipped; time is injected so tests are exact.
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
  private readonly unavailableUntil = new Map<InteractiveLane, number>();
  private readonly current = new Map<InteractiveLane, number>();

  constructor(private readonly opts: LanePickerOptions) {}

  /** Lanes to try, best first. */
  candidates(): InteractiveLane[] {
    const now = this.opts.now();
    const open = this.opts.lanes.filter((l) => (this.unavailableUntil.get(l) ?? 0) <= now);
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
    this.unavailableUntil.set(lane, this.opts.now() + this.opts.emptyForMs);
  }

  /** The bucket told this lane to wait: skip it until then. */
  backOff(lane: InteractiveLane, ms: number): void {
    const until = this.opts.now() + ms;
    if ((this.unavailableUntil.get(lane) ?? 0) < until) this.unavailableUntil.set(lane, until);
  }

  /** Work arrived or the wait was cut short: try the lane again now. */
  wake(lane: InteractiveLane): void {
    this.unavailableUntil.delete(lane);
  }

  /** Milliseconds until some lane may have work again (for the idle sleep). */
  msUntilNextOpen(): number {
    const now = this.opts.now();
    let next = Number.POSITIVE_INFINITY;
    for (const lane of this.opts.lanes) next = Math.min(next, Math.max(0, (this.unavailableUntil.get(lane) ?? 0) - now));
    return next;
  }
}
