/** One overview of a working fleet, for the tests of its renderings (`status-view`, `status-check`). */
import type { Overview } from '@headroom/dashboard';

export const counts = { waiting: 0, prioritized: 0, delayed: 0, active: 0, completed: 0, failed: 0 };
export const held = { paused: false, concurrency: null, rateLimit: null };

export const overview: Overview = {
  atMs: Date.UTC(2026, 11, 4, 12, 0, 0),
  prefix: 'hr',
  windowMinutes: 15,
  pools: [
    {
      pool: 'sonnet-4',
      provider: 'anthropic',
      models: ['claude-sonnet-4-6'],
      dimensions: [
        { dimension: 'rpm', capacity: 50, level: 25, utilization: 0.5, source: 'config', fullInMs: 30_000, burnPerSec: null, exhaustInMs: null },
        { dimension: 'itpm', capacity: 30_000, level: 3_000, utilization: 0.9, source: 'learned', fullInMs: 54_000, burnPerSec: 600, exhaustInMs: 30_000 },
      ],
      unbound: ['otpm'],
      cooldowns: [{ model: 'claude-sonnet-4-6', remainingMs: 1_500 }],
      throttles: [
        { model: 'claude-sonnet-4-6', state: 'throttled', admitRatio: 0.4, successRatio: 0.2, allowedRpm: 20, callsPerSec: 2, retriesPerSec: 0.3, retryBudget: 14, retryBudgetLeft: 3.2 },
      ],
      pressure: 0.87,
      waits: {},
    },
  ],
  lanes: [
    { lane: 'critical', cap: 50, counts, queued: 3, running: 2, done: 40, failed: 1, shed: 0, shedTotal: 0, p95WaitMs: 120, held },
    { lane: 'low', cap: 5000, counts, queued: 900, running: 0, done: 10, failed: 0, shed: 12, shedTotal: 30, p95WaitMs: 90_000, held },
  ],
  workers: [{ id: 'w1', host: 'h', pid: 1, inFlight: 2, concurrency: 16, lastSeenMsAgo: 100 }],
  expiredWorkers: [],
  gateways: [],
  calls: { windowMinutes: 5, total: 400, calls429: 2, rate429: 0.005, byModel: {} },
  cost: { usdWindow: 0.5, usdPerHour: 2 },
  minutes: [],
  samples: [],
  alerts: [],
};
