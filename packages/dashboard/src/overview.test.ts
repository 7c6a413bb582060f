import { describe, expect, it } from 'vitest';
import { parseConfig, type BucketSnapshot, type FleetStats } from '@headroom/queue';
import { LANE_STATES, type LaneDepth } from './fleet-state.js';
import { History } from './history.js';
import { alertsFiringOnOneRead, buildOverview, type OverviewInputs } from './overview.js';
import { poolsOf } from './pools.js';

const config = parseConfig({
  models: {
    'claude-sonnet-4-6': { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 60, itpm: 60_000, otpm: 6_000 } },
    'claude-sonnet-4-5': { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 60, itpm: 60_000, otpm: 6_000 } },
  },
});
const NOW = 10 * 60_000 + 30_000; // half-way through minute 10

const snapshot = (level: number): BucketSnapshot => ({
  pool: 'sonnet-4',
  atMs: NOW,
  dimensions: [
    { dimension: 'rpm', capacity: 60, source: 'config', level: 60, ratePerSec: 1, fullInMs: 0 },
    { dimension: 'itpm', capacity: 60_000, source: 'config', level, ratePerSec: 1000, fullInMs: (60_000 - level) },
  ],
  unbound: ['tpm'],
  learned: {},
  cooldowns: [{ model: 'claude-sonnet-4-5', untilMs: NOW + 2_000, remainingMs: 2_000 }],
  tenants: {},
  inFlight: { calls: 0, outputTokens: 0, tenants: {} },
  throttles: [
    { model: 'claude-sonnet-4-5', state: 'open', admitRatio: 0, successRatio: 0, allowedRpm: 60, callsPerSec: 1, firstsPerSec: 0.8, retriesPerSec: 0.2, retryBudget: 12, retryBudgetLeft: 10 },
    { model: 'claude-sonnet-4-6', state: 'closed', admitRatio: 1, successRatio: 0.55, allowedRpm: 60, callsPerSec: 4, firstsPerSec: 3, retriesPerSec: 1, retryBudget: 16, retryBudgetLeft: 6 },
  ],
  counters: { grants: { high: 3 }, waits: { itpm: 2 }, neverFits: {}, cooldownsSet: 1, lowered: {} },
});

const lane = (name: LaneDepth['lane'], waiting: number, active: number): LaneDepth => {
  const counts = Object.fromEntries(LANE_STATES.map((s) => [s, 0])) as LaneDepth['counts'];
  counts.waiting = waiting;
  counts.active = active;
  return { lane: name, counts, queued: waiting, returning: 0, shedTotal: name === 'low' ? 7 : 0, held: { paused: name === 'high', concurrency: null, rateLimit: null } };
};

// 15 minutes, 0..10 empty except the last six: calls 100 each, 429s in two of them, $0.06 per minute.
const series: FleetStats['series'] = Array.from({ length: 15 }, (_, i) => {
  const minute = i - 4;
  const busy = minute >= 5;
  return { minute, calls: busy ? 100 : 0, calls429: minute === 5 || minute === 9 ? 1 : 0, completed: busy ? 99 : 0, costUsd: busy ? 0.06 : 0 };
});
const fleet: FleetStats = {
  fromMs: -4 * 60_000,
  toMs: NOW,
  lanes: { high: { completed: 40, failed: 1, shed: 0, p95WaitMs: 250 }, low: { completed: 10, failed: 0, shed: 4, p95WaitMs: 60_000 } },
  calls: { 'claude-sonnet-4-6': { '200': 598, '429': 2 } },
  tokens: { 'claude-sonnet-4-6': { input: 60_000, output: 6_000 } },
  totalCalls: 600,
  calls429: 2,
  rate429: 2 / 600,
  costUsd: 0.36,
  series,
};

function inputs(over: Partial<OverviewInputs> = {}): OverviewInputs {
  const history = new History();
  // Falling 1500/s (500/s net of the 1000/s refill) over the last 10 s.
  for (let t = NOW - 10_000; t <= NOW; t += 2_000) history.record({ atMs: t, pools: { 'sonnet-4': { itpm: { level: 20_000 + (NOW - t) / 2, capacity: 60_000, utilization: 0 } } }, lanes: {} });
  return {
    config,
    pools: poolsOf(config),
    snapshots: [snapshot(20_000)],
    lanes: [lane('critical', 0, 0), lane('high', 5, 2), lane('normal', 0, 0), lane('low', 9, 0), lane('batch', 0, 0)],
    heartbeats: {
      atMs: NOW,
      alive: [
        { id: 'w1', host: 'h1', pid: 1, atMs: NOW - 1_200, expiresAtMs: NOW + 10_000, startedAt: 0, inFlight: 3, concurrency: 8 },
        { id: 'w2', host: 'h2', pid: 2, atMs: NOW, expiresAtMs: NOW + 15_000, startedAt: 0, inFlight: 0, concurrency: 8 },
      ],
      expired: ['w0'],
    },
    gatewayHeartbeats: { atMs: NOW, alive: [{ id: 'gateway-1', host: 'h3', pid: 3, atMs: NOW - 2_000, expiresAtMs: NOW + 13_000, startedAt: 0, inFlight: 12, concurrency: 0 }], expired: [] },
    fleet,
    recentCalls: fleet.calls,
    pressure: { 'sonnet-4': 0.4 },
    history,
    alerts: [],
    nowMs: NOW,
    sinceMs: NOW - 5_000,
    ...over,
  };
}

describe('buildOverview', () => {
  it('shows each dimension with its utilization, burn and time to empty', () => {
    const [pool] = buildOverview(inputs()).pools;
    expect(pool).toMatchObject({ pool: 'sonnet-4', provider: 'anthropic', models: ['claude-sonnet-4-6', 'claude-sonnet-4-5'], unbound: ['tpm'], pressure: 0.4, waits: { itpm: 2 } });
    const itpm = pool!.dimensions.find((d) => d.dimension === 'itpm')!;
    expect(itpm.utilization).toBeCloseTo(2 / 3, 9);
    expect(itpm.burnPerSec).toBeCloseTo(1500, 6);
    // 20k left, falling 500/s net: 40 s.
    expect(itpm.exhaustInMs).toBeCloseTo(40_000, 3);
    const rpm = pool!.dimensions.find((d) => d.dimension === 'rpm')!;
    expect(rpm).toMatchObject({ utilization: 0, burnPerSec: null, exhaustInMs: null });
  });

  it("lists the pool's cooldowns, and its models' fleet-wide throttles with their retry budgets", () => {
    const [pool] = buildOverview(inputs()).pools;
    expect(pool!.cooldowns).toEqual([{ model: 'claude-sonnet-4-5', remainingMs: 2_000 }]);
    expect(pool!.throttles).toEqual([
      { model: 'claude-sonnet-4-5', state: 'open', admitRatio: 0, successRatio: 0, allowedRpm: 60, callsPerSec: 1, retriesPerSec: 0.2, retryBudget: 12, retryBudgetLeft: 10 },
      { model: 'claude-sonnet-4-6', state: 'closed', admitRatio: 1, successRatio: 0.55, allowedRpm: 60, callsPerSec: 4, retriesPerSec: 1, retryBudget: 16, retryBudgetLeft: 6 },
    ]);
  });

  it('shows lane depths from BullMQ and done / shed / p95 from the fleet counters', () => {
    const o = buildOverview(inputs());
    expect(o.lanes.find((l) => l.lane === 'high')).toMatchObject({ cap: 200, queued: 5, running: 2, done: 40, failed: 1, shed: 0, p95WaitMs: 250 });
    expect(o.lanes.find((l) => l.lane === 'low')).toMatchObject({ cap: 5000, queued: 9, done: 10, shed: 4, shedTotal: 7, p95WaitMs: 60_000 });
    expect(o.lanes.find((l) => l.lane === 'critical')).toMatchObject({ done: 0, p95WaitMs: null });
  });

  it('counts calls, 429s and cost over one window, the 429 alert window, and the cost per hour over it too', () => {
    const o = buildOverview(inputs());
    // Minutes 6..10: 500 calls, one 429 (minute 9); minute 5's falls outside the 5-minute window.
    expect(o.calls).toMatchObject({ windowMinutes: 5, total: 500, calls429: 1, rate429: 1 / 500 });
    // $0.30 over minutes 6..10 (minute 5's $0.06 is outside, as its calls are), 4.5 minutes up to now: $4/h.
    expect(o.cost.usdWindow).toBeCloseTo(0.3, 9);
    expect(o.cost.usdPerHour).toBeCloseTo(0.3 / 4.5 * 60, 9);
    expect(o.windowMinutes).toBe(15);
  });

  it('takes a longer 429 window for calls and cost alike', () => {
    const base = inputs();
    const config = { ...base.config, dashboard: { ...base.config.dashboard, alerts: { ...base.config.dashboard.alerts, rate429WindowMinutes: 10 } } };
    const o = buildOverview({ ...base, config });
    // Minutes 1..10: the six busy ones, 600 calls, both 429s, $0.36 over 9.5 minutes.
    expect(o.calls).toMatchObject({ windowMinutes: 10, total: 600, calls429: 2 });
    expect(o.cost.usdWindow).toBeCloseTo(0.36, 9);
    expect(o.cost.usdPerHour).toBeCloseTo(0.36 / 9.5 * 60, 9);
  });

  it('lists live workers and gateways with their age and expired ids, and only samples newer than since', () => {
    const o = buildOverview(inputs());
    expect(o.workers).toEqual([
      { id: 'w1', host: 'h1', pid: 1, inFlight: 3, concurrency: 8, lastSeenMsAgo: 1_200 },
      { id: 'w2', host: 'h2', pid: 2, inFlight: 0, concurrency: 8, lastSeenMsAgo: 0 },
    ]);
    expect(o.expiredWorkers).toEqual(['w0']);
    expect(o.gateways).toEqual([{ id: 'gateway-1', host: 'h3', pid: 3, inFlight: 12, lastSeenMsAgo: 2_000 }]);
    expect(o.samples.map((s) => s.atMs)).toEqual([NOW - 4_000, NOW - 2_000, NOW]);
  });
});

describe('alertsFiringOnOneRead', () => {
  const alerts = config.dashboard.alerts;
  // itpm at 55k of 60k drawn: 92%, over the 80% threshold; one 429 in 500 calls: 0.2%.
  const hot = buildOverview(inputs({ snapshots: [snapshot(5_000)] }));

  it('fires the 429 alert on the read that sees the rate over its threshold, as the dashboard does', () => {
    expect(alertsFiringOnOneRead(hot, alerts)).toEqual([]);
    expect(alertsFiringOnOneRead(hot, { ...alerts, rate429: 0.001 }).map((a) => a.id)).toEqual(['rate429']);
  });

  it('fires a utilization alert only with forMs 0: one read cannot tell it lasted longer', () => {
    expect(alertsFiringOnOneRead(hot, { ...alerts, forMs: 0 }).map((a) => a.id)).toEqual(['utilization:sonnet-4:itpm']);
  });

  it('fires none when the alerts are off', () => {
    expect(alertsFiringOnOneRead(hot, { ...alerts, enabled: false, forMs: 0, rate429: 0.001 })).toEqual([]);
  });
});
