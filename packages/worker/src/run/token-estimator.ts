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
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { ProviderRequest } from '../providers/types.js';

// User text may contain strings such as `<|endoftext|>`; the provider bills them as text, and the
// tokenizer's default is to throw on them.
const AS_PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** Chat framing per message (role markers), as OpenAI documents it for its chat models. */
export const PER_MESSAGE_TOKENS = 3;
/** Tokens that prime the assistant's reply. */
export const REPLY_PRIMING_TOKENS = 3;
/**
 * An image whose pixels we do not decode. Anthropic bills about (width * height) / 750 and
 * downsizes anything above ~1.15 megapixels, so 1,600 is its ceiling: an upper bound, never an
 * under-estimate.
 */
export const ANTHROPIC_IMAGE_TOKENS = 1600;
/**
 * OpenAI bills images in 512px tiles: 85 base + 170 per tile. 765 is a 1024x1024 image at
 * `detail: high`/`auto` (the common case); `detail: low` is a flat 85.
 */
export const OPENAI_IMAGE_TOKENS = 765;
export const OPENAI_LOW_DETAIL_IMAGE_TOKENS = 85;
/**
 * Anthropic turns each PDF page into text plus a page image: 1,500-3,000 tokens a page by its
 * docs. Pages we cannot count (URL / file sources, compressed page trees) count as one.
 */
export const DOCUMENT_PAGE_TOKENS = 2000;
/** Anthropic's hidden tool-use system prompt when `tools` is set (346 on Claude 4.x, rounded up). */
export const ANTHROPIC_TOOLS_SYSTEM_TOKENS = 350;

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (s: unknown): number => (typeof s === 'string' && s.length > 0 ? countTokens(s, AS_PLAIN_TEXT) : 0);
const json = (v: unknown): number => (v === undefined ? 0 : text(JSON.stringify(v)));

function pdfPages(base64: string): number {
  // Only the uncompressed page tree is visible without a PDF parser; one page at least.
  const body = Buffer.from(base64, 'base64').toString('latin1');
  const pages = body.match(/\/Type\s*\/Page(?![a-zA-Z])/g)?.length ?? 0;
  return Math.max(1, pages);
}

// Anthropic content blocks and OpenAI content parts share one walker: their `type`s are
// disjoint but for `text`, which both bill the same way. So a request is counted by its shape,
// and the caller need not say which dialect it is.
function blockTokens(block: unknown): number {
  if (!isRecord(block)) return text(block);
  switch (block.type) {
    case 'text':
    case 'input_text':
      return text(block.text);
    case 'refusal':
      return text(block.refusal);
    case 'image':
      return ANTHROPIC_IMAGE_TOKENS;
    case 'image_url': {
      const detail = isRecord(block.image_url) ? block.image_url.detail : undefined;
      return detail === 'low' ? OPENAI_LOW_DETAIL_IMAGE_TOKENS : OPENAI_IMAGE_TOKENS;
    }
    case 'document': {
      const source = isRecord(block.source) ? block.source : {};
      if (source.type === 'text') return text(source.data);
      if (source.type === 'content') return contentTokens(source.content);
      if (source.type === 'base64' && typeof source.data === 'string') return pdfPages(source.data) * DOCUMENT_PAGE_TOKENS;
      return DOCUMENT_PAGE_TOKENS;
    }
    case 'tool_use':
    case 'server_tool_use':
      return text(block.name) + json(block.input);
    case 'tool_result':
      return PER_MESSAGE_TOKENS + contentTokens(block.content);
    case 'thinking':
      return text(block.thinking);
    case 'redacted_thinking':
      // Encrypted; Anthropic drops earlier turns' thinking from the prompt anyway.
      return 0;
    default:
      return json(block);
  }
}

function contentTokens(content: unknown): number {
  if (typeof content === 'string') return text(content);
  if (!Array.isArray(content)) return 0;
  let total = 0;
  for (const block of content) total += blockTokens(block);
  return total;
}

/**
 * The raw `o200k_base` estimate of a request's input tokens (Anthropic Messages or OpenAI Chat
 * Completions): every billed part of the prompt plus framing. Pure; runs once per job on the
 * dispatch path.
 */
export function estimateInputTokens(request: ProviderRequest): number {
  const body = request as unknown as Json;
  let total = REPLY_PRIMING_TOKENS;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    // Anthropic tools carry `input_schema`; OpenAI's are `{type:'function', function}`.
    if (body.tools.some((t) => isRecord(t) && t.function === undefined)) total += ANTHROPIC_TOOLS_SYSTEM_TOKENS;
    for (const tool of body.tools) total += json(tool);
  }
  if (Array.isArray(body.functions)) for (const fn of body.functions) total += json(fn);
  // A structured-output schema is sent to the model as part of the prompt.
  if (isRecord(body.response_format) && body.response_format.type === 'json_schema') total += json(body.response_format.json_schema);
  if (body.system !== undefined && body.system !== '') total += PER_MESSAGE_TOKENS + contentTokens(body.system);
  const messages = Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    total += PER_MESSAGE_TOKENS + text(message.role) + contentTokens(message.content);
    if (typeof message.name === 'string') total += 1 + text(message.name);
    if (message.tool_calls !== undefined) total += json(message.tool_calls);
  }
  return total;
}

/**
 * Tokens in output text: what a stream cut short had produced, counted the way input is estimated
 * (no provider reports it before a stream's end).
 */
export function estimateOutputTokens(text: string): number {
  return text === '' ? 0 : countTokens(text, AS_PLAIN_TEXT);
}

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
   * the whole prompt whatever the cache did with it. `actualOutput`, when given, feeds the output p95.
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
   * What to reserve against output tokens/min under `outputReservation: 'p95'`: the learned p95,
   * never above the request's bound (the provider can never exceed it), and the bound itself
   * until the model is learned.
   */
  outputReserveFor(model: string, maxTokens: number): number {
    const p95 = this.outputP95(model);
    return p95 === undefined ? maxTokens : Math.min(maxTokens, Math.max(1, p95));
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
