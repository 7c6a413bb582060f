/**
 * `headroom dashboard` end to end: the CLI process against a real Redis, a worker process against
 * the provider simulator, and headless Chromium. Guards: auth on by default (no credentials, no
 * start; no credentials on a request, 401), Bull Board showing every lane's jobs, the Headroom
 * page showing a loaded pool's utilization, job metadata rendered as text, prompts kept out of
 * the job view and the logs, /metrics series that move when jobs run, and alerts reaching a
 * webhook once per episode.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { chromium, type Browser, type Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type JobHandle, type Priority } from '@headroom/producer-sdk';
import { startGateway } from '@headroom/gateway';
import { Bucket, createLogger, loadConfig, publishFleetSettings } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { REPO_ROOT, spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { DASHBOARD_METRIC_NAMES, type AlertWebhookBody, type Overview } from '@headroom/dashboard';

const ARTIFACTS = join(REPO_ROOT, 'test/artifacts');
const PREFIX = 'dash';
const MODEL = 'claude-sonnet-4-6';
const SONNET_LIMITS = { rpm: 600, itpm: 400_000, otpm: 100_000 };
const HAIKU_LIMITS = { rpm: 1000, itpm: 60_000, otpm: 10_000 };
const OPUS_LIMITS = { rpm: 600, itpm: 1_000_000, otpm: 100_000 };
const USER = 'ops';
const PASSWORD = 'correct horse battery staple';
const API_KEY = 'sk-dash-test-KEY-4f1c9e';
const PROMPT_MARKER = 'PROMPT-TEXT-never-shown-7d2a';
const WEBHOOK_SECRET = 'hook-SECRET-91b3';
const XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';
const ENQUEUED: Record<Priority, number> = { CRITICAL: 2, HIGH: 3, NORMAL: 4, LOW: 5 };
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let redis: EmbeddedRedis;
let conn: Redis;
let sim: Simulator;
let browser: Browser;
let hookServer: Server;
const hooks: AlertWebhookBody[] = [];
let dashboard: FleetProcess;
let worker: FleetProcess | undefined;
let worker2: FleetProcess | undefined;
let base: string;
let workerMetricsPort: number;
let configFile: string;
let producer: Producer;
const handles: { priority: Priority; handle: JobHandle }[] = [];
let xssJobId = '';

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const AUTH = { authorization: basic(USER, PASSWORD) };

/**
 * A wait that includes a worker process starting (tsx compiling its source) gets what
 * `waitForFleet` allows a start: on a loaded 2-core machine a start alone took over 30 s.
 */
const WITH_PROCESS_START_MS = 60_000;

/** Polls `probe` until it returns a value other than undefined/false; fails with `what` after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (the subset prom-client writes). */
function parseProm(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

function sampleOf(samples: PromSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** The text of an element (textContent: the page renders every value as a text node). */
const textOf = async (l: Locator): Promise<string> => (await l.textContent()) ?? '';

async function scrape(url: string, headers: Record<string, string> = AUTH) {
  const res = await fetch(url, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parseProm(await res.text());
}

async function overview(): Promise<Overview> {
  const res = await fetch(`${base}/api/overview`, { headers: AUTH });
  expect(res.status).toBe(200);
  return (await res.json()) as Overview;
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  redis = await startEmbeddedRedis();
  conn = new Redis(redis.url);
  sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: SONNET_LIMITS } }, latencyMs: { min: 20, max: 60 } });
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      if (req.method === 'POST' && req.url === `/hooks/${WEBHOOK_SECRET}`) hooks.push(JSON.parse(body) as AlertWebhookBody);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  const hookPort = (hookServer.address() as { port: number }).port;

  workerMetricsPort = await freePort();
  configFile = writeConfig({
    redis: { prefix: PREFIX },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'DASH_TEST_ANTHROPIC_KEY' } },
    models: {
      [MODEL]: { provider: 'anthropic', pool: 'sonnet-4', limits: SONNET_LIMITS, pricing: { inputPerMTok: 3, outputPerMTok: 15 } },
      // Pools the test loads by hand, so a worker never waits on them.
      'claude-haiku-4-5': { provider: 'anthropic', pool: 'haiku-4', limits: HAIKU_LIMITS },
      'claude-opus-4-1': { provider: 'anthropic', pool: 'opus-4', limits: OPUS_LIMITS },
    },
    dispatch: { concurrency: 8, lockMs: 5_000, stalledIntervalMs: 1_000, shutdownGraceMs: 5_000, metricsPort: workerMetricsPort },
    // The throttle test's storm lasts as long as a loaded machine takes to show it in a browser;
    // at one probe a second its four jobs must not run out of attempts meanwhile.
    retry: { maxAttempts: 30 },
    dashboard: { alerts: { intervalMs: 250, forMs: 1_000, webhookUrlEnv: 'DASH_TEST_WEBHOOK_URL' } },
  });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  dashboard = spawnHeadroom(['dashboard', '--config', configFile, '--redis', redis.url, '--port', String(port)], {
    HEADROOM_DASHBOARD_USER: USER,
    HEADROOM_DASHBOARD_PASSWORD: PASSWORD,
    HEADROOM_DASHBOARD_TOKEN: '',
    DASH_TEST_WEBHOOK_URL: `http://127.0.0.1:${hookPort}/hooks/${WEBHOOK_SECRET}`,
  });
  await waitFor('the dashboard to answer /healthz', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  // Jobs are enqueued before a worker starts: the settings a fleet that ran before left behind
  // (admission refuses without them).
  await publishFleetSettings(conn, loadConfig(configFile));
  producer = new Producer({ redis: redis.url, prefix: PREFIX });
});

afterAll(async () => {
  await browser?.close();
  await stopAll([dashboard, worker, worker2].filter((p): p is FleetProcess => p !== undefined), 'SIGKILL');
  await producer?.close();
  conn?.disconnect();
  await new Promise<void>((r) => (hookServer ? hookServer.close(() => r()) : r()));
  await sim?.close();
  await redis?.stop();
});

describe('headroom dashboard', () => {
  it('refuses to start without credentials unless local-only, which binds 127.0.0.1', async () => {
    const p = spawnHeadroom(['dashboard', '--config', configFile, '--redis', redis.url, '--port', '0'], {
      HEADROOM_DASHBOARD_USER: '',
      HEADROOM_DASHBOARD_PASSWORD: '',
      HEADROOM_DASHBOARD_TOKEN: '',
    });
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain('no credentials');
    expect(p.output()).toContain('--local-only');

    // Local-only: bound to 127.0.0.1, no credentials needed; --read-only refuses every write.
    const port = await freePort();
    const local = spawnHeadroom(['dashboard', '--config', configFile, '--redis', redis.url, '--port', String(port), '--local-only', '--read-only'], {
      HEADROOM_DASHBOARD_USER: '',
      HEADROOM_DASHBOARD_PASSWORD: '',
      HEADROOM_DASHBOARD_TOKEN: '',
      HEADROOM_LOG_LEVEL: 'info',
    });
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor('the local-only dashboard', async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok);
      const started = local.output().split('\n').filter((l) => l.includes('"msg":"dashboard started"')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(started).toEqual([expect.objectContaining({ host: '127.0.0.1', auth: 'none', readOnly: true, localOnly: true })]);
      expect((await fetch(`${url}/api/overview`)).status).toBe(200);
      const pause = await fetch(`${url}/admin/queues/api/queues/pause`, { method: 'PUT' });
      expect(pause.status).toBe(403);
      expect(((await pause.json()) as { error: { code: string } }).error.code).toBe('READ_ONLY');
      const queues = (await (await fetch(`${url}/admin/queues/api/queues`)).json()) as { queues: { name: string; readOnlyMode: boolean; isPaused: boolean }[] };
      expect(queues.queues.map((q) => [q.name, q.readOnlyMode, q.isPaused])).toEqual(['critical', 'high', 'normal', 'low', 'batch'].map((n) => [n, true, false]));
    } finally {
      await stopAll([local]);
    }
  });

  it('answers 401 without credentials, 200 with them, and keeps the probes open', async () => {
    for (const path of ['/', '/headroom', '/api/overview', '/api/recent-jobs', '/metrics', '/admin/queues', '/admin/queues/api/queues', '/assets/app.js']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate'), path).toContain('Basic realm="Headroom"');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
      const wrong = await fetch(`${base}${path}`, { headers: { authorization: basic(USER, 'wrong') } });
      expect(wrong.status, path).toBe(401);
      const right = await fetch(`${base}${path}`, { headers: AUTH });
      expect(right.status, path).toBe(200);
      await right.arrayBuffer();
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ok: true, redis: 'ready' });

    // A browser with no credentials gets the 401 (Chromium then cancels the auth prompt it cannot show).
    const anonymous = await browser.newContext();
    const page = await anonymous.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => statuses.push(r.status()));
    await page.goto(`${base}/admin/queues`).catch((err: Error) => expect(err.message).toContain('ERR_INVALID_AUTH_CREDENTIALS'));
    expect(statuses).toEqual([401]);
    await anonymous.close();
  });

  it('shows each lane with the jobs enqueued in Bull Board, and metadata as text', async () => {
    for (const [priority, n] of Object.entries(ENQUEUED) as [Priority, number][]) {
      for (let i = 0; i < n; i++) {
        const xss = priority === 'LOW' && i === 0;
        const handle = await producer.enqueue({
          priority,
          provider: 'anthropic',
          request: { model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: `${PROMPT_MARKER} ${priority} ${i}` }] },
          metadata: xss ? { note: XSS } : { priority, i },
        });
        if (xss) xssJobId = handle.id;
        handles.push({ priority, handle });
      }
    }
    // Adding jobs from Bull Board would bypass admission and validation: always refused.
    const add = await fetch(`${base}/admin/queues/api/queues/low/add`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x', data: {}, options: {} }),
    });
    expect(add.status).toBe(403);

    const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    // Nothing is fetched from outside this machine (Bull Board's page links Google Fonts).
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(`${base}/admin/queues`);
    const card = (title: string) => page.locator('li', { has: page.locator(`a[title="${title}"]`) });
    for (const [priority, n] of Object.entries(ENQUEUED)) {
      await expect.poll(async () => (await card(priority).textContent()) ?? '', { timeout: 15_000 }).toContain(`${n} Job${n === 1 ? '' : 's'}`);
    }
    await expect.poll(async () => (await card('BATCH').textContent()) ?? '').toContain('0 Jobs');
    await page.screenshot({ path: join(ARTIFACTS, 'bull-board-lanes.png'), fullPage: true });

    // The job view renders the metadata as text, and shows the prompt's shape, not its text.
    await page.goto(`${base}/admin/queues/queue/low/${xssJobId}`);
    await page.getByText('window.__xss=1', { exact: false }).first().waitFor();
    const text = (await page.locator('#root').textContent()) ?? '';
    expect(text).toContain('<script>window.__xss=1</script>');
    expect(text).toContain('onerror=');
    expect(text).toContain('[redacted: 1 item]');
    expect(text).not.toContain(PROMPT_MARKER);
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'bull-board-job-metadata.png'), fullPage: true });
    expect(requested.length).toBeGreaterThan(0);
    expect(requested.filter((u) => new URL(u).origin !== new URL(base).origin)).toEqual([]);
    await ctx.close();
  });

  it('shows the utilization of a loaded pool, the lane counts and metadata as text on the Headroom page', async () => {
    // Load haiku-4 for real: a grant, then a settle reporting far more input than reserved (an
    // underestimate). The bucket goes negative and takes minutes to refill: well over 100%.
    const bucket = new Bucket(conn, { prefix: PREFIX });
    const grant = await bucket.acquire({ pool: 'haiku-4', limits: HAIKU_LIMITS, lane: 'critical', need: { inputTokens: 1_000, outputTokens: 100 }, model: 'claude-haiku-4-5' });
    expect(grant.status).toBe('granted');
    if (grant.status !== 'granted') return;
    const settled = await bucket.settle(grant.reservation, { inputTokens: 600_000, outputTokens: 100 });
    expect(settled.status).toBe('settled');

    const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/`);
    const cell = page.locator('[data-pool="haiku-4"] tr[data-dimension="itpm"] [data-field="utilization"]');
    const shown = await waitFor('the haiku-4 itpm utilization', async () => {
      const m = /([\d.]+)%/.exec((await cell.textContent().catch(() => '')) ?? '');
      return m ? Number(m[1]) : undefined;
    });
    expect(shown).toBeGreaterThanOrEqual(100);
    // The same value the API reports, rendered: the API's is read later, so it is no higher.
    const api = (await overview()).pools.find((p) => p.pool === 'haiku-4')!.dimensions.find((d) => d.dimension === 'itpm')!;
    expect(api.capacity).toBe(HAIKU_LIMITS.itpm);
    expect(api.utilization * 100).toBeLessThanOrEqual(shown + 0.1);
    expect(api.utilization).toBeGreaterThan(1);
    // An untouched pool reads 0%.
    expect(await textOf(page.locator('[data-pool="sonnet-4"] tr[data-dimension="rpm"] [data-field="utilization"]'))).toContain('0.0%');

    for (const [priority, n] of Object.entries(ENQUEUED)) {
      expect(await textOf(page.locator(`tr[data-lane="${priority.toLowerCase()}"] [data-field="queued"]`))).toBe(String(n));
    }
    const meta = page.locator(`tr[data-job="${xssJobId}"] [data-field="metadata"]`);
    await meta.waitFor();
    expect(await textOf(meta)).toContain('<script>window.__xss=1</script>');
    expect(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await textOf(page.locator('body'))).not.toContain(PROMPT_MARKER);

    // The alert fired for it, reached the webhook, and shows on the page.
    const fired = await waitFor('the utilization alert webhook', () => hooks.find((h) => h.status === 'firing' && h.alert.id === 'utilization:haiku-4:itpm'));
    expect(fired.alert).toMatchObject({ rule: 'utilization', pool: 'haiku-4', dimension: 'itpm', threshold: 0.8 });
    await page.locator('[data-alert="utilization:haiku-4:itpm"]').waitFor();
    // Since when, in the page's own time format.
    const since = await page.evaluate((ms) => new Date(ms).toLocaleTimeString(), fired.alert.sinceMs);
    expect(await textOf(page.locator('[data-alert="utilization:haiku-4:itpm"]'))).toContain(`· since ${since}`);
    await page.screenshot({ path: join(ARTIFACTS, 'headroom-page.png'), fullPage: true });
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('fires an alert once per episode and resolves it when the dimension clears', async () => {
    // 540 of 600 requests/min drawn: 90%, refilling 10/s, so under 80% about 6 s later.
    const bucket = new Bucket(conn, { prefix: PREFIX });
    const grant = await bucket.acquire({ pool: 'opus-4', limits: OPUS_LIMITS, lane: 'critical', need: { requests: 540, inputTokens: 0, outputTokens: 0 } });
    expect(grant.status).toBe('granted');
    const id = 'utilization:opus-4:rpm';
    await waitFor('the opus-4 alert to resolve', () => hooks.find((h) => h.status === 'resolved' && h.alert.id === id), 60_000);
    const episode = hooks.filter((h) => h.alert.id === id);
    expect(episode.map((h) => h.status)).toEqual(['firing', 'resolved']);
    expect(episode[0]!.alert.value).toBeGreaterThanOrEqual(0.8);
    expect(episode[1]!.alert.value).toBeLessThan(0.8);
    expect(episode[1]!.alert.firedAtMs - episode[1]!.alert.sinceMs).toBeGreaterThanOrEqual(1_000);
  });

  it('exports the documented /metrics series, and they move when jobs run', async () => {
    const before = await scrape(`${base}/metrics`);
    for (const name of DASHBOARD_METRIC_NAMES) expect(before.types.has(name), name).toBe(true);
    expect(sampleOf(before.samples, 'headroom_dashboard_redis_up')).toBe(1);
    for (const [priority, n] of Object.entries(ENQUEUED)) {
      const lane = priority.toLowerCase();
      // A fair lane keeps its waiting jobs in BullMQ's prioritized state.
      const waiting = (sampleOf(before.samples, 'headroom_lane_depth', { lane, state: 'waiting' }) ?? 0) + (sampleOf(before.samples, 'headroom_lane_depth', { lane, state: 'prioritized' }) ?? 0);
      expect(waiting, lane).toBe(n);
      expect(sampleOf(before.samples, 'headroom_lane_depth', { lane, state: 'completed' }), lane).toBe(0);
    }
    expect(sampleOf(before.samples, 'headroom_lane_cap', { lane: 'critical' })).toBe(50);
    expect(sampleOf(before.samples, 'headroom_bucket_capacity', { pool: 'haiku-4', dimension: 'itpm' })).toBe(HAIKU_LIMITS.itpm);
    expect(sampleOf(before.samples, 'headroom_bucket_utilization', { pool: 'haiku-4', dimension: 'itpm' })).toBeGreaterThan(1);
    expect(sampleOf(before.samples, 'headroom_bucket_level', { pool: 'haiku-4', dimension: 'itpm' })).toBeLessThan(0);
    expect(sampleOf(before.samples, 'headroom_fleet_workers')).toBe(0);
    expect(sampleOf(before.samples, 'headroom_fleet_429_ratio')).toBe(0);
    const grantsBefore = sampleOf(before.samples, 'headroom_fleet_bucket_grants_total', { pool: 'sonnet-4', lane: 'critical' }) ?? 0;
    expect(before.types.get('headroom_fleet_bucket_grants_total')).toBe('counter');

    // Two 429s from "outside traffic", then a worker runs every job.
    sim.injectFaults({ model: MODEL, status: 429, count: 2, retryAfterSeconds: 1 });
    worker = spawnWorker(configFile, redis.url, 'dash-w1', { DASH_TEST_ANTHROPIC_KEY: API_KEY });
    const seen = await waitFor('the worker heartbeat on the overview', async () => (await overview()).workers.find((w) => w.id === 'dash-w1'), WITH_PROCESS_START_MS);
    expect(seen.concurrency).toBe(8);
    const results = await Promise.all(handles.map((h) => h.handle.result({ timeoutMs: 60_000 })));
    expect(results).toHaveLength(handles.length);
    expect(results.reduce((n, r) => n + r.attempts, 0)).toBe(handles.length + 2);
    // The recent-jobs feed agrees, and never carries the request.
    const recentRes = await fetch(`${base}/api/recent-jobs`, { headers: AUTH });
    const recentText = await recentRes.text();
    expect(recentText).not.toContain(PROMPT_MARKER);
    const recent = (JSON.parse(recentText) as { jobs: { id: string; state: string; attempts: number }[] }).jobs.filter((j) => handles.some((h) => h.handle.id === j.id));
    expect(recent.map((j) => j.state)).toEqual(handles.map(() => 'completed'));
    expect(recent.reduce((n, j) => n + j.attempts, 0)).toBe(handles.length + 2);

    const total = handles.length;
    const after = await waitFor('the fleet counters to reach the dashboard', async () => {
      const m = await scrape(`${base}/metrics`);
      const completed = Object.keys(ENQUEUED).reduce((n, p) => n + (sampleOf(m.samples, 'headroom_fleet_jobs_window', { lane: p.toLowerCase(), outcome: 'completed' }) ?? 0), 0);
      return completed === total && (sampleOf(m.samples, 'headroom_fleet_calls_window', { model: MODEL, status: '429' }) ?? 0) === 2 ? m : undefined;
    });
    for (const [priority, n] of Object.entries(ENQUEUED)) {
      const lane = priority.toLowerCase();
      expect(sampleOf(after.samples, 'headroom_lane_depth', { lane, state: 'waiting' }), lane).toBe(0);
      expect(sampleOf(after.samples, 'headroom_lane_depth', { lane, state: 'prioritized' }), lane).toBe(0);
      expect(sampleOf(after.samples, 'headroom_lane_depth', { lane, state: 'completed' }), lane).toBe(n);
      expect(sampleOf(after.samples, 'headroom_fleet_jobs_window', { lane, outcome: 'completed' }), lane).toBe(n);
      expect(sampleOf(after.samples, 'headroom_fleet_wait_p95_seconds', { lane }), lane).toBeGreaterThan(0);
    }
    expect(sampleOf(after.samples, 'headroom_fleet_calls_window', { model: MODEL, status: '200' })).toBe(total);
    expect(sampleOf(after.samples, 'headroom_fleet_429_ratio')).toBeCloseTo(2 / (total + 2), 6);
    expect(sampleOf(after.samples, 'headroom_fleet_cost_usd_window')).toBeGreaterThan(0);
    expect(sampleOf(after.samples, 'headroom_fleet_workers')).toBe(1);
    const grantsAfter = sampleOf(after.samples, 'headroom_fleet_bucket_grants_total', { pool: 'sonnet-4', lane: 'critical' }) ?? 0;
    expect(grantsAfter - grantsBefore).toBeGreaterThanOrEqual(ENQUEUED.CRITICAL);

    // The 429 rate alert (2 of 17 calls, over 0.5%) reached the webhook, once.
    await waitFor('the 429 alert webhook', () => hooks.find((h) => h.alert.id === 'rate429'));
    expect(hooks.filter((h) => h.alert.id === 'rate429' && h.status === 'firing')).toHaveLength(1);
    expect(sampleOf((await scrape(`${base}/metrics`)).samples, 'headroom_alerts_firing', { rule: 'rate429' })).toBe(1);

    // The worker's own /metrics counted the same jobs and 429s.
    const own = await scrape(`http://127.0.0.1:${workerMetricsPort}/metrics`, {});
    for (const [priority, n] of Object.entries(ENQUEUED)) {
      expect(sampleOf(own.samples, 'headroom_jobs_total', { lane: priority.toLowerCase(), outcome: 'completed' })).toBe(n);
    }
    expect(sampleOf(own.samples, 'headroom_provider_429_total', { provider: 'anthropic', model: MODEL })).toBe(2);
    expect(sampleOf(own.samples, 'headroom_provider_calls_total', { provider: 'anthropic', model: MODEL, status: '200' })).toBe(total);

    // The page shows the same: every lane done, the worker and its heartbeat, the 429s.
    const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    for (const [priority, n] of Object.entries(ENQUEUED)) {
      await expect.poll(() => textOf(page.locator(`tr[data-lane="${priority.toLowerCase()}"] [data-field="done"]`)), { timeout: 15_000 }).toBe(String(n));
    }
    await page.locator('tr[data-worker="dash-w1"]').waitFor();
    expect(await textOf(page.locator('#calls-429'))).toBe('2');
    expect(await textOf(page.locator('#models-429'))).toBe(`${MODEL} 2 of ${total + 2} calls`);
    await page.screenshot({ path: join(ARTIFACTS, 'headroom-page-after-jobs.png'), fullPage: true });
    await ctx.close();

    // A worker that stops cleanly leaves the fleet at once.
    await stopAll([worker]);
    await waitFor('the stopped worker to leave', async () => (await overview()).workers.length === 0);
  });

  it('lists a running gateway on the Headroom page and in /metrics, and drops it when it stops', async () => {
    const config = loadConfig(configFile);
    const gateway = await startGateway({
      config: { ...config, gateway: { ...config.gateway, port: 0, host: '127.0.0.1', keys: { app: { keyEnv: 'DASH_GATEWAY_KEY', defaultPriority: 'normal', maxPriority: 'critical' } } } },
      redisUrl: redis.url,
      env: { DASH_GATEWAY_KEY: 'hr-dash-gateway-key-0123456789' },
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const seen = await waitFor('the gateway heartbeat on the overview', async () => (await overview()).gateways.find((g) => g.id === gateway.id));
      expect(seen).toMatchObject({ pid: process.pid, inFlight: 0 });
      // A scrape reuses a reading up to 1 s old: wait for one taken since the gateway's beat.
      await waitFor('the gateway on /metrics', async () => sampleOf((await scrape(`${base}/metrics`)).samples, 'headroom_fleet_gateways') === 1);
      const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
      const page = await ctx.newPage();
      await page.goto(`${base}/`);
      await page.locator(`tr[data-gateway="${gateway.id}"]`).waitFor();
      expect(await page.locator('#gateways-section').isVisible()).toBe(true);
      await ctx.close();
    } finally {
      await gateway.close();
    }
    // A gateway that stops cleanly leaves at once.
    await waitFor('the stopped gateway to leave', async () => (await overview()).gateways.length === 0);
  });

  it("shows a model's fleet-wide throttle open in a 529 storm, with its retry budget, until it recovers", async () => {
    // Every call answered 529 until the page and the scrapes have seen the throttle open (the
    // storm ends when the test says, not after a count of calls a busy machine may spend before
    // the browser is up): four jobs' failures open it, then it probes once a second.
    sim.injectFaults({ model: MODEL, status: 529 });
    worker2 = spawnWorker(configFile, redis.url, 'dash-w2', { DASH_TEST_ANTHROPIC_KEY: API_KEY });
    const job = (i: number) => ({ priority: 'HIGH' as const, provider: 'anthropic' as const, request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user' as const, content: `${PROMPT_MARKER} throttle ${i}` }] } });
    const pending = await Promise.all([1, 2, 3, 4].map((i) => producer.enqueue(job(i))));

    await waitFor('an open throttle in the dashboard metrics', async () => {
      const m = await scrape(`${base}/metrics`);
      return m.samples.some((x) => x.name === 'headroom_fleet_throttle_state' && x.labels.model === MODEL && x.labels.pool === 'sonnet-4' && x.value === 2) || undefined;
    }, WITH_PROCESS_START_MS);
    const m = await scrape(`${base}/metrics`);
    expect(sampleOf(m.samples, 'headroom_fleet_throttle_success_ratio', { pool: 'sonnet-4', model: MODEL })).toBeLessThan(0.5);
    expect(sampleOf(m.samples, 'headroom_fleet_retry_budget_left', { pool: 'sonnet-4', model: MODEL })).toBeGreaterThan(0);
    const pool = (await overview()).pools.find((p) => p.pool === 'sonnet-4')!;
    expect(pool.throttles).toEqual([expect.objectContaining({ model: MODEL, state: expect.stringMatching(/^(open|throttled)$/), retryBudget: expect.any(Number) })]);

    const ctx = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    const note = page.locator(`[data-pool="sonnet-4"] [data-throttle="${MODEL}"]`);
    await note.waitFor();
    expect(await textOf(note)).toMatch(new RegExp(`${MODEL} throttle (open|throttled): admits [\\d.]+%, [\\d.]+% of calls served, retry budget \\d+ / \\d+ left`));
    await page.screenshot({ path: join(ARTIFACTS, 'headroom-page-throttle.png'), fullPage: true });
    await ctx.close();

    // The storm ends: the probes get through, the jobs complete, and the throttle ramps back
    // and reads closed fleet-wide.
    sim.clearFaults();
    const results = await Promise.all(pending.map((h) => h.result({ timeoutMs: 60_000 })));
    expect(results.map((r) => r.model)).toEqual([MODEL, MODEL, MODEL, MODEL]);
    await waitFor('the throttle to close in the dashboard metrics', async () => {
      const scraped = await scrape(`${base}/metrics`);
      return sampleOf(scraped.samples, 'headroom_fleet_throttle_state', { pool: 'sonnet-4', model: MODEL }) === 0 || undefined;
    });
    // The worker counted its throttle waits in its own metrics.
    const own = await scrape(`http://127.0.0.1:${workerMetricsPort}/metrics`, {});
    const throttleWaits = own.samples.filter((x) => x.name === 'headroom_bucket_waits_total' && x.labels.reason === 'throttle').reduce((t, x) => t + x.value, 0);
    expect(throttleWaits).toBeGreaterThan(0);
    await stopAll([worker2]);
  });

  it('logs job id, lane, model and attempt, and never a prompt, a key or a secret', () => {
    const workerLines = worker!.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    // The two 429s of the cooldown test, and whichever of the storm's 529s this worker took.
    const failed = workerLines.filter((l) => l.msg === 'provider call failed');
    expect(failed.filter((l) => l.status === 429)).toHaveLength(2);
    for (const l of failed) {
      expect(l).toMatchObject({ lane: expect.any(String), model: MODEL, attempt: expect.any(Number), status: expect.any(Number) });
      expect([429, 529]).toContain(l.status);
      expect(String(l.jobId)).toMatch(/^(critical|high|normal|low)\./);
    }
    const dashLines = dashboard.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(dashLines.filter((l) => l.event === 'alert.firing').map((l) => (l.alert as { id: string }).id)).toEqual(expect.arrayContaining(['utilization:haiku-4:itpm', 'utilization:opus-4:rpm', 'rate429']));
    for (const out of [worker!.output(), worker2!.output(), dashboard.output()]) {
      expect(out).not.toContain(PROMPT_MARKER);
      expect(out).not.toContain(API_KEY);
      expect(out).not.toContain(WEBHOOK_SECRET);
      expect(out).not.toContain(PASSWORD);
    }
  });
});
