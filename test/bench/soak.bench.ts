/**
 * `pnpm bench:soak`: a long run at 1.5x capacity, watching for slow leaks.
 *
 * 3 `headroom worker` processes share one bucket against a simulator whose requests/min binds; a
 * producer (its own process, soak-producer.ts) offers 1.5x that rate across all four lanes
 * (CRITICAL/HIGH/NORMAL/LOW 10/20/30/40%) and awaits every accepted job. Every 30 s it prints the
 * producer's heap, each worker's heap (their /metrics, `dispatch.metricsPort`), Redis' key count
 * (DBSIZE) and used_memory, the simulator's 429s and the jobs lost so far; at the end it stops
 * offering, lets the backlog drain and prints the verdict.
 *
 * Goals: heaps and key count flat (finished jobs are trimmed by the producer's retention count),
 * zero 429s, zero jobs lost. Overload shows up as refusals at enqueue (QUEUE_FULL, SHED) and LOW
 * jobs shed after their max wait: the caller is told each time, nothing is lost.
 *
 * Env: SOAK_SECONDS (600), SOAK_REPORT_SECONDS (30), SOAK_WORKERS (3), SOAK_LOAD (1.5),
 * SOAK_RPM (1800: the binding limit), SOAK_DRAIN_SECONDS (120), SOAK_RETENTION_COUNT (500
 * finished jobs kept per lane and outcome; the Producer's default is 10000).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startSimulator } from '@headroom/simulator';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { metricValue, scrapeMetrics, sleep, waitForFleet } from '../support/probes.js';
import type { ChildMessage, ParentMessage, SoakReport } from './soak-producer.js';
import { freePort, startEmbeddedRedis } from '@headroom/testing';

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const SECONDS = num('SOAK_SECONDS', 600);
const REPORT_SECONDS = num('SOAK_REPORT_SECONDS', 30);
const WORKERS = num('SOAK_WORKERS', 3);
const LOAD = num('SOAK_LOAD', 1.5);
const RPM = num('SOAK_RPM', 1800);
const DRAIN_SECONDS = num('SOAK_DRAIN_SECONDS', 120);
const RETENTION_COUNT = num('SOAK_RETENTION_COUNT', 500);
const MODEL = 'claude-sonnet-4-6';
const PREFIX = 'soak';
const KEY_ENV = 'SOAK_ANTHROPIC_KEY';
// Requests/min binds: the token limits are far above what these short requests use.
const LIMITS = { rpm: RPM, itpm: RPM * 2_000, otpm: RPM * 500 };

const startedAt = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);
const mb = (bytes: number | undefined) => (bytes === undefined ? '?' : (bytes / 1024 / 1024).toFixed(1));

const sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 100, max: 400 }, admissionLogSize: 1_000 });
const redis = await startEmbeddedRedis();
const admin = new Redis(redis.url);
const workers: FleetProcess[] = [];
const ports: number[] = [];
let producer: ChildProcess | undefined;

async function main(): Promise<number> {
  for (let n = 1; n <= WORKERS; n++) {
    const port = await freePort();
    ports.push(port);
    const config = writeConfig({
      redis: { prefix: PREFIX },
      providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
      models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
      // A LOW backlog is bounded by its cap and sheds after a minute's wait.
      lanes: { normal: { cap: 1000 }, low: { cap: 1000, maxWaitMs: 60_000 } },
      dispatch: { concurrency: 16, metricsPort: port },
    });
    workers.push(spawnWorker(config, redis.url, `soak-w${n}`, { [KEY_ENV]: 'sk-soak' }));
  }
  await waitForFleet(redis.url, PREFIX, workers);
  const rate = (RPM / 60) * LOAD;
  log(`fleet of ${WORKERS} workers ready; limit ${RPM} requests/min (${(RPM / 60).toFixed(1)}/s), offering ${rate.toFixed(1)} jobs/s for ${SECONDS} s`);

  producer = fork(fileURLToPath(new URL('./soak-producer.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx', '--conditions=@headroom/source', '--expose-gc'],
    env: {
      ...process.env,
      SOAK_REDIS_URL: redis.url,
      SOAK_PREFIX: PREFIX,
      SOAK_MODEL: MODEL,
      SOAK_RATE: String(rate),
      SOAK_RETENTION_COUNT: String(RETENTION_COUNT),
    },
  });
  const next = (type: ChildMessage['type']) =>
    new Promise<SoakReport | undefined>((resolve) => {
      const on = (msg: ChildMessage) => {
        if (msg.type !== type) return;
        producer!.off('message', on);
        resolve('report' in msg ? msg.report : undefined);
      };
      producer!.on('message', on);
    });
  await next('ready');
  const ask = (msg: ParentMessage) => producer!.send(msg);

  const rows: Row[] = [];
  const sample = async (label: string, report: SoakReport): Promise<Row> => {
    const heaps = await Promise.all(ports.map((p) => scrapeMetrics(p).then((t) => metricValue(t, 'headroom_nodejs_heap_size_used_bytes'), () => undefined)));
    const memory = /used_memory:(\d+)/.exec(await admin.info('memory'))?.[1];
    const stats = sim.stats().models[MODEL];
    const row: Row = { label, report, workerHeaps: heaps, keys: await admin.dbsize(), usedMemory: Number(memory), admitted: stats?.admitted ?? 0, refused429: stats?.refused429 ?? 0 };
    rows.push(row);
    printRow(row, rows.length === 1);
    return row;
  };

  const loadEnds = Date.now() + SECONDS * 1000;
  while (Date.now() < loadEnds) {
    await sleep(Math.min(REPORT_SECONDS * 1000, loadEnds - Date.now()));
    ask({ type: 'report' });
    await sample(`${Math.round((Date.now() - startedAt) / 1000)}s`, (await next('report'))!);
  }
  const underLoad = [...rows];
  log(`stopping the offer; draining for up to ${DRAIN_SECONDS} s`);
  ask({ type: 'stop', drainMs: DRAIN_SECONDS * 1000 });
  const final = await sample('drained', (await next('drained'))!);

  return verdict(underLoad, final);
}

interface Row {
  label: string;
  report: SoakReport;
  workerHeaps: (number | undefined)[];
  keys: number;
  usedMemory: number;
  admitted: number;
  refused429: number;
}

function printRow(r: Row, header: boolean): void {
  const c = r.report.counts;
  const failed = Object.entries(c.failed).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
  const refused = Object.entries(c.refused).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
  const w = r.report.maxWaitMs;
  const waits = (['CRITICAL', 'HIGH', 'NORMAL', 'LOW'] as const).map((p) => (w[p] === undefined ? '-' : (w[p] / 1000).toFixed(1))).join(' / ');
  if (header) {
    console.log('| at | offered | accepted | completed | failed | refused at enqueue | in flight | lost | 429s | max wait s C/H/N/L | producer heap MB | worker heaps MB | Redis keys | used_memory MB |');
    console.log('| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |');
  }
  console.log(`| ${r.label} | ${c.offered} | ${c.accepted} | ${c.completed} | ${failed} | ${refused} | ${c.outstanding} | ${c.lost} | ${r.refused429} | ${waits} | ${mb(r.report.heapUsed)} | ${r.workerHeaps.map(mb).join(' / ')} | ${r.keys} | ${mb(r.usedMemory)} |`);
}

/**
 * Growth from the middle third of the run to the last third, by median: the first third is
 * warm-up (the bucket's first-minute burst, the retention caps filling up).
 */
function trend(values: number[]): { first: number; last: number; growth: number } {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const third = Math.floor(values.length / 3);
  const middle = third > 0 ? values.slice(third, values.length - third) : values.slice(0, 1);
  const end = third > 0 ? values.slice(values.length - third) : values.slice(-1);
  const first = median(middle);
  const last = median(end);
  return { first, last, growth: first > 0 ? last / first - 1 : 0 };
}

function verdict(underLoad: Row[], final: Row): number {
  const c = final.report.counts;
  const minutes = SECONDS / 60;
  const heapTrend = trend(underLoad.map((r) => r.report.heapUsed));
  const workerTrends = ports.map((_, i) => trend(underLoad.map((r) => r.workerHeaps[i] ?? 0)));
  const keyTrend = trend(underLoad.map((r) => r.keys));
  const memTrend = trend(underLoad.map((r) => r.usedMemory));
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  console.log('');
  console.log(`goodput ${(final.admitted / minutes).toFixed(0)} requests/min against a limit of ${RPM} (${((final.admitted / minutes / RPM) * 100).toFixed(0)}%, the first minute's burst included)`);
  console.log(`producer heap ${mb(heapTrend.first)} -> ${mb(heapTrend.last)} MB (${pct(heapTrend.growth)}), worker heaps ${workerTrends.map((t) => `${mb(t.first)} -> ${mb(t.last)} MB (${pct(t.growth)})`).join(', ')}`);
  console.log(`Redis keys ${keyTrend.first} -> ${keyTrend.last} (${pct(keyTrend.growth)}), used_memory ${mb(memTrend.first)} -> ${mb(memTrend.last)} MB (${pct(memTrend.growth)}); medians of the middle and last third of the run`);
  const unfinished = c.outstanding;
  console.log(`429s ${final.refused429}; lost ${c.lost}; unfinished after the drain ${unfinished}`);
  const ok = final.refused429 === 0 && c.lost === 0 && unfinished === 0;
  console.log(ok ? 'PASS: zero 429s, nothing lost' : 'FAIL: see above');
  return ok ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(err);
} finally {
  producer?.kill('SIGKILL');
  await stopAll(workers);
  admin.disconnect();
  await sim.close();
  await redis.stop();
}
process.exit(code);
