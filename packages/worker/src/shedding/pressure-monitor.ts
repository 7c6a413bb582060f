/**
 * Computes each pool's pressure about once a second and acts on it: while a pool's pressure is
 * at or above `shedding.lowAt`, new LOW jobs for it are refused at admission (a short-lived
 * `shedding` entry in the LOW lane's slot, read by the admission script) and waiting LOW jobs
 * past their max wait are shed when they reach the front of the lane.
 *
 * One worker computes it for the fleet: the one holding a short lease (`pressureLeader`, three
 * ticks long), which writes the shedding entries and each pool's pressure (`{…:fleet}:pressure`,
 * also what the dashboard shows). The others read that hash, one command a tick where computing
 * took about twenty (lane depths, the oldest LOW job, five minutes of fleet stats, a bucket
 * snapshot per pool, two writes), the same values from every worker. A leader that dies is
 * replaced within the lease; the shedding entries outlive that gap, and expire by themselves when
 * no worker is left.
 *
 * An idle fleet's pressure stays at rest, so the leader does not compute it again while nothing it
 * is made of can have moved (see `Resting`): a tick then reads the lanes' depths and each pool's
 * bucket state, where computing took about seventy commands for four pools.
 */
import type { Cluster, Redis } from 'ioredis';
import { capacityOf, computePressure, fleetKeys, holdLease, INTERACTIVE_LANES, laneKeys, poolOf, readFleetStats, releaseLease, type Bucket, type HeadroomConfig, type InteractiveLane, type Logger, type Pressure } from '@headroom/queue';

/**
 * Given each pool's computed pressure, the pressure to act on: the identity by default. Tests
 * inject the pressure they need (a brownout at a moment they choose) instead of waiting for load
 * to build one, which a busy machine can delay.
 */
export type PressureAdjust = (pool: string, computed: Pressure) => Pressure;

/**
 * A shedding entry outlives ticks a loaded machine delays by seconds (a tick makes about ten round
 * trips), not a dead fleet for long: nothing refreshes it once every worker is gone.
 */
const HOLD_MS = 10_000;
const MIN_RETRY_HINT_MS = 1_000;
/** The leader's lease, in ticks: a leader late by a tick or two keeps it. */
const LEASE_TICKS = 3;
/**
 * The jobs at the front of the LOW lane whose ages are read each compute (one read each): enough to
 * see past a few of another pool's jobs held there, few enough to cost a tick little.
 */
const FRONT_JOBS = 16;

export interface PressureMonitorOptions {
  redis: Redis | Cluster;
  bucket: Bucket;
  config: HeadroomConfig;
  logger: Logger;
  /** This worker's id: the lease's holder while it computes for the fleet. */
  holder: string;
  /** @default 1000 */
  intervalMs?: number;
  /** Applied by the worker that computes. @default the identity */
  adjust?: PressureAdjust;
}

/**
 * What the last compute found when it left every pool at rest (no pressure, full buckets, no
 * cooldown) with no job waiting or running in the interactive lanes: each pool's bucket state as
 * read before that compute, and the pressure it computed. Every input of the pressure moves only
 * through a job: a backlog, or a call, which is granted (the state string is rewritten) before it
 * can sync a bucket, cool a model down or move a throttle, and runs inside an active job. So while
 * the lanes stay empty and no state string changes, a new compute would give the same at-rest
 * values and write nothing new. Time alone only brings pressure back towards rest, and while it is
 * not at rest the leader computes every tick.
 */
interface Resting {
  states: (Buffer | null)[];
  computed: Map<string, Pressure>;
}

/** A pool's pressure as the computing worker published it (`{…:fleet}:pressure`). */
interface Published extends Pressure {
  /** Redis time of the bucket snapshot it was computed from. */
  atMs: number;
  shedding: boolean;
}

export class PressureMonitor {
  private readonly latest = new Map<string, Pressure>();
  private readonly pools: Map<string, string[]>;
  private readonly redis: Redis | Cluster;
  private readonly bucket: Bucket;
  private readonly config: HeadroomConfig;
  private readonly logger: Logger;
  private readonly holder: string;
  private readonly intervalMs: number;
  private readonly adjust: PressureAdjust;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Whether this worker computed the last tick (it then gives the lease up when it stops). */
  private leading = false;
  /** Set while the last compute found the fleet idle and every pool at rest; cleared when this worker stops leading. */
  private resting: Resting | undefined;

  constructor(opts: PressureMonitorOptions) {
    const { config } = opts;
    this.redis = opts.redis;
    this.bucket = opts.bucket;
    this.config = config;
    this.logger = opts.logger;
    this.holder = opts.holder;
    this.intervalMs = opts.intervalMs ?? 1_000;
    this.adjust = opts.adjust ?? ((_pool, computed) => computed);
    this.pools = new Map();
    for (const model of Object.keys(config.models)) {
      const pool = poolOf(config, model);
      this.pools.set(pool, [...(this.pools.get(pool) ?? []), model]);
    }
  }

  start(): void {
    if (!this.config.shedding.enabled || this.timer) return;
    this.timer = setInterval(() => {
      this.running ??= this.tick()
        .catch((err: Error) => this.logger.warn({ err: err.message }, 'pressure tick failed'))
        .finally(() => { this.running = undefined; });
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    // Another worker takes over at its next tick, not at the lease's expiry.
    if (this.leading) {
      this.leading = false;
      await releaseLease(this.redis, fleetKeys(this.config.redis.prefix).pressureLeader, this.holder).catch(() => {});
    }
  }

  /** Lanes whose waiting jobs this pool's pressure sheds. */
  shedsLane(pool: string, lane: InteractiveLane): boolean {
    if (!this.config.shedding.enabled) return false;
    if (lane !== 'low' && !(lane === 'normal' && this.config.shedding.shedNormal)) return false;
    return (this.latest.get(pool)?.value ?? 0) >= this.config.shedding.lowAt;
  }

  pressureOf(pool: string): Pressure | undefined {
    return this.latest.get(pool);
  }

  /** When a new job for the pool may be admitted again: about the time its backlog takes to drain. */
  retryHintMs(pool: string): number {
    return retryHintOf(this.latest.get(pool), this.config.shedding.horizonMs);
  }

  /**
   * How long the oldest of each pool's jobs among the next `FRONT_JOBS` a lane hands out has
   * waited: BullMQ takes from the right end of `wait`, then the lowest scores of `prioritized`
   * (where a fair lane keeps its jobs). Per pool, read from each job's name (`provider:model`, its
   * primary): a lane mixes pools, and one pool's late job (its bucket saturated) says nothing of
   * another's, whose LOW jobs it shed when the other's bucket was merely drawn down.
   */
  private async oldestWaitByPool(lane: InteractiveLane): Promise<Map<string, number>> {
    const k = laneKeys(this.config.redis.prefix, lane);
    const waiting = (await this.redis.lrange(k.wait, -FRONT_JOBS, -1)).reverse();
    const ids = waiting.length < FRONT_JOBS ? [...waiting, ...(await this.redis.zrange(k.prioritized, '0', String(FRONT_JOBS - waiting.length - 1)))] : waiting;
    const fields = await Promise.all(ids.map((id) => this.redis.hmget(`${k.jobKeyPrefix}${id}`, 'name', 'timestamp')));
    const now = Date.now();
    const oldest = new Map<string, number>();
    for (const [name, at] of fields) {
      const model = name?.slice(name.indexOf(':') + 1);
      const timestamp = Number(at);
      if (!model || !this.config.models[model] || !Number.isFinite(timestamp) || timestamp <= 0) continue;
      const pool = poolOf(this.config, model);
      oldest.set(pool, Math.max(oldest.get(pool) ?? 0, now - timestamp));
    }
    return oldest;
  }

  /** One tick: computes and publishes the pools' pressure while this worker leads, else reads it. */
  async tick(): Promise<void> {
    const lease = fleetKeys(this.config.redis.prefix).pressureLeader;
    this.leading = await holdLease(this.redis, lease, this.holder, LEASE_TICKS * this.intervalMs);
    if (!this.leading) {
      // Another worker led meanwhile: what this one knew of the rest is not to be trusted.
      this.resting = undefined;
      return this.follow();
    }
    try {
      await this.compute();
    } catch (err) {
      // A leader that cannot compute (its bucket connection down, say) lets another try next tick.
      this.leading = false;
      this.resting = undefined;
      await releaseLease(this.redis, lease, this.holder).catch(() => {});
      throw err;
    }
  }

  /**
   * Takes the pressure the leader published. One older than a shedding entry's hold by this
   * worker's clock (a leader stalled while it keeps its lease) is no longer acted on: no pressure
   * is known then, as at a worker's start, and admission's own entries expire the same way.
   */
  private async follow(): Promise<void> {
    const published = await this.redis.hgetall(fleetKeys(this.config.redis.prefix).pressure);
    for (const pool of this.pools.keys()) {
      const entry = parsePublished(published[pool]);
      if (entry && Date.now() - entry.atMs <= HOLD_MS) {
        const { atMs: _atMs, shedding: _shedding, ...pressure } = entry;
        this.latest.set(pool, pressure);
      } else {
        this.latest.delete(pool);
      }
    }
  }

  private async compute(): Promise<void> {
    const prefix = this.config.redis.prefix;
    // Three commands per lane, sent together: each lane is its own Redis Cluster slot. A fair lane
    // keeps its waiting jobs in `prioritized`. Read before the buckets, so a grant in between is
    // seen as a change at the next tick.
    const [depths, states] = await Promise.all([
      Promise.all(
        INTERACTIVE_LANES.map(async (lane) => {
          const k = laneKeys(prefix, lane);
          const [waiting, prioritized, active] = await Promise.all([this.redis.llen(k.wait), this.redis.zcard(k.prioritized), this.redis.llen(k.active)]);
          return { backlog: waiting + prioritized, active };
        }),
      ),
      Promise.all([...this.pools.keys()].map((pool) => this.redis.getBuffer(this.bucket.keys(pool).bucket))),
    ]);
    const backlogJobs = depths.reduce((a, d) => a + d.backlog, 0);
    const idle = depths.every((d) => d.backlog === 0 && d.active === 0);
    if (idle && this.stillResting(states)) return;
    const oldestLowWaitByPool = await this.oldestWaitByPool('low');
    const stats = await readFleetStats(this.redis, prefix, 5);

    const shedLanes: InteractiveLane[] = this.config.shedding.shedNormal ? ['low', 'normal'] : ['low'];
    const computed = new Map<string, Pressure>();
    for (const [pool, models] of this.pools) {
      const limits = this.config.models[models[0]!]!.limits;
      // With its models' throttles: capacity a brownout takes away counts as pressure.
      const snapshot = await this.bucket.snapshot(pool, limits, { models });
      const raw = computePressure({ snapshot, models, backlogJobs, meanNeed: meanNeed(models, stats), horizonMs: this.config.shedding.horizonMs, reserve: this.config.lanes.low.reserve, oldestWaitMs: oldestLowWaitByPool.get(pool) ?? 0, maxWaitMs: this.config.lanes.low.maxWaitMs, capacityFactor: capacityOf(models, snapshot.throttles) });
      computed.set(pool, raw);
      const pressure = this.adjust(pool, raw);
      const was = this.latest.get(pool)?.value ?? 0;
      this.latest.set(pool, pressure);
      const shedding = pressure.value >= this.config.shedding.lowAt;
      if (shedding !== was >= this.config.shedding.lowAt) {
        this.logger.info({ pool, pressure: pressure.value, binding: pressure.binding, drainMs: Math.round(pressure.drainMs) }, shedding ? 'pool under pressure: shedding LOW' : 'pool pressure cleared');
      }
      const retryHint = retryHintOf(pressure, this.config.shedding.horizonMs);
      // Redis time (from the snapshot) so the admission script's own TIME compares like with like.
      const entry = `${Math.round(snapshot.atMs + HOLD_MS)}:${Math.round(retryHint)}:${pressure.value.toFixed(3)}`;
      await Promise.all([
        ...shedLanes.map((lane) => {
          const key = laneKeys(prefix, lane).shedding;
          return shedding ? this.redis.hset(key, pool, entry) : this.redis.hdel(key, pool);
        }),
        this.redis.hset(fleetKeys(prefix).pressure, pool, JSON.stringify({ ...pressure, atMs: snapshot.atMs, shedding })),
      ]);
    }
    this.resting = idle && [...this.latest.values()].every(atRest) ? { states, computed } : undefined;
  }

  /**
   * Whether the last compute's rest still holds: no pool's bucket state has changed since, and the
   * pressure to act on (the injected adjustment applied to what was computed) is still at rest.
   * What was published then stays true: the dashboard shows it, and the other workers, once it
   * is older than a shedding entry's hold, act on no pressure, the same as none.
   */
  private stillResting(states: (Buffer | null)[]): boolean {
    const resting = this.resting;
    if (!resting) return false;
    const unchanged = states.every((state, i) => {
      const was = resting.states[i];
      return state === null || was === null || was === undefined ? state === was : state.equals(was);
    });
    return unchanged && [...resting.computed].every(([pool, pressure]) => atRest(this.adjust(pool, pressure)));
  }
}

/** No pressure, nothing drawn from the bucket, no model cooling down: what an idle pool shows. */
function atRest(p: Pressure): boolean {
  return p.value === 0 && p.utilization === 0 && p.drainMs === 0 && p.coolingModels === 0;
}

function parsePublished(raw: string | undefined): Published | undefined {
  if (raw === undefined) return undefined;
  try {
    const entry = JSON.parse(raw) as Partial<Published>;
    return typeof entry.value === 'number' && typeof entry.atMs === 'number' ? (entry as Published) : undefined;
  } catch {
    return undefined;
  }
}

function retryHintOf(pressure: Pressure | undefined, horizonMs: number): number {
  return Math.round(Math.max(MIN_RETRY_HINT_MS, Math.min(pressure?.drainMs ?? horizonMs, horizonMs)));
}

/** Mean tokens per successful call over the last minutes; a fresh fleet assumes small jobs. */
function meanNeed(models: string[], stats: Awaited<ReturnType<typeof readFleetStats>>): Record<string, number> {
  let calls = 0;
  let input = 0;
  let output = 0;
  for (const m of models) {
    calls += stats.calls[m]?.['200'] ?? 0;
    input += stats.tokens[m]?.input ?? 0;
    output += stats.tokens[m]?.output ?? 0;
  }
  const inAvg = calls > 0 ? input / calls : 0;
  const outAvg = calls > 0 ? output / calls : 0;
  return { rpm: 1, itpm: inAvg, otpm: outAvg, tpm: inAvg + outAvg };
}
