/**
 * The overview's calls by model are over the 429 alert window, as its total, 429s and cost are,
 * so a 429 storm's model reads beside the rate it raised. They were the page's 15-minute read:
 * a model's 429s stayed in them ten minutes after the rate beside them had cleared.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FleetStatsWriter, parseConfig } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { openOverviewReader, type OverviewReader } from './overview.js';

const db = redisForFile();
const readers: OverviewReader[] = [];
afterAll(async () => {
  for (const r of readers) await r.close();
});

describe("the overview's calls by model", () => {
  it('count the calls of the 429 window only, as the total beside them', async () => {
    const prefix = 'ovw1';
    const at = { ms: 200 * 60_000 + 30_000 };
    const config = parseConfig({
      redis: { prefix },
      models: { 'claude-sonnet-4-6': { provider: 'anthropic' }, 'claude-haiku-4-5': { provider: 'anthropic' } },
      dashboard: { alerts: { rate429WindowMinutes: 5 } },
    });
    const writer = new FleetStatsWriter(db.redis, prefix, () => at.ms);
    // Ten minutes ago: a 429 storm on sonnet. Now: haiku serving.
    at.ms -= 10 * 60_000;
    for (let i = 0; i < 4; i++) writer.call({ model: 'claude-sonnet-4-6', status: 429 });
    writer.call({ model: 'claude-sonnet-4-6', status: 200 });
    await writer.flush();
    at.ms += 10 * 60_000;
    for (let i = 0; i < 3; i++) writer.call({ model: 'claude-haiku-4-5', status: 200 });
    await writer.flush();

    const reader = openOverviewReader(db.redis, config, () => at.ms);
    readers.push(reader);
    const o = await reader.read();
    expect(o.calls).toMatchObject({ windowMinutes: 5, total: 3, calls429: 0 });
    expect(o.calls.byModel).toEqual({ 'claude-haiku-4-5': { '200': 3 } });
    // The page's longer window still holds the storm, in its minute series.
    expect(o.minutes.reduce((n, m) => n + m.calls429, 0)).toBe(4);
  });
});
