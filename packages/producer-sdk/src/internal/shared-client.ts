/**
 * Producers in one process that talk to the same Redis share one connection, one BullMQ Queue per
 * lane and one enqueue batcher per key prefix. A service that builds a Producer per module or per
 * request handler then holds one connection, not one each, and the enqueues its producers have in
 * flight go to Redis together: a script call per batch instead of one per job, which is what a
 * single producer with as many calls in flight gets.
 *
 * Producers made from the same URL string share a connection that the last of them to close
 * disconnects. Producers handed the same ioredis connection share it too; it stays the caller's
 * to close.
 */
import { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { createRedis, laneKeys, reportOutages, watchAttempts, type Lane, type LoggerLike, type RedisInput } from '@headroom/queue';
import { EnqueueBatcher } from './enqueue-batcher.js';

export class SharedClient {
  private refs = 0;
  /** Per key prefix, per lane. */
  private readonly queues = new Map<string, Map<Lane, Queue>>();
  private readonly batchers = new Map<string, EnqueueBatcher>();
  /** Per logger: the producers that gave it, and what stops its outage lines. */
  private readonly outageLoggers = new Map<LoggerLike, { refs: number; stop: () => void }>();

  constructor(
    readonly redis: Redis | Cluster,
    private readonly owned: { url: string } | undefined,
  ) {
    // Connection errors surface through the calls that hit them; an unhandled 'error' event would crash the host.
    redis.on('error', () => {});
    // A connection the caller opened: a call between two attempts then knows why the last one
    // failed (a refusal is REDIS_REFUSED); one from a URL is watched by `createRedis`.
    if (!owned) watchAttempts(redis);
  }

  /** The lane's BullMQ Queue under `prefix`. */
  queue(prefix: string, lane: Lane): Queue {
    let lanes = this.queues.get(prefix);
    if (!lanes) {
      lanes = new Map();
      this.queues.set(prefix, lanes);
    }
    let q = lanes.get(lane);
    if (!q) {
      const k = laneKeys(prefix, lane);
      // The Queue builds BullMQ's add arguments before admission: it must write nothing itself
      // (BullMQ's queue metadata is the fleet's to write), or a refused enqueue would leave a trace.
      q = new Queue(k.queueName, { connection: this.redis as Redis, prefix: k.bullPrefix, skipMetasUpdate: true });
      q.on('error', () => {});
      lanes.set(lane, q);
    }
    return q;
  }

  batcher(prefix: string): EnqueueBatcher {
    let b = this.batchers.get(prefix);
    if (!b) {
      b = new EnqueueBatcher(this.redis, prefix, (lane) => this.queue(prefix, lane));
      this.batchers.set(prefix, b);
    }
    return b;
  }

  /**
   * Logs this connection's outages to `logger` (connection-outages.ts: one line when Redis goes, one
   * when it is back) until the returned function is called. Producers sharing the connection and
   * the logger (an app's one logger) get one pair of lines, not one per producer.
   */
  reportOutagesTo(logger: LoggerLike): () => void {
    let entry = this.outageLoggers.get(logger);
    if (!entry) {
      entry = { refs: 0, stop: reportOutages(this.redis, logger, 'producer') };
      this.outageLoggers.set(logger, entry);
    }
    const held = entry;
    held.refs++;
    return () => {
      if (--held.refs > 0) return;
      held.stop();
      this.outageLoggers.delete(logger);
    };
  }

  retain(): this {
    this.refs++;
    return this;
  }

  /** The last producer to let go closes the Queues, and the connection when it was made from a URL. */
  async release(): Promise<void> {
    if (--this.refs > 0) return;
    if (this.owned) byUrl.delete(this.owned.url);
    else byConnection.delete(this.redis);
    const queues = [...this.queues.values()].flatMap((lanes) => [...lanes.values()]);
    this.queues.clear();
    this.batchers.clear();
    await Promise.all(queues.map((q) => q.close()));
    if (this.owned) this.redis.disconnect();
  }
}

const byUrl = new Map<string, SharedClient>();
const byConnection = new WeakMap<Redis | Cluster, SharedClient>();

/** This process's client for `redis`, retained for one more producer: pair with `release()`. */
export function sharedClient(redis: RedisInput): SharedClient {
  if (typeof redis === 'string') {
    let client = byUrl.get(redis);
    if (!client) {
      client = new SharedClient(createRedis(redis, 'producer'), { url: redis });
      byUrl.set(redis, client);
    }
    return client.retain();
  }
  let client = byConnection.get(redis);
  if (!client) {
    client = new SharedClient(redis, undefined);
    byConnection.set(redis, client);
  }
  return client.retain();
}
