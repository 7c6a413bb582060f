import { describe, expect, it } from 'vitest';
import { redisForFile } from './redis-for-file.js';

const db = redisForFile();

describe('redisForFile', () => {
  it("offers one client as BullMQ's Worker requires it, on the file's server, beside the plain one", async () => {
    const worker = db.workerRedis;
    expect(db.workerRedis).toBe(worker);
    expect(worker).not.toBe(db.redis);
    // BullMQ's Worker refuses a connection whose commands give up after retries.
    expect(worker.options.maxRetriesPerRequest).toBeNull();
    await worker.set('from-worker-client', '1');
    expect(await db.redis.get('from-worker-client')).toBe('1');
  });
});
