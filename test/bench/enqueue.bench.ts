/**
 * `pnpm bench:enqueue`: Headroom's `enqueue` (validate + one admit-and-add script) against raw
 * BullMQ `Queue.add` of the same payload with the same job options (the retention a producer
 * sets, which BullMQ stores in the job hash), measured in one run on one embedded Redis. Both
 * run as shipped: `pnpm bench:enqueue` builds the packages first and imports their compiled
 * `dist/` (BullMQ is compiled JS too), so a dev-time transpiler's helpers are not measured. The
 * two run in short rounds, in pairs whose order alternates, so a burst of load from elsewhere on
 * the machine hits both sides of a pair alike. The ratio quoted is the median of the pairs'
 * ratios, with the spread of the middle half beside it: on a shared machine the summed times
 * (also printed) swing by 15% between runs with a slow stretch landing on one side. CPU per job
 * (this process, and redis-server) says where the time goes when the machine, not the round
 * trip, is what binds.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { laneKeys, parseConfig, publishFleetSettings } from '@headroom/queue';
import { startEmbeddedRedis } from '@headroom/testing';

/**
 * Jobs per round for each call in flight: a round of 8 concurrent calls is 8 times as long, so
 * that it lasts about as long as a sequential round (~0.2 s) and a millisecond's stall weighs the
 * same in every mode.
 */
const ROUND_JOBS = Number(process.env.BENCH_ROUND_JOBS ?? 500);
/** Pairs of rounds per mode: many short ones, so that no one slow stretch decides a side. */
const ROUNDS = 24;
/** What `Producer` passes BullMQ by default: keep finished jobs a day (failed: a week), 10,000 at most. */
const RETENTION = { removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 604_800, count: 10_000 } };
const job: LlmJobInput = {
  priority: 'NORMAL',
  provider: 'anthropic',
  request: { model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: 'Summarise the attached ticket in two sentences. '.repeat(10) }] },
};

interface Totals {
  jobs: number;
  seconds: number;
  clientCpuUs: number;
  redisCpuUs: number;
}

const redis = await startEmbeddedRedis();
const admin = new Redis(redis.url);

async function redisCpuUs(): Promise<number> {
  const info = await admin.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6;
}

/** Runs `jobs` calls spread over `concurrency` sequential loops and adds what they cost to `into`. */
async function timed(into: Totals, jobs: number, concurrency: number, call: (loop: number) => Promise<unknown>): Promise<number> {
  const per = Math.floor(jobs / concurrency);
  const redis0 = await redisCpuUs();
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async (_, loop) => { for (let i = 0; i < per; i++) await call(loop); }));
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  into.jobs += per * concurrency;
  into.seconds += seconds;
  into.clientCpuUs += cpu.user + cpu.system;
  into.redisCpuUs += (await redisCpuUs()) - redis0;
  return (per * concurrency) / seconds;
}

/** The value at fraction `q` of the sorted values. */
function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))]!;
}

const empty = (): Totals => ({ jobs: 0, seconds: 0, clientCpuUs: 0, redisCpuUs: 0 });

try {
  const rows: { mode: string; headroom: Totals; raw: Totals; ratios: number[] }[] = [];
  // [clients, concurrent calls per client]: one producer sequential, one producer with 8 calls
  // in flight (a busy service), and 8 producers in one process, each sequential. Both sides run
  // as they come: Headroom's 8 producers share the process's connection (and batch together),
  // raw's 8 Queues each open their own (8 Queues on one shared connection measured the same).
  const modes: [number, number, string][] = [[1, 1, '1 producer, sequential'], [1, 8, '1 producer, 8 in flight'], [8, 1, '8 producers, sequential']];
  for (const [clients, inFlight, mode] of modes) {
    const prefix = `bench${clients}x${inFlight}`;
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' } }, lanes: { normal: { cap: 10_000_000 } } }));
    const producers = Array.from({ length: clients }, () => new Producer({ redis: redis.url, prefix }));
    const raws = Array.from({ length: clients }, () => {
      const k = laneKeys(`raw${clients}x${inFlight}`, 'normal');
      return new Queue(k.queueName, { prefix: k.bullPrefix, connection: { host: '127.0.0.1', port: redis.port } });
    });
    // Warm both paths (script load, connections, JIT) before measuring.
    for (let w = 0; w < 200; w++) await Promise.all([...producers.map((p) => p.enqueue(job)), ...raws.map((q) => q.add('w', job))]);
    const concurrency = clients * inFlight;
    const raw = empty();
    const headroom = empty();
    const runRaw = () => timed(raw, ROUND_JOBS * concurrency, concurrency, (loop) => raws[loop % clients]!.add('anthropic:claude-sonnet-4-6', job, RETENTION));
    const runHeadroom = () => timed(headroom, ROUND_JOBS * concurrency, concurrency, (loop) => producers[loop % clients]!.enqueue(job));
    const ratios: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      if (round % 2 === 0) {
        const rawRate = await runRaw();
        ratios.push((await runHeadroom()) / rawRate);
      } else {
        const headroomRate = await runHeadroom();
        ratios.push(headroomRate / (await runRaw()));
      }
    }
    rows.push({ mode, headroom, raw, ratios: ratios.sort((a, b) => a - b) });
    await Promise.all([...producers.map((p) => p.close()), ...raws.map((q) => q.close())]);
  }
  const perSec = (t: Totals) => t.jobs / t.seconds;
  const cpu = (t: Totals) => `${(t.clientCpuUs / t.jobs).toFixed(0).padStart(4)} + ${(t.redisCpuUs / t.jobs).toFixed(0).padStart(3)}`;
  const x = (n: number) => `${n.toFixed(2)}x`;
  console.log(`\nenqueue throughput, ${ROUND_JOBS} jobs per call in flight per round, ${ROUNDS} pairs of rounds per mode, order alternating (embedded redis-server, same run)\n`);
  console.log('mode                      headroom jobs/s   raw Queue.add jobs/s   ratio (median pair, middle half)   summed   CPU µs/job (client + redis): headroom   raw');
  for (const r of rows) {
    const spread = `${x(quantile(r.ratios, 0.25))}-${x(quantile(r.ratios, 0.75))}`;
    console.log(
      `${r.mode.padEnd(26)}${perSec(r.headroom).toFixed(0).padStart(15)}${perSec(r.raw).toFixed(0).padStart(23)}` +
        `${x(quantile(r.ratios, 0.5)).padStart(9)} (${spread})`.padEnd(37) +
        `${x(perSec(r.headroom) / perSec(r.raw)).padStart(8)}${cpu(r.headroom).padStart(40)}${cpu(r.raw).padStart(13)}`,
    );
  }
  console.log('\ngoal: >= 0.70x raw in every mode (the median pair)');
} finally {
  admin.disconnect();
  await redis.stop();
}
