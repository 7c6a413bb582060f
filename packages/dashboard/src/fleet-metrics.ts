/**
 * The dashboard's Prometheus registry: fleet-wide gauges read from Redis when scraped (the
 * workers' own /metrics count per process; these count the fleet once). One scrape is one read,
 * shared by every gauge. If Redis is away, `headroom_dashboard_redis_up` is 0 and the fleet
 * gauges are left out rather than reported stale. A window's count (jobs, calls) that fell to
 * nothing reads 0, not absent: the series used to vanish once the window passed its last event,
 * which a Prometheus query reads as "no data", not as "none".
 */
import type { Cluster, Redis } from 'ioredis';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { type Bucket, type BucketSnapshot, type HeadroomConfig, readFleetStats, type FleetStats, readHeartbeats, type Heartbeats, PROCESS_METRICS_PREFIX, THROTTLE_STATES } from '@headroom/queue';
import type { Alert } from './alerts.js';
import { boundedRead, LANE_STATES, readLanes, type LaneDepth, type LaneQueues } from './fleet-state.js';
import { readPools, utilizationOf, type PoolInfo } from './pools.js';

export interface FleetMetricsSource {
  redis: Redis | Cluster;
  config: HeadroomConfig;
  bucket: Bucket;
  pools: readonly PoolInfo[];
  queues: LaneQueues;
  alerts: () => Alert[];
  now: () => number;
}

interface Reading {
  lanes: LaneDepth[];
  snapshots: BucketSnapshot[];
  fleet: FleetStats;
  heartbeats: Heartbeats;
  gatewayHeartbeats: Heartbeats;
}

/** Every series name this registry exports (beside prom-client's defaults, `headroom_process_*` and `headroom_nodejs_*`), for docs and tests. */
export const DASHBOARD_METRIC_NAMES = [
  'headroom_dashboard_redis_up',
  'headroom_lane_depth',
  'headroom_lane_queued',
  'headroom_lane_cap',
  'headroom_lane_shed_total',
  'headroom_bucket_capacity',
  'headroom_bucket_level',
  'headroom_bucket_utilization',
  'headroom_bucket_cooldowns_active',
  'headroom_fleet_bucket_grants_total',
  'headroom_fleet_bucket_waits_total',
  'headroom_fleet_jobs_window',
  'headroom_fleet_calls_window',
  'headroom_fleet_429_ratio',
  'headroom_fleet_cost_usd_window',
  'headroom_fleet_wait_p95_seconds',
  'headroom_fleet_workers',
  'headroom_fleet_gateways',
  'headroom_fleet_throttle_state',
  'headroom_fleet_throttle_admit_ratio',
  'headroom_fleet_throttle_success_ratio',
  'headroom_fleet_retry_budget_left',
  'headroom_alerts_firing',
] as const;

type Labels<L extends string> = Partial<Record<L, string>>;
/** What a fill function may do to its metric: a gauge is set, a Redis-kept counter is copied. */
type Put<L extends string> = (labels: Labels<L>, value: number) => void;

export class DashboardMetrics {
  readonly registry = new Registry();
  readonly #src: FleetMetricsSource;
  #reading: { at: number; value: Promise<Reading | null> } | undefined;

  constructor(source: FleetMetricsSource, opts: { defaultMetrics?: boolean } = {}) {
    this.#src = source;
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PROCESS_METRICS_PREFIX });
    const read = () => this.#read();
    const windowMin = source.config.dashboard.alerts.rate429WindowMinutes;
    const registers = [this.registry];

    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (put: Put<L>, r: Reading) => void) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          const r = await read();
          // Reset first so a label set that disappeared (a drained lane state) is not reported stale.
          this.reset();
          if (r) fill((labels, v) => this.set(labels, v), r);
          // reset() puts a gauge without labels back at 0: with no reading that would say "0 workers
          // alive" and clear the 429 ratio while Redis is away, so the series is left out instead.
          else this.remove({});
        },
      });
    // A count over the window: every label set it has reported stays, at 0 while the window holds none.
    const windowGauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (put: Put<L>, r: Reading) => void) => {
      const seen = new Map<string, Labels<L>>();
      return gauge(name, help, labelNames, (put, r) => {
        const now = new Set<string>();
        fill((labels, v) => {
          const key = JSON.stringify(labels);
          seen.set(key, labels);
          now.add(key);
          put(labels, v);
        }, r);
        for (const [key, labels] of seen) if (!now.has(key)) put(labels, 0);
      });
    };
    // Counters Redis keeps for the whole fleet: exported as counters so rate() reads them right.
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (put: Put<L>, r: Reading) => void) =>
      new Counter<L>({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          const r = await read();
          this.reset();
          // Counter.inc refuses negative values; a counter in Redis never goes below 0.
          if (r) fill((labels, v) => this.inc(labels, Math.max(0, v)), r);
          // As for gauges: reset() would put a counter without labels at 0, which rate() reads as a restart.
          else this.remove({});
        },
      });

    new Gauge({
      name: 'headroom_dashboard_redis_up',
      help: '1 when the last scrape could read the fleet state from Redis.',
      registers,
      async collect() {
        this.set((await read()) ? 1 : 0);
      },
    });
    gauge('headroom_lane_depth', 'Jobs in each lane by BullMQ state (waiting, prioritized, delayed, active, completed, failed).', ['lane', 'state'], (put, r) => {
      for (const l of r.lanes) for (const state of LANE_STATES) put({ lane: l.lane, state }, l.counts[state]);
    });
    gauge('headroom_lane_queued', 'Jobs not yet started per lane, as its cap counts them (waiting, prioritized, delayed, and jobs workers hold to put back).', ['lane'], (put, r) => {
      for (const l of r.lanes) put({ lane: l.lane }, l.queued);
    });
    gauge('headroom_lane_cap', 'The configured cap of jobs not yet started, per lane.', ['lane'], (put, r) => {
      for (const l of r.lanes) put({ lane: l.lane }, source.config.lanes[l.lane].cap);
    });
    counter('headroom_lane_shed_total', "Jobs shed from each lane, fleet-wide (the lane's counter in Redis).", ['lane'], (put, r) => {
      for (const l of r.lanes) put({ lane: l.lane }, l.shedTotal);
    });
    gauge('headroom_bucket_capacity', 'Per-minute capacity of each bucket dimension (configured or learned).', ['pool', 'dimension'], (put, r) => {
      for (const s of r.snapshots) for (const d of s.dimensions) put({ pool: s.pool, dimension: d.dimension }, d.capacity);
    });
    gauge('headroom_bucket_level', 'What each bucket dimension holds now (negative after an underestimate).', ['pool', 'dimension'], (put, r) => {
      for (const s of r.snapshots) for (const d of s.dimensions) put({ pool: s.pool, dimension: d.dimension }, d.level);
    });
    gauge('headroom_bucket_utilization', 'Used / capacity of each bucket dimension (above 1 after an underestimate).', ['pool', 'dimension'], (put, r) => {
      for (const s of r.snapshots) for (const d of s.dimensions) put({ pool: s.pool, dimension: d.dimension }, utilizationOf(d));
    });
    gauge('headroom_bucket_cooldowns_active', 'Models of each pool cooling down after a 429.', ['pool'], (put, r) => {
      for (const s of r.snapshots) put({ pool: s.pool }, s.cooldowns.length);
    });
    counter('headroom_fleet_bucket_grants_total', 'Acquires each pool granted, by lane, fleet-wide.', ['pool', 'lane'], (put, r) => {
      for (const s of r.snapshots) for (const [lane, n] of Object.entries(s.counters.grants)) put({ pool: s.pool, lane }, n ?? 0);
    });
    counter('headroom_fleet_bucket_waits_total', 'Acquires each pool told to wait, by the dimension (or cooldown) that bound, fleet-wide.', ['pool', 'reason'], (put, r) => {
      for (const s of r.snapshots) for (const [reason, n] of Object.entries(s.counters.waits)) put({ pool: s.pool, reason }, n ?? 0);
    });
    // Every lane from the first scrape: an idle fleet reads 0 rather than nothing.
    windowGauge('headroom_fleet_jobs_window', `Jobs ended over the last ${windowMin} min, by lane and outcome (completed, failed, shed).`, ['lane', 'outcome'], (put, r) => {
      for (const { lane } of r.lanes) {
        for (const outcome of ['completed', 'failed', 'shed'] as const) put({ lane, outcome }, r.fleet.lanes[lane]?.[outcome] ?? 0);
      }
    });
    windowGauge('headroom_fleet_calls_window', `Provider calls over the last ${windowMin} min, by model and HTTP status ("network": no response).`, ['model', 'status'], (put, r) => {
      for (const [model, byStatus] of Object.entries(r.fleet.calls)) for (const [status, n] of Object.entries(byStatus)) put({ model, status }, n);
    });
    gauge('headroom_fleet_429_ratio', `429s / provider calls over the last ${windowMin} min (the 429 alert's input).`, [], (put, r) => put({}, r.fleet.rate429));
    gauge('headroom_fleet_cost_usd_window', `Estimated spend over the last ${windowMin} min, USD.`, [], (put, r) => put({}, r.fleet.costUsd));
    gauge('headroom_fleet_wait_p95_seconds', `p95 enqueue-to-call wait over the last ${windowMin} min (a histogram bucket bound), by lane.`, ['lane'], (put, r) => {
      for (const [lane, v] of Object.entries(r.fleet.lanes)) if (v.p95WaitMs !== null) put({ lane }, v.p95WaitMs / 1000);
    });
    gauge('headroom_fleet_workers', 'Worker processes with a live heartbeat.', [], (put, r) => put({}, r.heartbeats.alive.length));
    gauge('headroom_fleet_gateways', 'Gateway processes with a live heartbeat.', [], (put, r) => put({}, r.gatewayHeartbeats.alive.length));
    // Each model's fleet-wide throttle (read beside its pool's bucket), for models called lately.
    gauge('headroom_fleet_throttle_state', 'A model\'s fleet-wide throttle: 0 closed, 1 throttled (fewer calls, by its success ratio), 2 open (probes only).', ['pool', 'model'], (put, r) => {
      for (const s of r.snapshots) for (const t of s.throttles) put({ pool: s.pool, model: t.model }, THROTTLE_STATES.indexOf(t.state));
    });
    gauge('headroom_fleet_throttle_admit_ratio', 'Fraction of its pool\'s requests/min a model\'s throttle admits (1 = not throttled), fleet-wide.', ['pool', 'model'], (put, r) => {
      for (const s of r.snapshots) for (const t of s.throttles) put({ pool: s.pool, model: t.model }, t.admitRatio);
    });
    gauge('headroom_fleet_throttle_success_ratio', 'Share of a model\'s recent calls the provider served (5xx, 529 and no answer count as failures), fleet-wide.', ['pool', 'model'], (put, r) => {
      for (const s of r.snapshots) for (const t of s.throttles) put({ pool: s.pool, model: t.model }, t.successRatio);
    });
    gauge('headroom_fleet_retry_budget_left', 'Retries a model\'s retry budget has left over its window, fleet-wide (below 1: the retries it holds wait; an exempt lane\'s retries, counted but not held, can take it below 0).', ['pool', 'model'], (put, r) => {
      for (const s of r.snapshots) for (const t of s.throttles) put({ pool: s.pool, model: t.model }, t.retryBudgetLeft);
    });
    gauge('headroom_alerts_firing', 'Alerts this dashboard has firing now, by rule (utilization, rate429).', ['rule'], (put) => {
      const firing = source.alerts();
      for (const rule of ['utilization', 'rate429']) put({ rule }, firing.filter((a) => a.rule === rule).length);
    });
  }

  /** One Redis read per scrape, shared by every gauge (prom-client collects them concurrently). */
  #read(): Promise<Reading | null> {
    const now = this.#src.now();
    if (this.#reading && now - this.#reading.at < 1_000) return this.#reading.value;
    const { redis, config, bucket, pools, queues } = this.#src;
    const prefix = config.redis.prefix;
    // Bounded: a stalled Redis reads as `headroom_dashboard_redis_up 0`, not as a scrape that times out.
    const value = boundedRead(Promise.all([
      readLanes(redis, prefix, queues),
      readPools(bucket, pools),
      readFleetStats(redis, prefix, config.dashboard.alerts.rate429WindowMinutes, now),
      readHeartbeats(redis, prefix),
      readHeartbeats(redis, prefix, 'gateway'),
    ]), 'the scrape\'s read of the fleet').then(
      ([lanes, snapshots, fleet, heartbeats, gatewayHeartbeats]) => ({ lanes, snapshots, fleet, heartbeats, gatewayHeartbeats }),
      () => null,
    );
    this.#reading = { at: now, value };
    return value;
  }
}
