import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, parseConfig } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { DASHBOARD_METRIC_NAMES } from './fleet-metrics.js';
import { startDashboard, type RunningDashboard } from './server.js';

const servers: EmbeddedRedis[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop({ kill: true });
});

interface Line {
  level: number;
  msg: string;
  connection?: string;
}

/** A logger at debug level whose lines the test reads, and a wait for a line count to be reached. */
function collectingLogger() {
  const lines: Line[] = [];
  const waiters: (() => void)[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Line);
      for (const w of waiters.splice(0)) w();
      cb();
    },
  });
  /** Resolves once `pred` holds of the lines so far (checked as each line arrives). */
  const when = (pred: (l: Line[]) => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (pred(lines) ? resolve() : waiters.push(check));
      check();
    });
  return { logger: createLogger({ destination, level: 'debug' }), lines, when };
}

const WARN = 40;
/** The dashboard's own series in one /metrics scrape, as `name{labels}` -> value (process metrics left out). */
async function scrape(dash: RunningDashboard): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await (await fetch(`${dash.url}/metrics`)).text()).split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && (DASHBOARD_METRIC_NAMES as readonly string[]).includes(m[1]!)) out.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return out;
}

const reads = (l: Line[], read: string) => l.filter((x) => x.msg.startsWith(`dashboard ${read}`) || (read === 'evaluation' && x.msg.startsWith('alert evaluation'))).length;

describe('the dashboard during a Redis outage', () => {
  it('logs one line when Redis goes and one when it is back, however many samples and evaluations fail between', async () => {
    const port = await freePort();
    servers.push(await startEmbeddedRedis({ port }));
    const { logger, lines, when } = collectingLogger();
    const config = parseConfig({ redis: { prefix: 'mon' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } }, dashboard: { alerts: { intervalMs: 50 } } });
    const dash = await startDashboard({ config, redisUrl: `redis://127.0.0.1:${port}`, localOnly: true, port: 0, logger, sampleIntervalMs: 20 });
    try {
      await dash.monitor.sample();
      await servers.at(-1)!.stop({ kill: true });
      // Samples and evaluations fail while Redis is away, each leaving a line (debug; they were
      // warn lines, the evaluation's one each time): wait for a sample and five evaluations.
      await when((l) => reads(l, 'sample') >= 1 && reads(l, 'evaluation') >= 5);
      expect(lines.filter((l) => l.level >= WARN).map((l) => [l.msg, l.connection])).toEqual([['redis connection lost; reconnecting', 'dashboard']]);

      servers.push(await startEmbeddedRedis({ port }));
      await when((l) => l.some((x) => x.msg === 'redis connection back'));
      await dash.monitor.sample();
      await dash.monitor.evaluate();
      const outage = lines.filter((l) => l.level >= WARN || l.msg === 'redis connection back');
      expect(outage.map((l) => l.msg)).toEqual(['redis connection lost; reconnecting', 'redis connection back']);
    } finally {
      await dash.close();
    }
  });

  it('leaves every fleet series out of /metrics while Redis is away (not 0 workers), and reports them again once it is back', async () => {
    const port = await freePort();
    servers.push(await startEmbeddedRedis({ port }));
    const { logger, when } = collectingLogger();
    // A scrape reuses a reading for a second: each scrape below is two seconds on, so each reads Redis.
    const clock = { ms: Date.now() };
    const next = () => (clock.ms += 2_000);
    const config = parseConfig({ redis: { prefix: 'mon2' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });
    const dash = await startDashboard({ config, redisUrl: `redis://127.0.0.1:${port}`, localOnly: true, port: 0, logger, now: () => clock.ms });
    const unlabelled = ['headroom_fleet_429_ratio', 'headroom_fleet_cost_usd_window', 'headroom_fleet_workers', 'headroom_fleet_gateways'];
    try {
      next();
      const up = await scrape(dash);
      expect(up.get('headroom_dashboard_redis_up')).toBe(1);
      for (const name of unlabelled) expect(up.get(name), name).toBe(0);

      await servers.at(-1)!.stop({ kill: true });
      next();
      expect(Object.fromEntries(await scrape(dash))).toEqual({ headroom_dashboard_redis_up: 0 });

      // Restarted only once the client has seen the outage, so its reconnection is logged as the end of one.
      await when((l) => l.some((x) => x.msg === 'redis connection lost; reconnecting'));

      servers.push(await startEmbeddedRedis({ port }));
      await when((l) => l.some((x) => x.msg === 'redis connection back'));
      next();
      const back = await scrape(dash);
      expect(back.get('headroom_dashboard_redis_up')).toBe(1);
      for (const name of unlabelled) expect(back.get(name), name).toBe(0);
      expect([...back.keys()].filter((k) => k.startsWith('headroom_fleet_jobs_window{'))).toHaveLength(5 * 3);
    } finally {
      await dash.close();
    }
  });
});
