import { randomUUID } from 'node:crypto';
import { fleetKeys } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { describe, expect, it } from 'vitest';
import { type ClaimRecord, ClaimStore } from './claim-store.js';

const db = redisForFile();

const claim = (id: string, extra: Partial<ClaimRecord> = {}): ClaimRecord => ({
  id,
  provider: 'openai',
  model: 'gpt-4.1-mini',
  token: 'tok',
  fence: 3,
  createdAt: 1_000,
  oldestAt: 900,
  jobIds: new Set([`${id}-a`, `${id}-b`]),
  ...extra,
});

describe('ClaimStore', () => {
  it("keeps a Responses claim's API across a leader change, and reads a claim filed without one as Chat Completions", async () => {
    const prefix = `cs-${randomUUID().slice(0, 8)}`;
    const store = new ClaimStore(db.redis, prefix);
    await store.create(claim('c1', { api: 'responses' }));
    await store.create(claim('c2'));
    // A claim filed by a worker from before OpenAI had two APIs: no api field at all.
    await db.redis.hset(fleetKeys(prefix).batchClaim('c3'), { provider: 'openai', model: 'gpt-4.1-mini', token: 'tok', fence: 1, createdAt: 1_100, oldestAt: 1_100 });
    await db.redis.zadd(fleetKeys(prefix).batchClaims, 1_100, 'c3');

    const loaded = new Map((await new ClaimStore(db.redis, prefix).loadAll()).map((c) => [c.id, c]));
    expect(loaded.get('c1')).toMatchObject({ provider: 'openai', model: 'gpt-4.1-mini', api: 'responses', fence: 3, oldestAt: 900 });
    expect([...loaded.get('c1')!.jobIds].sort()).toEqual(['c1-a', 'c1-b']);
    expect(loaded.get('c2')).not.toHaveProperty('api');
    expect(loaded.get('c3')).not.toHaveProperty('api');
  });
});
