/**
 * @headroom/simulator: a wire-faithful Anthropic + OpenAI HTTP server with the providers' rate
 * limits enforced (per api key and model pool, continuous token buckets), their headers on every
 * response, prompt caching, both batch APIs, and fault injection. Point the official SDKs at it.
 *
 * @example
 * ```ts
 * import Anthropic from '@anthropic-ai/sdk';
 * import { startSimulator } from '@headroom/simulator';
 *
 * const sim = await startSimulator({ models: { 'claude-sonnet-4-6': { provider: 'anthropic', limits: { rpm: 50, itpm: 30_000, otpm: 8_000 } } } });
 * const client = new Anthropic({ apiKey: 'sk-test', baseURL: sim.url, maxRetries: 0 }); // OpenAI: baseURL sim.url + '/v1'
 * await client.messages.create({ model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: 'Hi' }] });
 * sim.injectFaults({ model: 'claude-sonnet-4-6', status: 529, count: 3 });
 * sim.injectFaults({ overloaded: true, probability: 0.5, durationMs: 40_000 }); // a 40 s overload window
 * sim.scaleLimits(0.5); // brownout
 * sim.setPace({ streamTokenMs: 50 }); // streams send a token every 50 ms
 * console.log(sim.stats().models['claude-sonnet-4-6']);
 * await sim.close();
 * ```
 *
 * Other processes use the same controls over HTTP: `GET /_sim/stats`, `GET|POST /_sim/limits`,
 * `GET|POST /_sim/pace`, `GET|POST|DELETE /_sim/faults`, `POST /_sim/batch-faults`, `POST /_sim/reset`.
 */

import { Controls, type FaultsView, type LimitsView, type ModelLimitsView } from './internal/controls.js';
import type { BatchFaultSpec, FaultSpec, FaultStatus } from './internal/faults.js';
import { DEFAULT_MODELS, type ModelConfig, type ModelLimits, type Provider, type SimulatorOptions, withDefaults } from './internal/options.js';
import { startServer } from './internal/server.js';
import { type Pace, type PaceChange, SimulatorState } from './internal/state.js';
import type { AdmissionRecord, BatchStats, ModelStats, SimulatorStats } from './internal/stats.js';
import { loadTokenizer } from './internal/tokenizer.js';

export interface Simulator {
  /** `http://127.0.0.1:PORT`: Anthropic's baseURL as is, OpenAI's with `/v1` appended. */
  readonly url: string;
  readonly port: number;
  stats(): SimulatorStats;
  /** The limits in force, per model. */
  limits(): LimitsView;
  /** Changes the limits of a model's pool (every model sharing it), effective at once; fields not given keep their value. */
  setLimits(model: string, limits: Partial<ModelLimits>): void;
  /** Scales all configured limits by `factor` (0.5 halves them; 1 restores them). */
  scaleLimits(factor: number): void;
  /** How fast calls go now: `{ latencyMs: { min, max }, streamTokenMs }` (null: deltas spread over the latency). */
  pace(): Pace;
  /**
   * Changes how fast calls go, effective for calls from now on, and for the rest of running
   * streams' tokens; fields not given keep their value. Kept across reset(), as limits are.
   */
  setPace(change: PaceChange): void;
  /** Arms one or more faults (all or none); see FaultSpec for when each strikes. */
  injectFaults(spec: FaultSpec | FaultSpec[]): void;
  /** Makes entries of batches created from now on come back errored or expired. */
  injectBatchFaults(spec: BatchFaultSpec): void;
  /** The faults still armed. */
  faults(): FaultsView;
  /** Disarms every interactive and batch fault. */
  clearFaults(): void;
  /** Clears stats, rate-limit buckets, faults and both prompt caches. Limits, pace and batches stay. */
  reset(): void;
  close(): Promise<void>;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const config = withDefaults(options);
  loadTokenizer();
  const state = new SimulatorState(config);
  const controls = new Controls(state);
  const running = await startServer(state, controls, config.port);
  return {
    url: running.url,
    port: Number(new URL(running.url).port),
    stats: () => controls.stats(),
    limits: () => controls.limits(),
    setLimits: (model, limits) => controls.setLimits(model, limits),
    scaleLimits: (factor) => controls.scaleLimits(factor),
    pace: () => controls.pace(),
    setPace: (change) => controls.setPace(change),
    injectFaults: (spec) => controls.injectFaults(spec),
    injectBatchFaults: (spec) => controls.injectBatchFaults(spec),
    faults: () => controls.faults(),
    clearFaults: () => controls.clearFaults(),
    reset: () => controls.reset(),
    close: () => running.close(),
  };
}

export { DEFAULT_MODELS };
export type {
  AdmissionRecord,
  BatchFaultSpec,
  BatchStats,
  FaultSpec,
  FaultStatus,
  FaultsView,
  LimitsView,
  ModelConfig,
  ModelLimits,
  ModelLimitsView,
  ModelStats,
  Pace,
  PaceChange,
  Provider,
  SimulatorOptions,
  SimulatorStats,
};
