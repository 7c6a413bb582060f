/**
 * Figures of one fleet-bench mode, computed from what the simulator admitted (its admission log
 * and 429 counter) and from each job's end, and the table that compares the modes.
 */
import type { SimulatorStats } from '@headroom/simulator';
import type { EndState, JobOutcome } from './fleet-mode.js';
import { LANES, MODEL, type BenchLane, type JobSpec } from './fleet-workload.js';

export interface JobRecord {
  spec: JobSpec;
  /** When enqueue was called (bench clock = simulator clock: same process). */
  enqueuedAt: number;
  id?: string;
  /** Refused at enqueue (QUEUE_FULL, SHED...): never accepted, so never counted as lost. */
  refused?: string;
  outcome?: JobOutcome;
}

export interface ModeRun {
  name: string;
  limits: { rpm: number; itpm: number; otpm: number };
  window: { from: number; to: number };
  /** Simulator stats at the window's start, at its end, and after the drain. */
  simAtStart: SimulatorStats;
  simAtEnd: SimulatorStats;
  simFinal: SimulatorStats;
  jobs: JobRecord[];
  lowBacklog: { t: number; n: number }[];
  drainMs: number;
  notes: string[];
}

export interface ModeFigures {
  name: string;
  /** Admitted per second in the window / limit per second, per dimension. */
  utilization: { rpm: number; itpm: number; otpm: number };
  /** Utilization of the binding dimension (ITPM in this workload). */
  goodput: number;
  /** The simulator's ITPM bucket, replayed from its admission log: level at the window's ends (fraction of capacity). */
  itpmLevel: { start: number; end: number; min: number };
  /** Refill the simulator's ITPM bucket could not hold (it was full) in the window, as a fraction of the window's refill. */
  unusedRefill: number;
  calls: number;
  refused429: number;
  rate429: number;
  windowCalls: number;
  windowRefused429: number;
  windowRate429: number;
  counts: Record<EndState | 'accepted' | 'refused', number>;
  /** Per lane, jobs enqueued inside the window: waits in ms, Infinity = never served. */
  waits: Record<BenchLane, number[]>;
  lowBacklogMin: number;
  lowBacklogMax: number;
  meanAttempts: number;
  lostDetail: string[];
  failedDetail: Record<string, number>;
  cache: CacheFigures;
}

/**
 * Goodput counted in prompt tokens, cache reads included, against what ITPM allows when reads
 * are free of it: at a hit rate h (the share of admitted prompt tokens read from the cache) a
 * full ITPM serves ITPM / (1 - h) prompt tokens a minute. The ratio of the two is, by algebra, the
 * ITPM utilization itself; it is printed in these terms because that is the claim being checked.
 */
export interface CacheFigures {
  /** Prompt tokens admitted per minute in the window: uncached + cache writes + cache reads. */
  promptPerMin: number;
  /** Of those, per minute: cache writes (drawn from ITPM) and cache reads (not drawn). */
  writesPerMin: number;
  readsPerMin: number;
  /** cache reads / prompt tokens admitted in the window. */
  hitRate: number;
  /** ITPM / (1 - hitRate). */
  idealPerMin: number;
  /** promptPerMin / idealPerMin. */
  ratio: number;
  /**
   * Tokens the window drew from the simulator's ITPM bucket (its level fell), as a share of the
   * window's refill. The simulator admits no more than refill + what its bucket held, so
   * ratio = 1 - unused refill + drawn: an excess over the ideal is this burst, never a sustained rate.
   */
  drawn: number;
  /** Over the whole run: cache-write tokens, and the calls that wrote (all in flight before the first write ended). */
  runWrites: number;
  runWriteCalls: number;
}

function modelStats(stats: SimulatorStats): { admitted: number; refused429: number; cacheWrites: number } {
  const m = stats.models[MODEL];
  return { admitted: m?.admitted ?? 0, refused429: m?.refused429 ?? 0, cacheWrites: m?.cacheCreationTokens ?? 0 };
}

/**
 * Replays the simulator's ITPM bucket from its admission log. Input tokens are charged at
 * admission and never refunded, so the replay is exact: the bucket starts full at the first
 * admission and refills at limit/60 per second, capped at the limit.
 */
export function replayItpm(run: ModeRun): { start: number; end: number; min: number; overflow: number } {
  const cap = run.limits.itpm;
  const perMs = cap / 60_000;
  const { from, to } = run.window;
  const log = run.simFinal.admissions.filter((a) => a.model === MODEL).sort((a, b) => a.t - b.t);
  let level = cap;
  let at = log[0]?.t ?? from;
  let start = Number.NaN;
  let end = Number.NaN;
  let min = Number.POSITIVE_INFINITY;
  let overflow = 0;
  // Refill up to `t`; refill that would overflow the capacity inside the window is counted as unused.
  const advance = (t: number) => {
    if (t <= at) return;
    const inWindow = Math.max(0, Math.min(t, to) - Math.max(at, from));
    const room = cap - level;
    const refill = (t - at) * perMs;
    if (refill > room && inWindow > 0) {
      // The bucket fills at `at + room/perMs`; what comes after that and inside the window is lost.
      const fullAt = at + room / perMs;
      overflow += Math.max(0, Math.min(t, to) - Math.max(fullAt, from)) * perMs;
    }
    level = Math.min(cap, level + refill);
    at = t;
  };
  for (const a of log) {
    if (Number.isNaN(start) && a.t >= from) { advance(from); start = level; }
    if (Number.isNaN(end) && a.t >= to) { advance(to); end = level; }
    advance(a.t);
    level -= a.input;
    if (a.t >= from && a.t < to) min = Math.min(min, level);
  }
  if (Number.isNaN(start)) { advance(from); start = level; }
  if (Number.isNaN(end)) { advance(to); end = level; }
  return { start: start / cap, end: end / cap, min: min / cap, overflow };
}

export function figuresOf(run: ModeRun): ModeFigures {
  const { from, to } = run.window;
  const seconds = (to - from) / 1000;
  let requests = 0;
  let input = 0;
  let cacheRead = 0;
  let output = 0;
  for (const a of run.simFinal.admissions) {
    if (a.model !== MODEL || a.t < from || a.t >= to) continue;
    requests += 1;
    // `input` is what ITPM drew: plain input and cache writes. Cache reads are apart.
    input += a.input;
    cacheRead += a.cacheRead;
    output += a.output;
  }
  const utilization = {
    rpm: requests / ((run.limits.rpm / 60) * seconds),
    itpm: input / ((run.limits.itpm / 60) * seconds),
    otpm: output / ((run.limits.otpm / 60) * seconds),
  };
  const final = modelStats(run.simFinal);
  const atStart = modelStats(run.simAtStart);
  const atEnd = modelStats(run.simAtEnd);
  const windowRefused = atEnd.refused429 - atStart.refused429;
  const windowCalls = requests + windowRefused;

  const counts = { accepted: 0, refused: 0, completed: 0, failed: 0, cancelled: 0, lost: 0 };
  const waits = Object.fromEntries(LANES.map((l) => [l, [] as number[]])) as Record<BenchLane, number[]>;
  const lostDetail: string[] = [];
  const failedDetail: Record<string, number> = {};
  let attempts = 0;
  let attempted = 0;
  for (const job of run.jobs) {
    if (job.refused !== undefined) {
      counts.refused += 1;
      continue;
    }
    counts.accepted += 1;
    const o = job.outcome ?? { state: 'lost', detail: 'no outcome read' };
    counts[o.state] += 1;
    if (o.state === 'lost' && lostDetail.length < 5) lostDetail.push(`${job.id} (${job.spec.lane}): ${o.detail}`);
    if (o.state === 'failed') {
      const key = (o.detail ?? '').slice(0, 60);
      failedDetail[key] = (failedDetail[key] ?? 0) + 1;
    }
    if (o.state === 'completed' && o.attempts !== undefined) {
      attempts += o.attempts;
      attempted += 1;
    }
    if (job.enqueuedAt >= from && job.enqueuedAt < to) {
      waits[job.spec.lane].push(o.state === 'completed' && o.waitMs !== undefined ? o.waitMs : Number.POSITIVE_INFINITY);
    }
  }
  const inWindow = run.lowBacklog.filter((s) => s.t >= from && s.t <= to).map((s) => s.n);
  const replay = replayItpm(run);
  const perMin = (tokens: number) => (tokens / seconds) * 60;
  const hitRate = cacheRead / Math.max(1, input + cacheRead);
  const idealPerMin = run.limits.itpm / (1 - hitRate);
  // Cache writes are counted by the simulator at admission, so the counters at the window's ends bound them.
  const writes = atEnd.cacheWrites - atStart.cacheWrites;
  const drawnDown = (replay.start - replay.end) * run.limits.itpm;
  const cache: CacheFigures = {
    promptPerMin: perMin(input + cacheRead),
    writesPerMin: perMin(writes),
    readsPerMin: perMin(cacheRead),
    hitRate,
    idealPerMin,
    ratio: perMin(input + cacheRead) / idealPerMin,
    drawn: perMin(drawnDown) / run.limits.itpm,
    runWrites: final.cacheWrites,
    runWriteCalls: run.simFinal.admissions.filter((a) => a.model === MODEL && a.cacheRead === 0 && a.input > 0).length,
  };
  return {
    name: run.name,
    utilization,
    goodput: utilization.itpm,
    itpmLevel: { start: replay.start, end: replay.end, min: replay.min },
    unusedRefill: replay.overflow / ((run.limits.itpm / 60) * seconds),
    calls: final.admitted + final.refused429,
    refused429: final.refused429,
    rate429: final.refused429 / Math.max(1, final.admitted + final.refused429),
    windowCalls,
    windowRefused429: windowRefused,
    windowRate429: windowRefused / Math.max(1, windowCalls),
    counts,
    waits,
    lowBacklogMin: inWindow.length ? Math.min(...inWindow) : Number.NaN,
    lowBacklogMax: inWindow.length ? Math.max(...inWindow) : Number.NaN,
    meanAttempts: attempted ? attempts / attempted : Number.NaN,
    lostDetail,
    failedDetail,
    cache,
  };
}

/** Nearest-rank percentile; jobs never served rank last (as an infinite wait). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

const pct = (x: number, digits = 1) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : 'n/a');

export function fmtMs(ms: number): string {
  if (Number.isNaN(ms)) return '-';
  if (!Number.isFinite(ms)) return 'never';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 100_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.round(ms / 1000)}s`;
}

const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);

export function renderTable(all: ModeFigures[]): string {
  const lines: string[] = [];
  const w = Math.max(12, ...all.map((f) => f.name.length)) + 2;
  lines.push(
    `${pad('mode', w)}${lpad('goodput', 9)}${lpad('unused', 8)}${lpad('ITPM bucket', 14)}${lpad('429 rate', 10)}${lpad('429 in win', 12)}${lpad('accepted', 10)}${lpad('refused', 9)}${lpad('completed', 11)}${lpad('failed', 8)}${lpad('cancelled', 11)}${lpad('lost', 6)}${lpad('LOW backlog', 13)}`,
  );
  for (const f of all) {
    lines.push(
      `${pad(f.name, w)}${lpad(pct(f.goodput), 9)}${lpad(pct(f.unusedRefill), 8)}${lpad(`${pct(f.itpmLevel.start, 0)}->${pct(f.itpmLevel.end, 0)}`, 14)}${lpad(pct(f.rate429, 2), 10)}${lpad(pct(f.windowRate429, 2), 12)}${lpad(String(f.counts.accepted), 10)}${lpad(String(f.counts.refused), 9)}${lpad(String(f.counts.completed), 11)}${lpad(String(f.counts.failed), 8)}${lpad(String(f.counts.cancelled), 11)}${lpad(String(f.counts.lost), 6)}${lpad(`${f.lowBacklogMin}-${f.lowBacklogMax}`, 13)}`,
    );
  }
  lines.push('');
  lines.push('wait, enqueue -> start of the call the provider admitted, jobs enqueued in the window: p50 / p95 / p99 (served/enqueued)');
  lines.push(`${pad('mode', w)}${LANES.map((l) => lpad(l, 30)).join('')}`);
  for (const f of all) {
    const cells = LANES.map((l) => {
      const v = f.waits[l];
      const served = v.filter(Number.isFinite).length;
      return lpad(`${fmtMs(percentile(v, 0.5))} / ${fmtMs(percentile(v, 0.95))} / ${fmtMs(percentile(v, 0.99))} (${served}/${v.length})`, 30);
    });
    lines.push(`${pad(f.name, w)}${cells.join('')}`);
  }
  lines.push('');
  lines.push('use of each limit in the window (admitted per second / limit per second), calls, attempts per completed job');
  for (const f of all) {
    lines.push(
      `${pad(f.name, w)}RPM ${pct(f.utilization.rpm)}  ITPM ${pct(f.utilization.itpm)}  OTPM ${pct(f.utilization.otpm)}  calls ${f.calls} (429: ${f.refused429})  attempts/job ${Number.isFinite(f.meanAttempts) ? f.meanAttempts.toFixed(2) : '-'}`,
    );
  }
  return lines.join('\n');
}

const kTok = (n: number) => `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;

/** The prompt-cache figures, for a workload whose prompts share a cached block. */
export function renderCacheTable(all: ModeFigures[], itpm: number): string {
  const w = Math.max(12, ...all.map((f) => f.name.length)) + 2;
  const lines = [
    `goodput in prompt tokens/min (uncached + cache writes + cache reads) against the ideal ITPM / (1 - hit rate), ITPM ${kTok(itpm)}/min; in the window:`,
    `${pad('mode', w)}${lpad('prompt/min', 12)}${lpad('writes/min', 12)}${lpad('reads/min', 11)}${lpad('hit rate', 10)}${lpad('ideal/min', 11)}${lpad('goodput/ideal', 15)}${lpad('unused', 8)}${lpad('drawn', 8)}${lpad('429s', 7)}`,
  ];
  for (const f of all) {
    const c = f.cache;
    lines.push(
      `${pad(f.name, w)}${lpad(kTok(c.promptPerMin), 12)}${lpad(kTok(c.writesPerMin), 12)}${lpad(kTok(c.readsPerMin), 11)}${lpad(pct(c.hitRate), 10)}${lpad(kTok(c.idealPerMin), 11)}${lpad(pct(c.ratio), 15)}${lpad(pct(f.unusedRefill), 8)}${lpad(pct(c.drawn), 8)}${lpad(String(f.refused429), 7)}`,
    );
  }
  for (const f of all) lines.push(`${f.name}: over the whole run ${kTok(f.cache.runWrites)} cache-write tokens; ${f.cache.runWriteCalls} calls read nothing from the cache (the first ones, in flight before the first write ended)`);
  lines.push('goodput/ideal = 100% - unused + drawn, where unused = ITPM refill lost while the simulator\'s bucket was full and drawn = what the window took from the bucket\'s level (both as a share of the window\'s ITPM refill)');
  return lines.join('\n');
}

/**
 * The prompt-cache goal of issue #18: goodput within 5% of ITPM / (1 - hit rate), and no 429s.
 * Below it, Headroom left the limit unused (whole-prompt reservations, a margin too wide). Above
 * it, the simulator admitted what its bucket held at the window's start (`drawn`): the lanes above
 * LOW alone offer about 1x ITPM and keep spending the reserves held for them until the level
 * settles, which a 10 s warm-up does not wait for (bench:fleet:cached warms up for 40 s).
 */
export function cacheGoal(f: ModeFigures): string {
  const c = f.cache;
  const ok = Math.abs(c.ratio - 1) <= 0.05 && f.refused429 === 0;
  const over = c.ratio > 1.05 ? `; over by the bucket's burst (${pct(c.drawn)} drawn): lengthen BENCH_WARMUP_SECONDS` : '';
  return `  ${ok ? 'PASS' : 'MISS'}  prompt tokens within 5% of ITPM / (1 - hit rate) with 0 429s: ${kTok(c.promptPerMin)}/min = ${pct(c.ratio)} of ${kTok(c.idealPerMin)}/min (hit rate ${pct(c.hitRate)}; ${pct(f.unusedRefill)} of the refill unused, ${pct(c.drawn)} drawn from the bucket, ${pct(f.itpmLevel.start, 0)} -> ${pct(f.itpmLevel.end, 0)} full); ${f.refused429} 429s${over}`;
}

export function headroomGoals(f: ModeFigures): string[] {
  const critP99 = percentile(f.waits.CRITICAL, 0.99);
  const check = (ok: boolean, text: string) => `  ${ok ? 'PASS' : 'MISS'}  ${text}`;
  return [
    check(f.goodput >= 0.95 && f.unusedRefill < 0.05, `goodput >= 95% of the binding limit (ITPM): ${pct(f.goodput)} admitted, ${pct(f.unusedRefill)} of the window's refill unused (simulator bucket ${pct(f.itpmLevel.start, 0)} -> ${pct(f.itpmLevel.end, 0)} full, min ${pct(f.itpmLevel.min, 0)})`),
    check(f.rate429 < 0.001 && f.windowRate429 < 0.001, `429 rate < 0.1%: ${pct(f.rate429, 3)} over the run, ${pct(f.windowRate429, 3)} in the window`),
    check(critP99 < 1000 && f.lowBacklogMin > 1000, `CRITICAL p99 wait < 1 s with the LOW backlog over 1000: p99 ${fmtMs(critP99)}, LOW backlog ${f.lowBacklogMin}-${f.lowBacklogMax}`),
    check(f.counts.lost === 0, `nothing lost: ${f.counts.lost} of ${f.counts.accepted} accepted${f.lostDetail.length ? ` (${f.lostDetail.join('; ')})` : ''}`),
  ];
}
