/**
 * The dashboard's background loop: samples bucket levels and lane depths into the history every
 * few seconds (the live charts, the burn rate), and evaluates the alert rules every
 * `dashboard.alerts.intervalMs`. Reads only: a read-only dashboard stays read-only.
 */
import type { Cluster, Redis } from 'ioredis';
import { type Bucket, type HeadroomConfig, isConnectionError, readFleetStats, type Logger } from '@headroom/queue';
import type { AlertNotifier } from './alert-notifier.js';
import { EMPTY_ALERT_STATE, evaluateAlerts, type Alert, type AlertState, type Observation } from './alerts.js';
import { readLanes, type LaneQueues } from './fleet-state.js';
import type { History, Sample } from './history.js';
import { readPools, utilizationOf, type PoolInfo } from './pools.js';

export const SAMPLE_INTERVAL_MS = 2_000;

export interface MonitorOptions {
  /** With `reportOutages` on it: the monitor leaves Redis outages to that one line each way. */
  redis: Redis | Cluster;
  config: HeadroomConfig;
  bucket: Bucket;
  pools: readonly PoolInfo[];
  queues: LaneQueues;
  history: History;
  notifier: AlertNotifier;
  logger: Logger;
  now: () => number;
  /** @default 2000 */
  sampleIntervalMs?: number;
}

export class Monitor {
  readonly #o: MonitorOptions;
  #alertState: AlertState = EMPTY_ALERT_STATE;
  #timers: NodeJS.Timeout[] = [];
  #sampling: Promise<void> | undefined;
  #inFlightSample: Promise<Sample> | undefined;
  #evaluating: Promise<void> | undefined;
  /** Per read (sample, evaluation): the message of its last failure logged, until a read succeeds. */
  #lastReadError = new Map<string, string>();

  constructor(options: MonitorOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#timers.length > 0) return;
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.#timers.push(t);
    };
    this.#tickSample();
    every(this.#o.sampleIntervalMs ?? SAMPLE_INTERVAL_MS, () => this.#tickSample());
    if (this.#o.config.dashboard.alerts.enabled) every(this.#o.config.dashboard.alerts.intervalMs, () => this.#tickEvaluate());
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await Promise.all([this.#sampling, this.#evaluating]);
  }

  /** Alerts firing now. */
  firing(): Alert[] {
    return Object.values(this.#alertState.firing);
  }

  /**
   * One sample into the history. Calls made while one is in flight share it: two overlapping
   * reads could finish out of order and make a refilling bucket look drawn from.
   */
  sample(): Promise<Sample> {
    this.#inFlightSample ??= this.#readSample().finally(() => {
      this.#inFlightSample = undefined;
    });
    return this.#inFlightSample;
  }

  async #readSample(): Promise<Sample> {
    const { redis, config, bucket, pools, queues } = this.#o;
    const [snapshots, lanes] = await Promise.all([readPools(bucket, pools), readLanes(redis, config.redis.prefix, queues)]);
    const sample: Sample = { atMs: this.#o.now(), pools: {}, lanes: {} };
    for (const s of snapshots) {
      const dims: Sample['pools'][string] = {};
      for (const d of s.dimensions) dims[d.dimension] = { level: d.level, capacity: d.capacity, utilization: utilizationOf(d), ratePerSec: d.ratePerSec };
      sample.pools[s.pool] = dims;
    }
    for (const l of lanes) sample.lanes[l.lane] = { queued: l.queued, active: l.counts.active };
    this.#o.history.record(sample);
    return sample;
  }

  /** One evaluation of the alert rules against a fresh sample and the fleet's 429 counters. */
  async evaluate(): Promise<void> {
    const { redis, config } = this.#o;
    const alerts = config.dashboard.alerts;
    const [sample, fleet] = await Promise.all([this.sample(), readFleetStats(redis, config.redis.prefix, alerts.rate429WindowMinutes, this.#o.now())]);
    const obs: Observation = {
      atMs: sample.atMs,
      utilization: Object.entries(sample.pools).flatMap(([pool, dims]) => Object.entries(dims).map(([dimension, d]) => ({ pool, dimension, value: d.utilization }))),
      calls: { total: fleet.totalCalls, rate429: fleet.rate429 },
    };
    const { state, events } = evaluateAlerts(this.#alertState, obs, alerts);
    this.#alertState = state;
    await this.#o.notifier.notify(events);
  }

  #tickSample(): void {
    if (this.#sampling) return;
    this.#sampling = this.sample()
      .then(() => void this.#lastReadError.delete('sample'))
      .catch((err: Error) => this.#readFailed('sample', err, 'dashboard sample failed'))
      .finally(() => {
        this.#sampling = undefined;
      });
  }

  #tickEvaluate(): void {
    if (this.#evaluating) return;
    // A failed read skips the evaluation: alerts neither fire nor resolve on missing data.
    this.#evaluating = this.evaluate()
      .then(() => void this.#lastReadError.delete('evaluation'))
      .catch((err: Error) => this.#readFailed('evaluation', err, 'alert evaluation skipped: read failed'))
      .finally(() => {
        this.#evaluating = undefined;
      });
  }

  /**
   * A background read that failed. Redis away is the outage its connection logs once when it
   * starts and once when it ends (`reportOutages`): logged here too, it was a warn line per
   * evaluation and per distinct sample error for as long as the outage lasted. So it goes to debug;
   * any other failure is a warn, once until that read succeeds again.
   */
  #readFailed(read: 'sample' | 'evaluation', err: Error, msg: string): void {
    if (isConnectionError(err)) {
      this.#o.logger.debug({ read, err: err.message }, `dashboard ${read} skipped: redis unavailable`);
      return;
    }
    if (this.#lastReadError.get(read) === err.message) return;
    this.#lastReadError.set(read, err.message);
    this.#o.logger.warn({ err: err.message }, msg);
  }
}
