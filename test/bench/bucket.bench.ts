/**
 * The quota bucket's hot path against a well-known baseline, measured in the same run on the same
 * Redis: Headroom's acquire+settle (three dimensions: rpm, itpm, otpm; two round trips) versus
 * rate-limiter-flexible's `RateLimiterRedis.consume` (one dimension, one round trip), with 1 and
 * 16 concurrent clients, each on its own connection. Limits are high enough that nothing waits,
 * so this measures the cost of the check itself. Goal: at least 0.7x the baseline's operations/s.
 *
 *   cd test && pnpm tsx --conditions=@headroom/source bench/bucket.bench.ts
 */
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Bucket, startEmbeddedRedis, type PoolLimits } from '@headroom/queue';

const WARMUP_MS = 500;
const MEASURE_MS = Number(process.env.BENCH_MS ?? 3_000);
/** Runs alternate between the contenders, so load from elsewhere on the machine hits both alike. */
const ROUNDS = 2;
const CONCURRENCY = [1, 16];
const LIMITS: PoolLimits = { rpm: 1e9, itpm: 1e12, otpm: 1e12 };

interface Sample {
  ops: number;
  seconds: number;
  latenciesUs: number[];
}

interface Figures {
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

type Op = () => Promise<void>;

/** Runs `op` in `clients` loops at once (one connection each) and times every call. */
async function sample(ops: Op[]): Promise<Sample> {
  const latenciesUs: number[] = [];
  let measuring = false;
  let stop = false;
  const loops = ops.map(async (op) => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await op();
      if (measuring) latenciesUs.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
  });
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  measuring = true;
  const start = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, MEASURE_MS));
  measuring = false;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const ops_ = latenciesUs.length;
  stop = true;
  await Promise.all(loops);
  return { ops: ops_, seconds, latenciesUs };
}

function figures(samples: Sample[]): Figures {
  const sorted = Float64Array.from(samples.flatMap((s) => s.latenciesUs)).sort();
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  const ops = samples.reduce((n, s) => n + s.ops, 0);
  const seconds = samples.reduce((n, s) => n + s.seconds, 0);
  return { opsPerSec: ops / seconds, p50Us: at(0.5), p99Us: at(0.99) };
}

const fmt = (label: string, f: Figures, unit = 'ops/s') =>
  `  ${label.padEnd(44)} ${Math.round(f.opsPerSec).toString().padStart(7)} ${unit.padEnd(7)} p50 ${f.p50Us.toFixed(0).padStart(5)} µs   p99 ${f.p99Us.toFixed(0).padStart(5)} µs`;

async function main() {
  const server = await startEmbeddedRedis();
  const connections: Redis[] = [];
  const connect = async () => {
    const c = new Redis(server.url, { lazyConnect: true });
    await c.connect();
    connections.push(c);
    return c;
  };
  const need = { inputTokens: 1200, outputTokens: 800 };
  const contenders: Record<string, (clients: number) => Promise<Op>> = {
    consume: async (clients) => {
      const limiter = new RateLimiterRedis({ storeClient: await connect(), points: 1e12, duration: 60, keyPrefix: `rlf${clients}` });
      return async () => {
        await limiter.consume('pool');
      };
    },
    pair: async (clients) => {
      const bucket = new Bucket(await connect(), { prefix: `bench${clients}` });
      return async () => {
        const r = await bucket.acquire({ pool: 'pool', limits: LIMITS, lane: 'normal', need });
        if (r.status !== 'granted') throw new Error(`bench expected a grant, got ${r.status}`);
        await bucket.settle(r.reservation, { input_tokens: 1100, output_tokens: 300 });
      };
    },
    acquire: async (clients) => {
      // Unsettled: a short TTL keeps the reservation keys from piling up.
      const bucket = new Bucket(await connect(), { prefix: `bench-acq${clients}`, reservationTtlMs: 2_000 });
      return async () => {
        const r = await bucket.acquire({ pool: 'pool', limits: LIMITS, lane: 'normal', need });
        if (r.status !== 'granted') throw new Error(`bench expected a grant, got ${r.status}`);
      };
    },
  };
  try {
    console.log(`bucket bench: ${ROUNDS} alternating rounds of ${MEASURE_MS} ms (after ${WARMUP_MS} ms warm-up) per contender, redis ${server.url}\n`);
    for (const clients of CONCURRENCY) {
      const samples: Record<string, Sample[]> = { consume: [], pair: [], acquire: [] };
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? Object.keys(contenders) : Object.keys(contenders).reverse();
        for (const name of order) {
          const make = contenders[name];
          if (!make) continue;
          const ops = await Promise.all(Array.from({ length: clients }, () => make(clients)));
          samples[name]?.push(await sample(ops));
          for (const c of connections.splice(0)) c.disconnect();
        }
      }
      const consume = figures(samples.consume ?? []);
      const pair = figures(samples.pair ?? []);
      const acquire = figures(samples.acquire ?? []);
      const calls = { ...pair, opsPerSec: pair.opsPerSec * 2 };
      console.log(`${clients} client(s), each on its own connection`);
      console.log(fmt('rate-limiter-flexible consume (1 dimension)', consume));
      console.log(fmt('headroom acquire+settle (3 dimensions)', pair, 'pairs/s'));
      console.log(`  ${''.padEnd(44)} ${Math.round(calls.opsPerSec).toString().padStart(7)} calls/s (acquire and settle each one call)`);
      console.log(fmt('headroom acquire alone (3 dimensions)', acquire));
      const ratio = (a: Figures) => (a.opsPerSec / consume.opsPerSec).toFixed(2);
      console.log(`  ratio vs consume: acquire+settle pairs ${ratio(pair)}x, calls ${ratio(calls)}x, acquire alone ${ratio(acquire)}x   (goal >= 0.70x)\n`);
    }
  } finally {
    for (const c of connections) c.disconnect();
    await server.stop();
  }
}

await main();
