/**
 * What this worker last heard of each model's fleet-wide throttle (every acquire's reply says
 * it). Ladder planning asks it whether another model is worth falling back to without a Redis
 * round trip per model: a model last seen open (dead, probes only) is not, until the note is
 * older than `staleMs`, after which it is asked again like any other. Time is injected.
 */
import type { ThrottleState } from '@headroom/queue';

/** How long a model seen failing counts as failing for taking its jobs to their fallbacks. */
export const FAILING_MEMORY_MS = 10_000;

export class ThrottleStates {
  readonly #seen = new Map<string, { state: ThrottleState; atMs: number }>();

  constructor(
    private readonly now: () => number,
    /** A note older than this is forgotten: the probe interval is a fair default. */
    private readonly staleMs = 1_000,
  ) {}

  note(model: string, state: ThrottleState | undefined): void {
    if (state !== undefined) this.#seen.set(model, { state, atMs: this.now() });
  }

  /**
   * The models last seen failing within `FAILING_MEMORY_MS`: their throttle binds (throttled, or
   * open). A job of one held back in its lane with an open fallback is taken for its fallback
   * (lane-fetch.ts). Longer than `staleMs`: a failing model's jobs come back to its bucket only
   * every few seconds (parked for the retry budget, requeued behind the probe), and between
   * their acquires the jobs behind them waited as behind a merely busy pool. A model that
   * recovered is seen closed at the next acquire to it.
   */
  failing(): string[] {
    const now = this.now();
    const out: string[] = [];
    for (const [model, seen] of this.#seen) if (seen.state !== 'closed' && now - seen.atMs < FAILING_MEMORY_MS) out.push(model);
    return out;
  }

  /** Last seen open, recently: calls to it go one per probe interval, fleet-wide. */
  isOpen(model: string): boolean {
    const seen = this.#seen.get(model);
    return seen !== undefined && seen.state === 'open' && this.now() - seen.atMs < this.staleMs;
  }
}
