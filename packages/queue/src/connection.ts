/**
 * How Headroom opens Redis connections, so producers and workers agree on the settings BullMQ and
 * our failure modes need.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from './errors.js';

/** A `redis://` / `rediss://` URL (password and TLS come with the URL), or a connection you own. */
export type RedisInput = string | Redis | Cluster;

export type ConnectionRole =
  /** Fails fast while Redis is away, so `enqueue` never hangs. */
  | 'producer'
  /** Retries forever: BullMQ workers and blocking readers require `maxRetriesPerRequest: null`. */
  | 'worker';

const ROLE_OPTIONS: Record<ConnectionRole, RedisOptions> = {
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000 },
  worker: { maxRetriesPerRequest: null, enableReadyCheck: true },
};

const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2_000);

export function createRedis(url: string, role: ConnectionRole, extra: RedisOptions = {}): Redis {
  return new Redis(url, { ...ROLE_OPTIONS[role], retryStrategy, lazyConnect: false, ...extra });
}

/** Opens a connection of the same kind (standalone or cluster) as `conn`, for another role. */
export function duplicateFor(conn: Redis | Cluster, role: ConnectionRole): Redis | Cluster {
  if (conn instanceof Cluster) {
    return conn.duplicate(undefined, { redisOptions: { ...conn.options.redisOptions, ...ROLE_OPTIONS[role] } });
  }
  return conn.duplicate({ ...ROLE_OPTIONS[role] });
}

/**
 * Resolves when `conn` is ready, or throws `RedisUnavailableError`: at once while the connection
 * is between reconnect attempts, on the first connection error, or after `timeoutMs`. A
 * producer with Redis away gets a clear error instead of a hang.
 */
export async function waitForReady(conn: Redis | Cluster, timeoutMs: number): Promise<void> {
  if (conn.status === 'ready') return;
  if (conn.status === 'end' || conn.status === 'close') throw new RedisUnavailableError('the connection was closed');
  if (conn.status === 'reconnecting') throw new RedisUnavailableError('the connection was lost and is reconnecting');
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      conn.off('ready', onReady);
      conn.off('error', onError);
      if (err) reject(err); else resolve();
    };
    const onReady = () => done();
    const onError = (err: Error) => done(new RedisUnavailableError(err.message, err));
    const timer = setTimeout(() => done(new RedisUnavailableError(`not ready after ${timeoutMs} ms`)), timeoutMs);
    conn.on('ready', onReady);
    conn.on('error', onError);
  });
}

/** Maps ioredis' "not connected" failures to `RedisUnavailableError`; passes others through. */
export function asRedisError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  if (/Stream isn't writeable|Connection is closed|ECONNREFUSED|ETIMEDOUT|Reached the max retries|enableOfflineQueue/i.test(err.message)) {
    return new RedisUnavailableError(err.message, err);
  }
  return err;
}
