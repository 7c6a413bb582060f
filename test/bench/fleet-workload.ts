/**
 * The fleet bench's workload, generated once from a seed and replayed identically in every mode:
 * a LOW backlog loaded before the clock starts (it spends the provider's full burst bucket and
 * keeps the LOW lane over 1000 jobs), then Poisson arrivals over four lanes with log-normal
 * prompt sizes, so input tokens/min (ITPM) is the limit that binds, not requests/min.
 */

export const MODEL = 'claude-sonnet-4-6';
export const LANES = ['CRITICAL', 'HIGH', 'NORMAL', 'LOW'] as const;
export type BenchLane = (typeof LANES)[number];

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number, got ${raw}`);
  return value;
};

const share = (name: string): number => {
  const value = num(name, 0);
  if (value >= 1) throw new RangeError(`${name} must be below 1 (the share of each prompt in the cached block), got ${value}`);
  return value;
};

export interface BenchSettings {
  /** Worker processes per mode (Headroom workers, or BullMQ worker processes for the baselines). */
  workers: number;
  /** Concurrent calls per process. */
  concurrency: number;
  /** Offered arrivals, jobs/s, for the whole offered phase. */
  rate: number;
  /** Arrivals before the measured window: the burst bucket is spent here. */
  warmupSec: number;
  /** The measured (saturated) window. */
  measureSec: number;
  /** After the window: waiting jobs are cancelled, running ones get this long to end. */
  drainSec: number;
  /** LOW jobs enqueued before the clock starts. */
  preload: number;
  /** Offered input tokens / the ITPM limit. */
  overload: number;
  /** Lane mix in percent (CRITICAL/HIGH/NORMAL/LOW). */
  mix: Record<BenchLane, number>;
  /** Log-normal prompt size in words: median and sigma of the underlying normal. */
  promptMedian: number;
  promptSigma: number;
  promptMax: number;
  maxTokens: number;
  latencyMs: { min: number; max: number };
  seed: number;
  /** Modes to run, by key (headroom, bullmq, limiter). */
  modes: string[];
  /**
   * Share of each prompt's input moved into one system block shared by every job and marked
   * `cache_control: { type: 'ephemeral' }` (0 = no system block, the plain workload).
   */
  cachedShare: number;
}

export function benchSettings(): BenchSettings {
  const mix = (process.env.BENCH_MIX ?? '5/15/30/50').split('/').map(Number);
  if (mix.length !== 4 || mix.some((m) => !(m >= 0))) throw new RangeError('BENCH_MIX must look like 5/15/30/50');
  const [latMin, latMax] = (process.env.BENCH_LATENCY_MS ?? '200-600').split('-').map(Number);
  return {
    workers: num('BENCH_WORKERS', 4),
    concurrency: num('BENCH_CONCURRENCY', 16),
    rate: num('BENCH_RATE', 30),
    warmupSec: num('BENCH_WARMUP_SECONDS', 10),
    measureSec: num('BENCH_SECONDS', 30),
    drainSec: num('BENCH_DRAIN_SECONDS', 30),
    preload: num('BENCH_PRELOAD', 2000),
    overload: num('BENCH_OVERLOAD', 2),
    mix: { CRITICAL: mix[0]!, HIGH: mix[1]!, NORMAL: mix[2]!, LOW: mix[3]! },
    promptMedian: num('BENCH_PROMPT_MEDIAN', 800),
    promptSigma: num('BENCH_PROMPT_SIGMA', 1),
    promptMax: num('BENCH_PROMPT_MAX', 16_000),
    maxTokens: num('BENCH_MAX_TOKENS', 512),
    latencyMs: { min: latMin ?? 200, max: latMax ?? latMin ?? 600 },
    seed: num('BENCH_SEED', 42),
    modes: (process.env.BENCH_MODES ?? 'headroom,bullmq,limiter').split(',').map((s) => s.trim()).filter(Boolean),
    cachedShare: share('BENCH_CACHED_SHARE'),
  };
}

/** One job of the workload. `at` is ms after the clock starts (negative = preloaded backlog). */
export interface JobSpec {
  seq: number;
  lane: BenchLane;
  at: number;
  /** Words of the job's own user message. */
  words: number;
  seed: number;
  /** Words of the shared cached system block the request carries (0 = none). */
  systemWords: number;
  /** Input tokens as the simulator counts them, system block included (filled by calibration). */
  tokens: number;
  /** Of `tokens`, those in the cached system block: read from cache once it is written (filled by calibration). */
  cachedTokens: number;
}

export interface Workload {
  preload: JobSpec[];
  arrivals: JobSpec[];
}

// mulberry32: small, seedable, fast.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function normal(random: () => number): number {
  // Box-Muller; 1 - u keeps log() away from 0.
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

export function buildWorkload(s: BenchSettings): Workload {
  const random = prng(s.seed);
  const size = () => Math.max(8, Math.min(s.promptMax, Math.round(s.promptMedian * Math.exp(s.promptSigma * normal(random)))));
  const total = LANES.reduce((sum, l) => sum + s.mix[l], 0);
  const pickLane = (): BenchLane => {
    let r = random() * total;
    for (const lane of LANES) {
      r -= s.mix[lane];
      if (r < 0) return lane;
    }
    return 'LOW';
  };
  let seq = 0;
  const preload: JobSpec[] = [];
  const job = (lane: BenchLane, at: number): JobSpec => ({ seq: seq++, lane, at, words: size(), seed: Math.floor(random() * 2 ** 32), systemWords: 0, tokens: 0, cachedTokens: 0 });
  for (let i = 0; i < s.preload; i++) preload.push(job('LOW', -1));
  const arrivals: JobSpec[] = [];
  const endMs = (s.warmupSec + s.measureSec) * 1000;
  // Poisson arrivals: exponential gaps.
  for (let t = -Math.log(1 - random()) * (1000 / s.rate); t < endMs; t += -Math.log(1 - random()) * (1000 / s.rate)) {
    arrivals.push(job(pickLane(), t));
  }
  if (s.cachedShare > 0) splitCached([...preload, ...arrivals], arrivals, s.cachedShare);
  return { preload, arrivals };
}

/**
 * Moves `share` of the mean prompt into one system block every job carries: the block is
 * `share` x the arrivals' mean prompt in words, and each job's own message keeps `1 - share` of
 * its drawn size, so the mean prompt is unchanged and, on the mean, `share` of it is cacheable.
 * The draws are made before the split, so the same seed gives the same jobs at any share.
 */
function splitCached(all: JobSpec[], arrivals: JobSpec[], share: number): void {
  const meanWords = arrivals.reduce((t, j) => t + j.words, 0) / Math.max(1, arrivals.length);
  const systemWords = Math.round(meanWords * share);
  for (const spec of all) {
    spec.systemWords = systemWords;
    spec.words = Math.max(1, Math.round(spec.words * (1 - share)));
  }
}

// Common words that are one token each (with their leading space) in cl100k and o200k alike.
const VOCAB = (
  'the of and to in is was for on that with as by at from his her they this which or had not are but be have ' +
  'one all were there been has when who will more no out so said what up its about into than them can only ' +
  'other new some could time these two may then do first any my now such like our over man me even most made ' +
  'after also did many before must through back years where much your way well down should because each just ' +
  'those people how too little state good very make world still own see men work long get here between both ' +
  'life being under never day same another know while last might us great old year off come since against go ' +
  'came right used take three states himself few house use during without again place around however home small ' +
  'found thought went say part once general high upon school every does got united left number course war until ' +
  'always away something fact though water less public put think almost hand enough far took head yet government'
).split(' ');

/** The prompt text of a job: `words` words drawn from the job's own seed, so every mode sends the same bytes. */
export function promptOf(spec: JobSpec): string {
  const random = prng(spec.seed);
  const words = new Array<string>(spec.words + 1);
  words[0] = `Job ${spec.seq} (${spec.lane}): summarise.`;
  for (let i = 1; i <= spec.words; i++) words[i] = VOCAB[Math.floor(random() * VOCAB.length)]!;
  return words.join(' ');
}

// The shared block's text depends on its size only, so every job (and every mode) sends the same
// bytes and the provider's cache, keyed on the exact prefix, serves them all from one entry.
const SYSTEM_SEED = 0x5eed;
const systemTexts = new Map<number, string>();
export function systemTextOf(words: number): string {
  let text = systemTexts.get(words);
  if (text === undefined) {
    const random = prng(SYSTEM_SEED);
    const out = new Array<string>(words + 1);
    out[0] = 'Shared instructions for every job:';
    for (let i = 1; i <= words; i++) out[i] = VOCAB[Math.floor(random() * VOCAB.length)]!;
    text = out.join(' ');
    systemTexts.set(words, text);
  }
  return text;
}

// A type alias, not an interface: the producer's request type has an index signature.
export type BenchRequest = {
  model: string;
  max_tokens: number;
  system?: { type: 'text'; text: string; cache_control: { type: 'ephemeral' } }[];
  messages: { role: 'user'; content: string }[];
};

/** The provider-native request body, identical in every mode. */
export function requestOf(spec: JobSpec, maxTokens: number): BenchRequest {
  const messages: BenchRequest['messages'] = [{ role: 'user', content: promptOf(spec) }];
  if (spec.systemWords === 0) return { model: MODEL, max_tokens: maxTokens, messages };
  return { model: MODEL, max_tokens: maxTokens, system: [{ type: 'text', text: systemTextOf(spec.systemWords), cache_control: { type: 'ephemeral' } }], messages };
}
