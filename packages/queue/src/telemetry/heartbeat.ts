/**
 * Heartbeats: every few seconds each worker process writes one entry of the fleet's `workers`
 * hash (in-flight jobs, concurrency), and each gateway one of its `gateways` hash (requests in
 * flight), so the dashboard and `headroom status` see every process. (Models' health is no longer per process: the fleet-wide throttle lives beside each
 * pool's bucket, and readers take it from there.)
 *
 * Hash fields cannot expire before Redis 7.4, so each entry carries its own expiry, stamped in
 * Redis time (`TIME`) so worker and dashboard clocks never need to agree. Readers skip expired
 * entries; writers prune entries dead for an hour; a worker that stops cleanly removes its own.
 *
 * ```ts
 * const hb = new Heartbeat({ redis, prefix, id, concurrency, inFlight: () => n });
 * hb.start();
 * const { alive } = await readHeartbeats(redis, prefix);
 * await hb.stop();
 * ```
 */
import { hostname } from 'node:os';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { fleetKeys } from '../keys.js';
import type { Logger } from '../logger.js';

export const HEARTBEAT_INTERVAL_MS = 5_000;

/** How long one beat vouches for a process beating every `intervalMs`, unless its `ttlMs` says otherwise: three beats. */
export function heartbeatTtlMs(intervalMs: number): number {
  return 3 * intervalMs;
}
/** An entry dead this long is deleted by the next writer that prunes. */
const PRUNE_AFTER_MS = 3600_000;
/** Writers look for dead entries every this many beats (one HGETALL a minute at the default). */
const PRUNE_EVERY_BEATS = 12;

export interface WorkerHeartbeat {
  id: string;
  host: string;
  pid: number;
  /** Redis time of the beat, ms. */
  atMs: number;
  /** Redis time after which the entry counts as dead, ms. */
  expiresAtMs: number;
  /** Worker clock, ms: when the process started. */
  startedAt: number;
  /** A worker's jobs in flight; a gateway's requests. */
  inFlight: number;
  /** A worker's call slots; 0 for a gateway, which holds none. */
  concurrency: number;
  /**
   * A worker's streamed jobs whose relay one of its calls is writing, as of the beat. A rerun that
   * follows the relay of a job this worker lost (the worker's relay-follow.ts) learns from a beat
   * without the job that the call has ended, though the worker lives: the rest will not come.
   * Absent from a gateway's beat and from a worker's of a version before it.
   */
  relaying?: string[];
}

/** The processes that beat: each kind has its own hash. */
export type HeartbeatKind = 'worker' | 'gateway';

const keyOf = (prefix: string, kind: HeartbeatKind) => (kind === 'gateway' ? fleetKeys(prefix).gateways : fleetKeys(prefix).workers);

export interface HeartbeatOptions {
  redis: Redis | Cluster;
  prefix: string;
  /** @default 'worker' */
  kind?: HeartbeatKind;
  id: string;
  concurrency: number;
  inFlight: () => number;
  /** A worker's streamed jobs whose relay it is writing (`WorkerHeartbeat.relaying`); left out of the beat when not given. */
  relaying?: () => readonly string[];
  /** @default 5000 */
  intervalMs?: number;
  /** How long one beat vouches for the process. @default 3 x intervalMs */
  ttlMs?: number;
  logger?: Logger;
  /** Worker clock, for `startedAt`. @default Date.now */
  now?: () => number;
}

/** Redis's `TIME` reply in ms. */
function msOfTime(time: readonly (string | number)[]): number {
  const [sec, usec] = time.map(Number) as [number, number];
  return sec * 1000 + Math.floor(usec / 1000);
}

async function redisNowMs(redis: Redis | Cluster): Promise<number> {
  return msOfTime(await redis.time());
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  readonly #intervalMs: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #startedAt: number;
  #timer: NodeJS.Timeout | undefined;
  #beats = 0;
  /** A beat written since the connection was last (re)made (see `written`). */
  #current = false;
  #running: Promise<void> | undefined;
  // A connection that closed may come back to a Redis that lost its data (restarted without
  // persistence, a failover to an empty replica): this process's entry may be gone.
  readonly #onClose = () => {
    this.#current = false;
  };
  // Beats at once on a connection made again, not an interval later.
  readonly #onReady = () => {
    if (this.#timer) this.#tick();
  };

  constructor(options: HeartbeatOptions) {
    this.#o = options;
    this.#intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.#ttlMs = options.ttlMs ?? heartbeatTtlMs(this.#intervalMs);
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
  }

  /** Beats at once, then every interval. Never throws: a missed beat only ages the entry. */
  start(): void {
    if (this.#timer) return;
    this.#o.redis.on('close', this.#onClose);
    this.#o.redis.on('ready', this.#onReady);
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.#intervalMs);
    this.#timer.unref();
  }

  /**
   * A beat has been written since the connection was last (re)made: until then this process may
   * have no entry. A gateway names itself on the jobs it enqueues only while this holds, so a
   * worker never finds a job whose gateway it cannot see. Counted from the first beat alone, a
   * gateway went on naming itself after Redis came back empty, and the workers withdrew every call
   * it enqueued until its next beat (`CANCELLED`, the gateway taken for gone) though it lived.
   */
  get written(): boolean {
    return this.#current;
  }

  /** Writes one entry now. */
  async beat(): Promise<void> {
    const { redis, prefix, id } = this.#o;
    const atMs = await redisNowMs(redis);
    const entry: WorkerHeartbeat = {
      id,
      host: hostname(),
      pid: process.pid,
      atMs,
      expiresAtMs: atMs + this.#ttlMs,
      startedAt: this.#startedAt,
      inFlight: this.#o.inFlight(),
      concurrency: this.#o.concurrency,
      ...(this.#o.relaying === undefined ? {} : { relaying: [...this.#o.relaying()] }),
    };
    const key = keyOf(prefix, this.#o.kind ?? 'worker');
    await redis.hset(key, id, JSON.stringify(entry));
    this.#current = true;
    if (++this.#beats % PRUNE_EVERY_BEATS === 0) await this.#prune(key, atMs);
  }

  /** Stops beating and removes this process's entry, so it leaves the dashboard at once. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#o.redis.off('close', this.#onClose);
    this.#o.redis.off('ready', this.#onReady);
    await this.#running;
    await this.#o.redis.hdel(keyOf(this.#o.prefix, this.#o.kind ?? 'worker'), this.#o.id).catch(() => {});
  }

  #tick(): void {
    // One beat at a time: a slow Redis must not pile up writes.
    if (this.#running) return;
    this.#running = this.beat()
      .catch((err: Error) => this.#o.logger?.warn({ err: err.message }, 'heartbeat failed'))
      .finally(() => {
        this.#running = undefined;
      });
  }

  async #prune(key: string, nowMs: number): Promise<void> {
    const all = await this.#o.redis.hgetall(key);
    const dead = Object.entries(all)
      .filter(([, raw]) => {
        const hb = parseHeartbeat(raw);
        return hb === undefined || hb.expiresAtMs + PRUNE_AFTER_MS < nowMs;
      })
      .map(([field]) => field);
    if (dead.length > 0) await this.#o.redis.hdel(key, ...dead);
  }
}

function parseHeartbeat(raw: string): WorkerHeartbeat | undefined {
  try {
    const v = JSON.parse(raw) as Partial<WorkerHeartbeat>;
    if (typeof v.id !== 'string' || typeof v.atMs !== 'number' || typeof v.expiresAtMs !== 'number') return undefined;
    // An older worker's entry may carry its breakers: dropped, they no longer mean anything here.
    const { breakers: _, ...entry } = v as Partial<WorkerHeartbeat> & { breakers?: unknown };
    return entry as WorkerHeartbeat;
  } catch {
    return undefined;
  }
}

export interface Heartbeats {
  /** Redis time of the read, ms. */
  atMs: number;
  /** Live processes, by id. */
  alive: WorkerHeartbeat[];
  /** Ids whose last beat has expired: stopped without a clean shutdown, or cut off from Redis. */
  expired: string[];
}

/** The fleet's workers (or gateways) as of now; one round trip. */
export async function readHeartbeats(redis: Redis | Cluster, prefix: string, kind: HeartbeatKind = 'worker'): Promise<Heartbeats> {
  const { atMs, reply: hash } = await atRedisTime(redis, (m) => m.hgetall(keyOf(prefix, kind)));
  const alive: WorkerHeartbeat[] = [];
  const expired: string[] = [];
  for (const [field, raw] of Object.entries((hash ?? {}) as Record<string, string>)) {
    const hb = parseHeartbeat(raw);
    if (hb && hb.expiresAtMs >= atMs) alive.push(hb);
    else expired.push(field);
  }
  alive.sort((a, b) => a.id.localeCompare(b.id));
  expired.sort();
  return { atMs, alive, expired };
}

/**
 * One process's beat as of now: `alive` (its entry has not expired), `expired` (it beat, and has
 * not since its entry's expiry: dead, or cut off from Redis; a Redis paused longer than the
 * entry's life shows every process expired until each beats again, within one interval), or
 * `absent` (no entry: it stopped cleanly, never beat, or Redis lost the hash); with the entry
 * itself when there is one (what the process said in its last beat). One round trip.
 */
export async function heartbeatOf(redis: Redis | Cluster, prefix: string, id: string, kind: HeartbeatKind = 'worker'): Promise<{ state: 'alive' | 'expired' | 'absent'; entry?: WorkerHeartbeat }> {
  const { atMs, reply: raw } = await atRedisTime(redis, (m) => m.hget(keyOf(prefix, kind), id));
  const entry = typeof raw === 'string' ? parseHeartbeat(raw) : undefined;
  if (entry === undefined) return { state: 'absent' };
  return { state: entry.expiresAtMs >= atMs ? 'alive' : 'expired', entry };
}

/**
 * One read of the heartbeats' hash with Redis's time, in one MULTI: consistent on any node layout
 * (the hash has one slot), and the entries' expiries are in Redis time.
 */
async function atRedisTime(redis: Redis | Cluster, read: (m: ChainableCommander) => ChainableCommander): Promise<{ atMs: number; reply: unknown }> {
  const replies = (await read(redis.multi().time()).exec()) ?? [];
  const [timeErr, time] = replies[0] ?? [new Error('missing reply'), null];
  const [readErr, reply] = replies[1] ?? [new Error('missing reply'), null];
  if (timeErr) throw timeErr;
  if (readErr) throw readErr;
  return { atMs: msOfTime(time as string[]), reply };
}
