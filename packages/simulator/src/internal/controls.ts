// The knobs a test or another process turns: limits, brownouts, faults, reset. One implementation
// behind both the in-process API and the /_sim HTTP endpoints, so they cannot drift apart.

import type { BatchFaultSpec, FaultSpec } from './faults.js';
import type { ModelLimits, Provider } from './options.js';
import type { Pace, PaceChange, SimulatorState } from './state.js';
import type { SimulatorStats } from './stats.js';

export interface ModelLimitsView {
  provider: Provider;
  pool: string;
  /** What is enforced now: the configured limits times the current scale. */
  effective: { rpm?: number; itpm?: number; otpm?: number; tpm?: number };
  configured: ModelLimits;
}

export interface LimitsView {
  scale: number;
  models: Record<string, ModelLimitsView>;
}

export interface FaultsView {
  faults: FaultSpec[];
  batchFaults: BatchFaultSpec[];
}

export class Controls {
  readonly #state: SimulatorState;

  constructor(state: SimulatorState) {
    this.#state = state;
  }

  stats(): SimulatorStats {
    return this.#state.stats.snapshot();
  }

  limits(): LimitsView {
    const { quota, config } = this.#state;
    const models: Record<string, ModelLimitsView> = {};
    for (const model of config.models.values()) {
      const limits = quota.limits(model.pool);
      models[model.name] = {
        provider: model.provider,
        pool: model.pool,
        effective: { rpm: limits.requests, itpm: limits.input, otpm: limits.output, tpm: limits.tokens },
        configured: quota.configuredLimits(model.pool) ?? { rpm: 0 },
      };
    }
    return { scale: quota.scale, models };
  }

  /** New limits for a model's pool (every model sharing it), effective immediately; fields not given keep their value. */
  setLimits(model: string, limits: Partial<ModelLimits>): void {
    const resolved = this.#state.config.models.get(model);
    if (!resolved) throw new RangeError(`unknown model ${model}`);
    this.#state.quota.setLimits(resolved.pool, limits, this.#state.now());
  }

  /** Scales every configured limit by `factor`; `scaleLimits(1)` ends a brownout. */
  scaleLimits(factor: number): void {
    this.#state.quota.setScale(factor, this.#state.now());
  }

  /** How fast calls go now: latency, and the gap between a stream's tokens. */
  pace(): Pace {
    return this.#state.pace();
  }

  /** Fields not given keep their value; `streamTokenMs: null` spreads deltas over the latency again. */
  setPace(change: PaceChange): void {
    this.#state.setPace(change);
  }

  injectFaults(spec: FaultSpec | FaultSpec[]): void {
    const specs = Array.isArray(spec) ? spec : [spec];
    for (const one of specs) {
      if (one.model !== undefined && !this.#state.config.models.has(one.model)) throw new RangeError(`unknown model ${one.model}`);
    }
    this.#state.faults.add(specs, this.#state.now());
  }

  injectBatchFaults(spec: BatchFaultSpec): void {
    this.#state.batchFaults.add(spec);
  }

  faults(): FaultsView {
    return { faults: this.#state.faults.list(this.#state.now()), batchFaults: this.#state.batchFaults.list() };
  }

  /** Clears interactive and batch faults alike. */
  clearFaults(): void {
    this.#state.faults.clear();
    this.#state.batchFaults.clear();
  }

  /** Clears stats, rate-limit buckets, faults and both prompt caches; limits, pace and batches stay. */
  reset(): void {
    this.#state.reset();
  }
}
