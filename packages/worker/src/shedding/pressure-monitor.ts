/**
 * Computes each pool's pressure about once a second and acts on it: while a pool's pressure is
 * at or above `shedding.lowAt`, new LOW jobs for it are refused at admission (a short-lived
 * `shedding` entry in the LOW lane's slot, read by the admission script) and waiting LOW jobs
 * past their max wait are shed when they reach the front of the lane. Every worker runs one;
 * their writes are idempotent, so the fleet keeps shedding as long as any worker lives, and
 * stops by itself (the entries expire) when none does.
 */
import type { Cluster, Redis } from 'ioredis';
import { capacityOf, computePressure, fleetKeys, INTERACTIVE_LANES, laneKeys, poolOf, type Bucket, type HeadroomConfig, type InteractiveLane, type Pressure, readFleetStats, type Logger } from '@headroom/queue';

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

export class PressureMonitor {
  private readonly latest = new Map<string, Pressure>();
  private readonly pools: Map<string, string[]>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly bucket: Bucket,
    private readonly config: HeadroomConfig,
    private readonly logger: Logger,
    private readonly intervalMs = 1_000,
    private readonly adjust: PressureAdjust = (_pool, computed) => computed,
  ) {
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
   * Age of the job at the front of a lane: BullMQ takes from the right end of `wait`, then the
   * lowest score of `prioritized` (where a fair lane keeps its jobs).
   */
  private async oldestWaitMs(lane: InteractiveLane): Promise<number> {
    const k = laneKeys(this.config.redis.prefix, lane);
    const id = (await this.redis.lindex(k.wait, -1)) ?? (await this.redis.zrange(k.prioritized, '0', '0'))[0];
    if (!id) return 0;
    const timestamp = Number(await this.redis.hget(`${k.jobKeyPrefix}${id}`, 'timestamp'));
    return Number.isFinite(timestamp) && timestamp > 0 ? Math.max(0, Date.now() - timestamp) : 0;
  }

  async tick(): Promise<void> {
    const prefix = this.config.redis.prefix;
    // Two commands per lane, sent together: each lane is its own Redis Cluster slot. A fair lane
    // keeps its waiting jobs in `prioritized`.
    const depths = await Promise.all(
      INTERACTIVE_LANES.flatMap((lane) => {
        const k = laneKeys(prefix, lane);
        return [this.redis.llen(k.wait), this.redis.zcard(k.prioritized)];
      }),
    );
    const backlogJobs = depths.reduce((a, b) => a + b, 0);
    const oldestLowWaitMs = await this.oldestWaitMs('low');
    const stats = await readFleetStats(this.redis, prefix, 5);

    const shedLanes: InteractiveLane[] = this.config.shedding.shedNormal ? ['low', 'normal'] : ['low'];
    for (const [pool, models] of this.pools) {
      const limits = this.config.models[models[0]!]!.limits;
      // With its models' throttles: capacity a brownout takes away counts as pressure.
      const snapshot = await this.bucket.snapshot(pool, limits, { models });
      const pressure = this.adjust(pool, computePressure({ snapshot, models, backlogJobs, meanNeed: meanNeed(models, stats), horizonMs: this.config.shedding.horizonMs, reserve: this.config.lanes.low.reserve, oldestWaitMs: oldestLowWaitMs, maxWaitMs: this.config.lanes.low.maxWaitMs, capacityFactor: capacityOf(models, snapshot.throttles) }));
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
