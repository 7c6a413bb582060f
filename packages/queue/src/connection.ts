/**
 * How Headroom opens Redis connections, so producers and workers agree on the settings BullMQ and
 * our failure modes need. One URL string picks a single node or a Redis Cluster (see
 * `redis-url.ts` for the forms); every caller gets `Redis | Cluster` and treats both alike, which
 * works because every key of one lane or pool shares a hash tag (one slot per script).
 *
 * ```ts
 * const producerConn = createRedis('redis://:secret@redis.internal:6379', 'producer');
 * const workerConn = createRedis('rediss-cluster://:secret@node-1:6379,node-2:6379', 'worker');
 * ```
 */
import { Cluster, Redis, type ClusterOptions, type Command, type RedisOptions } from 'ioredis';
import { HeadroomError, RedisOomError, RedisUnavailableError } from './errors.js';
import { hasRegisteredSecrets, redactRegistered } from './redaction.js';
import { watchAttempts } from './connection-start.js';
import { parseRedisUrl, type ParsedRedisUrl } from './redis-url.js';
import { HeardSocketConnector } from './socket-connector.js';

/**
 * A `redis://` / `rediss://` URL, a `redis-cluster://` / `rediss-cluster://` URL (password and
 * TLS come with the URL), or a connection you own.
 */
export type RedisInput = string | Redis | Cluster;

export type ConnectionRole =
  /** Fails fast while Redis is away, so `enqueue` never hangs. */
  | 'producer'
  /** Retries forever: BullMQ workers and blocking readers require `maxRetriesPerRequest: null`. */
  | 'worker'
  /**
   * A worker's `Bucket`: like `worker`, but a command sent before a disconnect is never sent again
   * (it rejects), because a settle must not be applied twice and Redis keeps no record of it.
   */
  | 'bucket';

type RoleOptions = RedisOptions & Pick<ClusterOptions, 'retryDelayOnFailover'>;

const ROLE_OPTIONS: Record<ConnectionRole, RoleOptions> = {
  producer: { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2_000 },
  worker: { maxRetriesPerRequest: null, enableReadyCheck: true },
  // A cluster resends a command whose node connection closed (after `retryDelayOnFailover`)
  // unless that delay is 0; a single node resends unless `autoResendUnfulfilledCommands` is off.
  bucket: { maxRetriesPerRequest: null, enableReadyCheck: true, autoResendUnfulfilledCommands: false, retryDelayOnFailover: 0 },
};

const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2_000);

/**
 * Options a `Cluster` takes at its top level rather than per node: whether the cluster as a
 * whole queues commands while not ready, and its ready check. ioredis ignores them (or types
 * refuse them) inside `redisOptions`, so a role's options are split before use.
 */
const CLUSTER_LEVEL = ['enableOfflineQueue', 'enableReadyCheck', 'lazyConnect', 'retryDelayOnFailover'] as const;

function splitForCluster(opts: RoleOptions): { top: ClusterOptions; node: NonNullable<ClusterOptions['redisOptions']> } {
  const node: Record<string, unknown> = { ...opts };
  const top: Record<string, unknown> = {};
  for (const key of CLUSTER_LEVEL) {
    if (key in node) top[key] = node[key];
    delete node[key];
  }
  // Node connections of a cluster never reconnect by themselves (ioredis re-reads the slots
  // instead): the retry policy belongs to the cluster.
  delete node.retryStrategy;
  return { top: top as ClusterOptions, node: node as NonNullable<ClusterOptions['redisOptions']> };
}

/**
 * Opens a connection for `role`. `extra` is applied to every node connection (for a cluster, in
 * `redisOptions`), e.g. `{ tls: { ca } }` for a private CA, or `{ connectionName }`.
 */
export function createRedis(url: string, role: ConnectionRole, extra: RedisOptions = {}): Redis | Cluster {
  const parsed = parseRedisUrl(url);
  const options: RoleOptions = { ...ROLE_OPTIONS[role], lazyConnect: false, ...extra };
  const conn = parsed.kind === 'standalone'
    ? onItsDatabaseOnly(new Redis(url, { retryStrategy, Connector: HeardSocketConnector, ...standalone(options) }))
    : cluster(parsed, options);
  watchAttempts(conn, url);
  return withoutSecrets(conn);
}

function cluster(parsed: Extract<ParsedRedisUrl, { kind: 'cluster' }>, options: RoleOptions): Cluster {
  const { top, node } = splitForCluster(options);
  return new Cluster(parsed.nodes, {
    clusterRetryStrategy: retryStrategy,
    ...top,
    redisOptions: {
      ...(parsed.username !== undefined ? { username: parsed.username } : {}),
      ...(parsed.password !== undefined ? { password: parsed.password } : {}),
      ...(parsed.tls ? { tls: {} } : {}),
      Connector: HeardSocketConnector,
      ...node,
    },
    // With TLS the certificate names the host, not its IP: keep the name as given (ioredis'
    // advice for ElastiCache and other managed clusters behind TLS).
    ...(parsed.tls ? { dnsLookup: (address: string, done: (err: null, address: string) => void) => done(null, address) } : {}),
  });
}

/**
 * Cuts the process's registered secrets (see redaction.ts) out of every string argument of every
 * command this connection sends: scripts, MULTIs and pipelines all pass through `sendCommand`.
 * A worker then cannot write a provider key into Redis, whichever code path carried it there (a
 * failure reason, a job's progress, a batch result). Binary arguments (BullMQ's packed options)
 * are left alone: cutting bytes out of them would corrupt them, and provider output never goes
 * into them. A process that registered nothing pays one boolean check per command.
 */
function withoutSecrets<C extends Redis | Cluster>(conn: C): C {
  const send = conn.sendCommand.bind(conn) as (command: Command, ...rest: unknown[]) => unknown;
  (conn as { sendCommand: typeof send }).sendCommand = (command: Command, ...rest: unknown[]) => {
    if (hasRegisteredSecrets()) {
      const args = command.args;
      for (let i = 0; i < args.length; i++) {
        const arg = args[i];
        if (typeof arg === 'string') args[i] = redactRegistered(arg);
      }
    }
    return send(command, ...rest);
  };
  return conn;
}

/** Opens a connection of the same kind (standalone or cluster) as `conn`, for another role. */
export function duplicateFor(conn: Redis | Cluster, role: ConnectionRole): Redis | Cluster {
  if (conn instanceof Cluster) {
    const { top, node } = splitForCluster(ROLE_OPTIONS[role]);
    return withoutSecrets(conn.duplicate(undefined, { ...top, redisOptions: { ...conn.options.redisOptions, ...node } }));
  }
  return withoutSecrets(onItsDatabaseOnly(conn.duplicate(standalone(ROLE_OPTIONS[role]))));
}

/**
 * Keeps a connection off every database but the one its URL names. ioredis sends `SELECT` as it
 * connects and, when Redis refuses it (`ERR DB index is out of range`: a `/99` where Redis has 16),
 * only emits the error and goes on to ready on database 0: a worker with a typo in its URL then
 * published its fleet settings there and took another fleet's jobs. Cutting the connection inside
 * that error (emitted before the handshake ends, so before `ready` and before any queued command
 * is written) makes it retry instead, as after any failed connect, on every reconnect too: it is
 * never ready anywhere but on its own database. `untilReady` turns the refusal at start into a
 * `RedisRefusedError`. Duplicates (BullMQ opens its own from ours) get the same guard.
 */
const guarded = new WeakSet<Redis>();

function onItsDatabaseOnly(conn: Redis): Redis {
  if (guarded.has(conn)) return conn;
  guarded.add(conn);
  conn.on('error', (err: Error) => {
    if ((err as { command?: { name?: string } }).command?.name === 'select') conn.disconnect(true);
  });
  const duplicate = conn.duplicate.bind(conn);
  conn.duplicate = (...args: Parameters<Redis['duplicate']>) => onItsDatabaseOnly(duplicate(...args));
  return conn;
}

/** A single node has no use for the cluster-only options. */
function standalone(opts: RoleOptions): RedisOptions {
  const { retryDelayOnFailover: _cluster, ...rest } = opts;
  return rest;
}

/**
 * `reply`, or `RedisUnavailableError` once Redis has not answered it within `ms`: a connection
 * that is up but gets no answer (Redis paused or stuck on a long command, a network black hole)
 * would otherwise hold its caller for as long as the stall lasts. The command itself is not
 * withdrawn: Redis may still apply it when it answers again, which the error says of a `write`
 * (the caller may have to look before sending it again) and not of a `read` (nothing to apply).
 */
export async function answeredWithin<T>(reply: Promise<T>, ms: number, what: string, effect: 'write' | 'read' = 'write'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const after = effect === 'write' ? '; Redis may still apply it when it answers' : '';
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisUnavailableError(`no answer within ${ms} ms to ${what}${after}`)), ms);
  });
  try {
    return await Promise.race([reply, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Maps ioredis' "not connected" failures (single node or cluster) to `RedisUnavailableError`, and
 * Redis' refusal at `maxmemory` (`OOM command not allowed...`, from a command or inside a script)
 * to `RedisOomError`; passes others through. One of ours passes through as it is: a
 * `RedisUnavailableError` from `untilReady` quotes ioredis' `ECONNREFUSED`, and mapping it again
 * read "Redis is unavailable: Redis is unavailable: connect ECONNREFUSED ...".
 */
export function asRedisError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof HeadroomError) return err;
  if (/^OOM |\bOOM command not allowed\b/.test(err.message)) return new RedisOomError(err);
  if (/Stream isn't writeable|Connection is closed|ECONNREFUSED|ETIMEDOUT|Reached the max retries|enableOfflineQueue|CLUSTERDOWN|Failed to refresh slots cache|None of startup nodes is available/i.test(err.message)) {
    return new RedisUnavailableError(err.message, err);
  }
  return err;
}
