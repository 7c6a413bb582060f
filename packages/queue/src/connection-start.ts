/**
 * A service's first contact with Redis: a Redis that is down may come up (wait for it, as every
 * connection retries by itself), but one that answers and refuses the connection (a wrong or
 * missing password, a database it does not have, a certificate this process cannot verify)
 * refuses it again on every retry. A worker that waited on one of those waited for ever, saying
 * once "redis connection lost; reconnecting" about a connection never made; a refusal at start is
 * a configuration mistake and fails the start with `RedisRefusedError` (`headroom`: exit 2).
 *
 * ```ts
 * const redis = createRedis(url, 'worker');
 * await firstContact(redis, url);                      // waits while Redis is down; throws on a refusal
 * await firstContact(redis, url, { waitMs: 5_000 });   // 'ready' | 'unreachable': starts anyway while down
 * ```
 */
import type { Cluster, Redis } from 'ioredis';
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

export type FirstContact = 'ready' | 'unreachable';

/**
 * Resolves `'ready'` once `conn` is ready. Throws `RedisRefusedError` (naming `url`, password
 * masked) when Redis refuses it first. Any other error is Redis not there (yet): without `waitMs`
 * it is waited out, for as long as it lasts; with `waitMs`, the first one (or `waitMs` without an
 * answer) resolves `'unreachable'`, for a service that starts anyway and says so on `/readyz`.
 * Throws `RedisUnavailableError` when its owner closes the connection meanwhile.
 */
export function firstContact(conn: Redis | Cluster, url: string, opts: { waitMs?: number } = {}): Promise<FirstContact> {
  if (conn.status === 'ready') return Promise.resolve('ready');
  return new Promise<FirstContact>((resolve, reject) => {
    const timer = opts.waitMs === undefined ? undefined : setTimeout(() => done('unreachable'), opts.waitMs);
    const done = (outcome: FirstContact | Error) => {
      clearTimeout(timer);
      conn.off('ready', onReady);
      conn.off('error', onError);
      conn.off('end', onEnd);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onReady = () => done('ready');
    const onError = (err: Error) => {
      const refusal = refusalOf(err);
      if (refusal !== undefined) done(new RedisRefusedError(maskUrlPasswords(url), refusal, err));
      else if (opts.waitMs !== undefined) done('unreachable');
    };
    const onEnd = () => done(new RedisUnavailableError('the connection was closed before Redis answered'));
    conn.on('ready', onReady);
    conn.on('error', onError);
    conn.on('end', onEnd);
  });
}
