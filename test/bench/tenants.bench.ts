/**
 * `pnpm bench:tenants`: does a runaway tenant starve its neighbours?
 *
 * 1. Waits: tenant B sends a steady stream on the NORMAL lane; we measure B's wait with tenant A
 *    idle, then with A offering 10x its tokens/min quota on the same lane, in one run on one
 *    fleet. Goal: B's p95 within 2x of idle.
 * 2. Admission at a quota: tenant BIG holds 20,000 unfinished jobs (its `maxQueued`) in the LOW
 *    lane and keeps retrying. Each refusal must cost Redis the same as when BIG holds 20 (the
 *    tenant's count is a counter, not a scan of its jobs), and other tenants' enqueues must cost
 *    what they cost with BIG idle. Redis time per call is read from SLOWLOG (every command
 *    logged), so the figures are Redis' own, not the client's.
 * 3. Fair sharing with no quota: on a pool whose requests/min bind (the bucket is the limit),
 *    tenant A offers 10x its half of the pool and B 0.1x of its half, on one NORMAL lane with no
 *    tenant quota. We measure B's wait with A idle and with A flooding, in one run on one fleet,
 *    and the pool's goodput while A floods. Goals: B's p95 within 1.5x of idle; goodput >= 98% of
 *    the limit (fair sharing reorders the lane, it never idles the pool). Deployed as a fleet is:
 *    two worker processes, A's flood from a process of its own (a runaway service), B's producer
 *    here. BENCH_FAIR_DIAG=1 prints B's slowest jobs as `wait(pickup/fetches)`: the wait, the part
 *    before its (last) fetch, and how many times it was fetched.
 * 4. A held tenant's backlog: tenant A (tpm 3,000) has 2,000 NORMAL jobs queued (its `maxQueued`),
 *    its calls using a third of their `max_tokens`, while B sends one job every 100 ms. Measured
 *    over a window, with A idle and with A's backlog held, in one run on one fleet (two worker
 *    processes): Redis commands/s, the workers' CPU, B's wait, and A's served tokens/min. Goals:
 *    B's p95 within 2x of idle; Redis commands within a few times idle, whatever A has queued
 *    (held jobs park for their turn, not once a second); A served about its quota.
 *    `BENCH_TENANTS_ONLY=churn` runs this part alone; BENCH_CHURN_WINDOW_S sets the window (30).
 * BENCH_PORT_BASE=N puts the bench's Redis servers and simulators on ports N..N+3.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Producer, type LlmJobInput, type LlmResult } from '@headroom/producer-sdk';
import { Bucket, createRedis, HeadroomError, parseConfig, createLogger, publishFleetSettings, laneKeys, type HeadroomConfigInput } from '@headroom/queue';
import { Redis } from 'ioredis';
import { startSimulator } from '@headroom/simulator';
import { startWorker } from '@headroom/worker';
import { startEmbeddedRedis } from '@headroom/testing';
import { REPO_ROOT, spawnTsx, spawnWorker, stopAll, writeConfig } from '../support/fleet.js';
import { until, waitForFleet } from '../support/probes.js';
import { MODEL, tenantJob } from './tenant-jobs.js';

const LIMITS = { rpm: 20_000, itpm: 4_000_000, otpm: 1_000_000 };
const A_TPM = 3_000;
const B_JOBS = Number(process.env.BENCH_B_JOBS ?? 100);

// BENCH_PORT_BASE: the bench's servers on that port and the next three, rather than free ports.
const portBase = process.env.BENCH_PORT_BASE ? Number(process.env.BENCH_PORT_BASE) : undefined;
const portAt = (offset: number) => (portBase === undefined ? {} : { port: portBase + offset });
const redis = await startEmbeddedRedis(portAt(0));
const sim = await startSimulator({ ...portAt(1), models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 20, max: 60 } });
const prefix = `ten${randomUUID().slice(0, 6)}`;
const config = parseConfig({
  redis: { prefix },
  providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'BENCH_KEY' } },
  models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
  // Both quotas: tokens/min holds A to its share of the provider; max unfinished jobs keeps its
  // flood out of the lane, so B never queues behind more than that many of A's jobs.
  tenants: { overrides: { a: { tpm: A_TPM, maxQueued: 20 } } },
  dispatch: { concurrency: 32 },
});
const workers = await Promise.all([1, 2].map(() => startWorker({ config, redisUrl: redis.url, env: { BENCH_KEY: 'sk-bench' }, logger: createLogger({ level: 'silent' }) })));
const producer = new Producer({ redis: redis.url, prefix });
const job = tenantJob;

async function streamB(tag: string): Promise<number[]> {
  const handles = [];
  for (let i = 0; i < B_JOBS; i++) {
    handles.push(await producer.enqueue(job('b', i)));
    await new Promise((r) => setTimeout(r, 50));
  }
  const results: LlmResult[] = await Promise.all(handles.map((h) => h.result({ timeoutMs: 120_000 })));
  console.log(`  ${tag}: ${results.length} B jobs done`);
  return results.map((r) => r.timings.waitMs).sort((x, y) => x - y);
}
const q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.ceil(xs.length * p) - 1)]!;

// BENCH_TENANTS_ONLY=fair runs part 3 alone, =quota part 2, =churn part 4.
const only = process.env.BENCH_TENANTS_ONLY;
try {
  if (only === 'fair') {
    await fairShare();
  } else if (only === 'quota') {
    await atQuota();
  } else if (only === 'churn') {
    await heldBacklog();
  } else {
    await isolation();
    await fairShare();
    await atQuota();
    await heldBacklog();
  }
} finally {
  await producer.close();
  await Promise.all(workers.map((w) => w.close({ graceMs: 1_000 })));
  await sim.close();
  await redis.stop();
}

/** Part 1: tenant A at its quotas, offering 10x, and B's wait. */
async function isolation(): Promise<void> {
  const idle = await streamB('A idle');
  // A offers 10x its quota: ~70 tokens a job, so A_TPM/70 jobs a minute are its share.
  const aJobs = Math.ceil((A_TPM / 70) * 10);
  let stop = false;
  const flood = (async () => {
    let i = 0;
    while (!stop) {
      await Promise.all(Array.from({ length: 20 }, () => producer.enqueue(job('a', i++)).catch(() => undefined)));
      if (i >= aJobs) await new Promise((r) => setTimeout(r, 200));
    }
  })();
  await new Promise((r) => setTimeout(r, 1_000));
  const busy = await streamB('A runaway');
  stop = true;
  await flood;
  console.log(`\ntenant isolation (2 in-process workers, simulator ${LIMITS.rpm} rpm; tenant A capped at ${A_TPM} tokens/min and 20 unfinished jobs, offering 10x)\n`);
  console.log('B wait        p50 ms   p95 ms   p99 ms');
  for (const [name, xs] of [['A idle', idle], ['A runaway', busy]] as const) {
    console.log(`${name.padEnd(12)}${String(q(xs, 0.5)).padStart(8)}${String(q(xs, 0.95)).padStart(9)}${String(q(xs, 0.99)).padStart(9)}`);
  }
  console.log(`\nB p95 runaway / idle: ${(q(busy, 0.95) / Math.max(1, q(idle, 0.95))).toFixed(2)}x (goal <= 2x)`);
}

/** Part 2: a tenant at a 20,000-job quota, and the Redis time of refusing it and of serving others. */
async function atQuota(): Promise<void> {
  const BIG = Number(process.env.BENCH_BIG_JOBS ?? 20_000);
  const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 400);
  const admin = new Redis(redis.url);
  const prefix2 = `quota${randomUUID().slice(0, 6)}`;
  const cfg = (max: number) =>
    parseConfig({
      redis: { prefix: prefix2 },
      models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
      lanes: { low: { cap: 100_000, maxBytes: 1024 * 1024 * 1024 } },
      tenants: { overrides: { big: { maxQueued: max } } },
    });
  // No worker runs on this prefix: every job stays unfinished, as a stalled tenant's would.
  await publishFleetSettings(admin, cfg(BIG));
  const p2 = new Producer({ redis: redis.url, prefix: prefix2 });
  const low = (tenant: string, i: number): LlmJobInput => ({
    priority: 'LOW', tenant, provider: 'anthropic',
    request: { model: MODEL, max_tokens: 48, messages: [{ role: 'user', content: `tenant ${tenant} request ${i}: summarise this ticket please.` }] },
  });
  const fill = async (tenant: string, n: number, from = 0) => {
    for (let i = from; i < from + n; i += 500) await Promise.all(Array.from({ length: Math.min(500, from + n - i) }, (_, j) => p2.enqueue(low(tenant, i + j))));
  };
  const refusedOnce = () => p2.enqueue(low('big', -1)).then(
    () => { throw new Error('BIG was admitted past its quota'); },
    (e: unknown) => { if (!(e instanceof HeadroomError) || e.code !== 'QUOTA_EXCEEDED') throw e; },
  );
  /**
   * Median and p95 of Redis' own time (µs) for the EVALSHAs `run` makes, those of `tenant` only
   * when given (an add script's 4th argument after its 9 keys is the job's tenant).
   */
  const redisTime = async (run: () => Promise<void>, tenant?: (t: string) => boolean) => {
    await admin.config('SET', 'slowlog-log-slower-than', '0');
    await admin.config('SET', 'slowlog-max-len', String(SAMPLES * 4));
    await admin.slowlog('RESET');
    await run();
    const log = (await admin.slowlog('GET', SAMPLES * 4)) as [number, number, number, string[]][];
    await admin.config('SET', 'slowlog-log-slower-than', '10000');
    const us = log
      .filter((e) => String(e[3][0]).toLowerCase() === 'evalsha' && (!tenant || tenant(String(e[3][15] ?? ''))))
      .map((e) => e[2])
      .sort((x, y) => x - y);
    return { n: us.length, p50: q(us, 0.5), p95: q(us, 0.95) };
  };
  const sequential = (n: number, fn: (i: number) => Promise<unknown>) => async () => {
    for (let i = 0; i < n; i++) await fn(i);
  };
  /** Other tenants' enqueues, one at a time; their client-side latency (µs) is kept too. */
  const clientUs: number[] = [];
  const otherTenants = () =>
    sequential(SAMPLES, async (i) => {
      const t = performance.now();
      await p2.enqueue(low(`t${i % 50}`, i));
      clientUs.push((performance.now() - t) * 1000);
    });
  const others = (t: string) => t !== 'big';
  const clientMedian = () => {
    const sorted = clientUs.splice(0).sort((x, y) => x - y);
    return Math.round(q(sorted, 0.5));
  };

  /**
   * Other tenants enqueue while BIG keeps retrying into its quota (one refusal in flight at all
   * times), from a connection of its own, as another service would: its calls are not batched
   * with theirs.
   */
  const whileBigRetries = async () => {
    const bigConn = createRedis(redis.url, 'producer');
    const bigProducer = new Producer({ redis: bigConn, prefix: prefix2 });
    let stop = false;
    let refusals = 0;
    const hammer = (async () => {
      while (!stop) {
        await bigProducer.enqueue(low('big', -1)).then(
          () => { throw new Error('BIG was admitted past its quota'); },
          (e: unknown) => { if (!(e instanceof HeadroomError) || e.code !== 'QUOTA_EXCEEDED') throw e; },
        );
        refusals += 1;
      }
    })();
    const redisUs = await redisTime(otherTenants(), others);
    const client = clientMedian();
    stop = true;
    await hammer;
    await bigProducer.close();
    bigConn.disconnect();
    return { redisUs, client, refusals };
  };

  // Baseline in the same run: BIG at a quota of 20.
  await publishFleetSettings(admin, cfg(20));
  await fill('big', 20);
  const refusedSmall = await redisTime(sequential(SAMPLES, refusedOnce));
  const othersIdle = await redisTime(otherTenants(), others);
  const othersIdleClient = clientMedian();
  const busySmall = await whileBigRetries();
  // BIG at 20,000.
  await publishFleetSettings(admin, cfg(BIG));
  const t0 = Date.now();
  await fill('big', BIG - 20, 20);
  console.log(`\nfilled tenant BIG to ${BIG} unfinished LOW jobs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const refusedBig = await redisTime(sequential(SAMPLES, refusedOnce));
  const busyBig = await whileBigRetries();

  const big = BIG.toLocaleString('en-US');
  console.log(`\nadmission at a tenant's quota (Redis time per EVALSHA from SLOWLOG, and the client's median; ${SAMPLES} calls each)\n`);
  console.log('call                                                  Redis p50 µs   p95 µs   client p50 µs');
  const row = (name: string, r: { p50: number; p95: number }, client?: number) =>
    console.log(`${name.padEnd(52)}${String(r.p50).padStart(14)}${String(r.p95).padStart(9)}${client === undefined ? '' : String(client).padStart(16)}`);
  row('BIG refused, holding 20 unfinished', refusedSmall);
  row(`BIG refused, holding ${big} unfinished`, refusedBig);
  row('other tenants admitted, BIG idle', othersIdle, othersIdleClient);
  row('other tenants admitted, BIG at 20 retrying', busySmall.redisUs, busySmall.client);
  row(`other tenants admitted, BIG at ${big} retrying`, busyBig.redisUs, busyBig.client);
  console.log(`\nrefusal at ${big} / at 20 (Redis p50): ${(refusedBig.p50 / Math.max(1, refusedSmall.p50)).toFixed(2)}x (goal ~1x: O(1))`);
  console.log(`other tenants, BIG retrying at ${big} / at 20: Redis p50 ${(busyBig.redisUs.p50 / Math.max(1, busySmall.redisUs.p50)).toFixed(2)}x, client p50 ${(busyBig.client / Math.max(1, busySmall.client)).toFixed(2)}x (goal ~1x; ${busySmall.refusals} / ${busyBig.refusals} refusals meanwhile)`);
  console.log(`other tenants, BIG retrying at ${big} / BIG idle: client p50 ${(busyBig.client / Math.max(1, othersIdleClient)).toFixed(2)}x (the retries' own load on this process and Redis)`);
  await p2.close();
  admin.disconnect();
}

/**
 * Part 3: no quota, a pool at its limit, and fair sharing inside the lane. Deployed as a fleet
 * is: two worker processes, A's flood from a service (process) of its own; B's producer, whose
 * waits are measured, and the simulator here.
 */
async function fairShare(): Promise<void> {
  const RPM = Number(process.env.BENCH_FAIR_RPM ?? 6_000);
  const B_FAIR_JOBS = Number(process.env.BENCH_FAIR_B_JOBS ?? 300);
  const perSecond = RPM / 60;
  // Two tenants with work: each one's share is half the pool.
  const share = perSecond / 2;
  const aPerSecond = 10 * share;
  const bEveryMs = 1_000 / (0.1 * share);
  const prefix3 = `fair${randomUUID().slice(0, 6)}`;
  const cfgInput: HeadroomConfigInput = {
    redis: { prefix: prefix3 },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'BENCH_KEY' } },
    // Requests/min bind (the simulator allows more); a 1 s burst so the bucket, not a minute of
    // saved-up capacity, sets the rate from the start of the flood.
    models: { [MODEL]: { provider: 'anthropic', limits: { ...LIMITS, rpm: RPM, burst: 1 } } },
    // Room for A's whole flood: no lane cap or tenant quota refuses it, only the order protects B.
    // BENCH_FAIR_LANE=fifo: the same run on a FIFO lane, the baseline fair sharing is measured against.
    lanes: { normal: { cap: 200_000, maxBytes: 2 * 1024 * 1024 * 1024, fairness: process.env.BENCH_FAIR_LANE === 'fifo' ? 'fifo' : 'tenants' } },
    dispatch: { concurrency: Number(process.env.BENCH_FAIR_CONCURRENCY ?? 32) },
  };
  const cfg = parseConfig(cfgInput);
  const configFile = writeConfig(cfgInput);
  const fleet = [1, 2].map((i) => spawnWorker(configFile, redis.url, `fair-w${i}`, { BENCH_KEY: 'sk-bench', HEADROOM_LOG_LEVEL: 'error' }));
  const p3 = new Producer({ redis: redis.url, prefix: prefix3 });
  const admitted = () => sim.stats().models[MODEL]?.admitted ?? 0;
  const streamB3 = async (): Promise<number[]> => {
    const handles = [];
    for (let i = 0; i < B_FAIR_JOBS; i++) {
      handles.push(await p3.enqueue(job('b', i)));
      await new Promise((r) => setTimeout(r, bEveryMs));
    }
    const results: LlmResult[] = await Promise.all(handles.map((h) => h.result({ timeoutMs: 120_000 })));
    if (process.env.BENCH_FAIR_DIAG) {
      const conn = new Redis(redis.url);
      const rows = await Promise.all(handles.map(async (h, i) => {
        const [processedOn, ats] = await conn.hmget(laneKeys(prefix3, 'normal').jobKeyPrefix + h.id, 'processedOn', 'ats');
        const r = results[i]!;
        return { wait: r.timings.waitMs, pickup: Number(processedOn) - r.timings.enqueuedAt, ats: Number(ats) };
      }));
      conn.disconnect();
      rows.sort((x, y) => y.wait - x.wait);
      console.log('  slowest B: ' + rows.slice(0, 12).map((r) => `${r.wait}(${r.pickup}/${r.ats})`).join(' '));
    }
    return results.map((r) => r.timings.waitMs).sort((x, y) => x - y);
  };
  let flood: ChildProcess | undefined;
  try {
    await waitForFleet(redis.url, prefix3, fleet);
    const idle = await streamB3();
    // A's offer, 10x its share, far past what the pool serves.
    flood = spawnTsx(join(REPO_ROOT, 'test/bench/tenant-flood.ts'), [], {
      env: { ...process.env, FLOOD_REDIS_URL: redis.url, FLOOD_PREFIX: prefix3, FLOOD_TENANT: 'a', FLOOD_PER_SECOND: String(aPerSecond) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let floodOut = '';
    flood.stdout!.on('data', (d: Buffer) => { floodOut += d.toString(); });
    const floodExited = new Promise((r) => flood!.once('exit', r));
    await until(() => floodOut.includes('flooding'), 30_000, 'the flood process');
    // Let the bucket's burst drain and A's backlog form before measuring.
    await new Promise((r) => setTimeout(r, 3_000));
    const counters = async () => {
      const conn = new Redis(redis.url);
      try {
        return (await new Bucket(conn, { prefix: prefix3 }).snapshot(MODEL, cfg.models[MODEL]!.limits)).counters;
      } finally {
        conn.disconnect();
      }
    };
    const c0 = await counters();
    const n0 = admitted();
    const t0 = performance.now();
    const busy = await streamB3();
    const served = admitted() - n0;
    const seconds = (performance.now() - t0) / 1000;
    const c1 = await counters();
    flood.kill('SIGTERM');
    await floodExited;
    const offered = Number(/offered (\d+)/.exec(floodOut)?.[1] ?? Number.NaN);
    const goodput = served / (seconds * perSecond);
    console.log(`\nfair sharing with no quota (2 worker processes, A's flood from a process of its own; pool limit ${RPM} requests/min, burst 1 s; one NORMAL lane, ${cfg.lanes.normal.fairness})`);
    console.log(`A offers 10x its half (${aPerSecond.toFixed(0)} jobs/s; ${offered} offered), B 0.1x (one job every ${bEveryMs.toFixed(0)} ms, ${B_FAIR_JOBS} jobs)\n`);
    console.log('B wait        p50 ms   p95 ms   p99 ms');
    for (const [name, xs] of [['A idle', idle], ['A flooding', busy]] as const) {
      console.log(`${name.padEnd(12)}${String(q(xs, 0.5)).padStart(8)}${String(q(xs, 0.95)).padStart(9)}${String(q(xs, 0.99)).padStart(9)}`);
    }
    console.log(`\nB p95 flooding / idle: ${(q(busy, 0.95) / Math.max(1, q(idle, 0.95))).toFixed(2)}x (goal <= 1.5x)`);
    console.log(`pool goodput while A floods: ${served} calls in ${seconds.toFixed(1)} s = ${(goodput * 100).toFixed(1)}% of the limit (goal >= 98%)`);
    // The churn a saturated pool costs: acquires told to wait (and requeued) per call granted.
    const grants = Object.values(c1.grants).reduce((a, b) => a + b, 0) - Object.values(c0.grants).reduce((a, b) => a + b, 0);
    const waits = Object.entries(c1.waits).map(([why, n]) => `${why} ${((n - (c0.waits[why as keyof typeof c0.waits] ?? 0)) / Math.max(1, grants)).toFixed(2)}`);
    console.log(`bucket waits per grant while A floods: ${waits.join(', ') || 'none'}`);
  } finally {
    if (flood?.exitCode === null) flood.kill('SIGKILL');
    await p3.close();
    await stopAll(fleet);
  }
}

/**
 * Part 4: a tenant held by its tokens/min quota with 2,000 jobs queued, and what holding it costs:
 * Redis commands, the workers' CPU, its neighbour's wait. On a Redis and a simulator of its own,
 * so the counts are this fleet's alone.
 */
async function heldBacklog(): Promise<void> {
  const WINDOW_S = Number(process.env.BENCH_CHURN_WINDOW_S ?? 30);
  const A_JOBS = 2_000;
  const A_MAX_TOKENS = 300;
  const own = await startEmbeddedRedis(portAt(2));
  // Every answer 100 tokens: A's calls use a third of their output reservation, refunded when they settle.
  const sim4 = await startSimulator({ ...portAt(3), models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 300, max: 800 }, outputTokens: 100 });
  const prefix4 = `churn${randomUUID().slice(0, 6)}`;
  const configFile = writeConfig({
    redis: { prefix: prefix4 },
    providers: { anthropic: { baseURL: sim4.url, apiKeyEnv: 'BENCH_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
    lanes: { normal: { cap: 10_000 } },
    tenants: { overrides: { a: { tpm: A_TPM, maxQueued: A_JOBS } } },
    dispatch: { concurrency: 32 },
  });
  const fleet = [1, 2].map((i) => spawnWorker(configFile, own.url, `churn-w${i}`, { BENCH_KEY: 'sk-bench', HEADROOM_LOG_LEVEL: 'error' }));
  const p4 = new Producer({ redis: own.url, prefix: prefix4 });
  const admin = new Redis(own.url);
  /** The workers' CPU seconds so far (Linux: utime + stime of each process, at 100 ticks/s). */
  const cpuSeconds = () =>
    fleet.reduce((sum, w) => {
      const fields = readFileSync(`/proc/${w.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return sum + (Number(fields[11]) + Number(fields[12])) / 100;
    }, 0);
  const commands = async () => Number(/total_commands_processed:(\d+)/.exec(await admin.info('stats'))![1]);
  const bJob = (i: number): LlmJobInput => job('b', i);
  const aJob = (i: number): LlmJobInput => {
    const j = job('a', i);
    return { ...j, request: { ...j.request, max_tokens: A_MAX_TOKENS } } as LlmJobInput;
  };
  /** B one job every 100 ms for the window: Redis commands/s, worker CPU s/s, B's sorted waits. */
  const measure = async () => {
    const c0 = await commands();
    const cpu0 = cpuSeconds();
    const t0 = performance.now();
    const handles = [];
    let i = 0;
    while (performance.now() - t0 < WINDOW_S * 1000) {
      handles.push(await p4.enqueue(bJob(i++)));
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (performance.now() - t0) / 1000;
    const rates = { commands: ((await commands()) - c0) / seconds, cpu: (cpuSeconds() - cpu0) / seconds, from: Date.now() - seconds * 1000, to: Date.now(), seconds };
    const results: LlmResult[] = await Promise.all(handles.map((h) => h.result({ timeoutMs: 120_000 })));
    return { ...rates, waits: results.map((r) => r.timings.waitMs).sort((x, y) => x - y) };
  };
  try {
    await waitForFleet(own.url, prefix4, fleet);
    const idle = await measure();
    const aIds: string[] = [];
    for (let i = 0; i < A_JOBS; i += 200) {
      const handles = await Promise.all(Array.from({ length: Math.min(200, A_JOBS - i) }, (_, j) => p4.enqueue(aJob(i + j))));
      aIds.push(...handles.map((h) => h.id));
    }
    // Let A's first burst (a minute of quota in its bucket) be spent and its backlog be held.
    await new Promise((r) => setTimeout(r, 10_000));
    const held = await measure();
    let aTokens = 0;
    for (const id of aIds) {
      const info = await p4.getJob(id);
      if (info?.result && info.finishedAt !== undefined && info.finishedAt >= held.from && info.finishedAt <= held.to) aTokens += info.result.usage.inputTokens + info.result.usage.outputTokens;
    }
    const perMinute = (aTokens / held.seconds) * 60;
    console.log(`\na held tenant's backlog (2 worker processes; tenant A at tpm ${A_TPM} with ${A_JOBS} NORMAL jobs queued, its calls using a third of max_tokens ${A_MAX_TOKENS}; B one job every 100 ms; ${WINDOW_S} s windows)\n`);
    console.log('phase          Redis cmds/s   worker CPU s/s   B p50 ms   B p95 ms');
    for (const [name, m] of [['A idle', idle], ['A held', held]] as const) {
      console.log(`${name.padEnd(15)}${m.commands.toFixed(0).padStart(12)}${m.cpu.toFixed(2).padStart(17)}${String(q(m.waits, 0.5)).padStart(11)}${String(q(m.waits, 0.95)).padStart(11)}`);
    }
    console.log(`\nRedis commands held / idle: ${(held.commands / Math.max(1, idle.commands)).toFixed(2)}x; B p95 held / idle: ${(q(held.waits, 0.95) / Math.max(1, q(idle.waits, 0.95))).toFixed(2)}x (goal <= 2x)`);
    console.log(`A served ${perMinute.toFixed(0)} tokens/min in the window = ${((perMinute / A_TPM) * 100).toFixed(0)}% of its quota (the minute bucket's level at the window's start moves this by ~+-20%)`);
  } finally {
    await p4.close();
    admin.disconnect();
    await stopAll(fleet);
    await sim4.close();
    await own.stop();
  }
}
