/**
 * `pnpm bench:brownout`: bench:fleet's workload (four lanes, 2x the binding limit, 4 worker
 * processes, one model, no fallback) while the simulator answers 529 `overloaded_error` to a
 * fraction p of calls for 40 s of the run, for each p, Headroom beside BullMQ's limiter with the
 * SDK's own retries, in the same run.
 *
 * Each (p, mode) gets a fresh simulator and Redis. The brownout is a simulator fault window
 * armed when arrivals start: from BROWNOUT_FROM_SECONDS for BROWNOUT_SECONDS. Printed per lane:
 * p50 / p95 / p99 wait to a successful call (enqueue -> start of the call that was served) of the
 * jobs enqueued during the brownout, over those that completed, with how many failed; then
 * provider calls per success, jobs failed, lost, 429s, and the calls the provider got per
 * second during the brownout (past its first 5 s: the probes, at p = 1).
 *
 * Env: BROWNOUT_P (0.3,0.5,0.9,1.0), BROWNOUT_FROM_SECONDS (40), BROWNOUT_SECONDS (40),
 * BENCH_SECONDS (150: arrivals), BENCH_MODES (headroom,limiter), and bench:fleet's workload
 * settings (BENCH_RATE, BENCH_MIX, BENCH_WORKERS, ...; fleet-workload.ts).
 */
import { startSimulator, type Simulator, type SimulatorStats } from '@headroom/simulator';
import { startEmbeddedRedis } from '@headroom/testing';
import { startBullmq } from './fleet-bullmq.js';
import { startHeadroom } from './fleet-headroom.js';
import { mapLimit, sleep, type JobOutcome, type ModeDriver } from './fleet-mode.js';
import { fmtMs, percentile } from './fleet-report.js';
import { benchSettings, buildWorkload, LANES, MODEL, type BenchLane, type JobSpec } from './fleet-workload.js';

process.env.BENCH_SECONDS ??= '150';
process.env.BENCH_WARMUP_SECONDS ??= '0';
process.env.BENCH_MODES ??= 'headroom,limiter';
const settings = benchSettings();
const workload = buildWorkload(settings);
const P = (process.env.BROWNOUT_P ?? '0.3,0.5,0.9,1.0').split(',').map(Number);
const FROM_MS = Number(process.env.BROWNOUT_FROM_SECONDS ?? 40) * 1000;
const SPAN_MS = Number(process.env.BROWNOUT_SECONDS ?? 40) * 1000;
const startedAt = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
const cleanups = new Set<() => Promise<void>>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping`);
    void Promise.race([Promise.allSettled([...cleanups].map((c) => c())), sleep(20_000)]).then(() => process.exit(130));
  });
}
setTimeout(() => {
  log('watchdog: still running after its time; stopping');
  void Promise.race([Promise.allSettled([...cleanups].map((c) => c())), sleep(20_000)]).then(() => process.exit(1));
}, Number(process.env.BENCH_TIMEOUT_SECONDS ?? 3600) * 1000).unref();

// bench:fleet sizes ITPM so the arrivals offer `overload` times it; prompts are counted roughly
// here (the simulator's vocabulary is one token a word, plus the first line and framing).
const offeredSec = settings.warmupSec + settings.measureSec;
const tokensOf = (j: JobSpec) => j.words + 12;
const meanTokens = workload.arrivals.reduce((t, j) => t + tokensOf(j), 0) / workload.arrivals.length;
const itpm = Math.round(((workload.arrivals.reduce((t, j) => t + tokensOf(j), 0) / offeredSec) * 60) / settings.overload / 1000) * 1000;
const bindingRpm = itpm / meanTokens;
const limits = { itpm, rpm: Math.ceil((bindingRpm * 3) / 100) * 100, otpm: Math.ceil((bindingRpm * settings.maxTokens) / 1000) * 1000 };
const limiterMax = Math.max(1, Math.round(bindingRpm / 60));
const limiter = { max: limiterMax, duration: Math.round((limiterMax * 60_000) / bindingRpm) };

interface Run {
  p: number;
  mode: string;
  jobs: { spec: JobSpec; enqueuedAt: number; id?: string; refused?: string; outcome?: JobOutcome }[];
  t0: number;
  stats: { atFrom: SimulatorStats; atFromPlus5: SimulatorStats; atTo: SimulatorStats; final: SimulatorStats };
}

const calls = (s: SimulatorStats) => s.requestsByPath['POST /v1/messages'] ?? 0;
const served = (s: SimulatorStats) => s.models[MODEL]?.admitted ?? 0;
const refused429 = (s: SimulatorStats) => s.models[MODEL]?.refused429 ?? 0;

async function runOne(p: number, mode: 'headroom' | 'limiter'): Promise<Run> {
  const redis = await startEmbeddedRedis();
  const sim: Simulator = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits } }, latencyMs: settings.latencyMs, admissionLogSize: 10 });
  let driver: ModeDriver | undefined;
  let kill: (() => Promise<void>) | undefined;
  const cleanup = async () => {
    await driver?.close().catch(() => {});
    await kill?.().catch(() => {});
    await sim.close().catch(() => {});
    await redis.stop().catch(() => {});
  };
  cleanups.add(cleanup);
  try {
    const track = (k: () => Promise<void>) => { kill = k; };
    driver = mode === 'headroom' ? await startHeadroom({ settings, limits, sim, redis, track }) : await startBullmq({ settings, sim, redis, limiter, track });
    const d = driver;
    const jobs: Run['jobs'] = [];
    const enqueue = async (job: Run['jobs'][number]) => {
      jobs.push(job);
      try {
        job.id = await d.enqueue(job.spec);
      } catch (err) {
        job.refused = (err as { code?: string }).code ?? (err as Error).message;
      }
    };
    log(`p=${p} ${mode}: preloading ${workload.preload.length} LOW jobs`);
    await mapLimit(workload.preload, 32, (spec) => enqueue({ spec, enqueuedAt: Date.now() }));
    const t0 = Date.now();
    sim.injectFaults({ model: MODEL, overloaded: true, probability: p, fromMs: FROM_MS, durationMs: SPAN_MS });
    const snaps: Partial<Run['stats']> = {};
    const timers = [
      setTimeout(() => { snaps.atFrom = sim.stats(); }, FROM_MS),
      setTimeout(() => { snaps.atFromPlus5 = sim.stats(); }, FROM_MS + 5_000),
      setTimeout(() => { snaps.atTo = sim.stats(); }, FROM_MS + SPAN_MS),
    ];
    log(`p=${p} ${mode}: offering ${settings.rate} jobs/s for ${settings.measureSec} s; 529 to ${p * 100}% of calls from ${FROM_MS / 1000} s for ${SPAN_MS / 1000} s`);
    const pending: Promise<void>[] = [];
    for (const spec of workload.arrivals) {
      const due = t0 + spec.at - Date.now();
      if (due > 0) await sleep(due);
      pending.push(enqueue({ spec, enqueuedAt: Date.now() }));
    }
    await Promise.all(pending);
    const end = t0 + settings.measureSec * 1000;
    if (end > Date.now()) await sleep(end - Date.now());
    // Drain: what has not started is cancelled (and counted as such); what runs must end.
    const cancelled = new Set<string>();
    const drainStart = Date.now();
    for (;;) {
      for (const id of await d.cancelWaiting()) cancelled.add(id);
      if ((await d.unfinished()) === 0 || Date.now() - drainStart > settings.drainSec * 1000) break;
      await sleep(250);
    }
    for (const t of timers) clearTimeout(t);
    await mapLimit(jobs, 32, async (job) => {
      if (job.id !== undefined) job.outcome = await d.outcome(job.id, job.spec.lane, cancelled.has(job.id));
    });
    const final = sim.stats();
    log(`p=${p} ${mode}: done`);
    return { p, mode, jobs, t0, stats: { atFrom: snaps.atFrom ?? final, atFromPlus5: snaps.atFromPlus5 ?? final, atTo: snaps.atTo ?? final, final } };
  } finally {
    await cleanup();
    cleanups.delete(cleanup);
  }
}

const runs: Run[] = [];
for (const p of P) {
  for (const mode of settings.modes as ('headroom' | 'limiter')[]) {
    if (mode !== 'headroom' && mode !== 'limiter') throw new Error(`unknown mode ${mode} (headroom, limiter)`);
    runs.push(await runOne(p, mode));
  }
}

const pad = (s: string, n: number) => s.padStart(n);
console.log(`
brownout bench: ${MODEL} limits RPM ${limits.rpm} / ITPM ${limits.itpm} / OTPM ${limits.otpm} (ITPM binds at ~${bindingRpm.toFixed(0)} req/min)
workload: bench:fleet's (${settings.rate} jobs/s Poisson, CRITICAL/HIGH/NORMAL/LOW ${LANES.map((l) => settings.mix[l]).join('/')}%, ${settings.overload}x ITPM, ${settings.preload}-job LOW preload), ${settings.measureSec} s of arrivals, ${settings.workers} processes x ${settings.concurrency}
brownout: 529 overloaded_error to a fraction p of calls from ${FROM_MS / 1000} s to ${(FROM_MS + SPAN_MS) / 1000} s; one model, no fallback
baseline "limiter": BullMQ's global limiter at the ITPM-binding job rate (${limiter.max} per ${limiter.duration} ms) + the Anthropic SDK's own retries (2, with its backoff)
wait = enqueue -> start of the call that was served, jobs enqueued during the brownout, over those that completed: p50 / p95 / p99 (completed/failed/enqueued)
calls/success = provider calls (529s included) / calls served, whole run; probes/s = calls per second the provider got in the brownout past its first 5 s
`);
const header = `${'p'.padEnd(5)}${'mode'.padEnd(10)}${LANES.map((l) => pad(l, 34)).join('')}${pad('calls/succ', 12)}${pad('failed', 8)}${pad('lost', 6)}${pad('429s', 6)}${pad('calls/s in', 12)}`;
console.log(header);
const critP99: Record<string, number> = {};
const perSuccess: Record<string, number> = {};
for (const r of runs) {
  const inWindow = r.jobs.filter((j) => j.enqueuedAt >= r.t0 + FROM_MS && j.enqueuedAt < r.t0 + FROM_MS + SPAN_MS && j.id !== undefined);
  const cells = LANES.map((lane: BenchLane) => {
    const of = inWindow.filter((j) => j.spec.lane === lane);
    const done = of.filter((j) => j.outcome?.state === 'completed').map((j) => j.outcome!.waitMs ?? 0);
    const failed = of.filter((j) => j.outcome?.state === 'failed').length;
    if (lane === 'CRITICAL') critP99[`${r.p}:${r.mode}`] = percentile(done, 0.99);
    return pad(`${fmtMs(percentile(done, 0.5))} / ${fmtMs(percentile(done, 0.95))} / ${fmtMs(percentile(done, 0.99))} (${done.length}/${failed}/${of.length})`, 34);
  });
  const accepted = r.jobs.filter((j) => j.id !== undefined);
  const failed = accepted.filter((j) => j.outcome?.state === 'failed').length;
  const lost = accepted.filter((j) => j.outcome === undefined || j.outcome.state === 'lost').length;
  const ratio = calls(r.stats.final) / Math.max(1, served(r.stats.final));
  perSuccess[`${r.p}:${r.mode}`] = ratio;
  const inBrownout = (calls(r.stats.atTo) - calls(r.stats.atFromPlus5)) / ((SPAN_MS - 5_000) / 1000);
  console.log(`${String(r.p).padEnd(5)}${r.mode.padEnd(10)}${cells.join('')}${pad(ratio.toFixed(2), 12)}${pad(String(failed), 8)}${pad(String(lost), 6)}${pad(String(refused429(r.stats.final)), 6)}${pad(inBrownout.toFixed(1), 12)}`);
  // Jobs still waiting when the bench stopped, whenever they came: a fleet that stops serving a
  // lane after the brownout shows here, where the columns above (brownout-window jobs) may not.
  const waiting = LANES.map((lane: BenchLane) => `${lane} ${accepted.filter((j) => j.spec.lane === lane && j.outcome?.state === 'cancelled').length}`);
  console.log(`${''.padEnd(15)}still waiting when the bench stopped (cancelled): ${waiting.join(', ')}`);
  const reasons = new Map<string, number>();
  for (const j of accepted) if (j.outcome?.state === 'failed') reasons.set((j.outcome.detail ?? '').slice(0, 70), (reasons.get((j.outcome.detail ?? '').slice(0, 70)) ?? 0) + 1);
  for (const [reason, n] of reasons) console.log(`${''.padEnd(15)}failed ${n}: ${reason}`);
}

console.log('\nGoals');
const check = (ok: boolean, text: string) => console.log(`  ${ok ? 'PASS' : 'MISS'}  ${text}`);
if (P.includes(0.5)) {
  const h = critP99['0.5:headroom'] ?? Number.NaN;
  const b = critP99['0.5:limiter'] ?? Number.NaN;
  check(h <= 2_000 && (Number.isNaN(b) || h < b), `p = 0.5: CRITICAL p99 <= 2 s and below the baseline's: ${fmtMs(h)} against ${fmtMs(b)}`);
  const hs = perSuccess['0.5:headroom'] ?? Number.NaN;
  const bs = perSuccess['0.5:limiter'] ?? Number.NaN;
  check(Number.isNaN(bs) || hs <= bs, `p = 0.5: calls per success no worse than the baseline's: ${hs.toFixed(2)} against ${bs.toFixed(2)}`);
}
const full = runs.find((r) => r.p === 1 && r.mode === 'headroom');
if (full) {
  const perSec = (calls(full.stats.atTo) - calls(full.stats.atFromPlus5)) / ((SPAN_MS - 5_000) / 1000);
  check(perSec <= 1.5, `p = 1.0: about one probe per second fleet-wide during the outage: ${perSec.toFixed(2)} calls/s`);
  const accepted = full.jobs.filter((j) => j.id !== undefined);
  const lost = accepted.filter((j) => j.outcome === undefined || j.outcome.state === 'lost').length;
  check(lost === 0, `p = 1.0: every job completed, failed with a reason, or was cancelled at the end: ${lost} lost of ${accepted.length}`);
}
const headroom429 = runs.filter((r) => r.mode === 'headroom').reduce((t, r) => t + refused429(r.stats.final), 0);
check(headroom429 === 0, `0 429s throughout (Headroom): ${headroom429}`);
log(`bench finished in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
process.exit(0);
