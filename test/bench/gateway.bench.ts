/**
 * `pnpm bench:gateway`: what the gateway adds, all measured in one run against the simulator at
 * zero latency, each process on its own (simulator, worker, gateway, pass-through proxy; Redis).
 *
 * 1. Added latency on an idle fleet: the same Anthropic SDK calling the simulator directly, and
 *    through gateway + queue + worker; plain calls (whole call) and streamed calls (time to the
 *    first text delta). Calls alternate between the paths, one at a time, so the machine's other
 *    load falls on all alike. Goals: added p50 <= 3 ms, p99 <= 15 ms, both kinds. A bare
 *    pass-through proxy's added latency is measured in the same loop, for scale, and the floor of
 *    any queue in front of the provider on the machine: a bare Redis list-and-stream relay with
 *    the same SDK in its back process (bare-queue.ts), plain calls.
 * 2. The producer SDK's idle path: `producer.run()` end to end, and the worker's pickup (enqueue to
 *    the provider call starting), with the worker blocking on the lanes' markers, then with the
 *    worker polling (`dispatch.idleWake: poll`, what it did before) as the baseline.
 * 3. Throughput: the most requests per second one gateway sustains through the fleet, beside a bare
 *    node:http pass-through proxy to the same simulator, both driven by the same closed loop of
 *    SDK clients. Goal: >= 0.5x the proxy. The bare queue's throughput is measured beside them.
 *
 * Env: GATEWAY_BENCH_CALLS (latency samples per path, default 400), GATEWAY_BENCH_SECONDS
 * (per throughput round, default 8), GATEWAY_BENCH_CONCURRENCY (default 32).
 */
import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { Producer } from '@headroom/producer-sdk';
import { freePort, startEmbeddedRedis } from '@headroom/testing';
import { cpuSecondsOf } from './fleet-mode.js';
import { REPO_ROOT, spawnHeadroom, spawnTsx, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';

const MODEL = 'claude-sonnet-4-6';
const CALLS = Number(process.env.GATEWAY_BENCH_CALLS ?? 400);
const SECONDS = Number(process.env.GATEWAY_BENCH_SECONDS ?? 8);
const CONCURRENCY = Number(process.env.GATEWAY_BENCH_CONCURRENCY ?? 32);
const GATEWAY_KEY = 'hr-gateway-bench-key-0123456789';
const PROVIDER_KEY = 'sk-gateway-bench-provider-key';
const LIMITS = { rpm: 10_000_000, itpm: 10_000_000_000, otpm: 10_000_000_000 };
const ENV = { BENCH_PROVIDER_KEY: PROVIDER_KEY, BENCH_GATEWAY_KEY: GATEWAY_KEY, HEADROOM_LOG_LEVEL: 'error' };

async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const up = (url: string) => fetch(url).then(() => true, () => false);

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

const ms = (v: number) => v.toFixed(2).padStart(8);
const body = (i: number) => ({ model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: `bench question ${i % 50}` }] });

async function plain(client: Anthropic, i: number): Promise<number> {
  const t = performance.now();
  await client.messages.create(body(i));
  return performance.now() - t;
}

async function firstToken(client: Anthropic, i: number): Promise<number> {
  const t = performance.now();
  let ttft = Number.NaN;
  const stream = await client.messages.create({ ...body(i), stream: true });
  for await (const event of stream) {
    if (Number.isNaN(ttft) && event.type === 'content_block_delta') ttft = performance.now() - t;
  }
  return ttft;
}

const errorKinds = new Map<string, number>();

/** The paths the throughput rounds drive: the pass-through proxy, the gateway, the bare queue. */
type Mode = 'proxy' | 'gateway' | 'bare';

async function closedLoop(client: Anthropic, seconds: number, concurrency: number, path: string): Promise<{ rps: number; errors: number }> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; performance.now() < end; i += concurrency) {
        try {
          await client.messages.create(body(i));
          done += 1;
        } catch (err) {
          errors += 1;
          const cause = (err as Error).cause as { message?: string; cause?: { message?: string; code?: string } } | undefined;
          const why = [cause?.message, cause?.cause?.message, cause?.cause?.code].filter((s) => s !== undefined).join(': ');
          const kind = `${path}: ${(err as { status?: number }).status ?? ''} ${(err as Error).message.slice(0, 80)}${why === '' ? '' : ` (${why})`}`;
          errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
        }
      }
    }),
  );
  return { rps: done / seconds, errors };
}

async function main(): Promise<void> {
  const procs: FleetProcess[] = [];
  const children: ChildProcess[] = [];
  const redis = await startEmbeddedRedis();
  const [simPort, proxyPort, gatewayPort, barePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const simUrl = `http://127.0.0.1:${simPort}`;
  try {
    children.push(spawnTsx(join(REPO_ROOT, 'packages/simulator/src/cli.ts'), ['--port', String(simPort), '--latency-ms', '0']));
    await until('the simulator', () => up(`${simUrl}/_sim/stats`));
    await fetch(`${simUrl}/_sim/limits`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, limits: LIMITS }) });
    children.push(spawnTsx(join(REPO_ROOT, 'test/bench/passthrough-proxy.ts'), [String(proxyPort), String(simPort)]));
    children.push(spawnTsx(join(REPO_ROOT, 'test/bench/bare-queue.ts'), ['front', String(barePort), redis.url]));
    children.push(spawnTsx(join(REPO_ROOT, 'test/bench/bare-queue.ts'), ['back', String(simPort), redis.url, PROVIDER_KEY]));

    const config = (idleWake: 'block' | 'poll') =>
      writeConfig({
        redis: { prefix: 'gwbench' },
        providers: { anthropic: { baseURL: simUrl, apiKeyEnv: 'BENCH_PROVIDER_KEY' } },
        models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
        dispatch: { concurrency: 64, idleWake },
        gateway: { host: '127.0.0.1', keys: { bench: { keyEnv: 'BENCH_GATEWAY_KEY' } } },
      });
    const blockConfig = config('block');
    let worker = spawnWorker(blockConfig, redis.url, 'bench-w1', ENV);
    procs.push(worker);
    const gateway = spawnHeadroom(['gateway', '--config', blockConfig, '--redis', redis.url, '--port', String(gatewayPort)], ENV);
    procs.push(gateway);
    await until('the gateway', () => up(`http://127.0.0.1:${gatewayPort}/healthz`));
    await until('the proxy', () => up(`http://127.0.0.1:${proxyPort}/_sim/stats`));

    const direct = new Anthropic({ apiKey: PROVIDER_KEY, baseURL: simUrl, maxRetries: 0 });
    const viaGateway = new Anthropic({ apiKey: GATEWAY_KEY, baseURL: `http://127.0.0.1:${gatewayPort}`, maxRetries: 0 });
    const viaProxy = new Anthropic({ apiKey: PROVIDER_KEY, baseURL: `http://127.0.0.1:${proxyPort}`, maxRetries: 0 });
    const viaBare = new Anthropic({ apiKey: PROVIDER_KEY, baseURL: `http://127.0.0.1:${barePort}`, maxRetries: 0 });
    await until('the bare queue', async () => viaBare.messages.create(body(0)).then(() => true, () => false));
    await until('the worker', async () => viaGateway.messages.create(body(0)).then(() => true, () => false));

    console.log(`gateway bench: ${CALLS} sequential calls per path, then ${SECONDS} s closed loops of ${CONCURRENCY}; load average at start ${loadavg().map((l) => l.toFixed(1)).join(' / ')}`);
    // Warm-up: JIT, connections, the gateway's lane subscriptions.
    for (let i = 0; i < 50; i++) {
      await plain(direct, i);
      await plain(viaGateway, i);
      await firstToken(direct, i);
      await firstToken(viaGateway, i);
      await plain(viaBare, i);
    }

    // 1. Added latency, idle fleet, one call at a time, paths alternating.
    const lat = { directPlain: [] as number[], gatewayPlain: [] as number[], proxyPlain: [] as number[], directTtft: [] as number[], gatewayTtft: [] as number[], proxyTtft: [] as number[], barePlain: [] as number[], ping: [] as number[] };
    const pinger = new Redis(redis.url);
    for (let i = 0; i < CALLS; i++) {
      lat.directPlain.push(await plain(direct, i));
      lat.gatewayPlain.push(await plain(viaGateway, i));
      lat.proxyPlain.push(await plain(viaProxy, i));
      lat.directTtft.push(await firstToken(direct, i));
      lat.gatewayTtft.push(await firstToken(viaGateway, i));
      lat.proxyTtft.push(await firstToken(viaProxy, i));
      lat.barePlain.push(await plain(viaBare, i));
      const t = performance.now();
      await pinger.ping();
      lat.ping.push(performance.now() - t);
    }
    console.log('\n1. added latency on an idle fleet (ms; Anthropic SDK, simulator at zero latency)');
    console.log('   path                      p50      p99   added p50  added p99   goal');
    const row = (name: string, d: number[], g: number[]) => {
      const a50 = pct(g, 50) - pct(d, 50);
      const a99 = pct(g, 99) - pct(d, 99);
      console.log(`   ${`${name}, direct`.padEnd(22)}${ms(pct(d, 50))} ${ms(pct(d, 99))}`);
      console.log(`   ${`${name}, via gateway`.padEnd(22)}${ms(pct(g, 50))} ${ms(pct(g, 99))}  ${ms(a50)}   ${ms(a99)}   p50 <= 3 ${a50 <= 3 ? 'met' : 'MISSED'}, p99 <= 15 ${a99 <= 15 ? 'met' : 'MISSED'}`);
    };
    row('plain call', lat.directPlain, lat.gatewayPlain);
    row('first token', lat.directTtft, lat.gatewayTtft);
    // What any hop in front of the provider costs: a bare node:http pass-through proxy, measured
    // in the same loop. The gateway path holds two SDK-to-server hops (client to gateway, worker
    // to provider) where the proxy path holds one plus the proxy's pipe.
    for (const [name, d, p] of [['plain call', lat.directPlain, lat.proxyPlain], ['first token', lat.directTtft, lat.proxyTtft]] as const) {
      console.log(`   ${`${name}, via proxy`.padEnd(22)}${ms(pct(p, 50))} ${ms(pct(p, 99))}  ${ms(pct(p, 50) - pct(d, 50))}   ${ms(pct(p, 99) - pct(d, 99))}   (a bare pass-through proxy, for scale)`);
    }
    // The floor of any queue in front of the provider on this machine: a bare Redis list and
    // stream relay with the same SDK in its back process (bare-queue.ts), in the same loop.
    const bareAdded = pct(lat.barePlain, 50) - pct(lat.directPlain, 50);
    console.log(`   ${'plain call, bare queue'.padEnd(22)}${ms(pct(lat.barePlain, 50))} ${ms(pct(lat.barePlain, 99))}  ${ms(bareAdded)}   ${ms(pct(lat.barePlain, 99) - pct(lat.directPlain, 99))}   (LPUSH, BLMOVE, SDK call, XADD, XREAD: the floor)`);
    console.log(`   gateway path over the floor, plain call p50: ${(pct(lat.gatewayPlain, 50) - pct(lat.barePlain, 50)).toFixed(2)} ms`);

    // What one hop between processes costs on this machine, the unit the added latency is made
    // of: a Redis PING from a process that was just waiting on other calls (as every hop on the
    // gateway path is), then the same PING back to back (both processes kept running).
    const hot: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = performance.now();
      await pinger.ping();
      hot.push(performance.now() - t);
    }
    pinger.disconnect();
    console.log(`   one round trip to Redis on this machine: p50 ${pct(lat.ping, 50).toFixed(3)} ms between the calls above, ${pct(hot, 50).toFixed(3)} ms back to back`);

    // 2. The producer SDK's idle path: blocking on markers, then polling as the baseline.
    const producer = new Producer({ redis: redis.url, prefix: 'gwbench' });
    const idle = async () => {
      const total: number[] = [];
      const pickup: number[] = [];
      const call: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const t = performance.now();
        const r = await producer.run({ priority: 'HIGH', provider: 'anthropic', request: body(i) }, { timeoutMs: 30_000 });
        total.push(performance.now() - t);
        pickup.push(r.timings.waitMs);
        call.push(r.timings.runMs);
      }
      return { total, pickup, call };
    };
    for (let i = 0; i < 30; i++) await producer.run({ priority: 'HIGH', provider: 'anthropic', request: body(i) });
    const blocking = await idle();
    await stopAll([worker]);
    worker = spawnWorker(config('poll'), redis.url, 'bench-w2', ENV);
    procs.push(worker);
    for (let i = 0; i < 30; i++) await producer.run({ priority: 'HIGH', provider: 'anthropic', request: body(i) }, { timeoutMs: 60_000 });
    const polling = await idle();
    await producer.close();
    await stopAll([worker]);
    worker = spawnWorker(blockConfig, redis.url, 'bench-w3', ENV);
    procs.push(worker);
    await until('the worker again', async () => viaGateway.messages.create(body(0)).then(() => true, () => false));
    console.log('\n2. producer SDK on an idle fleet (ms): producer.run() end to end, and the worker pickup (enqueue to provider call)');
    console.log('   worker idles by          run p50   run p99  pickup p50  pickup p99');
    for (const [name, r] of [['blocking on markers', blocking], ['polling (baseline)', polling]] as const) {
      console.log(`   ${name.padEnd(22)}${ms(pct(r.total, 50))}  ${ms(pct(r.total, 99))}   ${ms(pct(r.pickup, 50))}   ${ms(pct(r.pickup, 99))}`);
    }
    console.log(`   pickup p50 ratio polling / blocking: ${(pct(polling.pickup, 50) / Math.max(0.01, pct(blocking.pickup, 50))).toFixed(1)}x`);
    // Where the blocking run's time goes (the worker's clock, whole ms): the queue's part is the
    // run less the worker's own provider call.
    console.log(`   blocking run p50 ${pct(blocking.total, 50).toFixed(2)} = worker's provider call p50 ${pct(blocking.call, 50).toFixed(0)} + the queue's part (pickup, acquire, completion, result)`);

    // 3. Throughput: closed loops, proxy and gateway alternating, two rounds each.
    console.log(`\n3. throughput: ${CONCURRENCY} SDK calls in flight, ${SECONDS} s rounds, alternating`);
    const rounds: Record<Mode, number[]> & { errors: number } = { proxy: [], gateway: [], bare: [], errors: 0 };
    // CPU per request of each process, to say where a gateway request's cost goes.
    const parts = {
      client: () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; },
      gateway: () => cpuSecondsOf(gateway.child.pid),
      worker: () => cpuSecondsOf(worker.child.pid),
      redis: () => cpuSecondsOf(redis.process.pid),
      simulator: () => cpuSecondsOf(children[0]?.pid),
      proxy: () => cpuSecondsOf(children[1]?.pid),
      'bare front': () => cpuSecondsOf(children[2]?.pid),
      'bare back': () => cpuSecondsOf(children[3]?.pid),
    };
    const cpuNow = () => Object.fromEntries(Object.entries(parts).map(([k, f]) => [k, f()])) as Record<keyof typeof parts, number>;
    const zero = () => Object.fromEntries(Object.keys(parts).map((k) => [k, 0])) as Record<keyof typeof parts, number>;
    const cpu: Record<Mode, Record<keyof typeof parts, number>> = { proxy: zero(), gateway: zero(), bare: zero() };
    const served: Record<Mode, number> = { proxy: 0, gateway: 0, bare: 0 };
    const clients: Record<Mode, Anthropic> = { proxy: viaProxy, gateway: viaGateway, bare: viaBare };
    // Redis commands per gateway request, from INFO (commands inside scripts included): where the
    // gateway path's Redis and worker CPU goes.
    const stats = new Redis(redis.url);
    const commandsNow = async () => Number(/total_commands_processed:(\d+)/.exec(await stats.info('stats'))?.[1] ?? 0);
    // Each command's calls (scripts' own included), to say which commands make up the count.
    const callsByCommand = async () =>
      new Map([...(await stats.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map((m) => [m[1] as string, Number(m[2])]));
    let gatewayCommands = 0;
    const gatewayByCommand = new Map<string, number>();

    const measured = async (mode: Mode) => {
      const before = cpuNow();
      const commandsBefore = await commandsNow();
      const byCommandBefore = await callsByCommand();
      const r = await closedLoop(clients[mode], SECONDS, CONCURRENCY, mode);
      const after = cpuNow();
      if (mode === 'gateway') {
        gatewayCommands += (await commandsNow()) - commandsBefore - 1;
        for (const [name, calls] of await callsByCommand()) {
          gatewayByCommand.set(name, (gatewayByCommand.get(name) ?? 0) + calls - (byCommandBefore.get(name) ?? 0));
        }
      }
      for (const k of Object.keys(parts) as (keyof typeof parts)[]) cpu[mode][k] += after[k] - before[k];
      served[mode] += r.rps * SECONDS;
      return r;
    };
    await closedLoop(viaProxy, 2, CONCURRENCY, 'proxy');
    await closedLoop(viaGateway, 2, CONCURRENCY, 'gateway');
    await closedLoop(viaBare, 2, CONCURRENCY, 'bare');
    for (let r = 0; r < 2; r++) {
      const p = await measured('proxy');
      const g = await measured('gateway');
      const b = await measured('bare');
      rounds.proxy.push(p.rps);
      rounds.gateway.push(g.rps);
      rounds.bare.push(b.rps);
      rounds.errors += p.errors + g.errors + b.errors;
      console.log(`   round ${r + 1}: pass-through proxy ${p.rps.toFixed(0)} req/s, gateway through the fleet ${g.rps.toFixed(0)} req/s (${(g.rps / p.rps).toFixed(2)}x), bare queue ${b.rps.toFixed(0)} req/s (${(b.rps / p.rps).toFixed(2)}x)`);
    }
    const pathNames: Record<Mode, string> = { proxy: 'pass-through proxy', gateway: 'gateway path', bare: 'bare queue' };
    // Only the processes that worked for a path (more than 2 µs of CPU per request).
    const cpuPerRequest = (mode: Mode) => new Map(Object.entries(cpu[mode]).map(([k, v]) => [k, (v / Math.max(1, served[mode])) * 1000] as const).filter(([, v]) => v > 0.002));
    for (const mode of ['proxy', 'gateway', 'bare'] as const) {
      console.log(`   CPU ms per request, ${pathNames[mode]}: ${[...cpuPerRequest(mode)].map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
    }
    console.log(`   Redis commands per gateway request: ${(gatewayCommands / Math.max(1, served.gateway)).toFixed(1)} (inside scripts included)`);
    const perRequest = [...gatewayByCommand].map(([name, calls]) => [name, calls / Math.max(1, served.gateway)] as const).filter(([, n]) => n >= 0.05);
    console.log(`     by command: ${perRequest.sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${n.toFixed(1)}`).join(', ')}`);
    // What one gateway process sustains when the fleet behind it is scaled out (its own CPU is
    // then the bound), beside one proxy process: requests per CPU-second of each, measured here.
    // On this box every process shares two cores, so the end-to-end ratio below is the ratio of
    // the whole path's CPU instead.
    const perCpuSecond = (mode: 'proxy' | 'gateway') => served[mode] / Math.max(1e-9, cpu[mode][mode]);
    console.log(`   per process: gateway ${perCpuSecond('gateway').toFixed(0)} req per CPU-second, pass-through proxy ${perCpuSecond('proxy').toFixed(0)} (${(perCpuSecond('gateway') / perCpuSecond('proxy')).toFixed(2)}x)`);
    stats.disconnect();
    const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
    const ratio = sum(rounds.gateway) / sum(rounds.proxy);
    console.log(`   total: gateway ${(sum(rounds.gateway) / 2).toFixed(0)} req/s vs proxy ${(sum(rounds.proxy) / 2).toFixed(0)} req/s = ${ratio.toFixed(2)}x (goal >= 0.5x: ${ratio >= 0.5 ? 'met' : 'MISSED'}); errors ${rounds.errors}`);
    console.log(`   the floor, a bare queue with the SDK in its back process: ${(sum(rounds.bare) / 2).toFixed(0)} req/s = ${(sum(rounds.bare) / sum(rounds.proxy)).toFixed(2)}x the proxy; the gateway path ${(sum(rounds.gateway) / sum(rounds.bare)).toFixed(2)}x the floor`);
    // On these two shared cores throughput goes as the whole path's CPU per request: what half the
    // proxy's rate leaves the queue's own processes once the client and the simulator have theirs,
    // beside what the bare queue's take for the same hop.
    const cpuOf = (mode: Mode, names?: string[]) => [...cpuPerRequest(mode)].filter(([k]) => names === undefined || names.includes(k)).reduce((a, [, v]) => a + v, 0);
    const shared = ['client', 'simulator'];
    const budget = 2 * cpuOf('proxy') - cpuOf('gateway', shared);
    console.log(
      `   CPU budget: the proxy's path ${cpuOf('proxy').toFixed(2)} ms a request, the gateway's ${cpuOf('gateway').toFixed(2)}; 0.5x leaves gateway + worker + Redis ${budget.toFixed(2)} ms ` +
        `(they take ${cpuOf('gateway', ['gateway', 'worker', 'redis']).toFixed(2)}; the bare queue's front + back + Redis ${cpuOf('bare', ['bare front', 'bare back', 'redis']).toFixed(2)})`,
    );
    for (const [kind, n] of errorKinds) console.log(`   error x${n}: ${kind}`);
    console.log(`\nload average at end ${loadavg().map((l) => l.toFixed(1)).join(' / ')}`);
  } finally {
    await stopAll(procs);
    for (const c of children) c.kill('SIGTERM');
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
