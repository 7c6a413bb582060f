import { describe, expect, it } from 'vitest';
import { BatchFaultTable, FaultTable } from './faults.js';

describe('FaultTable', () => {
  it('strikes status faults before admission and transport faults after, each for its count', () => {
    const table = new FaultTable();
    table.add({ model: 'm', status: 529, count: 1 });
    table.add({ cut: true, count: 1 });
    const random = () => 0;
    expect(table.take('other', 'before-admission', random)).toBeNull();
    expect(table.take('m', 'after-admission', random)).toEqual({ kind: 'cut' });
    expect(table.take('m', 'before-admission', random)).toMatchObject({ kind: 'status', status: 529 });
    expect(table.take('m', 'before-admission', random)).toBeNull();
    expect(table.list()).toEqual([]);
  });

  it('refuses a fault it cannot act out', () => {
    const table = new FaultTable();
    expect(() => table.add({})).toThrow(RangeError);
    expect(() => table.add({ status: 500, spendCap: true })).toThrow(RangeError);
    expect(() => table.add({ status: 500, probability: 2 })).toThrow(RangeError);
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
