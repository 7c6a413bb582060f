/**
 * Reads both providers' rate-limit headers into one `Observed` shape for `Bucket.sync`, and
 * `retry-after` for cooldowns. Pure: no I/O, and "now" is injectable.
 *
 * Provider headers are input we do not control, so a malformed value is dropped, never thrown:
 * a worker must not fail a call it already paid for because a header changed format.
 */

/** One dimension as a response reports it. */
export interface ObservedLimit {
  /** The provider's limit per minute. */
  limit?: number;
  /** What the provider says is left. */
  remaining?: number;
  /** Milliseconds from the response until the dimension is full again. */
  resetInMs?: number;
  /**
   * How far the true remaining may be above `remaining`. Anthropic rounds token counts to the
   * nearest thousand, so up to 500 tokens of difference are rounding, not usage.
   */
  remainingSlack: number;
}

export interface Observed {
  /** Which header family was seen (undefined: no rate-limit headers at all). */
  provider?: 'anthropic' | 'openai';
  rpm?: ObservedLimit;
  /** Anthropic input tokens/min. */
  itpm?: ObservedLimit;
  /** Anthropic output tokens/min. */
  otpm?: ObservedLimit;
  /** OpenAI tokens/min. */
  tpm?: ObservedLimit;
  /**
   * Anthropic's `anthropic-ratelimit-tokens-*`: the most restrictive of its token limits at that
   * moment, not a limit of its own, so the bucket does not enforce it.
   */
  combinedTokens?: ObservedLimit;
  /** From `retry-after-ms`, else `retry-after` (seconds or an HTTP date). */
  retryAfterMs?: number;
}

export type HeaderSource = Headers | Readonly<Record<string, string | readonly string[] | number | undefined>>;

export interface ParseOptions {
  /**
   * The time to measure absolute dates (Anthropic resets, `retry-after` dates) from, when the
   * response has no `date` header. @default Date.now()
   */
  nowMs?: number;
}

type Get = (name: string) => string | undefined;

function reader(headers: HeaderSource): Get {
  if (typeof (headers as Headers).get === 'function' && typeof (headers as Headers).has === 'function') {
    const h = headers as Headers;
    return (name) => h.get(name) ?? undefined;
  }
  const lower = new Map<string, string>();
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
    const first = Array.isArray(v) ? v[0] : v;
    if (typeof first === 'string' || typeof first === 'number') lower.set(k.toLowerCase(), String(first));
  }
  return (name) => lower.get(name);
}

function nonNegative(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

const DURATION = /^(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 };

/** OpenAI's Go-style durations (`1s`, `6m0s`, `250ms`, `1h2m3.5s`); a bare number is seconds. */
export function parseDurationMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  const seconds = nonNegative(v);
  if (seconds !== undefined) return seconds * 1000;
  if (!DURATION.test(v)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of v.matchAll(DURATION_PART)) ms += Number(amount) * (UNIT_MS[unit as string] ?? 0);
  return ms;
}

/** The response's own clock when it sent one, so provider timestamps are read against it. */
function referenceNow(get: Get, options: ParseOptions): number {
  const date = get('date');
  const parsed = date === undefined ? Number.NaN : Date.parse(date);
  return Number.isFinite(parsed) ? parsed : (options.nowMs ?? Date.now());
}

function untilMs(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

function build(
  limit: number | undefined,
  remaining: number | undefined,
  resetInMs: number | undefined,
  remainingSlack: number,
): ObservedLimit | undefined {
  if (limit === undefined && remaining === undefined && resetInMs === undefined) return undefined;
  const observed: ObservedLimit = { remainingSlack };
  if (limit !== undefined) observed.limit = limit;
  if (remaining !== undefined) observed.remaining = remaining;
  if (resetInMs !== undefined) observed.resetInMs = resetInMs;
  return observed;
}

const ANTHROPIC_TOKEN_ROUNDING = 500;

function anthropic(get: Get, now: number, kind: string, slack: number): ObservedLimit | undefined {
  const h = (field: string) => get(`anthropic-ratelimit-${kind}-${field}`);
  return build(nonNegative(h('limit')), nonNegative(h('remaining')), untilMs(h('reset'), now), slack);
}

function openai(get: Get, kind: string): ObservedLimit | undefined {
  const h = (field: string) => get(`x-ratelimit-${field}-${kind}`);
  return build(nonNegative(h('limit')), nonNegative(h('remaining')), parseDurationMs(h('reset')), 0);
}

/** `retry-after-ms` wins (the SDKs read it first); `retry-after` is seconds or an HTTP date. */
function retryAfter(get: Get, now: number): number | undefined {
  const ms = nonNegative(get('retry-after-ms'));
  if (ms !== undefined) return ms;
  const value = get('retry-after');
  const seconds = nonNegative(value);
  return seconds !== undefined ? seconds * 1000 : untilMs(value, now);
}

export function parseRetryAfterMs(headers: HeaderSource, options: ParseOptions = {}): number | undefined {
  const get = reader(headers);
  return retryAfter(get, referenceNow(get, options));
}

export function parseRateLimitHeaders(headers: HeaderSource, options: ParseOptions = {}): Observed {
  const get = reader(headers);
  const now = referenceNow(get, options);
  const observed: Observed = {};
  const set = <K extends 'rpm' | 'itpm' | 'otpm' | 'tpm' | 'combinedTokens'>(key: K, value: ObservedLimit | undefined) => {
    if (value !== undefined) observed[key] = value;
  };

  set('rpm', anthropic(get, now, 'requests', 0));
  set('itpm', anthropic(get, now, 'input-tokens', ANTHROPIC_TOKEN_ROUNDING));
  set('otpm', anthropic(get, now, 'output-tokens', ANTHROPIC_TOKEN_ROUNDING));
  set('combinedTokens', anthropic(get, now, 'tokens', ANTHROPIC_TOKEN_ROUNDING));
  if (Object.keys(observed).length > 0) {
    observed.provider = 'anthropic';
  } else {
    set('rpm', openai(get, 'requests'));
    set('tpm', openai(get, 'tokens'));
    if (Object.keys(observed).length > 0) observed.provider = 'openai';
  }

  const retryAfterMs = retryAfter(get, now);
  if (retryAfterMs !== undefined) observed.retryAfterMs = retryAfterMs;
  return observed;
}
