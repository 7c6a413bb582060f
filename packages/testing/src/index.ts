/**
 * @headroom/testing — fixtures shared by Headroom's tests (private, never published).
 *
 * ```ts
 * import { redisForFile } from '@headroom/testing/vitest';
 * const db = redisForFile();   // a redis-server of this test file's own, with a client: db.url, db.redis
 * ```
 *
 * `@headroom/testing/vitest` holds what registers vitest hooks; this entry holds what needs no
 * test runner (the demo starts its private Redis with `startEmbeddedRedis`).
 */
export { startEmbeddedRedis, freePort, REDIS_SERVER_NOT_FOUND } from './embedded-redis.js';
export type { EmbeddedRedis, EmbeddedRedisOptions } from './embedded-redis.js';
export { ANTHROPIC_MESSAGE, CHAT_COMPLETION, RESPONSE } from './provider-answers.js';
