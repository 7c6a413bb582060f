/**
 * The Headroom page in a real browser while its Redis is lost, and after. Stopped (SIGSTOP:
 * connected but silent, as a paused Redis, a failover or a network black hole), the page's poll
 * waited on the stall and kept its last figures under "updated <time>" as if current; gone
 * (SIGKILL), it said only `update failed: REDIS_UNAVAILABLE`. Now both say, in words, that Redis
 * cannot be reached and how old the figures on the page are, and the page recovers by itself.
 */
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDashboard, type RunningDashboard } from '@headroom/dashboard';
import { createLogger, parseConfig } from '@headroom/queue';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const config = parseConfig({ redis: { prefix: 'dlost' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });

// One Redis, the dashboard on it, and a browser page: the Redis is replaced when the test restarts it.
let redis: EmbeddedRedis, dash: RunningDashboard, browser: Browser, page: Page;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  dash = await startDashboard({ config, redisUrl: redis.url, localOnly: true, port: 0, logger: createLogger({ level: 'silent' }) });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  page = await browser.newPage();
});
afterAll(async () => {
  redis?.process.kill('SIGCONT');
  await browser?.close();
  await dash?.close();
  await redis?.stop({ kill: true });
});

/** The status line once it matches `pattern` (polled; the page polls every 2 s). */
async function statusMatching(pattern: RegExp): Promise<string> {
  let text = '';
  await expect.poll(async () => (text = (await page.locator('#status').textContent()) ?? ''), { timeout: 30_000 }).toMatch(pattern);
  return text;
}

describe('the Headroom page while Redis is lost', () => {
  it('says Redis is not reachable and how old its figures are, whether Redis stalls or goes, and recovers by itself', async () => {
    await page.goto(`${dash.url}/`);
    await statusMatching(/^updated /);

    redis.process.kill('SIGSTOP');
    try {
      const stalled = await statusMatching(/^update failed/);
      expect(stalled).toMatch(/^update failed: Redis is not reachable \(REDIS_UNAVAILABLE\); figures as of \S/);
      expect(await page.locator('#status').getAttribute('class')).toContain('error');
    } finally {
      redis.process.kill('SIGCONT');
    }
    await statusMatching(/^updated /);

    const port = redis.port;
    await redis.stop({ kill: true });
    expect(await statusMatching(/^update failed/)).toMatch(/^update failed: Redis is not reachable \(REDIS_UNAVAILABLE\); figures as of \S/);
    redis = await startEmbeddedRedis({ port });
    await statusMatching(/^updated /);
  });
});
