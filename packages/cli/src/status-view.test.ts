import { describe, expect, it } from 'vitest';
import { overview } from './overview.test-support.js';
import { renderStatus } from './status-view.js';

describe('renderStatus', () => {
  const table = renderStatus(overview);
  const lines = table.split('\n');

  it('heads the table with the fleet prefix, the time and the worker count', () => {
    expect(lines[0]).toBe('Headroom fleet "hr" — 2026-12-04T12:00:00.000Z — 1 worker(s)');
  });

  it("names the lanes' window above their table", () => {
    expect(lines[2]).toBe('lanes (done, failed, shed and p95 wait over the last 15 min; full: new jobs refused QUEUE_FULL)');
    expect(lines[3]?.split(/\s+/)).toEqual(['lane', 'queued', 'cap', 'running', 'done', 'failed', 'shed', 'p95', 'wait']);
  });

  it('counts the gateways there too, with their requests in flight, when any runs', () => {
    const gateways = [
      { id: 'gateway-a', host: 'h', pid: 7, inFlight: 3, lastSeenMsAgo: 50 },
      { id: 'gateway-b', host: 'h', pid: 8, inFlight: 2, lastSeenMsAgo: 50 },
    ];
    const head = renderStatus({ ...overview, gateways }).split('\n')[0];
    expect(head).toBe('Headroom fleet "hr" — 2026-12-04T12:00:00.000Z — 1 worker(s), 2 gateway(s) (5 requests in flight)');
  });

  it('prints one row per lane with queued, cap, running, done, failed, shed and the p95 wait in units', () => {
    const critical = lines.find((l) => l.startsWith('critical'))!;
    expect(critical.split(/\s+/)).toEqual(['critical', '3', '50', '2', '40', '1', '0', '120ms']);
    const low = lines.find((l) => l.startsWith('low'))!;
    expect(low.split(/\s+/)).toEqual(['low', '900', '5000', '0', '10', '0', '12', '1.5m']);
  });

  it('marks a lane holding its cap of jobs not yet started as full, where it refuses new jobs', () => {
    const lanes = [{ ...overview.lanes[0]!, queued: 50 }];
    const critical = renderStatus({ ...overview, lanes }).split('\n').find((l) => l.startsWith('critical'))!;
    expect(critical.split(/\s+/)).toEqual(['critical', '50', '50', '2', '40', '1', '0', '120ms', 'full']);
  });

  it("says which lanes are held back by their queue's pause, global concurrency or rate limit (Bull Board's), and how", () => {
    expect(lines.some((l) => l.includes('held back'))).toBe(false);
    const lanes = [
      { ...overview.lanes[0]!, held: { paused: true, concurrency: null, rateLimit: null } },
      { ...overview.lanes[1]!, held: { paused: false, concurrency: 1, rateLimit: { max: 2, durationMs: 5_000 } } },
    ];
    const out = renderStatus({ ...overview, lanes }).split('\n');
    expect(out).toContain("critical is held back: paused: none of its jobs starts (set on the lane's queue, e.g. from Bull Board; resume or clear it there)");
    expect(out).toContain("low is held back: at most 1 of its jobs running at once, fleet-wide; at most 2 of its jobs started per 5.0s (set on the lane's queue, e.g. from Bull Board; resume or clear it there)");
  });

  it('says so when no worker beats, naming the prefix it looked under and the workers that stopped uncleanly', () => {
    expect(lines[1]).toBe('');
    const none = renderStatus({ ...overview, workers: [], expiredWorkers: ['w2', 'w4'] }).split('\n');
    expect(none[0]).toBe('Headroom fleet "hr" — 2026-12-04T12:00:00.000Z — 0 worker(s)');
    expect(none[1]).toBe('no live worker: nothing takes jobs from these lanes (none beats under redis.prefix "hr" on this Redis; stopped beating without a clean stop: w2, w4)');
    expect(renderStatus({ ...overview, workers: [] }).split('\n')[1]).toBe('no live worker: nothing takes jobs from these lanes (none beats under redis.prefix "hr" on this Redis)');
  });

  it('prints each pool with utilization per dimension, unbound ones, pressure and cooldowns', () => {
    const pool = lines.find((l) => l.startsWith('sonnet-4'))!;
    expect(pool).toContain('rpm 50%  itpm 90%  (otpm unbound)');
    expect(pool).toContain('0.87');
    expect(pool).toContain('claude-sonnet-4-6 1.5s');
  });

  it("prints each model's fleet-wide throttle: state, admit ratio, share served, retry budget left", () => {
    const row = lines.find((l) => l.trimStart().startsWith('claude-sonnet-4-6') && l.includes('throttled'))!;
    expect(row.split(/\s+/).filter(Boolean)).toEqual(['claude-sonnet-4-6', 'throttled', '40%', '20%', '20/min', '3/14']);
  });

  it('ends with calls, 429s and cost over one window, named once before them', () => {
    expect(lines.at(-1)).toBe('last 5 min: calls 400, 429s 2 (0.50%), cost $0.5000 ($2.00/h)');
  });

  it('names the models the 429s of the window came from, with their calls', () => {
    const calls = { ...overview.calls, byModel: { 'claude-sonnet-4-6': { '200': 170, '429': 22, '529': 3 }, 'claude-haiku-4-5': { '200': 205 } } };
    const out = renderStatus({ ...overview, calls }).split('\n');
    expect(out.at(-1)).toBe('429s by model: claude-sonnet-4-6 22 of 195 calls');
    expect(renderStatus(overview).split('\n').at(-1)).toMatch(/^last 5 min: /);
  });
});
