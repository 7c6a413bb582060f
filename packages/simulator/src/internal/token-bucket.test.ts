import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.js';

describe('TokenBucket', () => {
  it('starts full and refills continuously at capacity per minute', () => {
    const bucket = new TokenBucket(600, 0);
    bucket.take(600, 0);
    expect(bucket.level(0)).toBe(0);
    expect(bucket.level(1000)).toBeCloseTo(10); // 600/min = 10/s
    expect(bucket.level(120_000)).toBe(600); // never above capacity
  });

  it('reports the exact wait for an amount, and Infinity for more than the capacity', () => {
    const bucket = new TokenBucket(60, 0);
    bucket.take(60, 0);
    expect(bucket.waitFor(1, 0)).toBeCloseTo(1000);
    expect(bucket.waitFor(30, 500)).toBeCloseTo(29_500);
    expect(bucket.waitFor(61, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(bucket.msUntilFull(30_000)).toBeCloseTo(30_000);
  });

  it('refunds without exceeding the capacity', () => {
    const bucket = new TokenBucket(100, 0);
    bucket.take(80, 0);
    bucket.refund(50, 0);
    expect(bucket.level(0)).toBe(70);
    bucket.refund(1000, 0);
    expect(bucket.level(0)).toBe(100);
  });

  it('keeps what was spent when the limit changes, so a halved limit right after a burst leaves no room', () => {
    const bucket = new TokenBucket(100, 0);
    bucket.take(60, 0);
    bucket.setCapacity(50, 0);
    expect(bucket.level(0)).toBe(-10);
    expect(bucket.waitFor(1, 0)).toBeCloseTo((11 * 60_000) / 50);
    bucket.setCapacity(100, 0);
    expect(bucket.level(0)).toBe(40);
  });
});
