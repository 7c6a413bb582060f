import { describe, expect, it } from 'vitest';
import { parseConfig } from '@headroom/queue';
import { overview } from './overview.test-support.js';
import { checkReasons } from './status-check.js';

// The defaults: a 429 rate above 0.5% over 5 min; a dimension at 80% or more for 2 min.
const alerts = parseConfig({ models: { 'claude-sonnet-4-6': { provider: 'anthropic' } } }).dashboard.alerts;
const [critical, low] = overview.lanes as [(typeof overview.lanes)[number], (typeof overview.lanes)[number]];

describe('checkReasons (headroom status --check)', () => {
  it('finds none for a fleet taking work: a live worker, no lane held back or full, no alert firing', () => {
    expect(checkReasons(overview, alerts)).toEqual([]);
  });

  it('says no live worker beats under the prefix, naming those that stopped without a clean stop', () => {
    expect(checkReasons({ ...overview, workers: [], expiredWorkers: ['w2', 'w4'] }, alerts)).toEqual([
      { code: 'NO_LIVE_WORKER', message: 'no live worker beats under redis.prefix "hr": nothing takes jobs from the lanes; stopped beating without a clean stop: w2, w4' },
    ]);
  });

  it("names each lane held back by its queue's pause, global concurrency or rate limit, and how", () => {
    const lanes = [
      { ...critical, held: { paused: true, concurrency: null, rateLimit: null } },
      { ...low, held: { paused: false, concurrency: 1, rateLimit: { max: 2, durationMs: 5_000 } } },
    ];
    expect(checkReasons({ ...overview, lanes }, alerts)).toEqual([
      { code: 'LANE_HELD', lane: 'critical', message: 'lane critical is held back: paused: none of its jobs starts' },
      { code: 'LANE_HELD', lane: 'low', message: 'lane low is held back: at most 1 of its jobs running at once, fleet-wide; at most 2 of its jobs started per 5.0s' },
    ]);
  });

  it('names a lane at its cap as full, where it refuses new jobs QUEUE_FULL, and not one a job below it', () => {
    const lanes = [{ ...critical, queued: 50 }, { ...low, queued: 4999 }];
    expect(checkReasons({ ...overview, lanes }, alerts)).toEqual([
      { code: 'LANE_FULL', lane: 'critical', message: 'lane critical is full: 50 queued at its cap of 50, new jobs are refused QUEUE_FULL' },
    ]);
  });

  it("says the 429 alert fires when the rate over its window is above the dashboard's threshold", () => {
    const calls = { ...overview.calls, calls429: 3, rate429: 3 / 400 };
    expect(checkReasons({ ...overview, calls }, alerts)).toEqual([
      { code: 'ALERT_FIRING', alert: 'rate429', message: 'alert firing: 429 rate 0.75% of 400 calls over 5 min (threshold 0.50%)' },
    ]);
  });

  it('leaves a utilization alert to the dashboard, which alone can tell it lasted forMs, and fires it on one read when forMs is 0', () => {
    // The fixture's itpm is at 90%, over the 80% threshold.
    expect(checkReasons(overview, alerts)).toEqual([]);
    expect(checkReasons(overview, { ...alerts, forMs: 0 })).toEqual([
      { code: 'ALERT_FIRING', alert: 'utilization:sonnet-4:itpm', message: 'alert firing: pool sonnet-4 itpm at 90.0% of capacity (threshold 80.0% for 0 ms)' },
    ]);
  });

  it('fires no alert when the dashboard evaluates none (dashboard.alerts.enabled false)', () => {
    const calls = { ...overview.calls, calls429: 40, rate429: 0.1 };
    expect(checkReasons({ ...overview, calls }, { ...alerts, enabled: false, forMs: 0 })).toEqual([]);
  });

  it('gives every reason at once, in a stable order: worker, held lanes, full lanes, alerts', () => {
    const lanes = [{ ...critical, queued: 50, held: { paused: true, concurrency: null, rateLimit: null } }, low];
    const calls = { ...overview.calls, calls429: 40, rate429: 0.1 };
    expect(checkReasons({ ...overview, workers: [], lanes, calls }, alerts).map((r) => r.code)).toEqual(['NO_LIVE_WORKER', 'LANE_HELD', 'LANE_FULL', 'ALERT_FIRING']);
  });
});
