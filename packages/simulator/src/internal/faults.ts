// Fault injection. Status faults (429/5xx) strike before admission and spend no quota, as a
// provider that refuses or falls over does. Transport faults (malformed body, cut connection)
// strike after the call was admitted and processed: the quota is spent and the client never sees
// the answer, which is what makes them nasty.

import { sha256 } from './answer.js';

export type FaultStatus = 429 | 500 | 502 | 503 | 529;

export interface FaultSpec {
  /** Only calls to this model; every model when absent. */
  model?: string;
  /** HTTP status of a status fault. Required unless `malformed`, `cut` or `spendCap` is set. */
  status?: FaultStatus;
  /** Strike this many matching calls, then retire. Unbounded when absent. */
  count?: number;
  /** Strike each matching call with this probability. @default 1 */
  probability?: number;
  /** A spend-cap 429: no `retry-after`, and waiting does not clear it. */
  spendCap?: boolean;
  /** `retry-after` of an injected (non spend-cap) 429. @default 1 */
  retryAfterSeconds?: number;
  /** 200 with a body that is not valid JSON. */
  malformed?: boolean;
  /** The socket is destroyed half-way through the response. */
  cut?: boolean;
}

export type FaultAction =
  | { kind: 'status'; status: FaultStatus; spendCap: boolean; retryAfterSeconds: number }
  | { kind: 'malformed' }
  | { kind: 'cut' };

export type FaultStage = 'before-admission' | 'after-admission';

interface Rule {
  spec: FaultSpec;
  action: FaultAction;
  remaining: number;
}

const STATUSES: readonly number[] = [429, 500, 502, 503, 529];

export function toFaultAction(spec: FaultSpec): FaultAction {
  if (spec.cut) return { kind: 'cut' };
  if (spec.malformed) return { kind: 'malformed' };
  const status = spec.status ?? (spec.spendCap ? 429 : undefined);
  if (status === undefined || !STATUSES.includes(status)) {
    throw new RangeError(`fault status must be one of ${STATUSES.join(', ')} (or set malformed / cut)`);
  }
  if (spec.spendCap && status !== 429) throw new RangeError('a spendCap fault is a 429');
  return { kind: 'status', status, spendCap: spec.spendCap ?? false, retryAfterSeconds: spec.retryAfterSeconds ?? 1 };
}

export class FaultTable {
  #rules: Rule[] = [];

  add(spec: FaultSpec): void {
    const action = toFaultAction(spec);
    if (spec.count !== undefined && !(Number.isInteger(spec.count) && spec.count > 0)) {
      throw new RangeError('fault count must be a positive integer');
    }
    if (spec.probability !== undefined && !(spec.probability >= 0 && spec.probability <= 1)) {
      throw new RangeError('fault probability must be within [0, 1]');
    }
    this.#rules.push({ spec: { ...spec }, action, remaining: spec.count ?? Number.POSITIVE_INFINITY });
  }

  clear(): void {
    this.#rules = [];
  }

  /** The fault that strikes this call at this stage, if any; consumes one of its `count`. */
  take(model: string, stage: FaultStage, random: () => number): FaultAction | null {
    for (const rule of this.#rules) {
      if (rule.spec.model !== undefined && rule.spec.model !== model) continue;
      if ((rule.action.kind === 'status') !== (stage === 'before-admission')) continue;
      if (rule.spec.probability !== undefined && random() >= rule.spec.probability) continue;
      rule.remaining -= 1;
      if (rule.remaining <= 0) this.#rules = this.#rules.filter((r) => r !== rule);
      return rule.action;
    }
    return null;
  }

  list(): FaultSpec[] {
    return this.#rules.map((r) => ({ ...r.spec, ...(Number.isFinite(r.remaining) ? { count: r.remaining } : {}) }));
  }
}

export interface BatchFaultSpec {
  /** custom_ids to come back errored, or the fraction (0..1) of each batch's entries. */
  errored?: string[] | number;
  /** custom_ids to come back expired, or the fraction (0..1) of each batch's entries. */
  expired?: string[] | number;
  /**
   * Hold the reply to every batch create (both providers) this long after the batch exists: the
   * provider has accepted it, the client has not heard yet. For crash drills between a submit
   * and its record.
   */
  holdCreateReplyMs?: number;
}

export type BatchEntryFate = 'errored' | 'expired';

export class BatchFaultTable {
  #specs: BatchFaultSpec[] = [];

  add(spec: BatchFaultSpec): void {
    for (const value of [spec.errored, spec.expired]) {
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
    }
    return fates;
  }

  list(): BatchFaultSpec[] {
    return this.#specs.map((s) => ({ ...s }));
  }
}
