/**
 * A circuit breaker per model, so a model that is down costs one probe per `openMs` instead of
 * every job's retries, and jobs move to their fallback while it is out.
 *
 * closed --(failureThreshold consecutive server/overloaded/network failures)--> open
 * open --(openMs elapsed)--> half_open: exactly one probe call at a time
 * half_open --probe succeeds--> closed;  --probe fails--> open again for openMs
 *
 * Per process: each worker judges from its own calls (a fleet-wide breaker would need a Redis
 * round trip per call; the fleet-wide signal for 429s is the bucket's cooldown instead).
 *
 * ```ts
 * const breaker = new Breaker({ ...config.breaker, now: Date.now });
 * if (!breaker.canCall(model)) return tryNextModel();      // a question: no side effect
 * if (!breaker.acquire(model)) return tryNextModel();      // the gate, right before the call
 * const result = await adapter.call({ model, request });
 * if (result.ok) breaker.recordSuccess(model); else breaker.recordFailure(model, result.kind);
 * // acquired but never called (the bucket said wait): breaker.release(model)
 * ```
 */
import type { BreakerSnapshot, BreakerState, HeadroomConfig } from '@headroom/queue';
import type { FailureKind } from '../providers/types.js';

export type BreakerConfig = HeadroomConfig['breaker'];

/** Failures that say the model is unhealthy. A 429 says it is busy (the bucket's business); a 400 says the request is wrong. */
export const BREAKER_FAILURES: ReadonlySet<FailureKind> = new Set(['server', 'overloaded', 'network']);

export interface BreakerOptions extends BreakerConfig {
  /** @default Date.now */
  now?: () => number;
  /**
   * A half-open probe not reported within this long is presumed lost (a caller that forgot to
   * report, a hung call), and another probe is allowed: a leaked probe must not disable a model
   * for good. Keep it at least the provider call timeout. @default 600_000
   */
  probeLeaseMs?: number;
  /** Told of every state change, for logs and metrics. */
  onTransition?: (model: string, from: BreakerState, to: BreakerState) => void;
}

interface Circuit {
  state: BreakerState;
  failures: number;
  openedAt: number;
  /** When the in-flight half-open probe was let through; null when none is. */
  probeAt: number | null;
}

export class Breaker {
  readonly #threshold: number;
  readonly #openMs: number;
  readonly #clock: () => number;
  readonly #probeLeaseMs: number;
  readonly #onTransition: BreakerOptions['onTransition'];
  readonly #circuits = new Map<string, Circuit>();

  constructor(options: BreakerOptions) {
    if (!(options.failureThreshold >= 1)) throw new RangeError('failureThreshold must be at least 1');
    this.#threshold = options.failureThreshold;
    this.#openMs = options.openMs;
    this.#clock = options.now ?? Date.now;
    this.#probeLeaseMs = options.probeLeaseMs ?? 600_000;
    this.#onTransition = options.onTransition;
  }

  /** The state now (an open breaker whose time is up reads as half_open). */
  state(model: string): BreakerState {
    const circuit = this.#circuits.get(model);
    return circuit === undefined ? 'closed' : this.#advance(model, circuit).state;
  }

  /**
   * Whether a call to `model` would be let through now: closed, or half_open with no probe out.
   * A question only (ladder planning may ask it of every model); `acquire` is the gate.
   */
  canCall(model: string): boolean {
    const circuit = this.#circuits.get(model);
    if (circuit === undefined) return true;
    this.#advance(model, circuit);
    if (circuit.state === 'half_open') return !this.#probeOut(circuit);
    return circuit.state === 'closed';
  }

  /**
   * Takes permission to call `model` now, right before the call. In half_open a `true` is THE
   * probe: report it (`recordSuccess` / `recordFailure`) or give it back (`release`); until then
   * every other `acquire` is refused.
   */
  acquire(model: string): boolean {
    const circuit = this.#circuits.get(model);
    if (circuit === undefined) return true;
    this.#advance(model, circuit);
    if (circuit.state === 'closed') return true;
    if (circuit.state === 'open' || this.#probeOut(circuit)) return false;
    circuit.probeAt = this.#clock();
    return true;
  }

  /**
   * How long until `canCall` may turn true: 0 when it is true now, the rest of the open period,
   * or, while a probe is out, one more open period (the probe's outcome is not known yet).
   */
  msUntilProbe(model: string): number {
    const circuit = this.#circuits.get(model);
    if (circuit === undefined) return 0;
    this.#advance(model, circuit);
    if (circuit.state === 'open') return Math.max(0, circuit.openedAt + this.#openMs - this.#clock());
    if (circuit.state === 'half_open' && this.#probeOut(circuit)) return this.#openMs;
    return 0;
  }

  recordSuccess(model: string): void {
    const circuit = this.#circuits.get(model);
    if (circuit === undefined) return;
    this.#advance(model, circuit);
    // A late success from a call started before the breaker opened proves little about now; the
    // probe decides.
    if (circuit.state === 'open') return;
    circuit.failures = 0;
    circuit.probeAt = null;
    this.#set(model, circuit, 'closed');
  }

  /** Reports a failed call. Kinds outside BREAKER_FAILURES leave the counts alone. */
  recordFailure(model: string, kind: FailureKind): void {
    if (!BREAKER_FAILURES.has(kind)) {
      this.release(model);
      return;
    }
    const circuit = this.#circuit(model);
    this.#advance(model, circuit);
    switch (circuit.state) {
      case 'closed':
        circuit.failures += 1;
        if (circuit.failures >= this.#threshold) this.#open(model, circuit);
        return;
      case 'half_open':
        circuit.failures += 1;
        this.#open(model, circuit);
        return;
      case 'open':
        // Calls that were in flight when it opened: already counted as down; the timer stands.
        circuit.failures += 1;
        return;
    }
  }

  /** Gives back a half-open probe that was acquired but never made (or ended in a neutral failure). */
  release(model: string): void {
    const circuit = this.#circuits.get(model);
    if (circuit !== undefined) circuit.probeAt = null;
  }

  snapshot(): BreakerSnapshot[] {
    return [...this.#circuits.entries()].map(([model, circuit]) => {
      this.#advance(model, circuit);
      return {
        model,
        state: circuit.state,
        consecutiveFailures: circuit.failures,
        ...(circuit.state === 'open' ? { retryAt: circuit.openedAt + this.#openMs } : {}),
      };
    });
  }

  #circuit(model: string): Circuit {
    let circuit = this.#circuits.get(model);
    if (circuit === undefined) {
      circuit = { state: 'closed', failures: 0, openedAt: 0, probeAt: null };
      this.#circuits.set(model, circuit);
    }
    return circuit;
  }

  #probeOut(circuit: Circuit): boolean {
    return circuit.probeAt !== null && this.#clock() - circuit.probeAt < this.#probeLeaseMs;
  }

  #open(model: string, circuit: Circuit): void {
    circuit.openedAt = this.#clock();
    circuit.probeAt = null;
    this.#set(model, circuit, 'open');
  }

  #advance(model: string, circuit: Circuit): Circuit {
    if (circuit.state === 'open' && this.#clock() - circuit.openedAt >= this.#openMs) this.#set(model, circuit, 'half_open');
    return circuit;
  }

  #set(model: string, circuit: Circuit, to: BreakerState): void {
    const from = circuit.state;
    if (from === to) return;
    circuit.state = to;
    this.#onTransition?.(model, from, to);
  }
}
