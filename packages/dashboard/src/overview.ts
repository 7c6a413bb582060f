/**
 * What the Headroom page shows, as one JSON document (`GET /api/overview`): per pool each
 * dimension's level, utilization and time to exhaustion, its cooldowns and its models' fleet-wide
 * throttles (admit ratio, success ratio, retry budget left);
 * per lane the depth, running, done, shed and p95 wait; the 429 rate and the cost burn; and the
 * samples behind the live charts. `buildOverview` is pure; `readOverview` does the reads.
 */
import type { Cluster, Redis } from 'ioredis';
import { Bucket, type BucketSnapshot, type HeadroomConfig, type Lane, readFleetStats, type FleetStats, readHeartbeats, type Heartbeats, throttleParamsOf, type ThrottleState } from '@headroom/queue';
import { EMPTY_ALERT_STATE, evaluateAlerts, type Alert, type Observation } from './alerts.js';
import { boundedRead, closeLaneQueues, openLaneQueues, readLanes, readPressure, type LaneDepth, type LaneHold, type LaneQueues, type LaneState } from './fleet-state.js';
import { exhaustInMs, History, type Sample } from './history.js';
import { poolsOf, readPools, utilizationOf, type PoolInfo } from './pools.js';

/** Minutes of fleet counters the page shows (charts and lane totals). */
export const OVERVIEW_WINDOW_MINUTES = 15;

export interface DimensionView {
  dimension: string;
  capacity: number;
  level: number;
  utilization: number;
  source: 'config' | 'learned';
  /** Time until the bucket is full again if nothing more is drawn. */
  fullInMs: number;
  /** Drawn per second, gross of refill, averaged over the last 30 s; null until two samples exist. */
  burnPerSec: number | null;
  /** Time to exhaustion at that burn (level / (burn - refill)); null when it is not running out. */
  exhaustInMs: number | null;
}

/** One model's adaptive throttle and retry budget, fleet-wide (read beside its pool's bucket). */
export interface ThrottleView {
  model: string;
  state: ThrottleState;
  /** Fraction of the pool's requests/min the throttle admits now (1 = not throttled). */
  admitRatio: number;
  /** Share of the model's recent calls the provider served. */
  successRatio: number;
  /** Calls/min the throttle allows now (the probe rate when open). */
  allowedRpm: number;
  callsPerSec: number;
  retriesPerSec: number;
  retryBudget: number;
  retryBudgetLeft: number;
}

export interface PoolView {
  pool: string;
  provider: string;
  models: string[];
  dimensions: DimensionView[];
  /** Dimensions with no configured or learned limit: they do not bind. */
  unbound: string[];
  cooldowns: { model: string; remainingMs: number }[];
  /** Its models' throttles, fleet-wide: every model the fleet has called lately. */
  throttles: ThrottleView[];
  /** 0..1, as the workers last published it; null when none has. */
  pressure: number | null;
  waits: Record<string, number>;
}

export interface LaneView {
  lane: Lane;
  cap: number;
  counts: Record<LaneState, number>;
  /** Jobs not yet started, as the cap counts them (BullMQ's waiting, prioritized, delayed, and the jobs workers hold to put back). */
  queued: number;
  /** Jobs running a call: BullMQ's active ones, less those held to be put back. */
  running: number;
  /** Over the window, from the fleet's counters. */
  done: number;
  failed: number;
  shed: number;
  /** All-time shed counter of the lane. */
  shedTotal: number;
  /** Its BullMQ pause, global concurrency and rate limit (set from Bull Board), which hold its jobs back. */
  held: LaneHold;
  p95WaitMs: number | null;
}

export interface Overview {
  atMs: number;
  prefix: string;
  windowMinutes: number;
  pools: PoolView[];
  lanes: LaneView[];
  workers: { id: string; host: string; pid: number; inFlight: number; concurrency: number; lastSeenMsAgo: number }[];
  expiredWorkers: string[];
  /** Live gateways: requests each has in flight. */
  gateways: { id: string; host: string; pid: number; inFlight: number; lastSeenMsAgo: number }[];
  calls: {
    /** Over the 429 alert window (`dashboard.alerts.rate429WindowMinutes`). */
    windowMinutes: number;
    total: number;
    calls429: number;
    rate429: number;
    /** Per model, calls by HTTP status: which model the 429s (or 529s) come from. */
    byModel: Record<string, Record<string, number>>;
  };
  /**
   * Over the same window as `calls` (shown beside them, so one window for both): spent, and that
   * spend as a rate per hour (the current, partial minute counted at its length).
   */
  cost: { usdWindow: number; usdPerHour: number };
  /** One point per minute over the window, oldest first. */
  minutes: FleetStats['series'];
  /** Live samples newer than the request's `since`, oldest first. */
  samples: Sample[];
  alerts: Alert[];
}

export interface OverviewInputs {
  config: HeadroomConfig;
  pools: readonly PoolInfo[];
  snapshots: readonly BucketSnapshot[];
  lanes: readonly LaneDepth[];
  heartbeats: Heartbeats;
  gatewayHeartbeats: Heartbeats;
  fleet: FleetStats;
  /** Calls by model and status over the 429 alert window (`fleet` spans the page's longer one). */
  recentCalls: FleetStats['calls'];
  pressure: Record<string, number>;
  history: History;
  alerts: Alert[];
  nowMs: number;
  /** Only samples after this (ms) are returned. */
  sinceMs: number;
}

export function buildOverview(i: OverviewInputs): Overview {
  // Calls, 429s and cost over one window: `headroom status` prints them on one line, and cost over
  // 15 minutes beside calls over 5 read as one window to whoever compared them.
  const rate429Minutes = i.config.dashboard.alerts.rate429WindowMinutes;
  const recent = i.fleet.series.slice(-rate429Minutes);
  const total = recent.reduce((a, p) => a + p.calls, 0);
  const calls429 = recent.reduce((a, p) => a + p.calls429, 0);
  const costRecent = recent.reduce((a, p) => a + p.costUsd, 0);
  // Per hour: the window's first minute to now, the current (partial) minute included at its length.
  const costElapsed = Math.max(60_000, i.nowMs - (recent[0]?.minute ?? 0) * 60_000);

  const pools: PoolView[] = i.pools.map((p, idx) => {
    const snap = i.snapshots[idx]!;
    const throttles: ThrottleView[] = (snap.throttles ?? []).map((t) => ({
      model: t.model,
      state: t.state,
      admitRatio: t.admitRatio,
      successRatio: t.successRatio,
      allowedRpm: t.allowedRpm,
      callsPerSec: t.callsPerSec,
      retriesPerSec: t.retriesPerSec,
      retryBudget: t.retryBudget,
      retryBudgetLeft: t.retryBudgetLeft,
    }));
    return {
      pool: p.pool,
      provider: p.provider,
      models: p.models,
      dimensions: snap.dimensions.map((d) => {
        const burn = i.history.burnPerSec(p.pool, d.dimension);
        return {
          dimension: d.dimension,
          capacity: d.capacity,
          level: d.level,
          utilization: utilizationOf(d),
          source: d.source,
          fullInMs: d.fullInMs,
          burnPerSec: burn,
          exhaustInMs: exhaustInMs(d.level, d.ratePerSec, burn, i.history.fallingNow(p.pool, d.dimension)),
        };
      }),
      unbound: snap.unbound,
      cooldowns: snap.cooldowns.map((c) => ({ model: c.model, remainingMs: c.remainingMs })),
      throttles,
      pressure: i.pressure[p.pool] ?? null,
      waits: snap.counters.waits as Record<string, number>,
    };
  });

  const lanes: LaneView[] = i.lanes.map((l) => {
    const f = i.fleet.lanes[l.lane];
    return {
      lane: l.lane,
      cap: i.config.lanes[l.lane].cap,
      counts: l.counts,
      queued: l.queued,
      // A job held to be put back is active in BullMQ but runs no call: it is counted in `queued`.
      running: Math.max(0, l.counts.active - l.returning),
      done: f?.completed ?? 0,
      failed: f?.failed ?? 0,
      shed: f?.shed ?? 0,
      shedTotal: l.shedTotal,
      held: l.held,
      p95WaitMs: f?.p95WaitMs ?? null,
    };
  });

  return {
    atMs: i.nowMs,
    prefix: i.config.redis.prefix,
    windowMinutes: i.fleet.series.length,
    pools,
    lanes,
    workers: i.heartbeats.alive.map((w) => ({
      id: w.id,
      host: w.host,
      pid: w.pid,
      inFlight: w.inFlight,
      concurrency: w.concurrency,
      lastSeenMsAgo: Math.max(0, i.heartbeats.atMs - w.atMs),
    })),
    expiredWorkers: i.heartbeats.expired,
    gateways: i.gatewayHeartbeats.alive.map((g) => ({ id: g.id, host: g.host, pid: g.pid, inFlight: g.inFlight, lastSeenMsAgo: Math.max(0, i.gatewayHeartbeats.atMs - g.atMs) })),
    calls: { windowMinutes: rate429Minutes, total, calls429, rate429: total > 0 ? calls429 / total : 0, byModel: i.recentCalls },
    cost: { usdWindow: costRecent, usdPerHour: (costRecent / costElapsed) * 3600_000 },
    minutes: i.fleet.series,
    samples: [...i.history.samples(i.sinceMs + 1)],
    alerts: i.alerts,
  };
}

export interface OverviewDeps {
  redis: Redis | Cluster;
  config: HeadroomConfig;
  bucket: Bucket;
  pools: readonly PoolInfo[];
  queues: LaneQueues;
  history: History;
  alerts: () => Alert[];
  now: () => number;
}

export async function readOverview(deps: OverviewDeps, sinceMs = 0): Promise<Overview> {
  const { redis, config } = deps;
  const prefix = config.redis.prefix;
  const nowMs = deps.now();
  const windowMinutes = Math.max(OVERVIEW_WINDOW_MINUTES, config.dashboard.alerts.rate429WindowMinutes);
  const [snapshots, lanes, heartbeats, gatewayHeartbeats, fleet, recent, pressure] = await Promise.all([
    readPools(deps.bucket, deps.pools),
    readLanes(redis, prefix, deps.queues),
    readHeartbeats(redis, prefix),
    readHeartbeats(redis, prefix, 'gateway'),
    readFleetStats(redis, prefix, windowMinutes, nowMs),
    // The minute series carries no model: the calls by model over the 429 window are a read of their own.
    readFleetStats(redis, prefix, config.dashboard.alerts.rate429WindowMinutes, nowMs),
    readPressure(redis, prefix),
  ]);
  return buildOverview({ config, pools: deps.pools, snapshots, lanes, heartbeats, gatewayHeartbeats, fleet, recentCalls: recent.calls, pressure, history: deps.history, alerts: deps.alerts(), nowMs, sinceMs });
}

/** The overview outside the dashboard's server (`headroom status`, the demo): no alerts, no history kept across reads. */
export interface OverviewReader {
  read(): Promise<Overview>;
  close(): Promise<void>;
}

export function openOverviewReader(redis: Redis | Cluster, config: HeadroomConfig, now: () => number = Date.now): OverviewReader {
  const queues = openLaneQueues(redis, config.redis.prefix);
  const history = new History();
  const deps = { redis, config, bucket: new Bucket(redis, { prefix: config.redis.prefix, throttle: throttleParamsOf(config) }), pools: poolsOf(config), queues, history, alerts: () => [], now };
  return {
    read: () => boundedRead(readOverview(deps), 'the read of the fleet'),
    close: () => closeLaneQueues(queues),
  };
}

/**
 * The alerts one read of the overview fires by the dashboard's own rules (`evaluateAlerts`, from
 * an empty state), for a one-shot probe (`headroom status --check`) that keeps no state between
 * runs. That is exactly the 429 rate alert: its window already smooths it and the dashboard fires
 * it on the first evaluation that sees it. A dimension's utilization alert must last
 * `dashboard.alerts.forMs`, which only the dashboard's readings between evaluations can tell, so
 * one read fires it only when `forMs` is 0; with a longer `forMs` it is left to the dashboard.
 * None when `dashboard.alerts.enabled` is false: the dashboard evaluates none then.
 */
export function alertsFiringOnOneRead(o: Overview, settings: HeadroomConfig['dashboard']['alerts']): Alert[] {
  if (!settings.enabled) return [];
  // The monitor's inputs, read from the overview: the same utilization per bound dimension, and
  // calls and 429s over the same window (`rate429WindowMinutes`).
  const observation: Observation = {
    atMs: o.atMs,
    utilization: o.pools.flatMap((p) => p.dimensions.map((d) => ({ pool: p.pool, dimension: d.dimension, value: d.utilization }))),
    calls: { total: o.calls.total, rate429: o.calls.rate429 },
  };
  return evaluateAlerts(EMPTY_ALERT_STATE, observation, settings).events.filter((e) => e.status === 'firing').map((e) => e.alert);
}
