/**
 * One JSON log line per connection per outage, not one per reconnect attempt.
 *
 * ioredis emits `error` on every failed reconnect (every 50 ms to 2 s while Redis is away), and a
 * connection with no `error` listener prints `[ioredis] Unhandled error event: Error: ...` and a
 * stack to stderr instead: a worker that lost Redis for a few minutes wrote hundreds of such
 * lines between its JSON ones. Every connection a Headroom process opens gets this listener.
 *
 * ```ts
 * const redis = createRedis(url, 'worker');
 * reportOutages(redis, logger, 'main');    // warn "redis connection lost" once, info "redis connection back" once
 *                                          // (never made yet: "could not be made", then "made")
 * worker.on('error', (err) => { if (!isConnectionError(err)) logger.warn({ err: err.message }, 'lane worker error'); });
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
import { asRedisError } from './connection.js';
import { RedisUnavailableError } from './errors.js';
import type { LoggerLike } from './logger.js';

/**
 * Logs the first error of an outage on `conn` (warn, with `connection: name` and the error's
 * message) and its end when the connection is ready again (info); the errors in between are
 * the same outage retried, and are dropped. An error while the connection is ready (no outage
 * under way) is logged too. A connection not yet made (Redis down as a service starts) was not
 * lost: it says `could not be made` and `made` instead. Returns what stops it: a producer that
 * closes leaves a connection it shares (or was handed) to others, without its listeners.
 */
export function reportOutages(conn: Redis | Cluster, logger: LoggerLike, name: string): () => void {
  let down = false;
  let made = conn.status === 'ready';
  const onError = (err: Error) => {
    if (down && conn.status !== 'ready') return;
    down = true;
    logger.warn({ connection: name, err: err.message }, made ? 'redis connection lost; reconnecting' : 'redis connection could not be made; retrying');
  };
  const onReady = () => {
    const wasMade = made;
    made = true;
    if (!down) return;
    down = false;
    logger.info({ connection: name }, wasMade ? 'redis connection back' : 'redis connection made');
  };
  conn.on('error', onError);
  conn.on('ready', onReady);
  return () => {
    conn.off('error', onError);
    conn.off('ready', onReady);
  };
}

/**
 * Whether `err` says the connection failed rather than a command: a socket error (refused,
 * reset, timed out, name lookup) or ioredis' "not connected" errors. BullMQ's Worker, Queue and
 * QueueEvents re-emit their connections' errors as their own; a listener on them skips these,
 * which the connection's `reportOutages` already reported once.
 */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (typeof (err as NodeJS.ErrnoException).syscall === 'string') return true;
  return asRedisError(err) instanceof RedisUnavailableError;
}
