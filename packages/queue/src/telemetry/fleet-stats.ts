/**
 * Fleet-wide counters per minute in Redis, so the dashboard and `headroom status` see the whole
 * fleet, not one process: calls by status, jobs by lane and outcome, a wait histogram per lane
 * (for p95), tokens and cost. Each worker adds up locally and flushes once a second in one
 * pipeline; a minute's hash expires after two hours.
 */
import type { Cluster, Redis } from 'ioredis';
import { fleetKeys, laneKeys } from '../keys.js';
import type { Usage } from '../job.js';
import type { InteractiveLane, Lane } from '../lanes.js';

/** Upper bounds (ms) of the wait histogram's buckets; the last is open-ended. */
export const WAIT_BUCKETS_MS = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, Number.POSITIVE_INFINITY];
const TTL_SEC = 2 * 3600;
const FLUSH_MS = 1_000;

export type JobOutcome = 'completed' | 'failed' | 'shed';

export interface CallEvent {
  model: string;
  /** HTTP status, or null when no response came. */
  status: number | null;
  /**
   * A 429 that is a spend cap or a billing answer, not a rate limit: counted apart
   * (`429-spend-cap`), so the 429 rate and its alert say what they are for (traffic outside the
   * fleet, or a limit set too high), not that the organisation's money ran out.
   */
  spendCap?: boolean;
}

/** The status a spend cap's (or billing's) 429 is counted under. */
export const SPEND_CAP_STATUS = '429-spend-cap';

export interface JobEndEvent {
  lane: Lane;
  outcome: JobOutcome;
  waitMs?: number;
  model?: string;
  usage?: Usage;
  costUsd?: number;
}

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

export class FleetStatsWriter {
  private pending = new Map<string, Map<string, number>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  call(e: CallEvent): void {
    this.add(`calls:${e.model}:${e.status === 429 && e.spendCap ? SPEND_CAP_STATUS : (e.status ?? 'network')}`, 1);
  }

  jobEnded(e: JobEndEvent): void {
    this.add(`jobs:${e.lane}:${e.outcome}`, 1);
    if (e.waitMs !== undefined) {
      const i = WAIT_BUCKETS_MS.findIndex((b) => e.waitMs! <= b);
      this.add(`wait:${e.lane}:${i}`, 1);
    }
    if (e.model && e.costUsd) this.add(`cost:${e.model}`, e.costUsd);
    if (e.model && e.usage) {
      this.add(`tokens:${e.model}:input`, e.usage.inputTokens);
      this.add(`tokens:${e.model}:output`, e.usage.outputTokens);
    }
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const keys = fleetKeys(this.prefix);
    const pipe = this.redis.pipeline();
    for (const [minute, fields] of batch) {
      const key = keys.statsMinute(Number(minute));
      for (const [field, value] of fields) {
        if (Number.isInteger(value)) pipe.hincrby(key, field, value);
        else pipe.hincrbyfloat(key, field, value);
      }
      pipe.expire(key, TTL_SEC);
    }
    // Lost counters on a Redis blip are acceptable: these are for people, not for invariants.
    await pipe.exec().catch(() => {});
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private add(field: string, value: number): void {
    const minute = String(minuteOf(this.now()));
    const fields = this.pending.get(minute) ?? new Map<string, number>();
    this.pending.set(minute, fields);
    fields.set(field, (fields.get(field) ?? 0) + value);
  }
}

export interface FleetStats {
  fromMs: number;
  toMs: number;
  /** Per lane: jobs ended by outcome, and the p95 wait (upper bound of its histogram bucket). */
  lanes: Record<string, { completed: number; failed: number; shed: number; p95WaitMs: number | null }>;
  /** Per model: calls by status. */
  calls: Record<string, Record<string, number>>;
  /** Per model: tokens reported by providers. */
  tokens: Record<string, { input: number; output: number }>;
  totalCalls: number;
  calls429: number;
  /** 429s / calls over the window. */
  rate429: number;
  costUsd: number;
  /** One point per minute, oldest first. */
  series: { minute: number; calls: number; calls429: number; completed: number; costUsd: number }[];
}

/**
 * The lanes whose admission refuses jobs SHED (LOW; NORMAL with `shedding.shedNormal`): each
 * counts those per minute in its own slot (add-9.lua), beside the sheds workers count here.
 */
const ADMISSION_SHED_LANES: readonly InteractiveLane[] = ['low', 'normal'];

/** Adds up the last `minutes` minutes (the current one included). */
export async function readFleetStats(redis: Redis | Cluster, prefix: string, minutes: number, now = Date.now()): Promise<FleetStats> {
  const current = minuteOf(now);
  const keys = fleetKeys(prefix);
  const pipe = redis.pipeline();
  const window = Array.from({ length: minutes }, (_, i) => current - minutes + 1 + i);
  for (const m of window) pipe.hgetall(keys.statsMinute(m));
  // One MGET per lane (each lane is a hash slot of its own), beside the pipeline.
  const refusedSheds = Promise.all(
    ADMISSION_SHED_LANES.map(async (lane) => {
      const k = laneKeys(prefix, lane);
      const counts = minutes > 0 ? await redis.mget(window.map((m) => k.shedRefusedMinute(m))).catch(() => []) : [];
      return [lane, counts.reduce((sum, c) => sum + Number(c ?? 0), 0)] as const;
    }),
  );
  const replies = (await pipe.exec()) ?? [];
  const stats: FleetStats = { fromMs: (current - minutes + 1) * 60_000, toMs: now, lanes: {}, calls: {}, tokens: {}, totalCalls: 0, calls429: 0, rate429: 0, costUsd: 0, series: [] };
  const waits: Record<string, number[]> = {};
  replies.forEach(([err, hash], idx) => {
    const point = { minute: current - minutes + 1 + idx, calls: 0, calls429: 0, completed: 0, costUsd: 0 };
    if (!err && hash) {
      for (const [field, raw] of Object.entries(hash as Record<string, string>)) {
        const value = Number(raw);
        const [kind, a = '', b = ''] = splitField(field);
        if (kind === 'calls') {
          const byStatus = entry<Record<string, number>>(stats.calls, a, () => ({}));
          byStatus[b] = (byStatus[b] ?? 0) + value;
          point.calls += value;
          if (b === '429') point.calls429 += value;
        } else if (kind === 'jobs') {
          const lane = entry(stats.lanes, a, emptyLane);
          if (b === 'completed' || b === 'failed' || b === 'shed') lane[b] += value;
          if (b === 'completed') point.completed += value;
        } else if (kind === 'wait') {
          const hist = entry(waits, a, () => new Array<number>(WAIT_BUCKETS_MS.length).fill(0));
          hist[Number(b)] = (hist[Number(b)] ?? 0) + value;
        } else if (kind === 'tokens') {
          const t = entry(stats.tokens, a, () => ({ input: 0, output: 0 }));
          if (b === 'input' || b === 'output') t[b] += value;
        } else if (kind === 'cost') {
          point.costUsd += value;
        }
      }
    }
    stats.totalCalls += point.calls;
    stats.calls429 += point.calls429;
    stats.costUsd += point.costUsd;
    stats.series.push(point);
  });
  // Jobs refused SHED at admission are sheds too (the all-time `shed` counter holds both).
  for (const [lane, refused] of await refusedSheds) {
    if (refused > 0) entry(stats.lanes, lane, emptyLane).shed += refused;
  }
  for (const [lane, hist] of Object.entries(waits)) {
    entry(stats.lanes, lane, emptyLane).p95WaitMs = percentileOf(hist, 0.95);
  }
  stats.rate429 = stats.totalCalls > 0 ? stats.calls429 / stats.totalCalls : 0;
  return stats;
}

const emptyLane = () => ({ completed: 0, failed: 0, shed: 0, p95WaitMs: null as number | null });

function entry<T>(record: Record<string, T>, key: string, make: () => T): T {
  const existing = record[key];
  if (existing !== undefined) return existing;
  const made = make();
  record[key] = made;
  return made;
}

/** `calls:<model>:<status>`; model names may hold ':' (fine-tuned OpenAI models), the last part never does. */
function splitField(field: string): [string, string, string] {
  const first = field.indexOf(':');
  const last = field.lastIndexOf(':');
  return [field.slice(0, first), field.slice(first + 1, last), field.slice(last + 1)];
}

function percentileOf(hist: number[], q: number): number | null {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  let seen = 0;
  for (const [i, n] of hist.entries()) {
    seen += n;
    if (seen >= q * total) return WAIT_BUCKETS_MS[i] === Number.POSITIVE_INFINITY ? WAIT_BUCKETS_MS[i - 1]! : WAIT_BUCKETS_MS[i]!;
  }
  return null;
}
