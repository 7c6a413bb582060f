/**
 * A worker whose Redis goes away, each on a private redis-server this file kills:
 * - its log stays JSON lines, one per connection when Redis goes and one when it is back (ioredis
 *   printed `[ioredis] Unhandled error event` with a stack for each reconnect of a connection
 *   nobody listened to, and the listeners there were logged every retry);
 * - SIGTERM stops it within its grace plus 5 s whatever Redis does, exiting 0 when Redis answered
 *   the stop and 1 when it did not (it used to run on: for ever when Redis never answered, until
 *   SIGKILL when Redis went away under it);
 * - nothing it held is lost: a job goes back to its lane when Redis is back within the stop, and
 *   is left to BullMQ's stalled check when it is not.
 * The dashboard and the gateway hold no jobs: they stop with Redis gone too, and exit 0.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { laneKeys, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { exitOf, spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, until, waitForFleet } from '../support/probes.js';

const MODEL = 'claude-haiku-4-5';
const GATEWAY_KEY = 'hr-gw-redis-loss-0123456789';
const ENV = { REDIS_LOSS_KEY: 'sk-redis-loss', REDIS_LOSS_GATEWAY_KEY: GATEWAY_KEY, HEADROOM_LOG_LEVEL: 'info', HEADROOM_DASHBOARD_USER: '', HEADROOM_DASHBOARD_PASSWORD: '', HEADROOM_DASHBOARD_TOKEN: '' };
/** Calls take this long, so a job is in flight when Redis goes and outlasts the grace. */
const CALL_MS = 12_000;
const procs: FleetProcess[] = [];
const servers: EmbeddedRedis[] = [];
let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: CALL_MS });
});
afterEach(() => {
  sim.setPace({ latencyMs: CALL_MS });
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  for (const s of servers) await s.stop({ kill: true });
  await sim?.close();
});

/** A private redis-server (on `port` when given, to restart one in place), stopped after the file. */
async function redisServer(opts: { port?: number; dir?: string; appendOnly?: boolean } = {}): Promise<EmbeddedRedis> {
  const server = await startEmbeddedRedis(opts);
  servers.push(server);
  return server;
}

function config(prefix: string, extra: Partial<HeadroomConfigInput> = {}): string {
  return writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'REDIS_LOSS_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } } },
    dispatch: { shutdownGraceMs: 2_000, lockMs: 5_000, stalledIntervalMs: 1_000 },
    ...extra,
  });
}

function worker(configFile: string, redisUrl: string, id: string): FleetProcess {
  const proc = spawnWorker(configFile, redisUrl, id, ENV);
  procs.push(proc);
  return proc;
}

/** The exit code after a SIGTERM; a process still running a minute later is the hang this file guards against. */
async function stopped(proc: FleetProcess): Promise<number | string> {
  proc.child.kill('SIGTERM');
  return exitOf(proc);
}


const job = (i: number): LlmJobInput => ({
  priority: 'NORMAL',
  provider: 'anthropic',
  request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `redis loss ${i}` }] },
});

/**
 * A job enqueued and taken by `w` (its call in flight), on a Redis with an append-only file, then
 * that Redis killed once the take is on disk (`appendfsync everysec`).
 */
async function jobInFlightThenRedisKilled(prefix: string, configFile: string): Promise<{ id: string; w: FleetProcess; restart: () => Promise<EmbeddedRedis> }> {
  const r = await redisServer({ appendOnly: true });
  const w = worker(configFile, r.url, `${prefix}-w`);
  await waitForFleet(r.url, prefix, [w]);
  const producer = new Producer({ redis: r.url, prefix });
  const { id } = await producer.enqueue(job(1));
  await until(async () => (await producer.getJob(id))?.state === 'active', 30_000, 'the job taken');
  await producer.close();
  await sleep(1_500);
  await r.stop({ kill: true, keepDir: true });
  await until(() => w.output().includes('ECONNREFUSED'), 30_000, 'the worker noticing Redis gone');
  return { id, w, restart: () => redisServer({ port: r.port, dir: r.dir, appendOnly: true }) };
}

/** Every line the process wrote, parsed: a line that is not JSON fails the test, quoted. */
function jsonLines(proc: FleetProcess): { msg?: string; connection?: string; drained?: boolean; level?: number }[] {
  const lines = proc.output().split('\n').filter((l) => l.trim() !== '');
  const notJson = lines.filter((l) => {
    try {
      return typeof JSON.parse(l) !== 'object';
    } catch {
      return true;
    }
  });
  expect(notJson.slice(0, 5), `${notJson.length} of ${lines.length} lines are not JSON`).toEqual([]);
  return lines.map((l) => JSON.parse(l));
}

/** How many lines say `msg`, per connection. */
function perConnection(lines: ReturnType<typeof jsonLines>, msg: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of lines) if (l.msg === msg) counts[l.connection ?? '?'] = (counts[l.connection ?? '?'] ?? 0) + 1;
  return counts;
}

describe('a worker whose Redis goes away', () => {
  it('logs only JSON lines through an outage: one per connection when Redis goes, one when it is back', async () => {
    const port = await freePort();
    const first = await redisServer({ port });
    const w = worker(config('rl1'), first.url, 'rl1-w');
    await waitForFleet(first.url, 'rl1', [w]);

    await first.stop({ kill: true });
    // Long enough for every connection to fail a few reconnects (they retry within 50 ms to 2 s).
    await sleep(4_000);
    const second = await redisServer({ port });
    // Back: the worker publishes the fleet's settings again into the empty Redis.
    const probe = new Redis(second.url);
    await until(async () => (await probe.exists(laneKeys('rl1', 'normal').settings)) === 1, 30_000, 'the worker reconnected');
    probe.disconnect();
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);

    const lines = jsonLines(w);
    const lost = perConnection(lines, 'redis connection lost; reconnecting');
    expect(lost.main).toBe(1);
    expect(Object.values(lost).every((n) => n === 1), JSON.stringify(lost)).toBe(true);
    expect(Object.values(perConnection(lines, 'redis connection back')).every((n) => n === 1)).toBe(true);
    expect(lines.map((l) => l.msg)).toContain('worker stopped');
  });
});

describe('SIGTERM to a worker without Redis', () => {
  it('stops a worker that never reached Redis at once, exiting 1', async () => {
    const w = worker(config('rl2'), `redis://127.0.0.1:${await freePort()}`, 'rl2-w');
    await until(() => w.output().includes('ECONNREFUSED'), 60_000, 'the worker trying Redis');
    expect(await stopped(w)).toBe(1);
    const lines = jsonLines(w);
    expect(lines.map((l) => l.msg)).toContain('worker stopping before Redis ever answered it: it took no job');
    expect(lines.at(-1)).toMatchObject({ msg: 'worker stopped', drained: false });
  });

  it('stops an idle worker that lost Redis within its grace plus 5 s, exiting 1 and saying why', async () => {
    const r = await redisServer();
    const w = worker(config('rl3'), r.url, 'rl3-w');
    await waitForFleet(r.url, 'rl3', [w]);
    await r.stop({ kill: true });
    await until(() => w.output().includes('ECONNREFUSED'), 30_000, 'the worker noticing Redis gone');
    expect(await stopped(w)).toBe(1);
    const lines = jsonLines(w);
    const msgs = lines.map((l) => l.msg);
    expect(msgs).toContain('worker stopping');
    expect(lines.find((l) => l.msg?.startsWith('Redis did not answer the stop in time'))).toMatchObject({ level: 50 });
    expect(lines.at(-1)).toMatchObject({ msg: 'worker stopped', drained: false });
  });

  it('leaves the job it held to the stalled check when Redis stays away: another worker completes it once Redis is back', async () => {
    const { id, w, restart } = await jobInFlightThenRedisKilled('rl4', config('rl4'));
    expect(await stopped(w)).toBe(1);
    expect(jsonLines(w).at(-1)).toMatchObject({ msg: 'worker stopped', drained: false });

    // The call held across the outage is over; the retake only needs to complete, so it need not
    // also take CALL_MS (the latency is drawn when a call starts).
    sim.setPace({ latencyMs: 20 });
    const r = await restart();
    const producer = new Producer({ redis: r.url, prefix: 'rl4' });
    // Still active under the stopped worker's lock, until the lock lapses and a stalled check runs.
    expect((await producer.getJob(id))?.state).toBe('active');
    worker(config('rl4'), r.url, 'rl4-w2');
    await until(async () => (await producer.getJob(id))?.state === 'completed', 90_000, 'the held job completed by the other worker');
    await producer.close();
  });

  it('hands the job it held back to its lane when Redis comes back within the stop, exiting 0', async () => {
    // A grace the call outlasts, and 5 s past it for Redis to come back and the job to go back.
    const { id, w, restart } = await jobInFlightThenRedisKilled('rl5', config('rl5', { dispatch: { shutdownGraceMs: 3_000, lockMs: 5_000, stalledIntervalMs: 1_000 } }));
    w.child.kill('SIGTERM');
    await until(() => w.output().includes('"msg":"worker stopping"'), 30_000, 'the worker stopping');
    const r = await restart();
    expect(await exitOf(w)).toBe(0);
    expect(jsonLines(w).at(-1)).toMatchObject({ msg: 'worker stopped', drained: true });
    const producer = new Producer({ redis: r.url, prefix: 'rl5' });
    // Back at once, not left under a lock until a stalled check.
    expect((await producer.getJob(id))?.state).toBe('waiting');
    await producer.close();
  });
});

describe('SIGTERM to the dashboard and the gateway without Redis', () => {
  it('stops both after they lost Redis, exiting 0 (they hold no jobs)', async () => {
    const r = await redisServer();
    const file = config('rl6', { gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'REDIS_LOSS_GATEWAY_KEY' } } } });
    const dashPort = await freePort();
    const dashboard = spawnHeadroom(['dashboard', '--config', file, '--redis', r.url, '--local-only', '--port', String(dashPort)], ENV);
    const gateway = spawnHeadroom(['gateway', '--config', file, '--redis', r.url, '--port', String(await freePort())], ENV);
    procs.push(dashboard, gateway);
    await until(() => dashboard.output().includes('"msg":"dashboard started"') && gateway.output().includes('"msg":"gateway started"'), 60_000, 'the dashboard and the gateway started');
    await r.stop({ kill: true });
    await until(() => dashboard.output().includes('redis connection lost') && gateway.output().includes('redis connection lost'), 30_000, 'both noticing Redis gone');
    expect(await Promise.all([stopped(dashboard), stopped(gateway)])).toEqual([0, 0]);
  });
});
