/**
 * The dashboard's guards, on a real Redis and the real Bull Board: a `--local-only` dashboard (no
 * credentials) answers only to loopback names and same-origin writes, so a page on another site
 * cannot reach it by DNS rebinding; Bull Board's writes are refused unless configured; and when
 * they are allowed, retrying finished jobs goes through admission: a lane never holds more than
 * its cap, however many jobs are retried.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { createLogger, laneKeys, parseConfig, publishFleetSettings, type HeadroomConfigInput } from '@headroom/queue';
import { startDashboard, type RunningDashboard } from '@headroom/dashboard';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const MODEL = 'claude-sonnet-4-6';
const NO_CREDENTIALS = { HEADROOM_DASHBOARD_USER: '', HEADROOM_DASHBOARD_PASSWORD: '', HEADROOM_DASHBOARD_TOKEN: '' };

let redis: EmbeddedRedis;
let admin: Redis;
const closers: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c.close();
  admin?.disconnect();
  await redis?.stop();
});

function configOf(prefix: string, extra: Partial<HeadroomConfigInput> = {}) {
  return parseConfig({ redis: { prefix }, models: { [MODEL]: { provider: 'anthropic' } }, lanes: { normal: { cap: 5 } }, ...extra });
}

async function dashboardOf(prefix: string, extra: Partial<HeadroomConfigInput> = {}, readOnly?: boolean): Promise<RunningDashboard> {
  const dash = await startDashboard({
    config: configOf(prefix, extra),
    redisUrl: redis.url,
    localOnly: true,
    port: 0,
    env: NO_CREDENTIALS,
    logger: createLogger({ level: 'silent' }),
    ...(readOnly === undefined ? {} : { readOnly }),
  });
  closers.push(dash);
  return dash;
}

/** A raw HTTP request with the headers a browser on another site would send (fetch would not let us set Host). */
async function request(url: string, opts: { method?: string; host?: string; origin?: string } = {}): Promise<{ status: number; body: string }> {
  const { request: httpRequest } = await import('node:http');
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: opts.method ?? 'GET', headers: { host: opts.host ?? u.host, ...(opts.origin ? { origin: opts.origin } : {}) } },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => { body += d.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const job = (i: number): LlmJobInput => ({ priority: 'NORMAL', provider: 'anthropic', request: { model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `q${i}` }] } });

/** `n` NORMAL jobs enqueued and completed by a plain BullMQ worker (no provider involved). */
async function completedJobs(prefix: string, n: number): Promise<void> {
  const producer = new Producer({ redis: redis.url, prefix });
  closers.push(producer);
  const k = laneKeys(prefix, 'normal');
  const worker = new Worker(k.queueName, async () => ({ ok: true }), { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }), concurrency: 5 });
  closers.push(worker);
  let completed = 0;
  let wake: (() => void) | undefined;
  worker.on('completed', () => {
    completed += 1;
    wake?.();
  });
  // Five at a time, the lane's cap: each five run before the next are enqueued.
  for (let i = 0; i < n; i += 5) {
    const batch = Math.min(5, n - i);
    await Promise.all(Array.from({ length: batch }, (_, j) => producer.enqueue(job(i + j))));
    while (completed < i + batch) await new Promise<void>((r) => { wake = r; });
  }
  await worker.close();
}

const notStarted = async (prefix: string) => {
  const k = laneKeys(prefix, 'normal');
  return (await admin.llen(k.wait)) + (await admin.zcard(k.prioritized)) + (await admin.zcard(k.delayed));
};

describe('a local-only dashboard', () => {
  it('refuses a foreign Host on every route but the probes (DNS rebinding), and serves loopback names', async () => {
    const dash = await dashboardOf(`g-${randomUUID().slice(0, 8)}`);
    for (const path of ['/api/recent-jobs', '/api/overview', '/admin/queues/api/queues', '/metrics', '/']) {
      const foreign = await request(`${dash.url}${path}`, { host: `attacker.example:${dash.port}` });
      expect(foreign.status, path).toBe(403);
      expect(JSON.parse(foreign.body).error.code).toBe('FORBIDDEN_HOST');
      for (const host of [`127.0.0.1:${dash.port}`, `localhost:${dash.port}`]) expect((await request(`${dash.url}${path}`, { host })).status, `${path} ${host}`).toBe(200);
    }
    expect((await request(`${dash.url}/healthz`, { host: 'attacker.example' })).status).toBe(200);
  });

  it('refuses writes from another origin, even under a loopback Host', async () => {
    const dash = await dashboardOf(`g-${randomUUID().slice(0, 8)}`, {}, false);
    const pause = await request(`${dash.url}/admin/queues/api/queues/normal/pause`, { method: 'PUT', origin: 'http://attacker.example' });
    expect(pause.status).toBe(403);
    expect(JSON.parse(pause.body).error.code).toBe('FORBIDDEN_ORIGIN');
    // Same origin: Bull Board answers.
    const same = await request(`${dash.url}/admin/queues/api/queues/normal/pause`, { method: 'PUT', origin: dash.url });
    expect(same.status).toBe(200);
  });

  it('is read-only unless configured otherwise: retries, promotes and pauses are refused', async () => {
    const prefix = `g-${randomUUID().slice(0, 8)}`;
    const dash = await dashboardOf(prefix);
    expect(dash.readOnly).toBe(true);
    for (const path of ['/admin/queues/api/queues/normal/retry/completed', '/admin/queues/api/queues/normal/promote', '/admin/queues/api/queues/normal/pause']) {
      const res = await request(`${dash.url}${path}`, { method: 'PUT' });
      expect(res.status, path).toBe(403);
    }
  });
});

describe('Bull Board retries, when allowed', () => {
  it('go through admission: retrying 20 completed jobs into a lane capped at 5 sends back 5, and the lane never holds more', async () => {
    const prefix = `g-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(admin, configOf(prefix));
    await completedJobs(prefix, 20);
    const dash = await dashboardOf(prefix, { dashboard: { readOnly: false } });
    expect(dash.readOnly).toBe(false);

    const res = await fetch(`${dash.url}/admin/queues/api/queues/normal/retry/completed`, { method: 'PUT' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { retried: number; skipped: number; stoppedBy?: { code: string } };
    expect(body).toMatchObject({ retried: 5, skipped: 15, stoppedBy: { code: 'QUEUE_FULL' } });
    expect(await notStarted(prefix)).toBe(5);

    // One more, by hand: refused as a producer's enqueue would be.
    const completed = await admin.zrange(laneKeys(prefix, 'normal').completed, '0', '0');
    const one = await fetch(`${dash.url}/admin/queues/api/queues/normal/${completed[0]}/retry`, { method: 'PUT' });
    expect(one.status).toBe(429);
    expect(((await one.json()) as { error: { code: string } }).error.code).toBe('QUEUE_FULL');
    expect(await notStarted(prefix)).toBe(5);
  });
});
