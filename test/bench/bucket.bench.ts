/**
 * The quota bucket's hot path against a well-known baseline, measured in the same run on the same
 * Redis: what one provider call costs Headroom's bucket (three dimensions: rpm, itpm, otpm) versus
 * rate-limiter-flexible's `RateLimiterRedis.consume` (one dimension, one round trip), with 1 and
 * 16 concurrent clients, each on its own connection. The "pair" loop does what a worker does:
 * acquire, then settle without waiting for a round trip, so the next acquire carries the settle.
 * Limits are high enough that nothing waits, so this measures the cost of the check itself.
 * Goal: at least 0.7x the baseline's operations/s, one operation = one acquire + one settle.
 *
 * The figure must not come from settles left behind: after every pair run each bucket is
 * flushed, and the run fails unless every grant was settled with the exact corrections and the
 * pool left no key besides its own state and counters (reservations are held by the client).
 * Then a short run on a pool sized so its levels never touch zero checks that the pool's used
 * tokens equal the settled usage minus the refill, to the token.
 *
 * Both run as shipped: `pnpm bench:bucket` builds the packages first and imports their compiled
 * `dist/` (rate-limiter-flexible is compiled JS too).
 */
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { Bucket, type PoolLimits, type SettleResult } from '@headroom/queue';
import { startEmbeddedRedis } from '@headroom/testing';

const WARMUP_MS = 500;
const MEASURE_MS = Number(process.env.BENCH_MS ?? 3_000);
/** Runs alternate between the contenders, so load from elsewhere on the machine hits both alike. */
const ROUNDS = 2;
const CONCURRENCY = [1, 16];
const LIMITS: PoolLimits = { rpm: 1e9, itpm: 1e12, otpm: 1e12 };

interface Sample {
  ops: number;
  /** Every call, warm-up included. */
  allOps: number;
  seconds: number;
  latenciesUs: number[];
}

interface Figures {
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

type Op = () => Promise<void>;

/** One client's loop, and what to check once its sample is over. */
interface Contender {
  op: Op;
  verify?: () => Promise<void>;
}

/** Runs `op` in `clients` loops at once (one connection each) and times every call. */
async function sample(ops: Op[]): Promise<Sample> {
  const latenciesUs: number[] = [];
  let measuring = false;
  let stop = false;
  let allOps = 0;
  const loops = ops.map(async (op) => {
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await op();
      allOps++;
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
  return { ops: ops_, allOps, seconds, latenciesUs };
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

const NEED = { inputTokens: 1200, outputTokens: 800 };
const USAGE = { input_tokens: 1100, output_tokens: 300 };
const EXPECTED_DELTA = { inputTokens: -100, outputTokens: -500, tokens: 0, tenantTokens: 0 };

/** A worker's loop: acquire, then settle without waiting, so the next acquire carries it. */
function pairLoop(bucket: Bucket, pool: string, limits: PoolLimits) {
  let grants = 0;
  let settled = 0;
  const wrong: string[] = [];
  let firstGrantMs = Infinity;
  // Each settle is checked as it resolves and counted, rather than kept: holding every promise of
  // a run (100,000 and more) would load the garbage collector of this one process, which the
  // consume loop beside it does not pay.
  const check = (s: SettleResult) => {
    const d = s.status === 'settled' ? s.delta : undefined;
    if (d && d.inputTokens === EXPECTED_DELTA.inputTokens && d.outputTokens === EXPECTED_DELTA.outputTokens && d.tokens === 0 && d.tenantTokens === 0) settled++;
    else wrong.push(JSON.stringify(s));
  };
  const failed = (err: unknown) => {
    wrong.push(String(err));
  };
  const op = async () => {
    const r = await bucket.acquire({ pool, limits, lane: 'normal', need: NEED });
    if (r.status !== 'granted') throw new Error(`bench expected a grant, got ${r.status}`);
    grants++;
    firstGrantMs = Math.min(firstGrantMs, r.atMs);
    bucket.settle(r.reservation, USAGE).then(check, failed);
  };
  /** Every grant settled with the exact corrections, once this bucket has sent what it holds. */
  const allSettled = async () => {
    await bucket.flush();
    // The checks of the settles the flush resolved run before the next turn of the event loop.
    await new Promise((r) => setImmediate(r));
    if (wrong.length > 0) throw new Error(`bench: ${wrong.length} settles came back wrong, e.g. ${wrong[0]}`);
    if (settled !== grants) throw new Error(`bench: ${grants} grants but ${settled} settles applied`);
    return { grants, firstGrantMs };
  };
  return { op, settled: allSettled };
}

async function main() {
  const server = await startEmbeddedRedis();
  const admin = new Redis(server.url);
  const connections: Redis[] = [];
  const connect = async () => {
    const c = new Redis(server.url, { lazyConnect: true });
    await c.connect();
    connections.push(c);
    return c;
  };
  /** Keys beyond the pool's state and counters: a grant or settle must create none. */
  const strayKeys = async (prefix: string, bucket: Bucket) => {
    const own = new Set([bucket.keys('pool').bucket, bucket.keys('pool').stats]);
    return (await admin.keys(`{${prefix}:*`)).filter((k) => !own.has(k));
  };
  let run = 0;
  const contenders: Record<string, (clients: number) => Promise<Contender>> = {
    consume: async (clients) => {
      const limiter = new RateLimiterRedis({ storeClient: await connect(), points: 1e12, duration: 60, keyPrefix: `rlf${clients}` });
      return {
        op: async () => {
          await limiter.consume('pool');
        },
      };
    },
    pair: async (clients) => {
      const prefix = `bench${clients}-${run}`;
      const bucket = new Bucket(await connect(), { prefix });
      const loop = pairLoop(bucket, 'pool', LIMITS);
      return {
        op: loop.op,
        verify: async () => {
          await loop.settled();
          const stray = await strayKeys(prefix, bucket);
          if (stray.length > 0) throw new Error(`bench: keys left besides the pool's own: ${stray.slice(0, 3).join(', ')}`);
        },
      };
    },
    acquire: async (clients) => {
      const bucket = new Bucket(await connect(), { prefix: `bench-acq${clients}` });
      return {
        op: async () => {
          const r = await bucket.acquire({ pool: 'pool', limits: LIMITS, lane: 'normal', need: NEED });
          if (r.status !== 'granted') throw new Error(`bench expected a grant, got ${r.status}`);
        },
      };
    },
  };
  /** Script calls since the last RESETSTAT, and Redis CPU time they took. */
  const scriptCalls = async () => {
    const info = await admin.info('commandstats');
    let calls = 0;
    let usec = 0;
    for (const m of info.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+),usec=(\d+)/g)) {
      calls += Number(m[1]);
      usec += Number(m[2]);
    }
    return { calls, usec };
  };
  try {
    console.log(`bucket bench: ${ROUNDS} alternating rounds of ${MEASURE_MS} ms (after ${WARMUP_MS} ms warm-up) per contender, redis ${server.url}\n`);
    for (const clients of CONCURRENCY) {
      const samples: Record<string, Sample[]> = { consume: [], pair: [], acquire: [] };
      let pairScripts = 0;
      let pairScriptUsec = 0;
      let pairOps = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? Object.keys(contenders) : Object.keys(contenders).reverse();
        for (const name of order) {
          const make = contenders[name];
          if (!make) continue;
          run++;
          const made = await Promise.all(Array.from({ length: clients }, () => make(clients)));
          await admin.config('RESETSTAT');
          const s = await sample(made.map((m) => m.op));
          samples[name]?.push(s);
          if (name === 'pair') {
            const sc = await scriptCalls();
            pairScripts += sc.calls;
            pairScriptUsec += sc.usec;
            pairOps += s.allOps;
          }
          await Promise.all(made.map((m) => m.verify?.()));
          for (const c of connections.splice(0)) c.disconnect();
        }
      }
      const consume = figures(samples.consume ?? []);
      const pair = figures(samples.pair ?? []);
      const acquire = figures(samples.acquire ?? []);
      const perPair = pairScripts / pairOps;
      console.log(`${clients} client(s), each on its own connection`);
      console.log(fmt('rate-limiter-flexible consume (1 dimension)', consume));
      console.log(fmt('headroom acquire+settle (3 dimensions)', pair, 'pairs/s'));
      console.log(`  ${''.padEnd(44)} ${perPair.toFixed(2)} script calls (round trips) per pair, ${(pairScriptUsec / pairScripts).toFixed(1)} µs of Redis CPU each; every settle verified applied`);
      console.log(fmt('headroom acquire alone (3 dimensions)', acquire));
      const ratio = (a: Figures) => (a.opsPerSec / consume.opsPerSec).toFixed(2);
      console.log(`  ratio vs consume: acquire+settle pairs ${ratio(pair)}x, acquire alone ${ratio(acquire)}x   (goal >= 0.70x per pair)\n`);
      await verifyLevels(clients, connect);
      for (const c of connections.splice(0)) c.disconnect();
    }
  } finally {
    for (const c of connections) c.disconnect();
    admin.disconnect();
    await server.stop();
  }
}

/**
 * The pool's used tokens must equal what was settled minus the refill since the first grant. The
 * pool is sized so that a flood of grants keeps its levels off zero (where refunds would vanish
 * into the clamp and prove nothing) and never runs it dry.
 */
async function verifyLevels(clients: number, connect: () => Promise<Redis>) {
  const perClient = 300;
  const grants = clients * perClient;
  const limits: PoolLimits = { rpm: 1e9, itpm: grants * NEED.inputTokens * 2, otpm: grants * NEED.outputTokens * 2 };
  const prefix = `bench-verify${clients}`;
  const buckets = await Promise.all(Array.from({ length: clients }, async () => new Bucket(await connect(), { prefix })));
  const loops = buckets.map((b) => pairLoop(b, 'pool', limits));
  await Promise.all(loops.map(async (l) => {
    for (let i = 0; i < perClient; i++) await l.op();
  }));
  const done = await Promise.all(loops.map((l) => l.settled()));
  const firstMs = Math.min(...done.map((d) => d.firstGrantMs));
  const snap = await buckets[0]!.snapshot('pool', limits);
  for (const [dim, perGrant] of [['itpm', USAGE.input_tokens], ['otpm', USAGE.output_tokens]] as const) {
    const d = snap.dimensions.find((x) => x.dimension === dim);
    const cap = limits[dim]!;
    const expected = grants * perGrant - ((snap.atMs - firstMs) * cap) / 60_000;
    const used = cap - (d?.level ?? cap);
    if (!(expected > 0) || Math.abs(used - expected) > 0.01) {
      throw new Error(`bench: ${dim} used ${used.toFixed(3)}, expected ${expected.toFixed(3)} after ${grants} settled grants`);
    }
  }
  console.log(`  verified: after ${grants} carried settles (${clients} client(s)) the pool's used input and output tokens equal the settled usage minus the refill\n`);
}

await main();
