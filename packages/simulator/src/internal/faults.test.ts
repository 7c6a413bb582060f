import { describe, expect, it } from 'vitest';
import { BatchFaultTable, FaultTable, faultLabel, faultStatus, toFaultAction } from './faults.js';

const never = () => 0;

describe('FaultTable', () => {
  it('strikes status faults before admission and transport faults after, each for its count', () => {
    const table = new FaultTable();
    table.add([{ model: 'm', status: 529, count: 1 }, { cut: true, count: 1 }], 0);
    expect(table.take('other', 'before-admission', never, 0)).toBeNull();
    expect(table.take('m', 'after-admission', never, 0)).toEqual({ kind: 'cut' });
    expect(table.take('m', 'before-admission', never, 0)).toEqual({ kind: 'server', status: 529 });
    expect(table.take('m', 'before-admission', never, 0)).toBeNull();
    expect(table.list(0)).toEqual([]);
  });

  it('refuses a fault it cannot act out, and arms none of a list holding one', () => {
    const table = new FaultTable();
    for (const bad of [
      {},
      { status: 500, spendCap: true },
      { status: 500, probability: 2 },
      { status: 503, omitRetryAfter: true },
      { status: 429, resetMs: 250 },
      { billing: true, status: 429 },
      { spendCap: true, overloaded: true },
      { status: 529, durationMs: 0 },
      { status: 529, fromMs: -1 },
    ] as const) {
      expect(() => table.add([bad], 0), JSON.stringify(bad)).toThrow(RangeError);
    }
    expect(() => table.add([{ status: 500 }, { status: 418 as 500 }], 0)).toThrow(RangeError);
    expect(table.list(0)).toEqual([]);
  });

  it('strikes a windowed fault only between fromMs and fromMs + durationMs after injection, then retires it', () => {
    const table = new FaultTable();
    table.add([{ status: 529, fromMs: 1000, durationMs: 40_000 }], 10_000);
    expect(table.take('m', 'before-admission', never, 10_999)).toBeNull();
    expect(table.list(10_500)).toEqual([{ status: 529, fromMs: 500, durationMs: 40_000 }]);
    expect(table.take('m', 'before-admission', never, 11_000)).toMatchObject({ kind: 'server', status: 529 });
    expect(table.list(31_000)).toEqual([{ status: 529, durationMs: 20_000 }]);
    expect(table.take('m', 'before-admission', never, 50_999)).toMatchObject({ kind: 'server', status: 529 });
    expect(table.take('m', 'before-admission', never, 51_000)).toBeNull();
    expect(table.list(51_000)).toEqual([]);
  });

  it('draws a windowed fault’s probability only inside its window', () => {
    const table = new FaultTable();
    table.add([{ status: 529, probability: 0.5, durationMs: 40_000 }, { status: 500, probability: 0.5 }], 0);
    const draws = [0.7, 0.2];
    let calls = 0;
    const random = () => {
      calls += 1;
      return draws.shift() ?? 1;
    };
    // Inside the window: 0.7 misses the 529, 0.2 hits the 500.
    expect(table.take('m', 'before-admission', random, 100)).toMatchObject({ kind: 'server', status: 500 });
    expect(calls).toBe(2);
    // After it: the 529 rule is gone and draws nothing.
    draws.push(0.1);
    expect(table.take('m', 'before-admission', random, 40_000)).toMatchObject({ kind: 'server', status: 500 });
    expect(calls).toBe(3);
  });
});

describe('status fault actions', () => {
  it('keeps retry-after on an injected 429 unless told to omit it, then reports the reset instead', () => {
    expect(toFaultAction({ status: 429, retryAfterSeconds: 7 })).toEqual({ kind: 'rate-limit', retryAfterSeconds: 7, resetMs: 7000 });
    expect(toFaultAction({ status: 429, omitRetryAfter: true })).toEqual({ kind: 'rate-limit', retryAfterSeconds: null, resetMs: 1000 });
    expect(toFaultAction({ status: 429, omitRetryAfter: true, resetMs: 250 })).toEqual({ kind: 'rate-limit', retryAfterSeconds: null, resetMs: 250 });
  });

  it('answers billing and overload with each provider’s own status, and counts them under it', () => {
    const billing = toFaultAction({ billing: true });
    const overloaded = toFaultAction({ overloaded: true });
    if (billing.kind !== 'billing' || overloaded.kind !== 'overloaded') throw new Error('unexpected actions');
    expect([faultStatus(billing, 'anthropic'), faultStatus(billing, 'openai')]).toEqual([402, 429]);
    expect([faultStatus(overloaded, 'anthropic'), faultStatus(overloaded, 'openai')]).toEqual([529, 503]);
    expect([faultLabel(billing, 'anthropic'), faultLabel(billing, 'openai')]).toEqual(['402-billing', '429-billing']);
    expect([faultLabel(overloaded, 'anthropic'), faultLabel(overloaded, 'openai')]).toEqual(['529', '503']);
    expect(faultLabel(toFaultAction({ spendCap: true }), 'openai')).toBe('429-spend-cap');
  });
});

describe('BatchFaultTable', () => {
  it('fails exactly the named entries, or exactly round(fraction * n) of them', () => {
    const table = new BatchFaultTable();
    table.add({ errored: ['a', 'missing'], expired: 0.5 });
    const ids = Array.from({ length: 10 }, (_, i) => (i === 0 ? 'a' : `id-${i}`));
    const fates = table.fates('batch_1', ids);
    expect(fates.get('a')).toBe('errored');
    expect([...fates.values()].filter((f) => f === 'expired')).toHaveLength(5);
    expect(fates.has('missing')).toBe(false);
    expect(table.fates('batch_1', ids)).toEqual(fates); // deterministic
  });
});
