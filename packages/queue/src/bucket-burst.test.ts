/**
 * Guarantee 3 as the bucket keeps it: a dimension holds `burst` seconds of its quota and refills
 * at limit/60 per second, so over any window of W seconds a pool grants at most
 * limit * (burst + W) / 60, however many clients draw from it. Grant times are Redis' own (each
 * grant's `atMs`), so a loaded machine can only make grants fewer, never the bound looser.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '@headroom/testing';
import { Bucket, type PoolLimits } from './bucket.js';

let server: EmbeddedRedis;
const conns: Redis[] = [];

beforeAll(async () => {
  server = await startEmbeddedRedis();
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await server.stop();
});

function bucketOn(prefix: string): Bucket {
  const conn = new Redis(server.url);
  conns.push(conn);
  return new Bucket(conn, { prefix });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The most grants that fall in any half-open window [t, t + windowMs) starting at a grant. */
function busiestWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (j < sorted.length && sorted[j]! < sorted[i]! + windowMs) j++;
    most = Math.max(most, j - i);
  }
  return most;
}

describe('burst', () => {
  it('holds burst seconds of quota: a need above limit * burst / 60 never fits, one at it is granted, then the next waits for the refill', async () => {
    const bucket = bucketOn(`burst-${randomUUID().slice(0, 8)}`);
    const limits: PoolLimits = { itpm: 600, burst: 10 };
    const tooBig = await bucket.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 101, outputTokens: 0 } });
    // With the limit that bound, so the refusal can say how the 100 came about (600 x 10 / 60).
    expect(tooBig).toMatchObject({ status: 'never_fits', dimension: 'itpm', maxDrawable: 100, limit: 600 });
    expect((await bucket.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 100, outputTokens: 0 } })).status).toBe('granted');
    const next = await bucket.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 100, outputTokens: 0 } });
    // 100 tokens at 10 per second: 10 s, less what refilled between the two calls.
    expect(next.status).toBe('wait');
    if (next.status === 'wait') {
      expect(next.waitMs).toBeLessThanOrEqual(10_000);
      expect(next.waitMs).toBeGreaterThan(5_000);
    }
    const snap = await bucket.snapshot('p', limits);
    expect(snap.dimensions[0]).toMatchObject({ dimension: 'itpm', capacity: 100, ratePerSec: 10 });
  });

  it('keeps a minute of quota by default, as before burst was configurable', async () => {
    const bucket = bucketOn(`burst-${randomUUID().slice(0, 8)}`);
    const r = await bucket.acquire({ pool: 'p', limits: { itpm: 600 }, lane: 'critical', need: { inputTokens: 601, outputTokens: 0 } });
    expect(r).toMatchObject({ status: 'never_fits', maxDrawable: 600 });
  });

  it('grants at most limit * (burst + W) / 60 in any window of W seconds, with four clients drawing as fast as they may', async () => {
    const prefix = `burst-${randomUUID().slice(0, 8)}`;
    const limits: PoolLimits = { rpm: 1_200, burst: 1 };
    const grants: number[] = [];
    let firstAt: number | undefined;
    const client = async () => {
      const bucket = bucketOn(prefix);
      for (;;) {
        const r = await bucket.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 0, outputTokens: 0 } });
        firstAt ??= r.atMs;
        if (r.atMs - firstAt > 2_500) return;
        if (r.status === 'granted') grants.push(r.atMs);
        else if (r.status === 'wait') await sleep(r.waitMs);
        else throw new Error(`unexpected ${JSON.stringify(r)}`);
      }
    };
    await Promise.all([client(), client(), client(), client()]);
    const bound = (windowSec: number) => Math.floor((1_200 * (1 + windowSec)) / 60 + 1e-6);
    // The whole burst (20) is there at the start, and the refill (20/s) on top of it.
    expect(busiestWindow(grants, 1_000)).toBeLessThanOrEqual(bound(1));
    expect(busiestWindow(grants, 250)).toBeLessThanOrEqual(bound(0.25));
    const span = (Math.max(...grants) - Math.min(...grants)) / 1000;
    expect(grants.length).toBeLessThanOrEqual(bound(span));
    // The clients really drew: the burst at least was granted.
    expect(grants.length).toBeGreaterThanOrEqual(20);
  });

  it("draws at most limit * (burst + W) / 60 in any window, less what settles give back in it, when each call settles at a third of its reservation", async () => {
    const prefix = `burst-${randomUUID().slice(0, 8)}`;
    // 100 tokens of burst, refilled at 100 a second.
    const limits: PoolLimits = { itpm: 6_000, burst: 1 };
    /** Redis time of each grant (+ its reservation) and each refund (- what it gave back). */
    const moves: { atMs: number; tokens: number }[] = [];
    let firstAt: number | undefined;
    const client = async () => {
      const bucket = bucketOn(prefix);
      for (;;) {
        const r = await bucket.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 60, outputTokens: 0 } });
        firstAt ??= r.atMs;
        if (r.atMs - firstAt > 2_500) return;
        if (r.status === 'wait') {
          await sleep(r.waitMs);
          continue;
        }
        if (r.status !== 'granted') throw new Error(`unexpected ${JSON.stringify(r)}`);
        moves.push({ atMs: r.atMs, tokens: 60 });
        const settled = await bucket.settle(r.reservation, { inputTokens: 20, outputTokens: 0 }, { immediate: true });
        if (settled.status !== 'settled') throw new Error(`unexpected ${JSON.stringify(settled)}`);
        moves.push({ atMs: settled.atMs, tokens: settled.delta.inputTokens });
      }
    };
    await Promise.all([client(), client(), client(), client()]);
    const net = (from: number, windowMs: number) => moves.filter((m) => m.atMs >= from && m.atMs < from + windowMs).reduce((sum, m) => sum + m.tokens, 0);
    // The busiest window starts at a grant, or just after a refund.
    const busiest = (windowMs: number) => Math.max(...moves.flatMap((m) => [net(m.atMs, windowMs), net(m.atMs + 1e-3, windowMs)]));
    const bound = (windowSec: number) => (6_000 * (1 + windowSec)) / 60 + 1e-6;
    expect(busiest(1_000)).toBeLessThanOrEqual(bound(1));
    expect(busiest(250)).toBeLessThanOrEqual(bound(0.25));
    // Refunds were drawn again: more was granted than the bound, so the net is what is bounded.
    const granted = moves.filter((m) => m.tokens > 0);
    const span = (Math.max(...granted.map((m) => m.atMs)) - Math.min(...granted.map((m) => m.atMs))) / 1000;
    expect(granted.length * 60).toBeGreaterThan(bound(span));
    expect(moves.filter((m) => m.tokens === -40)).toHaveLength(granted.length);
  });
});
