import { existsSync } from 'node:fs';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { REDIS_SERVER_NOT_FOUND, startEmbeddedRedis } from './embedded-redis.js';

describe('startEmbeddedRedis', () => {
  it('starts a redis-server of its own that answers, and removes its directory on stop', async () => {
    const server = await startEmbeddedRedis();
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await client.connect();
      expect(await client.ping()).toBe('PONG');
      expect(existsSync(server.dir)).toBe(true);
    } finally {
      client.disconnect();
      await server.stop();
    }
    expect(server.process.exitCode !== null || server.process.signalCode !== null).toBe(true);
    expect(existsSync(server.dir)).toBe(false);
  });

  it('says how to install redis-server when the binary is missing', async () => {
    const failure = await startEmbeddedRedis({ binary: 'redis-server-that-does-not-exist' }).catch((err: Error & { code?: string }) => err);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error & { code?: string }).code).toBe(REDIS_SERVER_NOT_FOUND);
    expect((failure as Error).message).toMatch(/redis-server was not found on PATH/);
  });
});
