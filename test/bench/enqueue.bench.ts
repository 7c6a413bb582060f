/**
 * `pnpm bench:enqueue`: Headroom's `enqueue` (validate + admission script + add) against raw
 * BullMQ `Queue.add` of the same payload, measured in one run on one embedded Redis.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { laneKeys, parseConfig, publishFleetSettings, startEmbeddedRedis } from '@headroom/queue';

const JOBS = Number(process.env.BENCH_JOBS ?? 6000);
const job: LlmJobInput = {
  priority: 'NORMAL',
  provider: 'anthropic',
  request: { model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: 'Summarise the attached ticket in two sentences. '.repeat(10) }] },
};

async function timed(concurrency: number, perWorker: (i: number) => Promise<unknown>): Promise<number> {
  const per = Math.floor(JOBS / concurrency);
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => { for (let i = 0; i < per; i++) await perWorker(i); }));
  return (per * concurrency) / ((performance.now() - started) / 1000);
}

const redis = await startEmbeddedRedis();
const admin = new Redis(redis.url);
try {
  const rows: { mode: string; headroom: number; raw: number }[] = [];
  // [clients, concurrent calls per client]: one producer sequential, one producer with 8 calls
  // in flight (a busy service), and 8 producers each sequential.
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
    let n = 0;
    const raw = await timed(concurrency, () => raws[n++ % clients]!.add('anthropic:claude-sonnet-4-6', job));
    let m = 0;
    const headroom = await timed(concurrency, () => producers[m++ % clients]!.enqueue(job));
    rows.push({ mode, headroom, raw });
    await Promise.all([...producers.map((p) => p.close()), ...raws.map((q) => q.close())]);
  }
  console.log(`\nenqueue throughput, ${JOBS} jobs per mode (embedded redis-server, same run)\n`);
  console.log('mode                      headroom jobs/s   raw Queue.add jobs/s   ratio');
  for (const r of rows) {
    console.log(`${r.mode.padEnd(26)}${r.headroom.toFixed(0).padStart(15)}${r.raw.toFixed(0).padStart(23)}${(r.headroom / r.raw).toFixed(2).padStart(8)}x`);
  }
} finally {
  admin.disconnect();
  await redis.stop();
}
