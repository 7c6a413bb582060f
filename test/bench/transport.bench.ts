/**
 * `pnpm bench:transport`: what the transport under the provider SDK costs the worker per call. The
 * same Anthropic SDK, in one process against the simulator at zero latency (in the same process,
 * so its CPU is counted too, alike for both), over Node's built-in fetch (undici) and over the
 * worker's node:http fetch (packages/worker/src/providers/http-fetch.ts), read as the worker reads
 * it: a plain call as `asResponse()` then `text()`, a streamed call to its last event. Rounds
 * alternate between the transports so the machine's other load falls on both alike.
 *
 * Env: TRANSPORT_BENCH_CALLS (per transport per round, default 500), TRANSPORT_BENCH_ROUNDS (default 3).
 */
import { performance } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import Anthropic from '@anthropic-ai/sdk';
import { startSimulator } from '@headroom/simulator';
import { createHttpFetch } from '@headroom/worker';

const CALLS = Number(process.env.TRANSPORT_BENCH_CALLS ?? 500);
const ROUNDS = Number(process.env.TRANSPORT_BENCH_ROUNDS ?? 3);
const MODEL = 'claude-sonnet-4-6';
const KEY = 'sk-transport-bench-key';

const sim = await startSimulator({ latencyMs: 0, apiKeys: [KEY] });
sim.setLimits(MODEL, { rpm: 10_000_000, itpm: 10_000_000_000, otpm: 10_000_000_000 });
const body = (i: number) => ({ model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: `bench question ${i % 50}` }] });
const clients = {
  'built-in fetch': new Anthropic({ apiKey: KEY, baseURL: sim.url, maxRetries: 0 }),
  'node:http fetch': new Anthropic({ apiKey: KEY, baseURL: sim.url, maxRetries: 0, fetch: createHttpFetch() }),
};
const kinds = {
  plain: (c: Anthropic, i: number) => c.messages.create(body(i)).asResponse().then((r) => r.text()),
  streamed: async (c: Anthropic, i: number) => {
    for await (const _ of await c.messages.create({ ...body(i), stream: true })) {
      // read to the end, as the worker's relay does
    }
  },
};
const pct = (v: number[], p: number) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor((v.length * p) / 100))]!;
const results = new Map<string, { p50: number[]; cpu: number[] }>();

console.log(`transport bench: ${CALLS} calls per transport per round, ${ROUNDS} rounds; load average at start ${loadavg().map((l) => l.toFixed(1)).join(' / ')}`);
for (let round = 0; round < ROUNDS; round++) {
  for (const [kind, call] of Object.entries(kinds)) {
    for (const [name, client] of Object.entries(clients)) {
      for (let i = 0; i < 50; i++) await call(client, i);
      const lat: number[] = [];
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < CALLS; i++) {
        const t = performance.now();
        await call(client, i);
        lat.push(performance.now() - t);
      }
      const cpu = process.cpuUsage(cpu0);
      const key = `${kind}, ${name}`;
      const r = results.get(key) ?? { p50: [], cpu: [] };
      r.p50.push(pct(lat, 50));
      r.cpu.push((cpu.user + cpu.system) / 1000 / CALLS);
      results.set(key, r);
    }
  }
}
const range = (v: number[]) => `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)}`;
console.log('   call (SDK + simulator, one process)    p50 ms       CPU ms per call (both)');
for (const [key, r] of results) console.log(`   ${key.padEnd(38)}${range(r.p50).padEnd(13)}${range(r.cpu)}`);
console.log(`load average at end ${loadavg().map((l) => l.toFixed(1)).join(' / ')}`);
await sim.close();
process.exit(0);
