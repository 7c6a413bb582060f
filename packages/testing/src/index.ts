/**
 * @headroom/testing — fixtures shared by Headroom's tests (private, never published).
 *
 * ```ts
 * import { startEmbeddedRedis } from '@headroom/testing';
 * const redis = await startEmbeddedRedis();   // a redis-server of this test file's own
 * // ... new Producer({ redis: redis.url }) ...
 * await redis.stop();
 * ```
 */
export { startEmbeddedRedis, freePort, REDIS_SERVER_NOT_FOUND } from './embedded-redis.js';
export type { EmbeddedRedis, EmbeddedRedisOptions } from './embedded-redis.js';
