/**
 * The Redis fixture most test files want: a redis-server of the file's own, started before its
 * tests, and an ioredis client on it; both stopped after them.
 *
 * ```ts
 * const db = redisForFile();
 * it('...', async () => { await db.redis.set('k', 'v'); new Producer({ redis: db.url }); });
 * it('...', () => { new Worker(name, null, { connection: db.workerRedis }); });
 * ```
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis, type EmbeddedRedisOptions } from './embedded-redis.js';

export interface RedisForFile {
  /** The server's URL (valid inside tests and hooks, not at module load). */
  readonly url: string;
  /** A client on it, shared by the file's tests. */
  readonly redis: Redis;
  /**
   * A client on it as BullMQ's `Worker` requires one (`maxRetriesPerRequest: null`: a command
   * waits out a reconnect rather than fail), shared by the file's tests; opened on first use.
   */
  readonly workerRedis: Redis;
  readonly server: EmbeddedRedis;
}

export function redisForFile(options: EmbeddedRedisOptions = {}): RedisForFile {
  let server: EmbeddedRedis | undefined;
  let redis: Redis | undefined;
  let workerRedis: Redis | undefined;
  beforeAll(async () => {
    server = await startEmbeddedRedis(options);
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    workerRedis?.disconnect();
    await server?.stop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('redisForFile: the server starts in beforeAll; use it inside tests and hooks');
    return value;
  };
  return {
    get url() { return started(server).url; },
    get redis() { return started(redis); },
    get workerRedis() {
      workerRedis ??= new Redis(started(server).url, { maxRetriesPerRequest: null });
      return workerRedis;
    },
    get server() { return started(server); },
  };
}
