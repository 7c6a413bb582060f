/**
 * Input-token estimates for the bucket reservation, made before the call, plus a margin learned
 * from what providers report afterwards.
 *
 * No local tokenizer matches Claude's, and OpenAI adds framing we can only approximate, so the
 * raw count is `o200k_base` (exact for OpenAI text, fast) over every part of the prompt the
 * provider bills, and `TokenEstimator` learns, per model, how far reality runs above it. The
 * reservation is `ceil(estimate * max(1, upper ratio))`: a model that is under-estimated gets a
 * wider margin after a few calls, and settling replaces the reservation with the reported usage
 * anyway, so the margin only has to keep the fleet from overdrawing between acquire and settle.
 *
 * ```ts
 * const estimator = new TokenEstimator();
 * const { estimate, reserve } = estimator.reserveFor(model, job.request, job.provider);
 * // ...bucket.acquire(reserve), call, then:
 * estimator.observe(model, estimate, promptTokensOf(job.provider, result.usage), result.usage.outputTokens);
 * ```
 */
import type { Provider, Usage } from '@headroom/queue';
import { estimateInputTokens } from '@headroom/queue/token-count';
import type { ProviderRequest } from '../providers/types.js';

export {
  ANTHROPIC_IMAGE_TOKENS,
  ANTHROPIC_TOOLS_SYSTEM_TOKENS,
  DOCUMENT_PAGE_TOKENS,
  estimateInputTokens,
  estimateOutputTokens,
  OPENAI_IMAGE_TOKENS,
  OPENAI_LOW_DETAIL_IMAGE_TOKENS,
  PER_MESSAGE_TOKENS,
  REPLY_PRIMING_TOKENS,
} from '@headroom/queue/token-count';

/**
 * The whole prompt as the provider counted it, which is what an estimate is compared with.
 * Anthropic reports cache reads and writes beside `input_tokens`; OpenAI's `prompt_tokens`
 * (`inputTokens`) already include its cached tokens.
 */
export function promptTokensOf(provider: Provider, usage: Usage): number {
  return provider === 'openai' ? usage.inputTokens : usage.inputTokens + usage.cacheReadInputTokens + usage.cacheCreationInputTokens;
}

// ---- Learned margin ----------------------------------------------------------------------

export interface TokenEstimatorOptions {
  /** Weight of each new sample in the moving averages (≈ 2/(N+1) for an N-call memory). @default 0.05 */
  alpha?: number;
  /** Standard deviations above the mean ratio that the reservation covers. @default 2 */
  sigmas?: number;
  /** Samples a model needs before its learned ratio replaces the prior. @default 5 */
  minSamples?: number;
  /**
   * The ratio (actual / estimate) assumed for a model not yet learned. Claude's tokenizer yields
   * more tokens than o200k for the same text; OpenAI's is o200k itself.
   * @default { anthropic: 1.2, openai: 1.05 }
   */
  priorRatio?: Partial<Record<Provider, number>>;
  /** Actual output tokens remembered per model for the p95. @default 256 */
  outputWindow?: number;
}

export interface TokenEstimate {
  /** The raw `o200k_base` estimate: pass it back to `observe` with the reported usage. */
  estimate: number;
  /** What to reserve against input tokens/min. */
  reserve: number;
  /** The ratio applied (>= 1). */
  ratio: number;
}

export interface EstimatorStats {
  model: string;
  samples: number;
  /** Moving average of actual / estimate. */
  meanRatio: number;
  /** The learned upper ratio (mean + sigmas * stddev, at least 1); reservations use it from `minSamples` on. */
  upperRatio: number;
  /** Moving average of |actual - estimate| / actual, in percent (the raw estimate's error). */
  meanAbsErrorPct: number;
  /** Share of calls, once the model was learned, whose actual input exceeded the learned reservation, in percent. */
  underReservedPct: number;
  /** p95 of actual output tokens over the window, once there are enough samples. */
  outputP95?: number;
}

interface ModelStats {
  n: number;
  mean: number;
  variance: number;
  absErrorPct: number;
  /** Samples observed once the model was learned, and how many of those the reservation missed. */
  judged: number;
  under: number;
  maxRatio: number;
  outputs: number[];
  outputNext: number;
  outputP95: number | undefined;
  outputDirty: boolean;
}

function newStats(): ModelStats {
  return { n: 0, mean: 0, variance: 0, absErrorPct: 0, judged: 0, under: 0, maxRatio: 0, outputs: [], outputNext: 0, outputP95: undefined, outputDirty: false };
}

/**
 * Per-model learned margin over `estimateInputTokens`, and a p95 of actual output for
 * `dispatch.outputReservation: 'p95'`. Process-local: each worker learns from its own calls,
 * which converge on the same ratio because they serve the same traffic.
 */
export class TokenEstimator {
  readonly #alpha: number;
  readonly #sigmas: number;
  readonly #minSamples: number;
  readonly #prior: Record<Provider, number>;
  readonly #outputWindow: number;
  readonly #models = new Map<string, ModelStats>();

  constructor(options: TokenEstimatorOptions = {}) {
    this.#alpha = options.alpha ?? 0.05;
    this.#sigmas = options.sigmas ?? 2;
    this.#minSamples = options.minSamples ?? 5;
    this.#prior = { anthropic: 1.2, openai: 1.05, ...options.priorRatio };
    this.#outputWindow = options.outputWindow ?? 256;
    if (!(this.#alpha > 0 && this.#alpha <= 1)) throw new RangeError('alpha must be in (0, 1]');
    if (!(this.#outputWindow > 0)) throw new RangeError('outputWindow must be positive');
  }

  /** The raw estimate for a request (no margin). */
  estimate(request: ProviderRequest): number {
    return estimateInputTokens(request);
  }

  /**
   * The ratio a reservation for `model` applies now. Until the model is learned: its provider's
   * prior (the largest prior when the provider is not given), and never below the worst ratio
   * already seen.
   */
  ratioFor(model: string, provider?: Provider): number {
    const s = this.#models.get(model);
    if (s === undefined || s.n < this.#minSamples) {
      const prior = provider === undefined ? Math.max(...Object.values(this.#prior)) : this.#prior[provider];
      return Math.max(1, prior, s?.maxRatio ?? 0);
    }
    return Math.max(1, s.mean + this.#sigmas * Math.sqrt(s.variance));
  }

  /**
   * The reservation, `ceil(estimate * max(1, learned upper ratio))`, and the raw estimate, which
   * is what `observe` must be given back (learning from the reservation would feed the margin
   * into itself).
   */
  reserveFor(model: string, request: ProviderRequest, provider?: Provider): TokenEstimate {
    const estimate = estimateInputTokens(request);
    const ratio = this.ratioFor(model, provider);
    return { estimate, reserve: Math.ceil(estimate * ratio), ratio };
  }

  /**
   * Learns from one call. `estimated` is `reserveFor(...).estimate` (not the reservation);
   * `actualInput` is the whole prompt as counted (`promptTokensOf`), since the estimate covers
   * the whole prompt whatever the cache did with it. `actualOutput`, when given, feeds the output
   * p95: one choice's output (the call's over its `n`), so a call asking for 8 choices neither
   * teaches 8x to the calls asking for one nor is reserved as one (`outputReserveFor`).
   */
  observe(model: string, estimated: number, actualInput: number, actualOutput?: number): void {
    if (actualOutput !== undefined) this.observeOutput(model, actualOutput);
    if (!(estimated > 0) || !(actualInput >= 0)) return;
    const s = this.#stats(model);
    const ratio = actualInput / estimated;
    // The reservation this call would have got, judged before the sample moves the ratio.
    if (s.n >= this.#minSamples) {
      s.judged += 1;
      if (actualInput > Math.ceil(estimated * Math.max(1, s.mean + this.#sigmas * Math.sqrt(s.variance)))) s.under += 1;
    }
    s.n += 1;
    // 1/n for the first samples makes the averages exact means until alpha takes over.
    const a = Math.max(this.#alpha, 1 / s.n);
    const diff = ratio - s.mean;
    const step = a * diff;
    s.mean += step;
    s.variance = s.n === 1 ? 0 : (1 - a) * (s.variance + diff * step);
    const absErrorPct = actualInput === 0 ? 0 : (Math.abs(actualInput - estimated) / actualInput) * 100;
    s.absErrorPct += a * (absErrorPct - s.absErrorPct);
    if (ratio > s.maxRatio) s.maxRatio = ratio;
  }

  /** Learns one call's actual output tokens, for the p95 output reservation. */
  observeOutput(model: string, outputTokens: number): void {
    if (!(outputTokens >= 0)) return;
    const s = this.#stats(model);
    if (s.outputs.length < this.#outputWindow) s.outputs.push(outputTokens);
    else s.outputs[s.outputNext] = outputTokens;
    s.outputNext = (s.outputNext + 1) % this.#outputWindow;
    s.outputDirty = true;
  }

  /** p95 of the model's recent actual output tokens; undefined until `minSamples` are seen. */
  outputP95(model: string): number | undefined {
    const s = this.#models.get(model);
    if (s === undefined || s.outputs.length < this.#minSamples) return undefined;
    if (s.outputDirty) {
      const sorted = [...s.outputs].sort((x, y) => x - y);
      s.outputP95 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
      s.outputDirty = false;
    }
    return s.outputP95;
  }

  /**
   * What to reserve against output tokens/min under `outputReservation: 'p95'`: the learned p95
   * for each of the call's `choices` (OpenAI's `n`: the outputs are learned per choice, see
   * `observe`), never above the request's bound for all of them (the provider can never exceed
   * it), and the bound itself until the model is learned.
   */
  outputReserveFor(model: string, maxTokens: number, choices = 1): number {
    const p95 = this.outputP95(model);
    return p95 === undefined ? maxTokens : Math.min(maxTokens, Math.max(1, Math.ceil(p95 * choices)));
  }

  /** Error figures per model, for metrics and the dashboard. */
  stats(): EstimatorStats[] {
    return [...this.#models.entries()].map(([model, s]) => {
      const p95 = this.outputP95(model);
      return {
        model,
        samples: s.n,
        meanRatio: s.mean,
        upperRatio: s.n === 0 ? 1 : Math.max(1, s.mean + this.#sigmas * Math.sqrt(s.variance)),
        meanAbsErrorPct: s.absErrorPct,
        underReservedPct: s.judged === 0 ? 0 : (s.under / s.judged) * 100,
        ...(p95 === undefined ? {} : { outputP95: p95 }),
      };
    });
  }

  #stats(model: string): ModelStats {
    let s = this.#models.get(model);
    if (s === undefined) {
      s = newStats();
      this.#models.set(model, s);
    }
    return s;
  }
}
