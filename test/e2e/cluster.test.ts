/**
 * The whole path against a real 3-master Redis Cluster (with a password): producers enqueue into
 * every lane through a `redis-cluster://` URL, a lane cap holds while producers race, and a
 * `headroom worker` process given one node of the cluster completes the jobs through the shared
 * bucket, results coming back through QueueEvents; the gateway serves the official SDK's plain
 * and streamed calls through it, and a producer's stream relays its events. Lanes and pools sit in
 * different slots, so this also proves no script, MULTI, pipeline or blocking read crosses slots.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, QueueFullError, type JobHandle, type LlmJobInput, type Priority } from '@headroom/producer-sdk';
import { startGateway } from '@headroom/gateway';
import { Bucket, createLogger, createRedis, fleetKeys, laneKeys, LANES, parseConfig, poolKeys, publishFleetSettings, removeKeysUnder, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { loggedLine, spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { startDemo } from '../support/demo.js';
import { freePort } from '@headroom/testing';

const MODEL = 'claude-sonnet-4-6';
const LIMITS = { rpm: 600, itpm: 400_000, otpm: 100_000 };
const PASSWORD = 'cluster pw@1';
const PREFIX = 'hrc';
const LOW_CAP = 20;

let cluster: RedisCluster;
let sim: Simulator;
let admin: Cluster;
let url: string;
let configInput: HeadroomConfigInput;
const workers: FleetProcess[] = [];
const producers: Producer[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster({ password: PASSWORD });
  sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 10, max: 40 } });
  // Percent-encoded, as any URL password with reserved characters must be.
  url = `redis-cluster://:${encodeURIComponent(PASSWORD)}@${cluster.ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
  admin = createRedis(url, 'worker') as Cluster;
  configInput = {
    redis: { prefix: PREFIX },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'CLUSTER_TEST_ANTHROPIC_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
    lanes: { low: { cap: LOW_CAP } },
    dispatch: { concurrency: 8, lockMs: 4_000, stalledIntervalMs: 1_000, shutdownGraceMs: 5_000 },
  };
});

afterAll(async () => {
  await stopAll(workers, 'SIGKILL');
  await Promise.all(producers.map((p) => p.close()));
  admin?.disconnect();
  await sim?.close();
  await cluster?.stop();
});

const job = (priority: Priority, i: number, extra: { sla?: 'none' } = {}): LlmJobInput => ({
  priority,
  provider: 'anthropic',
  request: { model: MODEL, max_tokens: 32, messages: [{ role: 'user', content: `cluster job ${i} (${priority})` }] },
  metadata: { i },
  ...extra,
});

const newProducer = () => {
  const p = new Producer({ redis: url, prefix: PREFIX });
  producers.push(p);
  return p;
};

/** The master (host:port) serving `key`'s slot. */
async function masterOf(key: string): Promise<string> {
  const slot = Number(await admin.cluster('KEYSLOT', key));
  const ranges = await admin.cluster('SLOTS');
  const range = ranges.find(([from, to]) => slot >= from && slot <= to);
  if (!range) throw new Error(`no node serves slot ${slot}`);
  const [, , master] = range;
  if (!master) throw new Error(`slot ${slot} has no master`);
  return `${master[0]}:${master[1]}`;
}

describe('Redis Cluster (3 masters)', () => {
  const handles: JobHandle[] = [];

  it(`holds the LOW cap of ${LOW_CAP} exactly while 5 producers race 40 jobs each`, async () => {
    await publishFleetSettings(admin, parseConfig(configInput));
    const racers = [1, 2, 3, 4, 5].map(newProducer);
    const outcomes = await Promise.allSettled(
      racers.flatMap((p, n) => Array.from({ length: 40 }, (_, i) => p.enqueue(job('LOW', n * 100 + i)))),
    );
    const admitted = outcomes.filter((o): o is PromiseFulfilledResult<JobHandle> => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(refused.every((o) => o.reason instanceof QueueFullError)).toBe(true);
    expect(admitted).toHaveLength(LOW_CAP);
    const k = laneKeys(PREFIX, 'low');
    expect((await admin.llen(k.wait)) + (await admin.zcard(k.prioritized))).toBe(LOW_CAP);
    handles.push(...admitted.map((o) => o.value));
  });

  it('enqueues into every lane, the lanes spread over more than one master', async () => {
    const producer = newProducer();
    for (const priority of ['CRITICAL', 'HIGH', 'NORMAL'] as const) {
      for (let i = 0; i < 3; i++) handles.push(await producer.enqueue(job(priority, i)));
    }
    const batch = await producer.enqueue(job('NORMAL', 999, { sla: 'none' }));
    expect(batch.lane).toBe('batch');
    expect((await producer.getJob(batch.id))?.lane).toBe('batch');
    expect(new Set(handles.map((h) => h.lane))).toEqual(new Set(['critical', 'high', 'normal', 'low']));
    // A cancel is one script on the lane's node, the reply to the job's waiter included.
    const doomed = await producer.enqueue(job('CRITICAL', 500));
    const waiting = doomed.result({ timeoutMs: 3_000 });
    expect(await newProducer().cancel(doomed.id)).toBe(true);
    await expect(waiting).rejects.toMatchObject({ code: 'JOB_FAILED', failureCode: 'CANCELLED' });

    const masters = new Set(await Promise.all([...LANES.map((l) => masterOf(laneKeys(PREFIX, l).wait)), masterOf(poolKeys(PREFIX, MODEL).bucket)]));
    expect(masters.size).toBeGreaterThan(1);
  });

  let worker: FleetProcess;
  let configFile: string;

  it('a worker process given one node completes every job through the bucket, and results come back', async () => {
    configFile = writeConfig(configInput);
    // One startup node is enough: the client discovers the others from it.
    const oneNode = `redis-cluster://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${cluster.ports[1]}`;
    worker = spawnWorker(configFile, oneNode, 'cw1', { CLUSTER_TEST_ANTHROPIC_KEY: 'sk-cluster-test', HEADROOM_LOG_LEVEL: 'info' });
    workers.push(worker);

    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 40_000 })));
    expect(results.map((r) => r.model)).toEqual(handles.map(() => MODEL));
    expect(results.every((r) => r.usage.outputTokens > 0)).toBe(true);

    const stats = sim.stats().models[MODEL]!;
    expect(stats.refused429).toBe(0);
    expect(stats.admitted).toBe(handles.length);
    const snapshot = await new Bucket(admin, { prefix: PREFIX }).snapshot(MODEL, LIMITS);
    const grants = Object.values(snapshot.counters.grants).reduce((a, b) => a + (b ?? 0), 0);
    expect(grants).toBe(handles.length);
  });

  it('serves plain and streamed calls through the gateway, and a producer stream, over the cluster', async () => {
    const GATEWAY_KEY = 'hr-cluster-gateway-key-0123456789';
    const config = parseConfig({ ...configInput, gateway: { port: 0, host: '127.0.0.1', keys: { app: { keyEnv: 'CLUSTER_GATEWAY_KEY' } } } });
    const gateway = await startGateway({ config, redisUrl: url, env: { CLUSTER_GATEWAY_KEY: GATEWAY_KEY }, logger: createLogger({ level: 'silent' }) });
    try {
      const client = new Anthropic({ apiKey: GATEWAY_KEY, baseURL: gateway.url, maxRetries: 0 });
      const body = { model: MODEL, max_tokens: 32, messages: [{ role: 'user' as const, content: 'through the gateway, over the cluster' }] };
      const plain = await client.messages.create(body, { headers: { 'headroom-priority': 'critical' } }).withResponse();
      expect(plain.data.usage.output_tokens).toBeGreaterThan(0);
      expect(plain.response.headers.get('headroom-lane')).toBe('critical');
      // The events relay through the job's own stream, read by the gateway's blocking XREAD.
      const streamed = await client.messages.stream(body).finalMessage();
      expect(streamed.usage.output_tokens).toBeGreaterThan(0);
      const stream = await newProducer().stream(job('HIGH', 9_001));
      let events = 0;
      for await (const _ of stream) events++;
      expect(events).toBeGreaterThan(2);
      expect((await stream.result()).usage.outputTokens).toBeGreaterThan(0);
    } finally {
      await gateway.close();
    }
  });

  it("removes a prefix's keys from every master (the demo's clean-up of a borrowed Redis), and no other prefix's", async () => {
    const mine = [...LANES.map((lane) => laneKeys('gone', lane).wait), poolKeys('gone', 'sonnet').bucket, fleetKeys('gone').workers];
    const kept = [laneKeys('kept', 'critical').wait, poolKeys('kept', 'sonnet').bucket];
    for (const key of [...mine, ...kept]) await admin.set(key, 'x');
    // Spread over more than one master: one node's SCAN would miss the rest.
    expect(new Set(await Promise.all(mine.map(masterOf))).size).toBeGreaterThan(1);
    expect(await removeKeysUnder(admin, 'gone')).toBe(mine.length);
    for (const key of mine) expect(await admin.exists(key)).toBe(0);
    for (const key of kept) expect(await admin.exists(key)).toBe(1);
  });

  it('serves the dashboard overview from the cluster', async () => {
    const port = await freePort();
    const dashboard = spawnHeadroom(['dashboard', '--config', configFile, '--redis', url, '--local-only', '--port', String(port)], { HEADROOM_LOG_LEVEL: 'info' });
    workers.push(dashboard);
    let res: Response | undefined;
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      res = await fetch(`http://127.0.0.1:${port}/api/overview`).catch(() => undefined);
      if (res) break;
    }
    expect(res?.status, dashboard.output()).toBe(200);
    dashboard.child.kill('SIGTERM');
    await dashboard.exited;
    expect(dashboard.output()).not.toMatch(/same slots allocation group|CROSSSLOT|non local key/i);
  });

  it("runs the worker's periodic work (pressure, stats, heartbeat, batcher) without a cross-slot command, and stops on SIGTERM", async () => {
    await loggedLine(worker, '"msg":"worker started"');
    // A few pressure ticks (1 s), stats flushes (1 s) and heartbeats.
    await new Promise((r) => setTimeout(r, 2_500));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    // ioredis refuses a pipeline or MULTI whose keys span slots, and Redis a script that touches
    // another slot: neither may happen anywhere in the worker.
    expect(worker.output()).not.toMatch(/same slots allocation group|CROSSSLOT|non local key/i);
    expect(worker.output()).not.toMatch(/"level":(40|50|60)/);
  });

  it('runs `pnpm demo` on the cluster (REDIS_URL=redis-cluster://...) with every lane completing and zero 429s, and removes its keys at exit', async () => {
    const demo = startDemo(['--duration', '8', '--workers', '1', '--check'], { REDIS_URL: url });
    const code = await demo.exited;
    const out = demo.output();
    expect(out, out.slice(-3000)).toContain('check passed');
    const prefix = /the demo's keys go under (demo-[0-9a-f]{6}), removed at exit/.exec(out)?.[1];
    expect(Number(new RegExp(`removed the demo.s (\\d+) keys under ${prefix}`).exec(out)?.[1]), out.slice(-1500)).toBeGreaterThan(0);
    expect(out).not.toMatch(/same slots allocation group|CROSSSLOT|non local key/i);
    expect(code).toBe(0);
    // Every master scanned: none holds a key of the demo's.
    for (const node of admin.nodes('master')) expect(await node.keys(`{${prefix}:*`)).toEqual([]);
  }, 120_000);
});
