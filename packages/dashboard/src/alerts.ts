/**
 * The alert rules, as a pure function of the previous state, one observation and the settings:
 * no clock, no I/O, so every edge (the `forMs` boundary, an episode that clears and comes back)
 * is exact in a unit test. The monitor feeds it and sends what it returns.
 *
 * - `utilization`: a bucket dimension at or above `utilization` of its capacity for `forMs`.
 * - `rate429`: 429s / provider calls over the last `rate429WindowMinutes` above `rate429`. The
 *   window already smooths it, so it fires on the first evaluation that sees it.
 *
 * Each alert fires once per episode and resolves once when its condition clears, so a webhook
 * receives exactly one `firing` and one `resolved` per incident, however often it is evaluated.
 */
import type { HeadroomConfig } from '@headroom/queue';

export type AlertSettings = Pick<HeadroomConfig['dashboard']['alerts'], 'utilization' | 'forMs' | 'rate429' | 'rate429WindowMinutes'>;

export type AlertRule = 'utilization' | 'rate429';

export interface Observation {
  atMs: number;
  /** Utilization (used / capacity; above 1 after an underestimate) of every bound dimension. */
  utilization: { pool: string; dimension: string; value: number }[];
  /** Provider calls and 429s over the 429 window. */
  calls: { total: number; rate429: number };
}

export interface Alert {
  /** Stable per condition: `utilization:<pool>:<dimension>` or `rate429`. */
  id: string;
  rule: AlertRule;
  pool?: string;
  dimension?: string;
  /** The latest value seen while firing (the value that cleared it, once resolved). */
  value: number;
  threshold: number;
  /** When the condition began (utilization: its first reading at or over the threshold). */
  sinceMs: number;
  firedAtMs: number;
  resolvedAtMs?: number;
  summary: string;
}

export interface AlertEvent {
  status: 'firing' | 'resolved';
  alert: Alert;
}

export interface AlertState {
  /** Conditions over their threshold that have not yet lasted `forMs`: id -> since. */
  pending: Readonly<Record<string, number>>;
  firing: Readonly<Record<string, Alert>>;
}

export const EMPTY_ALERT_STATE: AlertState = { pending: {}, firing: {} };

const pct = (v: number) => `${(v * 100).toFixed(v < 0.01 ? 2 : 1)}%`;

interface Reading {
  id: string;
  rule: AlertRule;
  value: number;
  threshold: number;
  over: boolean;
  forMs: number;
  pool?: string;
  dimension?: string;
  summary: string;
}

function readingsOf(obs: Observation, s: AlertSettings): Reading[] {
  const readings: Reading[] = obs.utilization.map(({ pool, dimension, value }) => ({
    id: `utilization:${pool}:${dimension}`,
    rule: 'utilization',
    value,
    threshold: s.utilization,
    over: value >= s.utilization,
    forMs: s.forMs,
    pool,
    dimension,
    summary: `pool ${pool} ${dimension} at ${pct(value)} of capacity (threshold ${pct(s.utilization)} for ${s.forMs} ms)`,
  }));
  const rate = obs.calls.total > 0 ? obs.calls.rate429 : 0;
  readings.push({
    id: 'rate429',
    rule: 'rate429',
    value: rate,
    threshold: s.rate429,
    over: rate > s.rate429,
    forMs: 0,
    summary: `429 rate ${pct(rate)} of ${obs.calls.total} calls over ${s.rate429WindowMinutes} min (threshold ${pct(s.rate429)})`,
  });
  return readings;
}

/** One evaluation. Returns the next state and the events to send, in a stable order. */
export function evaluateAlerts(state: AlertState, obs: Observation, settings: AlertSettings): { state: AlertState; events: AlertEvent[] } {
  const pending: Record<string, number> = {};
  const firing: Record<string, Alert> = {};
  const events: AlertEvent[] = [];
  const seen = new Set<string>();

  for (const r of readingsOf(obs, settings)) {
    seen.add(r.id);
    const active = state.firing[r.id];
    if (r.over) {
      if (active) {
        firing[r.id] = { ...active, value: r.value, summary: r.summary };
        continue;
      }
      const since = state.pending[r.id] ?? obs.atMs;
      if (obs.atMs - since >= r.forMs) {
        const alert: Alert = {
          id: r.id,
          rule: r.rule,
          ...(r.pool !== undefined ? { pool: r.pool } : {}),
          ...(r.dimension !== undefined ? { dimension: r.dimension } : {}),
          value: r.value,
          threshold: r.threshold,
          sinceMs: since,
          firedAtMs: obs.atMs,
          summary: r.summary,
        };
        firing[r.id] = alert;
        events.push({ status: 'firing', alert });
      } else {
        pending[r.id] = since;
      }
    } else if (active) {
      events.push({ status: 'resolved', alert: { ...active, value: r.value, resolvedAtMs: obs.atMs, summary: r.summary } });
    }
  }
  // A dimension no longer reported (its learned limit is gone) cannot be over its threshold.
  for (const [id, active] of Object.entries(state.firing)) {
    if (!seen.has(id)) events.push({ status: 'resolved', alert: { ...active, resolvedAtMs: obs.atMs, summary: `${active.id}: no longer measured` } });
  }
  return { state: { pending, firing }, events };
}
