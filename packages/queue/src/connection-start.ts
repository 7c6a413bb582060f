/**
 * The one way any Headroom code waits for a Redis connection to be usable: a service at start,
 * a Producer's call, `headroom status`. A Redis that is down may come up (wait for it, as every
 * connection retries by itself), but one that answers and refuses the connection (a wrong or
 * missing password, a database it does not have, a certificate this process cannot verify)
 * refuses it again on every retry: that is a configuration mistake, `RedisRefusedError`
 * (`REDIS_REFUSED`, not retryable; a `headroom` service's start exits 2), naming the Redis and
 * the cause, whoever asked. A worker that waited on one of those waited for ever; a Producer got `REDIS_UNAVAILABLE`
 * (retryable) with Redis' bare reply, or only "the connection was lost and is reconnecting".
 *
 * ```ts
 * const redis = createRedis(url, 'worker');
 * await untilReady(redis);                       // waits while Redis is down; throws REDIS_REFUSED on a refusal
 * await untilReady(redis, { waitMs: 5_000 });    // REDIS_UNAVAILABLE once Redis is down for 5 s, or between retries
 * ```
 */
import { Cluster, type Redis } from 'ioredis';
import { RedisRefusedError, RedisUnavailableError } from './errors.js';
import { maskUrlPasswords } from './redaction.js';

/** Node's codes for a TLS peer whose certificate cannot be trusted, or that does not speak TLS. */
const TLS_REFUSALS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/**
 * Why `err` (a connection error) will not go away by retrying, or undefined when it may (refused,
 * reset, timed out: Redis down, restarting, or a network away). A TLS client on a plain Redis
 * port is one of the latter: Redis waits for the rest of a command that never comes, so all the
 * client sees is `connect ETIMEDOUT`, as from a host that is down.
 */
export function refusalOf(err: Error): string | undefined {
  // A cluster reports its nodes' errors under one "Failed to refresh slots cache".
  const nodeError = (err as { lastNodeError?: unknown }).lastNodeError;
  if (nodeError instanceof Error) return refusalOf(nodeError);
  const message = err.message;
  const command = (err as { command?: { name?: string; args?: unknown[] } }).command;
  if (command?.name === 'select') {
    return `it cannot select database ${String(command.args?.[0])} (${message}): the URL's /db must be one this Redis has (its \`databases\` setting, 16 by default: 0 to 15)`;
  }
  if (/^WRONGPASS\b/.test(message)) return `${message} (check the user and password in the URL)`;
  if (/^NOAUTH\b/.test(message)) return `it requires a password and the URL gives none (${message})`;
  if (/^NOPERM\b/.test(message)) return `the URL's user lacks a permission Headroom needs (${message})`;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && TLS_REFUSALS.has(code)) return `TLS: ${message} (a private CA: NODE_EXTRA_CA_CERTS)`;
  return undefined;
}

/**
 * Per connection, the error its latest connection attempt failed with, until it is ready again:
 * a call made between two attempts (the connection `reconnecting`) is told why the last one
 * failed, a refusal as a refusal, rather than waiting for the next attempt. `createRedis`
 * watches every connection it opens; `watchAttempts` watches one opened elsewhere.
 */
const lastFailure = new WeakMap<Redis | Cluster, Error>();
/** The URL a connection was opened from, as given (a refusal names it, password masked). */
const urlOf = new WeakMap<Redis | Cluster, string>();
const watched = new WeakSet<Redis | Cluster>();

/**
 * Starts remembering why `conn`'s connection attempts fail, for `untilReady`. Call it as soon as
 * the connection exists: an attempt that failed before is not known. `url`: what a refusal names.
 */
export function watchAttempts(conn: Redis | Cluster, url?: string): void {
  if (url !== undefined) urlOf.set(conn, url);
  if (watched.has(conn)) return;
  watched.add(conn);
  conn.on('error', (err: Error) => {
    // An error on a ready connection is a socket failing under it: the next attempt will say more.
    if (conn.status !== 'ready') lastFailure.set(conn, err);
  });
  conn.on('ready', () => lastFailure.delete(conn));
}

export interface UntilReadyOptions {
  /**
   * How long a Redis that is down is waited for. Past it, or at once when the connection is
   * between two attempts (an outage under way) or an attempt fails, `RedisUnavailableError`.
   * @default no limit: waited for as long as the outage lasts
   */
  waitMs?: number;
}

/**
 * Resolves once `conn` is ready. Throws:
 * - `RedisRefusedError` when Redis refused its latest attempt (or refuses the one under way),
 *   naming the URL the connection was opened from (password masked) and the cause;
 * - `RedisUnavailableError` when Redis is down and `waitMs` is given (see there), quoting the
 *   attempt's error; without `waitMs` a Redis that is down is waited for;
 * - `RedisUnavailableError` when the connection is closed (by its owner) before it is ready.
 */
export function untilReady(conn: Redis | Cluster, opts: UntilReadyOptions = {}): Promise<void> {
  watchAttempts(conn);
  if (conn.status === 'ready') return Promise.resolve();
  if (conn.status === 'end') return Promise.reject(new RedisUnavailableError('the connection was closed'));
  const refused = refusalOn(conn);
  if (refused !== undefined) return Promise.reject(refused);
  // Between attempts: a producer's call fails fast rather than wait out a retry delay.
  const failed = lastFailure.get(conn);
  if (failed !== undefined && opts.waitMs !== undefined && (conn.status === 'reconnecting' || conn.status === 'close')) {
    return Promise.reject(new RedisUnavailableError(failed.message, failed));
  }
  return new Promise<void>((resolve, reject) => {
    const timer = opts.waitMs === undefined ? undefined : setTimeout(() => done(new RedisUnavailableError(`not ready after ${opts.waitMs} ms`)), opts.waitMs);
    const done = (err?: Error) => {
      clearTimeout(timer);
      conn.off('ready', onReady);
      conn.off('error', onError);
      conn.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onError = (err: Error) => {
      const refused = refusedError(conn, err);
      if (refused !== undefined) done(refused);
      else if (opts.waitMs !== undefined) done(new RedisUnavailableError(err.message, err));
    };
    const onEnd = () => done(new RedisUnavailableError('the connection was closed before Redis answered'));
    conn.on('ready', onReady);
    conn.on('error', onError);
    conn.on('end', onEnd);
  });
}

/**
 * The refusal `conn`'s latest attempt met, as `untilReady` throws it, while it is not ready since:
 * for a caller that does not wait (a result wait timing out says why it heard nothing).
 */
export function refusalOn(conn: Redis | Cluster): RedisRefusedError | undefined {
  const failed = lastFailure.get(conn);
  return failed === undefined || conn.status === 'ready' ? undefined : refusedError(conn, failed);
}

function refusedError(conn: Redis | Cluster, err: Error): RedisRefusedError | undefined {
  const refusal = refusalOf(err);
  return refusal === undefined ? undefined : new RedisRefusedError(maskUrlPasswords(urlOf.get(conn) ?? describedUrl(conn)), refusal, err);
}

/**
 * The URL of a connection opened elsewhere (a Producer given an ioredis connection), from its
 * options; the password, when it has one, is given masked.
 */
function describedUrl(conn: Redis | Cluster): string {
  if (conn instanceof Cluster) return 'redis-cluster://(the cluster connection given)';
  const { host, port, db, username, password, tls, path } = conn.options;
  const user = username || password ? `${username ?? ''}${password ? ':***' : ''}@` : '';
  if (path) return `unix://${path}`;
  return `${tls ? 'rediss' : 'redis'}://${user}${host ?? 'localhost'}:${port ?? 6379}${db ? `/${db}` : ''}`;
}
