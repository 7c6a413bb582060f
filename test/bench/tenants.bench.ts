/**
 * `pnpm bench:tenants`: does a runaway tenant starve its neighbours? Tenant B sends a steady
 * stream on the NORMAL lane; we measure B's wait with tenant A idle, then with A offering 10x its
 * tokens/min quota on the same lane, in one run on one fleet. Goal: B's p95 within 2x of idle.
 */
import { randomUUID } from 'node:crypto';
import { Producer, type LlmJobInput, type LlmResult } from '@headroom/producer-sdk';
import { parseConfig, createLogger } from '@headroom/queue';
import { startSimulator } from '@headroom/simulator';
import { startWorker } from '@headroom/worker';
import { startEmbeddedRedis } from '@headroom/testing';

const MODEL = 'claude-sonnet-4-6';
const LIMITS = { rpm: 20_000, itpm: 4_000_000, otpm: 1_000_000 };
const A_TPM = 3_000;
const B_JOBS = Number(process.env.BENCH_B_JOBS ?? 100);

const redis = await startEmbeddedRedis();
const sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 20, max: 60 } });
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
const job = (tenant: string, i: number): LlmJobInput => ({
  priority: 'NORMAL', tenant, provider: 'anthropic',
  request: { model: MODEL, max_tokens: 48, messages: [{ role: 'user', content: `tenant ${tenant} request ${i}: summarise this ticket please.` }] },
});

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

try {
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
} finally {
  await producer.close();
  await Promise.all(workers.map((w) => w.close({ graceMs: 1_000 })));
  await sim.close();
  await redis.stop();
}
