import { describe, expect, it } from 'vitest';
import { parseConfig } from '@headroom/queue';
import { EMPTY_ALERT_STATE, evaluateAlerts, type AlertEvent, type AlertSettings, type AlertState, type Observation } from './alerts.js';

const SETTINGS: AlertSettings = { utilization: 0.8, forMs: 60_000, rate429: 0.005, rate429WindowMinutes: 5 };

const obs = (atMs: number, util: number, calls = { total: 0, rate429: 0 }): Observation => ({
  atMs,
  utilization: [{ pool: 'sonnet-4', dimension: 'itpm', value: util }],
  calls,
});

/** Runs observations in order; returns every event with the time it was emitted, and the final state. */
function run(observations: Observation[], settings = SETTINGS, start: AlertState = EMPTY_ALERT_STATE) {
  let state = start;
  const events: (AlertEvent & { at: number })[] = [];
  for (const o of observations) {
    const r = evaluateAlerts(state, o, settings);
    state = r.state;
    events.push(...r.events.map((e) => ({ ...e, at: o.atMs })));
  }
  return { state, events };
}

describe('utilization alert', () => {
  it('does not fire before the condition has lasted forMs', () => {
    const { events, state } = run([obs(0, 0.85), obs(30_000, 0.9), obs(59_999, 0.95)]);
    expect(events).toEqual([]);
    expect(state.pending['utilization:sonnet-4:itpm']).toBe(0);
  });

  it('fires exactly at forMs, once, with the time the condition began', () => {
    const { events } = run([obs(0, 0.85), obs(30_000, 0.9), obs(60_000, 0.95), obs(90_000, 0.99), obs(120_000, 1.4)]);
    expect(events).toHaveLength(1);
    const [e] = events;
    expect(e).toMatchObject({ status: 'firing', at: 60_000, alert: { id: 'utilization:sonnet-4:itpm', rule: 'utilization', pool: 'sonnet-4', dimension: 'itpm', sinceMs: 0, firedAtMs: 60_000, value: 0.95, threshold: 0.8 } });
  });

  it('counts exactly the threshold as over it', () => {
    const { events } = run([obs(0, 0.8), obs(60_000, 0.8)]);
    expect(events.map((e) => e.status)).toEqual(['firing']);
  });

  it('restarts the clock when the condition breaks before forMs', () => {
    const { events } = run([obs(0, 0.9), obs(50_000, 0.5), obs(60_000, 0.9), obs(110_000, 0.9), obs(120_000, 0.9)]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ status: 'firing', at: 120_000, alert: { sinceMs: 60_000 } });
  });

  it('resolves once when it clears, and a new episode fires again', () => {
    const { events } = run([
      obs(0, 0.9), obs(60_000, 0.9), // fires
      obs(70_000, 0.9),
      obs(80_000, 0.3), // resolves
      obs(90_000, 0.2), // nothing
      obs(100_000, 0.95), obs(160_000, 0.95), // fires again
    ]);
    expect(events.map((e) => `${e.status}@${e.at}`)).toEqual(['firing@60000', 'resolved@80000', 'firing@160000']);
    expect(events[1]).toMatchObject({ alert: { resolvedAtMs: 80_000, value: 0.3, firedAtMs: 60_000 } });
  });

  it('fires at once when forMs is 0', () => {
    const { events } = run([obs(5, 0.81)], { ...SETTINGS, forMs: 0 });
    expect(events.map((e) => e.status)).toEqual(['firing']);
  });

  it('keeps each pool dimension its own episode', () => {
    const o = (atMs: number, a: number, b: number): Observation => ({
      atMs,
      utilization: [{ pool: 'p', dimension: 'rpm', value: a }, { pool: 'p', dimension: 'otpm', value: b }],
      calls: { total: 0, rate429: 0 },
    });
    const { events } = run([o(0, 0.9, 0.1), o(30_000, 0.9, 0.9), o(60_000, 0.9, 0.9), o(90_000, 0.1, 0.9)]);
    // otpm went over at 30 s, so it fires at 90 s, independently of rpm clearing at the same evaluation.
    expect(events.map((e) => `${e.status}:${e.alert.id}@${e.at}`)).toEqual([
      'firing:utilization:p:rpm@60000',
      'resolved:utilization:p:rpm@90000',
      'firing:utilization:p:otpm@90000',
    ]);
  });

  it('resolves a firing dimension that is no longer measured', () => {
    const firing = run([obs(0, 0.9), obs(60_000, 0.9)]).state;
    const { events, state } = run([{ atMs: 70_000, utilization: [], calls: { total: 0, rate429: 0 } }], SETTINGS, firing);
    expect(events.map((e) => `${e.status}:${e.alert.id}`)).toEqual(['resolved:utilization:sonnet-4:itpm']);
    expect(state.firing).toEqual({});
  });
});

describe('429 rate alert', () => {
  it('fires on the first evaluation above the threshold, and not at or below it', () => {
    expect(run([obs(0, 0, { total: 1000, rate429: 0.005 })]).events).toEqual([]);
    const { events } = run([obs(0, 0, { total: 1000, rate429: 0.006 })]);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ status: 'firing', alert: { id: 'rate429', rule: 'rate429', value: 0.006, threshold: 0.005 } });
    expect(events[0]!.alert.summary).toContain('1000 calls');
  });

  it('fires once per episode and resolves when the rate falls back', () => {
    const bad = { total: 200, rate429: 0.02 };
    const { events } = run([obs(0, 0, bad), obs(15_000, 0, bad), obs(30_000, 0, { total: 400, rate429: 0.004 }), obs(45_000, 0, bad)]);
    expect(events.map((e) => `${e.status}@${e.at}`)).toEqual(['firing@0', 'resolved@30000', 'firing@45000']);
  });

  it('never fires without calls', () => {
    expect(run([obs(0, 0, { total: 0, rate429: 1 })]).events).toEqual([]);
  });
});

describe('dashboard.alerts config', () => {
  it('defaults to 80% for 2 min, 0.5% 429s over 5 min, every 15 s, webhook from HEADROOM_ALERT_WEBHOOK_URL', () => {
    expect(parseConfig({ models: { m: { provider: 'anthropic' } } }).dashboard.alerts).toEqual({
      enabled: true,
      intervalMs: 15_000,
      utilization: 0.8,
      forMs: 120_000,
      rate429: 0.005,
      rate429WindowMinutes: 5,
      webhookUrlEnv: 'HEADROOM_ALERT_WEBHOOK_URL',
    });
  });

  it('refuses bad values by path, and a URL where an env variable name belongs', () => {
    let err: unknown;
    try {
      parseConfig({ models: { m: { provider: 'anthropic' } }, dashboard: { alerts: { utilization: 1.5, rate429WindowMinutes: 500, webhookUrlEnv: 'https://hooks.example/T0/secret' } } });
    } catch (e) {
      err = e;
    }
    const paths = ((err as { issues?: { path: string }[] }).issues ?? []).map((i) => i.path).sort();
    expect(paths).toEqual(['dashboard.alerts.rate429WindowMinutes', 'dashboard.alerts.utilization', 'dashboard.alerts.webhookUrlEnv']);
  });
});
