import { afterAll, describe, expect, it } from 'vitest';
import { Bucket, FleetStatsWriter, parseConfig, throttleParamsOf } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { DashboardMetrics } from './fleet-metrics.js';
import { closeLaneQueues, openLaneQueues } from './fleet-state.js';
import { poolsOf } from './pools.js';

const db = redisForFile();
const opened: Parameters<typeof closeLaneQueues>[0][] = [];
afterAll(async () => {
  for (const q of opened) await closeLaneQueues(q);
});

const MODEL = 'claude-haiku-4-5';

/** The dashboard's registry on this file's Redis under `prefix`, at the clock `at` reads. */
function dashboardMetrics(prefix: string, at: { ms: number }) {
  const config = parseConfig({ redis: { prefix }, models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 100 } } } });
  const queues = openLaneQueues(db.redis, prefix);
  opened.push(queues);
  const bucket = new Bucket(db.redis, { prefix, throttle: throttleParamsOf(config) });
  return new DashboardMetrics({ redis: db.redis, config, bucket, pools: poolsOf(config), queues, alerts: () => [], now: () => at.ms }, { defaultMetrics: false });
}

/** `name{labels} value` lines of one metric, as a map from its label text to its value. */
async function series(metrics: DashboardMetrics, name: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await metrics.registry.metrics()).split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m?.[1] === name) out[m[2] ?? ''] = Number(m[3]);
  }
  return out;
}

describe("the dashboard's window metrics", () => {
  it('read 0 once the window has passed its last job and call, rather than dropping the series', async () => {
    const prefix = 'fm1';
    const at = { ms: 100 * 60_000 };
    const writer = new FleetStatsWriter(db.redis, prefix, () => at.ms);
    writer.call({ model: MODEL, status: 200 });
    writer.call({ model: MODEL, status: 429 });
    writer.jobEnded({ lane: 'high', outcome: 'completed', waitMs: 20, model: MODEL, costUsd: 0.5 });
    await writer.flush();
    const metrics = dashboardMetrics(prefix, at);

    const calls = `{model="${MODEL}",status="200"}`;
    const calls429 = `{model="${MODEL}",status="429"}`;
    const highDone = '{lane="high",outcome="completed"}';
    expect(await series(metrics, 'headroom_fleet_calls_window')).toEqual({ [calls]: 1, [calls429]: 1 });
    expect((await series(metrics, 'headroom_fleet_jobs_window'))[highDone]).toBe(1);
    expect(await series(metrics, 'headroom_fleet_cost_usd_window')).toEqual({ '': 0.5 });

    // Ten minutes on, past the 5-minute window: nothing happened since.
    at.ms += 10 * 60_000;
    expect(await series(metrics, 'headroom_fleet_calls_window')).toEqual({ [calls]: 0, [calls429]: 0 });
    const jobs = await series(metrics, 'headroom_fleet_jobs_window');
    expect(jobs[highDone]).toBe(0);
    expect(Object.keys(jobs)).toHaveLength(5 * 3);
    expect(await series(metrics, 'headroom_fleet_cost_usd_window')).toEqual({ '': 0 });
    expect(await series(metrics, 'headroom_fleet_429_ratio')).toEqual({ '': 0 });
  });

  it('report every lane and outcome at 0 for a fleet that has run nothing yet', async () => {
    const metrics = dashboardMetrics('fm2', { ms: 100 * 60_000 });
    const jobs = await series(metrics, 'headroom_fleet_jobs_window');
    expect(Object.keys(jobs).sort()).toEqual(
      ['batch', 'critical', 'high', 'low', 'normal'].flatMap((lane) => ['completed', 'failed', 'shed'].map((o) => `{lane="${lane}",outcome="${o}"}`)).sort(),
    );
    expect(new Set(Object.values(jobs))).toEqual(new Set([0]));
  });
});
