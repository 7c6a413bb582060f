/**
 * What every worker keeps true of the lanes, every `intervalMs`, so admission stays closed and
 * exact whatever happened to Redis or to the jobs behind the fleet's back:
 * - the fleet's settings (caps, byte caps, tenant quotas) and its models are published again
 *   when either is missing (a Redis restarted without persistence, a FLUSHALL, a worker that
 *   published no models): until then admission refuses with FLEET_UNPUBLISHED rather than admit
 *   against defaults;
 * - the lanes' byte and tenant counts give back jobs finished or removed where no Headroom code
 *   saw it (Bull Board's remove and clean, BullMQ failing a stalled job): a few hundred ids per
 *   lane per round, so each round costs Redis a bounded, small time;
 * - returning entries whose worker stopped refreshing them are dropped.
 *
 * A round's work is the same from any worker, so with a `holder` only the worker holding a lease
 * of three rounds does it (about 16 commands a round), and the others ask for the lease (one
 * script call a round): every worker doing it cost an idle fleet 8 commands a second per worker.
 * A holder that stops gives the lease up; one that dies loses it within three rounds, and a
 * FLUSHALL or a Redis restarted without persistence, which upkeep exists for, takes the lease with
 * it, so the next round of any worker republishes.
 *
 * ```ts
 * const upkeep = new LaneUpkeep({ redis, config, logger, holder: workerId });
 * upkeep.start();               // a round now, then every 2 s while this worker holds the lease
 * await upkeep.stop();
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { publishFleetSettings, releaseJobs } from './admission.js';
import type { HeadroomConfig } from './config.js';
import { fleetKeys, laneKeys } from './keys.js';
import { holdLease, releaseLease } from './lease.js';
import { LANES, type Lane } from './lanes.js';
import { RETURNING_STALE_MS } from './lane-return.js';
import type { Logger } from './logger.js';

export const FLEET_UPKEEP_INTERVAL_MS = 2_000;
/** Unfinished-job entries looked at per lane per round. */
export const SWEEP_COUNT = 500;
/** The upkeep lease, in rounds: a holder late by a round keeps it. */
const LEASE_ROUNDS = 3;

export interface LaneUpkeepOptions {
  redis: Redis | Cluster;
  config: HeadroomConfig;
  logger?: Logger;
  /** @default FLEET_UPKEEP_INTERVAL_MS */
  intervalMs?: number;
  /** @default SWEEP_COUNT */
  sweepCount?: number;
  /** This process's id: rounds run only while it holds the fleet's upkeep lease. Unset: every round runs. */
  holder?: string;
}

export interface UpkeepRound {
  /** The settings or the models were missing from at least one lane, and were published again. */
  republished: boolean;
  /** Unfinished-job entries given back (their jobs were finished or gone). */
  released: number;
}

export class LaneUpkeep {
  readonly #o: LaneUpkeepOptions;
  readonly #cursors = new Map<Lane, string>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  /** Whether this process held the lease at its last round (it then gives it up when it stops). */
  #leading = false;

  constructor(options: LaneUpkeepOptions) {
    this.#o = options;
  }

  start(): void {
    if (this.#timer) return;
    const run = () => {
      this.#running ??= this.leadRound()
        .catch((err: Error) => this.#o.logger?.warn({ err: err.message }, 'lane upkeep failed; trying again next round'))
        .finally(() => {
          this.#running = undefined;
        });
    };
    run();
    this.#timer = setInterval(run, this.#o.intervalMs ?? FLEET_UPKEEP_INTERVAL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
    // Another worker takes over at its next round, not at the lease's expiry.
    if (this.#leading && this.#o.holder !== undefined) {
      this.#leading = false;
      await releaseLease(this.#o.redis, fleetKeys(this.#o.config.redis.prefix).upkeepLeader, this.#o.holder).catch(() => {});
    }
  }

  /**
   * One round if this process holds the upkeep lease (taking it when nobody does), else
   * undefined; `start` runs them on its own. Without a `holder`, always a round.
   */
  async leadRound(): Promise<UpkeepRound | undefined> {
    const { holder, redis, config } = this.#o;
    if (holder !== undefined) {
      const ttlMs = LEASE_ROUNDS * (this.#o.intervalMs ?? FLEET_UPKEEP_INTERVAL_MS);
      this.#leading = await holdLease(redis, fleetKeys(config.redis.prefix).upkeepLeader, holder, ttlMs);
      if (!this.#leading) return undefined;
    }
    return this.round();
  }

  /** One round, whoever holds the lease. */
  async round(): Promise<UpkeepRound> {
    const { redis, config } = this.#o;
    const prefix = config.redis.prefix;
    // One command per lane (each lane is its own hash slot), asking for every hash admission
    // reads: the models hash can go without the settings (a worker whose config served no model
    // published none), and admission then refuses every job until it is back. Redis keeps no
    // empty hash, so "exists" is "holds something": the output caps and configured fallbacks are
    // looked for only when this config has some (a lost output-caps hash refused every request
    // without an output bound; a lost fallbacks hash kept late jobs from their fallbacks).
    const hasCaps = Object.values(config.models).some((m) => m.maxOutputTokens !== undefined);
    const hasFallbacks = Object.values(config.models).some((m) => m.fallback.length > 0);
    const present = await Promise.all(
      LANES.map((lane) => {
        const k = laneKeys(prefix, lane);
        return redis.exists(k.settings, k.models, ...(hasCaps ? [k.outputCaps] : []), ...(hasFallbacks ? [k.fallbacks] : []));
      }),
    );
    const expected = 2 + Number(hasCaps) + Number(hasFallbacks);
    const missing = LANES.filter((_, i) => present[i] !== expected);
    const republished = missing.length > 0;
    if (republished) {
      await publishFleetSettings(redis, config);
      this.#o.logger?.warn({ event: 'fleet.settings_republished', lanes: missing }, 'fleet settings or models were missing from Redis (restart without persistence, FLUSHALL?); published them again');
    }
    const [sec, usec] = (await redis.time()) as [string | number, string | number];
    const staleBefore = Number(sec) * 1000 + Math.floor(Number(usec) / 1000) - RETURNING_STALE_MS;
    const released = await Promise.all(LANES.map((lane) => this.#sweep(lane, staleBefore)));
    return { republished, released: released.reduce((a, b) => a + b, 0) };
  }

  async #sweep(lane: Lane, staleBefore: number): Promise<number> {
    const { redis, config } = this.#o;
    const k = laneKeys(config.redis.prefix, lane);
    await redis.zremrangebyscore(k.returning, '-inf', staleBefore);
    const [next, flat] = await redis.hscan(k.unfinished, this.#cursors.get(lane) ?? '0', 'COUNT', this.#o.sweepCount ?? SWEEP_COUNT);
    this.#cursors.set(lane, next);
    const ids: string[] = [];
    for (let i = 0; i < flat.length; i += 2) ids.push(flat[i]!);
    return releaseJobs(redis, config.redis.prefix, lane, ids);
  }
}
