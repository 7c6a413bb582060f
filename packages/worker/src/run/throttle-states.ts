/**
 * What this worker last heard of each model's fleet-wide throttle (every acquire's reply says
 * it). Ladder planning asks it whether another model is worth falling back to without a Redis
 * round trip per model: a model last seen open (dead, probes only) is not, until the note is
 * older than `staleMs`, after which it is asked again like any other. Time is injected.
 */
import type { ThrottleState } from '@headroom/queue';

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

  /** Last seen open, recently: calls to it go one per probe interval, fleet-wide. */
  isOpen(model: string): boolean {
    const seen = this.#seen.get(model);
    return seen !== undefined && seen.state === 'open' && this.now() - seen.atMs < this.staleMs;
  }
}
