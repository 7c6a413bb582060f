/**
 * The dashboard while Redis stalls: connected, but not answering (paused, stuck on a long command,
 * a node mid-failover, a network black hole; here a `redis-server` stopped with SIGSTOP). The
 * page's poll, recent jobs, /metrics and Bull Board's poll held their requests for as long as
 * the stall lasted: the page kept its last figures under "updated <time>" with no error, and a scrape timed out (the
 * target down) rather than saying `headroom_dashboard_redis_up 0`. Each read is bounded now.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboardOnOwnRedis, type DashboardOnRedis } from './dashboard-on-redis.test-support.js';

let fixture: DashboardOnRedis;
beforeAll(async () => {
  fixture = await dashboardOnOwnRedis({ redis: { prefix: 'dstall' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });
});
afterAll(() => fixture?.close());

/** What Bull Board's page polls. */
const BOARD_POLL = '/admin/queues/api/queues?activeQueue=normal&status=latest&page=1';

/**
 * The answer to `path`, or the fetch's abort if none came in 20 s: far past the bound, so a
 * request held by the stall fails the test with a TimeoutError rather than passing late.
 */
async function get(path: string): Promise<Response> {
  return fetch(`${fixture.dash.url}${path}`, { signal: AbortSignal.timeout(20_000) });
}

describe('the dashboard on a Redis that stops answering', () => {
  it("answers the page's and Bull Board's polls and recent jobs 503 REDIS_UNAVAILABLE, and /metrics with redis_up 0, instead of holding them", async () => {
    expect((await get('/api/overview')).status).toBe(200);
    fixture.redis.process.kill('SIGSTOP');
    try {
      const [overview, recent, metrics, board] = await Promise.all([get('/api/overview'), get('/api/recent-jobs'), get('/metrics'), get(BOARD_POLL)]);
      expect(board.status).toBe(503);
      expect(await board.json()).toMatchObject({ error: { code: 'REDIS_UNAVAILABLE' } });
      expect(overview.status).toBe(503);
      expect(await overview.json()).toMatchObject({ error: { code: 'REDIS_UNAVAILABLE' } });
      expect(recent.status).toBe(503);
      expect(await recent.json()).toMatchObject({ error: { code: 'REDIS_UNAVAILABLE' } });
      expect(metrics.status).toBe(200);
      const body = await metrics.text();
      expect(body).toMatch(/^headroom_dashboard_redis_up 0$/m);
      expect(body).not.toMatch(/^headroom_fleet_workers /m);
    } finally {
      fixture.redis.process.kill('SIGCONT');
    }
    // And back by itself once Redis answers again; Bull Board's late answers to the stalled
    // polls are dropped, not sent over the 503s.
    expect((await get('/api/overview')).status).toBe(200);
    expect((await get(BOARD_POLL)).status).toBe(200);
  });
});
