// Fault injection. Status faults (429/5xx, spend caps, billing) strike before admission and spend
// no quota, as a provider that refuses or falls over does. Transport faults (malformed body, cut
// connection) strike after the call was admitted and processed: the quota is spent and the client
// never sees the answer, which is what makes them nasty. A mid-call overload strikes after
// admission too, before the answer's first token: a stream has its 200 head and opening events,
// then the provider's error inside it; the call is given back, as an overload's is.

import { sha256 } from './answer.js';
import type { Provider } from './options.js';

/** A provider's refusal of the request (4xx), its rate limit, or its failure (5xx, Anthropic's 529). */
export type FaultStatus = ClientFaultStatus | 429 | 500 | 502 | 503 | 529;
export type ClientFaultStatus = 400 | 401 | 403 | 404 | 413;

export interface FaultSpec {
  /** Only calls to this model; every model when absent. */
  model?: string;
  /**
   * HTTP status of a status fault, sent as given to either provider (a 529 to an OpenAI model is
   * not something OpenAI sends; use `overloaded` for each provider's own overload answer).
   * Required unless `malformed`, `cut`, `stall`, `hang`, `spendCap`, `billing` or `overloaded` is set.
   */
  status?: FaultStatus;
  /** Strike this many matching calls, then retire. Unbounded when absent. */
  count?: number;
  /** Strike each matching call with this probability. @default 1 */
  probability?: number;
  /** Strike only from this long after the fault is injected. @default 0 */
  fromMs?: number;
  /** Strike only for this long (from `fromMs`), then retire. Unbounded when absent. */
  durationMs?: number;
  /**
   * The provider's monthly spend cap, a 429 without `retry-after` that waiting does not clear.
   * Anthropic: `rate_limit_error` with `details.error_code: enforced_spend_limit_reached`;
   * OpenAI: `insufficient_quota`.
   */
  spendCap?: boolean;
  /** A billing problem: Anthropic 402 `billing_error`; OpenAI 429 `insufficient_quota`. */
  billing?: boolean;
  /** The provider is overloaded: Anthropic 529 `overloaded_error`; OpenAI 503. */
  overloaded?: boolean;
  /**
   * With `overloaded`: the overload strikes after the call was admitted, before its first token. A
   * stream gets its head and opening events, then the error in the stream (Anthropic `event: error`
   * with `overloaded_error`; Chat Completions a `{"error": ...}` chunk after the role chunk;
   * Responses an `error` event, `server_is_overloaded`); a plain call the 529 / 503 after its
   * latency. Nothing is charged but the request.
   */
  midCall?: boolean;
  /** `retry-after` of an injected (rate-limit) 429. @default 1 */
  retryAfterSeconds?: number;
  /**
   * A rate-limit 429 with no `retry-after` (nor `retry-after-ms`): the client has only the reset
   * headers, which say requests are exhausted until `resetMs` from now. Only with `status: 429`.
   */
  omitRetryAfter?: boolean;
  /** With `omitRetryAfter`: when the reset headers say requests free up. @default retryAfterSeconds * 1000 */
  resetMs?: number;
  /** 200 with a body that is not valid JSON. */
  malformed?: boolean;
  /** The socket is destroyed half-way through the response. */
  cut?: boolean;
  /**
   * No response at all: the request is held, no head sent, until the client leaves (a provider or
   * a load balancer that hangs). Struck after admission and given up, as a mid-call overload is:
   * only the request is charged.
   */
  hang?: boolean;
  /**
   * The response stops half-way through its body or stream and the connection stays open, silent,
   * until the client leaves: a provider (or a proxy) that stalls mid-answer. Charged as a cut.
   */
  stall?: boolean;
}

export type FaultAction =
  | { kind: 'server'; status: Exclude<FaultStatus, 429 | ClientFaultStatus> }
  /** The provider refuses the request: bad request, key, permission, model, size. */
  | { kind: 'client'; status: ClientFaultStatus }
  /** `retryAfterSeconds` null: no retry-after, and requests read exhausted until `resetMs` from now. */
  | { kind: 'rate-limit'; retryAfterSeconds: number | null; resetMs: number }
  | { kind: 'spend-cap' }
  | { kind: 'billing' }
  | { kind: 'overloaded' }
  | { kind: 'malformed' }
  | { kind: 'cut' }
  | { kind: 'stall' }
  | { kind: 'hang' }
  | { kind: 'overloaded-mid-call' };

export type StatusFaultAction = Exclude<FaultAction, { kind: 'malformed' | 'cut' | 'stall' | 'hang' | 'overloaded-mid-call' }>;
export type TransportFaultAction = Extract<FaultAction, { kind: 'malformed' | 'cut' | 'stall' | 'hang' | 'overloaded-mid-call' }>;

export type FaultStage = 'before-admission' | 'after-admission';

interface Rule {
  spec: FaultSpec;
  action: FaultAction;
  remaining: number;
  /** The window, in simulator-clock ms. */
  from: number;
  until: number;
}

const CLIENT_STATUSES: readonly number[] = [400, 401, 403, 404, 413];
const STATUSES: readonly number[] = [...CLIENT_STATUSES, 429, 500, 502, 503, 529];

function nonNegative(value: number | undefined, name: string): void {
  if (value !== undefined && !(value >= 0 && Number.isFinite(value))) throw new RangeError(`fault ${name} must be a finite number >= 0`);
}

export function toFaultAction(spec: FaultSpec): FaultAction {
  if (spec.cut) return { kind: 'cut' };
  if (spec.stall) return { kind: 'stall' };
  if (spec.hang) return { kind: 'hang' };
  if (spec.malformed) return { kind: 'malformed' };
  if (spec.midCall && !spec.overloaded) throw new RangeError('midCall is for an overloaded fault');
  const kinds = [spec.spendCap, spec.billing, spec.overloaded].filter(Boolean).length;
  if (kinds > 1) throw new RangeError('a fault is one of spendCap, billing or overloaded');
  if (spec.spendCap) {
    if (spec.status !== undefined && spec.status !== 429) throw new RangeError('a spendCap fault is a 429');
    return { kind: 'spend-cap' };
  }
  if (spec.billing || spec.overloaded) {
    if (spec.status !== undefined) throw new RangeError('a billing or overloaded fault takes its status from the provider; leave status out');
    return spec.billing ? { kind: 'billing' } : spec.midCall ? { kind: 'overloaded-mid-call' } : { kind: 'overloaded' };
  }
  const { status } = spec;
  if (status === undefined || !STATUSES.includes(status)) {
    throw new RangeError(`fault status must be one of ${STATUSES.join(', ')} (or set malformed, cut, stall, hang, spendCap, billing or overloaded)`);
  }
  if ((spec.omitRetryAfter || spec.resetMs !== undefined) && status !== 429) throw new RangeError('omitRetryAfter and resetMs are for a 429');
  if (spec.resetMs !== undefined && !spec.omitRetryAfter) throw new RangeError('resetMs only applies with omitRetryAfter');
  nonNegative(spec.retryAfterSeconds, 'retryAfterSeconds');
  nonNegative(spec.resetMs, 'resetMs');
  if (CLIENT_STATUSES.includes(status)) return { kind: 'client', status: status as ClientFaultStatus };
  if (status !== 429) return { kind: 'server', status: status as Exclude<FaultStatus, 429 | ClientFaultStatus> };
  const retryAfterSeconds = spec.retryAfterSeconds ?? 1;
  return spec.omitRetryAfter
    ? { kind: 'rate-limit', retryAfterSeconds: null, resetMs: spec.resetMs ?? retryAfterSeconds * 1000 }
    : { kind: 'rate-limit', retryAfterSeconds, resetMs: retryAfterSeconds * 1000 };
}

/** The HTTP status a provider answers a status fault with. */
export function faultStatus(action: StatusFaultAction, provider: Provider): number {
  switch (action.kind) {
    case 'server':
    case 'client':
      return action.status;
    case 'rate-limit':
    case 'spend-cap':
      return 429;
    case 'billing':
      return provider === 'anthropic' ? 402 : 429;
    case 'overloaded':
      return provider === 'anthropic' ? 529 : 503;
  }
}

/** The key a fault is counted under in `faultsInjected`: what the client saw. */
export function faultLabel(action: FaultAction, provider: Provider): string {
  switch (action.kind) {
    case 'malformed':
    case 'cut':
    case 'stall':
    case 'hang':
      return action.kind;
    case 'overloaded-mid-call':
      return `${faultStatus({ kind: 'overloaded' }, provider)}-mid-call`;
    case 'spend-cap':
      return '429-spend-cap';
    case 'billing':
      return `${faultStatus(action, provider)}-billing`;
    default:
      return String(faultStatus(action, provider));
  }
}

function toRule(spec: FaultSpec, now: number): Rule {
  const action = toFaultAction(spec);
  if (spec.count !== undefined && !(Number.isInteger(spec.count) && spec.count > 0)) {
    throw new RangeError('fault count must be a positive integer');
  }
  if (spec.probability !== undefined && !(spec.probability >= 0 && spec.probability <= 1)) {
    throw new RangeError('fault probability must be within [0, 1]');
  }
  nonNegative(spec.fromMs, 'fromMs');
  if (spec.durationMs !== undefined && !(spec.durationMs > 0 && Number.isFinite(spec.durationMs))) {
    throw new RangeError('fault durationMs must be a finite number > 0');
  }
  const from = now + (spec.fromMs ?? 0);
  const until = spec.durationMs === undefined ? Number.POSITIVE_INFINITY : from + spec.durationMs;
  return { spec: { ...spec }, action, remaining: spec.count ?? Number.POSITIVE_INFINITY, from, until };
}

export class FaultTable {
  #rules: Rule[] = [];

  /**
   * Arms every spec or none (one that cannot be acted out refuses the lot). `now`: the simulator
   * clock at injection, from which `fromMs` and `durationMs` count.
   */
  add(specs: readonly FaultSpec[], now: number): void {
    this.#rules.push(...specs.map((spec) => toRule(spec, now)));
  }

  clear(): void {
    this.#rules = [];
  }

  /**
   * The fault that strikes this call at this stage, if any; consumes one of its `count`. A rule
   * outside its window neither strikes nor draws from `random`, so a window does not shift which
   * calls the other rules' probabilities pick.
   */
  take(model: string, stage: FaultStage, random: () => number, now: number): FaultAction | null {
    this.#expire(now);
    for (const rule of this.#rules) {
      if (rule.spec.model !== undefined && rule.spec.model !== model) continue;
      if (isStatusFault(rule.action) !== (stage === 'before-admission')) continue;
      if (now < rule.from) continue;
      if (rule.spec.probability !== undefined && random() >= rule.spec.probability) continue;
      rule.remaining -= 1;
      if (rule.remaining <= 0) this.#rules = this.#rules.filter((r) => r !== rule);
      return rule.action;
    }
    return null;
  }

  /** The rules still armed, windows restated relative to `now` so a listed spec can be re-injected as is. */
  list(now: number): FaultSpec[] {
    this.#expire(now);
    return this.#rules.map((r) => {
      const { fromMs: _from, durationMs: _duration, count: _count, ...rest } = r.spec;
      const spec: FaultSpec = { ...rest };
      if (Number.isFinite(r.remaining)) spec.count = r.remaining;
      if (r.from > now) spec.fromMs = r.from - now;
      if (Number.isFinite(r.until)) spec.durationMs = r.until - Math.max(now, r.from);
      return spec;
    });
  }

  #expire(now: number): void {
    if (this.#rules.some((r) => r.until <= now)) this.#rules = this.#rules.filter((r) => r.until > now);
  }
}

export function isStatusFault(action: FaultAction): action is StatusFaultAction {
  return action.kind !== 'malformed' && action.kind !== 'cut' && action.kind !== 'stall' && action.kind !== 'hang' && action.kind !== 'overloaded-mid-call';
}

export interface BatchFaultSpec {
  /** custom_ids to come back errored, or the fraction (0..1) of each batch's entries. */
  errored?: string[] | number;
  /** custom_ids to come back expired, or the fraction (0..1) of each batch's entries. */
  expired?: string[] | number;
  /**
   * custom_ids whose result line comes back cut short (not JSON), or the fraction (0..1) of each
   * batch's entries: a results file that was corrupted or truncated on the provider's side.
   */
  garbled?: string[] | number;
  /**
   * Hold the reply to every batch create (both providers) this long after the batch exists: the
   * provider has accepted it, the client has not heard yet. For crash drills between a submit
   * and its record.
   */
  holdCreateReplyMs?: number;
}

export type BatchEntryFate = 'errored' | 'expired' | 'garbled';

/** A `garbled` entry's result line: its first half, which no JSON parser reads. */
export function garbledLine(line: string): string {
  return line.slice(0, Math.ceil(line.length / 2));
}

export class BatchFaultTable {
  #specs: BatchFaultSpec[] = [];

  add(spec: BatchFaultSpec): void {
    for (const value of [spec.errored, spec.expired, spec.garbled]) {
      if (typeof value === 'number' && !(value >= 0 && value <= 1)) {
        throw new RangeError('a batch fault fraction must be within [0, 1]');
      }
    }
    if (spec.holdCreateReplyMs !== undefined && !(spec.holdCreateReplyMs >= 0 && Number.isFinite(spec.holdCreateReplyMs))) {
      throw new RangeError('holdCreateReplyMs must be a finite number >= 0');
    }
    this.#specs.push({ ...spec });
  }

  /** How long to hold a batch create's reply: the longest armed hold, 0 when none. */
  holdCreateReplyMs(): number {
    return Math.max(0, ...this.#specs.map((s) => s.holdCreateReplyMs ?? 0));
  }

  clear(): void {
    this.#specs = [];
  }

  /**
   * The entries of a new batch that will fail. A fraction picks exactly round(fraction * n)
   * entries, chosen by a hash of the batch id and custom_id: deterministic, yet spread out.
   */
  fates(batchId: string, customIds: readonly string[]): Map<string, BatchEntryFate> {
    const fates = new Map<string, BatchEntryFate>();
    const known = new Set(customIds);
    let order: string[] | undefined;
    const byHash = () => {
      order ??= customIds
        .map((id) => ({ id, rank: sha256(`${batchId}:${id}`) }))
        .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
        .map((e) => e.id);
      return order;
    };
    const mark = (selector: string[] | number | undefined, fate: BatchEntryFate) => {
      if (selector === undefined) return;
      if (Array.isArray(selector)) {
        for (const id of selector) if (known.has(id) && !fates.has(id)) fates.set(id, fate);
        return;
      }
      let wanted = Math.round(selector * customIds.length);
      for (const id of byHash()) {
        if (wanted <= 0) break;
        if (fates.has(id)) continue;
        fates.set(id, fate);
        wanted -= 1;
      }
    };
    for (const spec of this.#specs) {
      mark(spec.errored, 'errored');
      mark(spec.expired, 'expired');
      mark(spec.garbled, 'garbled');
    }
    return fates;
  }

  list(): BatchFaultSpec[] {
    return this.#specs.map((s) => ({ ...s }));
  }
}
