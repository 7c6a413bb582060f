// Simulator options in three steps: SimulatorOptions (all optional) -> withDefaults() -> SimulatorResolved.

export type Provider = 'anthropic' | 'openai';

/** Per-minute limits. Anthropic uses rpm/itpm/otpm, OpenAI rpm/tpm; other fields are ignored. */
export interface ModelLimits {
  rpm: number;
  itpm?: number;
  otpm?: number;
  tpm?: number;
}

export interface ModelConfig {
  provider: Provider;
  limits: ModelLimits;
  /** Largest `max_tokens` the model accepts; above it the request is a 400, as on the real API. */
  maxOutputTokens?: number;
  /** Prompt tokens the model accepts; a longer prompt is a 400. */
  contextWindow?: number;
}

export interface SimulatorOptions {
  /** @default 0 (a free port), always bound to 127.0.0.1 */
  port?: number;
  /** @default DEFAULT_MODELS */
  models?: Record<string, ModelConfig>;
  /**
   * Models that share one limit (Anthropic limits are per model class). A pool takes the limits of
   * its first listed model. @default each model its own pool
   */
  pools?: Record<string, string[]>;
  /**
   * Simulated time a call takes; for a stream, the time until its first delta when
   * `streamTokenMs` is set. Changeable at runtime with `setPace`. @default { min: 5, max: 20 }
   */
  latencyMs?: number | { min: number; max: number };
  /**
   * Delay between a stream's output tokens (one delta each): a stream of n tokens then takes
   * `latencyMs + n * streamTokenMs`. Unset, a stream's deltas are spread evenly over `latencyMs`,
   * so streamed and plain calls take the same time. Changeable at runtime with `setPace`, which
   * running streams follow from their next token. @default unset
   */
  streamTokenMs?: number;
  /** How long a batch stays in progress before it ends. @default 2000 */
  batchCompletionMs?: number;
  /** When given, any other key is refused with 401. @default any non-empty key */
  apiKeys?: string[];
  /**
   * Length of a generated answer in tokens, before clipping to `max_tokens`; chosen from the
   * request hash when a range. @default { min: 8, max: 300 }
   */
  outputTokens?: number | { min: number; max: number };
  /** Admission log entries kept in stats. @default 100_000 */
  admissionLogSize?: number;
  /** Clock in ms, injectable so tests of timing logic can be exact. @default Date.now */
  clock?: () => number;
  /** Random source for latency and probabilistic faults. @default Math.random */
  random?: () => number;
}

export interface Range {
  min: number;
  max: number;
}

export interface ResolvedModel {
  name: string;
  provider: Provider;
  pool: string;
  maxOutputTokens: number;
  contextWindow: number;
}

export interface SimulatorResolved {
  port: number;
  models: Map<string, ResolvedModel>;
  /** Configured (unscaled) limits per pool. */
  poolLimits: Map<string, ModelLimits>;
  latencyMs: Range;
  streamTokenMs: number | null;
  batchCompletionMs: number;
  apiKeys: Set<string> | null;
  outputTokens: Range;
  admissionLogSize: number;
  clock: () => number;
  random: () => number;
}

// Tier-2-like limits: large enough that the demo runs freely, small enough that a burst can hit them.
export const DEFAULT_MODELS: Readonly<Record<string, ModelConfig>> = {
  'claude-sonnet-4-6': {
    provider: 'anthropic',
    limits: { rpm: 1000, itpm: 450_000, otpm: 90_000 },
    maxOutputTokens: 64_000,
    contextWindow: 200_000,
  },
  'claude-haiku-4-5': {
    provider: 'anthropic',
    limits: { rpm: 1000, itpm: 450_000, otpm: 90_000 },
    maxOutputTokens: 64_000,
    contextWindow: 200_000,
  },
  'claude-opus-4-6': {
    provider: 'anthropic',
    limits: { rpm: 1000, itpm: 450_000, otpm: 90_000 },
    maxOutputTokens: 128_000,
    contextWindow: 200_000,
  },
  'gpt-4.1': {
    provider: 'openai',
    limits: { rpm: 5000, tpm: 450_000 },
    maxOutputTokens: 32_768,
    contextWindow: 1_047_576,
  },
  'gpt-4.1-mini': {
    provider: 'openai',
    limits: { rpm: 5000, tpm: 2_000_000 },
    maxOutputTokens: 32_768,
    contextWindow: 1_047_576,
  },
  'gpt-4o-mini': {
    provider: 'openai',
    limits: { rpm: 5000, tpm: 2_000_000 },
    maxOutputTokens: 16_384,
    contextWindow: 128_000,
  },
};

export function toRange(value: number | Range | undefined, fallback: Range, name: string): Range {
  const range = value === undefined ? fallback : typeof value === 'number' ? { min: value, max: value } : value;
  if (!(range.min >= 0) || !(range.max >= range.min)) {
    throw new RangeError(`${name} must be a number >= 0 or { min, max } with 0 <= min <= max`);
  }
  return range;
}

export function checkStreamTokenMs(value: number | null): number | null {
  if (value !== null && !(value >= 0 && Number.isFinite(value))) throw new RangeError('streamTokenMs must be a finite number >= 0 (or null to spread over latencyMs)');
  return value;
}

export function checkLimits(model: string, limits: ModelLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    if (value !== undefined && !(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
      throw new RangeError(`limits.${name} of ${model} must be a positive number, got ${String(value)}`);
    }
  }
}

export function withDefaults(options: SimulatorOptions = {}): SimulatorResolved {
  const modelConfigs = options.models ?? DEFAULT_MODELS;
  const poolOf = new Map<string, string>();
  for (const [pool, members] of Object.entries(options.pools ?? {})) {
    for (const model of members) {
      if (!(model in modelConfigs)) throw new RangeError(`pool ${pool} names unknown model ${model}`);
      if (poolOf.has(model)) throw new RangeError(`model ${model} is in two pools`);
      poolOf.set(model, pool);
    }
  }

  const models = new Map<string, ResolvedModel>();
  const poolLimits = new Map<string, ModelLimits>();
  for (const [name, config] of Object.entries(modelConfigs)) {
    checkLimits(name, config.limits);
    const pool = poolOf.get(name) ?? name;
    const openai = config.provider === 'openai';
    models.set(name, {
      name,
      provider: config.provider,
      pool,
      maxOutputTokens: config.maxOutputTokens ?? (openai ? 16_384 : 64_000),
      contextWindow: config.contextWindow ?? (openai ? 128_000 : 200_000),
    });
    if (pool === name) poolLimits.set(pool, { ...config.limits });
  }
  for (const [pool, members] of Object.entries(options.pools ?? {})) {
    const head = members[0];
    if (head === undefined) throw new RangeError(`pool ${pool} is empty`);
    poolLimits.set(pool, { ...(modelConfigs[head] as ModelConfig).limits });
    const providers = new Set(members.map((m) => models.get(m)?.provider));
    if (providers.size > 1) throw new RangeError(`pool ${pool} mixes providers`);
  }

  const batchCompletionMs = options.batchCompletionMs ?? 2000;
  if (!(batchCompletionMs >= 0)) throw new RangeError('batchCompletionMs must be >= 0');
  const apiKeys = options.apiKeys ? new Set(options.apiKeys) : null;
  if (apiKeys?.has('')) throw new RangeError('apiKeys must not contain an empty key');

  return {
    port: options.port ?? 0,
    models,
    poolLimits,
    latencyMs: toRange(options.latencyMs, { min: 5, max: 20 }, 'latencyMs'),
    streamTokenMs: checkStreamTokenMs(options.streamTokenMs ?? null),
    batchCompletionMs,
    apiKeys,
    outputTokens: toRange(options.outputTokens, { min: 8, max: 300 }, 'outputTokens'),
    admissionLogSize: options.admissionLogSize ?? 100_000,
    clock: options.clock ?? Date.now,
    random: options.random ?? Math.random,
  };
}
