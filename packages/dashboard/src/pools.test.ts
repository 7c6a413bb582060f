import { describe, expect, it } from 'vitest';
import { parseConfig } from '@headroom/queue';
import { poolsOf, utilizationOf } from './pools.js';

describe('poolsOf', () => {
  it("groups models by pool with the pool's limits, burst included", () => {
    const config = parseConfig({
      models: {
        'claude-sonnet-4-6': { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 1000, itpm: 450_000, burst: 10 } },
        'claude-sonnet-4-5': { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 1000, itpm: 450_000, burst: 10 } },
        'gpt-4.1': { provider: 'openai', limits: { rpm: 500, tpm: 30_000 } },
      },
    });
    // The burst sets each dimension's capacity (limit x burst / 60): a snapshot read without it
    // showed a 10-second pool as holding a minute.
    expect(poolsOf(config)).toEqual([
      { pool: 'gpt-4.1', provider: 'openai', models: ['gpt-4.1'], limits: { rpm: 500, tpm: 30_000, burst: 60 } },
      { pool: 'sonnet-4', provider: 'anthropic', models: ['claude-sonnet-4-6', 'claude-sonnet-4-5'], limits: { rpm: 1000, itpm: 450_000, burst: 10 } },
    ]);
  });
});

describe('utilizationOf', () => {
  it('is used / capacity, above 1 when the level is negative', () => {
    expect(utilizationOf({ capacity: 100, level: 100 })).toBe(0);
    expect(utilizationOf({ capacity: 100, level: 20 })).toBe(0.8);
    expect(utilizationOf({ capacity: 100, level: -100 })).toBe(2);
  });
});
