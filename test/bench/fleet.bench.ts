/**
 * `pnpm bench:fleet`: one overloaded workload, three ways, in one run.
 *
 *   headroom  N `headroom worker` processes sharing one Redis bucket; a Producer enqueues into
 *             the four lanes.
 *   bullmq    one BullMQ Queue with a job priority per lane (1..4), N worker processes calling the
 *             Anthropic SDK with its default retries (2, honouring retry-after); no shared bucket.
 *   limiter   the same, with BullMQ's global limiter set to the request rate at which the binding
 *             limit (ITPM) binds for this workload's mean prompt.
 *
 * Workload: a LOW backlog loaded first (it spends the provider's full-minute burst and keeps the
 * LOW lane over 1000 jobs), then Poisson arrivals (CRITICAL/HIGH/NORMAL/LOW 5/15/30/50%) with
 * log-normal prompts offering 2x the ITPM limit. Each mode gets a fresh simulator (same limits)
 * and a fresh Redis. After a warm-up the window is measured; then waiting jobs are cancelled and
 * running ones drain. Goodput comes from the simulator's admission log, 429s from its counter,
 * waits from each job (Headroom: result.timings; baselines: the processor's own timestamps).
 *
 * Env: BENCH_SECONDS (30), BENCH_WARMUP_SECONDS (10), BENCH_DRAIN_SECONDS (30), BENCH_RATE (30
 * jobs/s), BENCH_OVERLOAD (2), BENCH_PRELOAD (2000), BENCH_WORKERS (4), BENCH_CONCURRENCY (16),
 * BENCH_MIX (5/15/30/50), BENCH_PROMPT_MEDIAN (800 words), BENCH_PROMPT_SIGMA (1),
 * BENCH_MAX_TOKENS (512), BENCH_LATENCY_MS (200-600), BENCH_SEED (42),
 * BENCH_MODES (headroom,bullmq,limiter), BENCH_TIMEOUT_SECONDS (900: watchdog),
 * BENCH_CACHED_SHARE (0): the share of each prompt moved into one system block every job shares,
 * marked `cache_control: { type: 'ephemeral' }` (`pnpm bench:fleet:cached` sets 0.8, and a 40 s
 * warm-up so the window opens with the ITPM bucket's level settled, see cacheGoal). Cache reads
 * are not drawn from ITPM, so ITPM is then sized on the uncached part (see limitsFor) and the
 * report adds goodput in prompt tokens against the ideal ITPM / (1 - hit rate).
 */
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startBullmq } from './fleet-bullmq.js';
import { startHeadroom } from './fleet-headroom.js';
import { mapLimit, sleep, type ModeDriver } from './fleet-mode.js';
import { cacheGoal, figuresOf, headroomGoals, renderCacheTable, renderTable, type JobRecord, type ModeFigures, type ModeRun } from './fleet-report.js';
import { benchSettings, buildWorkload, MODEL, requestOf, type BenchSettings, type JobSpec, type Workload } from './fleet-workload.js';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

type Limits = { rpm: number; itpm: number; otpm: number };

const settings = benchSettings();
const workload = buildWorkload(settings);
const startedAt = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);

// Whatever happens (an error, Ctrl-C, the watchdog), the worker processes, simulator and Redis of
// the mode in progress are stopped before the bench exits.
const cleanups = new Set<() => Promise<void>>();
async function cleanUpAndExit(code: number, why: string): Promise<never> {
  log(`${why}: stopping the mode in progress`);
  await Promise.race([Promise.allSettled([...cleanups].map((c) => c())), sleep(20_000)]);
  process.exit(code);
}
process.once('SIGINT', () => void cleanUpAndExit(130, 'SIGINT'));
process.once('SIGTERM', () => void cleanUpAndExit(143, 'SIGTERM'));
const watchdogSec = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 900);
setTimeout(() => void cleanUpAndExit(1, `watchdog: still running after ${watchdogSec} s`), watchdogSec * 1000).unref();

/**
 * Input tokens of every prompt as the simulator counts them. Its count_tokens endpoint (no quota
 * drawn) counts a sample; the vocabulary is one token a word, so tokens = a + b * words fits the
 * sample exactly enough (the worst miss is printed) and saves counting thousands of prompts.
 */
async function calibrate(w: Workload, s: BenchSettings): Promise<string> {
  const all = [...w.preload, ...w.arrivals];
  const sample = all.filter((_, i) => i % Math.max(1, Math.floor(all.length / 200)) === 0);
  const sim = await startSimulator({ latencyMs: 0 });
  const counted: number[] = [];
  let cachedTokens = 0;
  try {
    const count = async (spec: JobSpec) => {
      const { max_tokens: _, ...body } = requestOf(spec, s.maxTokens);
      const res = await fetch(`${sim.url}/v1/messages/count_tokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': 'sk-calibrate', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`count_tokens: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { input_tokens: number }).input_tokens;
    };
    await mapLimit(sample, 8, async (spec, i) => {
      counted[i] = await count(spec);
    });
    // The shared block's own tokens (what a cache hit reads): one job counted with and without it.
    const first = all[0];
    if (first && first.systemWords > 0) cachedTokens = (await count(first)) - (await count({ ...first, systemWords: 0 }));
  } finally {
    await sim.close();
  }
  for (const spec of all) spec.cachedTokens = spec.systemWords > 0 ? cachedTokens : 0;
  // Least squares: tokens = a + b * words.
  const n = sample.length;
  const mx = sample.reduce((t, j) => t + j.words, 0) / n;
  const my = counted.reduce((t, c) => t + c, 0) / n;
  let sxy = 0;
  let sxx = 0;
  sample.forEach((j, i) => {
    sxy += (j.words - mx) * (counted[i]! - my);
    sxx += (j.words - mx) ** 2;
  });
  const b = sxy / sxx;
  const a = my - b * mx;
  for (const spec of all) spec.tokens = Math.round(a + b * spec.words);
  const worst = Math.max(...sample.map((j, i) => Math.abs(Math.round(a + b * j.words) - counted[i]!) / counted[i]!));
  const cached = cachedTokens > 0 ? `; the shared cached system block (${all[0]!.systemWords} words) is ${cachedTokens} of them` : '';
  return `input tokens = ${a.toFixed(1)} + ${b.toFixed(4)} x words (fit on ${n} prompts counted by the simulator, worst miss ${(worst * 100).toFixed(2)}%)${cached}`;
}

/**
 * ITPM binds: the arrivals offer `overload` times it. RPM and OTPM are sized so they do not bind.
 *
 * With a cached share, ITPM is sized on the uncached tokens (each prompt less the shared block),
 * because cache reads are not drawn from it: the arrivals then offer `overload` x ITPM after
 * caching, and the request rate at which ITPM binds stays rate / overload whatever the share (the
 * limit shrinks with the uncached mean prompt), so RPM (3x that rate) and OTPM (max_tokens at
 * that rate) stay as slack as in the plain workload. The offered prompts, cache reads included,
 * are then overload / (1 - share) x ITPM.
 */
function limitsFor(w: Workload, s: BenchSettings): { limits: Limits; meanTokens: number; bindingRpm: number } {
  const offeredSec = s.warmupSec + s.measureSec;
  const tokens = w.arrivals.reduce((sum, j) => sum + j.tokens - j.cachedTokens, 0);
  const meanTokens = tokens / Math.max(1, w.arrivals.length);
  const itpm = Math.round(((tokens / offeredSec) * 60) / s.overload / 1000) * 1000;
  // The request rate at which ITPM binds for this workload's mean prompt.
  const bindingRpm = itpm / meanTokens;
  return {
    limits: {
      itpm,
      rpm: Math.ceil((bindingRpm * 3) / 100) * 100,
      // Even if every call used all of max_tokens, output would only just bind; real output is far less.
      otpm: Math.ceil((bindingRpm * s.maxTokens) / 1000) * 1000,
    },
    meanTokens,
    bindingRpm,
  };
}

type Starter = (sim: Simulator, redis: EmbeddedRedis, track: (kill: () => Promise<void>) => void) => Promise<ModeDriver>;

async function runMode(name: string, limits: Limits, start: Starter): Promise<ModeRun> {
  const s = settings;
  const redis = await startEmbeddedRedis();
  const sim = await startSimulator({
    models: { [MODEL]: { provider: 'anthropic', limits } },
    latencyMs: s.latencyMs,
    admissionLogSize: 1_000_000,
  });
  let driver: ModeDriver | undefined;
  let kill: (() => Promise<void>) | undefined;
  let closing: Promise<void> | undefined;
  const cleanup = () => {
    closing ??= (async () => {
      await driver?.close().catch((err: Error) => log(`${name}: close failed: ${err.message}`));
      await kill?.().catch(() => {});
      await sim.close().catch(() => {});
      await redis.stop().catch(() => {});
    })();
    return closing;
  };
  cleanups.add(cleanup);
  try {
    log(`${name}: starting ${s.workers} worker processes`);
    driver = await start(sim, redis, (k) => { kill = k; });
    const d = driver;
    const jobs: JobRecord[] = [];
    const enqueue = async (record: JobRecord) => {
      jobs.push(record);
      try {
        record.id = await d.enqueue(record.spec);
      } catch (err) {
        record.refused = (err as { code?: string }).code ?? (err as Error).message;
      }
    };

    log(`${name}: preloading ${workload.preload.length} LOW jobs`);
    const cpuAtReady = d.cpuSeconds();
    const preloadStart = Date.now();
    await mapLimit(workload.preload, 32, (spec) => enqueue({ spec, enqueuedAt: Date.now() }));
    const t0 = Date.now();
    const window = { from: t0 + s.warmupSec * 1000, to: t0 + (s.warmupSec + s.measureSec) * 1000 };
    log(`${name}: offering ${s.rate} jobs/s for ${s.warmupSec} s warm-up + ${s.measureSec} s measured`);

    const lowBacklog: { t: number; n: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = Date.now();
        lowBacklog.push({ t, n: await d.lowBacklog() });
        await sleep(Math.max(0, 500 - (Date.now() - t)));
      }
    })();
    let simAtStart = sim.stats();
    const atStart = setTimeout(() => { simAtStart = sim.stats(); }, Math.max(0, window.from - Date.now()));

    const pending: Promise<void>[] = [];
    for (const spec of workload.arrivals) {
      const due = t0 + spec.at - Date.now();
      if (due > 0) await sleep(due);
      pending.push(enqueue({ spec, enqueuedAt: Date.now() }));
    }
    await Promise.all(pending);
    if (window.to > Date.now()) await sleep(window.to - Date.now());
    const simAtEnd = sim.stats();
    sampling = false;
    await sampler;
    clearTimeout(atStart);
    const late = jobs.filter((j) => j.spec.at >= 0 && j.enqueuedAt - (t0 + j.spec.at) > 100).length;

    // Drain: what has not started is cancelled (and counted as such); what runs must end.
    log(`${name}: window over; cancelling waiting jobs, draining the rest (up to ${s.drainSec} s)`);
    const cancelled = new Set<string>();
    const drainStart = Date.now();
    for (;;) {
      for (const id of await d.cancelWaiting()) cancelled.add(id);
      const left = await d.unfinished();
      if (left === 0 || Date.now() - drainStart > s.drainSec * 1000) break;
      await sleep(250);
    }
    const drainMs = Date.now() - drainStart;
    const workerCpu = d.cpuSeconds() - cpuAtReady;
    const runSec = (Date.now() - preloadStart) / 1000;
    await mapLimit(jobs, 32, async (job) => {
      if (job.id !== undefined) job.outcome = await d.outcome(job.id, job.spec.lane, cancelled.has(job.id));
    });
    const notes = await d.notes();
    const completed = jobs.filter((j) => j.outcome?.state === 'completed').length;
    notes.push(`worker processes used ${workerCpu.toFixed(1)} CPU s over ${runSec.toFixed(0)} s (${((workerCpu / runSec) * 100).toFixed(0)}% of a core; ${((workerCpu * 1000) / Math.max(1, completed)).toFixed(1)} ms per completed job)`);
    notes.push(`${late} of ${workload.arrivals.length} arrivals enqueued more than 100 ms behind schedule; LOW preload took ${((t0 - preloadStart) / 1000).toFixed(1)} s`);
    const simFinal = sim.stats();
    log(`${name}: done (drain ${(drainMs / 1000).toFixed(1)} s)`);
    return { name, limits, window, simAtStart, simAtEnd, simFinal, jobs, lowBacklog, drainMs, notes };
  } finally {
    await cleanup();
    cleanups.delete(cleanup);
  }
}

log(`counting the workload's prompts (${workload.preload.length + workload.arrivals.length} jobs)`);
const calibration = await calibrate(workload, settings);
const { limits, meanTokens, bindingRpm } = limitsFor(workload, settings);
// BullMQ's limiter counts jobs, not tokens: give it the job rate at which ITPM binds, in windows of about a second.
const limiterMax = Math.max(1, Math.round(bindingRpm / 60));
const limiter = { max: limiterMax, duration: Math.round((limiterMax * 60_000) / bindingRpm) };

const MODES: Record<string, { label: string; start: Starter }> = {
  headroom: { label: 'headroom', start: (sim, redis, track) => startHeadroom({ settings, limits, sim, redis, track }) },
  bullmq: { label: 'bullmq priority+SDK retries', start: (sim, redis, track) => startBullmq({ settings, sim, redis, track }) },
  limiter: { label: 'bullmq limiter+SDK retries', start: (sim, redis, track) => startBullmq({ settings, sim, redis, limiter, track }) },
};

const runs: ModeRun[] = [];
for (const key of settings.modes) {
  const mode = MODES[key];
  if (!mode) throw new Error(`unknown mode ${key} in BENCH_MODES (headroom, bullmq, limiter)`);
  try {
    runs.push(await runMode(mode.label, limits, mode.start));
  } catch (err) {
    log(`${mode.label} failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  }
}

const figures: ModeFigures[] = runs.map(figuresOf);
const s = settings;
console.log(`
fleet bench: ${MODEL} limits RPM ${limits.rpm} / ITPM ${limits.itpm} / OTPM ${limits.otpm} (ITPM binds at ~${bindingRpm.toFixed(0)} req/min)
workload: ${s.rate} jobs/s Poisson, lanes CRITICAL/HIGH/NORMAL/LOW ${s.mix.CRITICAL}/${s.mix.HIGH}/${s.mix.NORMAL}/${s.mix.LOW}%, log-normal prompts (mean ${meanTokens.toFixed(0)} ${s.cachedShare > 0 ? `uncached input tokens + ${workload.arrivals[0]?.cachedTokens ?? 0} in the shared cached system block, ${(s.cachedShare * 100).toFixed(0)}% of the mean prompt` : 'input tokens'}, median ${s.promptMedian} words, sigma ${s.promptSigma}), max_tokens ${s.maxTokens}
${calibration}
offered ${s.overload}x ITPM for ${s.warmupSec} s warm-up + ${s.measureSec} s measured, after a ${s.preload}-job LOW preload; ${s.workers} processes x ${s.concurrency} concurrent calls per mode; simulator latency ${s.latencyMs.min}-${s.latencyMs.max} ms
goodput = input tokens the simulator admitted in the window / ITPM; unused = refill the simulator's ITPM bucket lost while full in the window;
ITPM bucket = the simulator's ITPM bucket level (replayed from its admission log) at the window's start -> end; above 100% goodput = bucket drawn down;
429 rate = simulator refused429 / calls (whole run; "in win" = inside the window); refused = refused at enqueue (QUEUE_FULL, SHED);
cancelled = not started when the window closed (removed by the bench);
lost = accepted - completed - failed - cancelled; never = the percentile falls on a job not served (failed, or still waiting at the window's end)
`);
console.log(renderTable(figures));
if (s.cachedShare > 0) console.log(`\n${renderCacheTable(figures, limits.itpm)}`);
for (const [i, run] of runs.entries()) {
  const f = figures[i]!;
  console.log(`\n${run.name}: drain ${(run.drainMs / 1000).toFixed(1)} s`);
  for (const [reason, n] of Object.entries(f.failedDetail)) console.log(`  failed ${n}: ${reason}`);
  for (const note of run.notes) console.log(`  ${note}`);
}
const headroom = figures.find((f) => f.name === 'headroom');
if (headroom) {
  console.log('\nHeadroom goals');
  console.log(headroomGoals(headroom).join('\n'));
  if (s.cachedShare > 0) console.log(cacheGoal(headroom));
}
log(`bench finished in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
process.exit(0);
