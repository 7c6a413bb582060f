/**
 * A lane held back from Bull Board on a writable dashboard (`dashboard.readOnly: false`): its
 * pause, "global concurrency" and "rate limit" are BullMQ settings of the lane's queue, which the
 * fleet's fetch honours and which stay until cleared. The overview (the page, `headroom status`)
 * said nothing of them: a paused lane read as a fleet that had stopped taking work, a global
 * concurrency of 1 as a slow provider. It reports each now, and drops it once cleared.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboardOnOwnRedis, type DashboardOnRedis } from './dashboard-on-redis.test-support.js';
import type { Overview } from './overview.js';

let fixture: DashboardOnRedis;
beforeAll(async () => {
  fixture = await dashboardOnOwnRedis({ redis: { prefix: 'dhold' }, models: { 'claude-haiku-4-5': { provider: 'anthropic' } }, dashboard: { readOnly: false } });
});
afterAll(() => fixture?.close());

/** A Bull Board action on the normal lane, as its page sends it. */
async function bullBoard(action: string, body: object = {}): Promise<void> {
  const res = await fetch(`${fixture.dash.url}/admin/queues/api/queues/normal/${action}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
}

async function heldOf(lane: string): Promise<Overview['lanes'][number]['held'] | undefined> {
  const overview = (await (await fetch(`${fixture.dash.url}/api/overview`)).json()) as Overview;
  return overview.lanes.find((l) => l.lane === lane)?.held;
}

describe("a lane held back from Bull Board", () => {
  it('shows its pause, global concurrency and rate limit in the overview, and drops each once cleared', async () => {
    expect(await heldOf('normal')).toEqual({ paused: false, concurrency: null, rateLimit: null });

    await bullBoard('pause');
    await bullBoard('concurrency', { concurrency: 1 });
    await bullBoard('rate-limit', { max: 2, duration: 5_000 });
    expect(await heldOf('normal')).toEqual({ paused: true, concurrency: 1, rateLimit: { max: 2, durationMs: 5_000 } });
    expect(await heldOf('high')).toEqual({ paused: false, concurrency: null, rateLimit: null });

    await bullBoard('resume');
    await bullBoard('rate-limit', { max: null });
    expect(await heldOf('normal')).toEqual({ paused: false, concurrency: 1, rateLimit: null });
  });
});
