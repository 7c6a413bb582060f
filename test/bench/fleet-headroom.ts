/**
 * Headroom in the fleet bench: `headroom worker` processes (test/support/fleet.ts) sharing one
 * bucket in Redis, and a Producer enqueueing into the four lanes. Waits are read from each
 * result's `timings`; everything is read through the public Producer API, except lane counts
 * (a BullMQ Queue on the lane's keys) and the bucket's counters (Bucket.snapshot).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Producer, type LlmResult } from '@headroom/producer-sdk';
import { Bucket, INTERACTIVE_LANES, laneKeys, type InteractiveLane } from '@headroom/queue';
import type { Simulator } from '@headroom/simulator';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { cpuSecondsOf, mapLimit, sleep, type JobOutcome, type ModeDriver } from './fleet-mode.js';
import { MODEL, requestOf, type BenchSettings, type JobSpec } from './fleet-workload.js';
import type { EmbeddedRedis } from '@headroom/testing';

const PREFIX = 'bench';
const KEY_ENV = 'FLEET_BENCH_ANTHROPIC_KEY';

export interface HeadroomModeOptions {
  settings: BenchSettings;
  limits: { rpm: number; itpm: number; otpm: number };
  sim: Simulator;
  redis: EmbeddedRedis;
  /** Told how to kill the processes as soon as they are spawned, so an interrupted start leaves none behind. */
  track?: (kill: () => Promise<void>) => void;
}

export async function startHeadroom({ settings, limits, sim, redis, track }: HeadroomModeOptions): Promise<ModeDriver> {
  const config = writeConfig({
    redis: { prefix: PREFIX },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
    models: { [MODEL]: { provider: 'anthropic', limits } },
    dispatch: { concurrency: settings.concurrency },
  });
  const workers: FleetProcess[] = Array.from({ length: settings.workers }, (_, n) =>
    spawnWorker(config, redis.url, `bench-w${n + 1}`, { [KEY_ENV]: 'sk-bench-headroom' }),
  );
  track?.(() => stopAll(workers, 'SIGKILL'));
  const admin = new Redis(redis.url, { maxRetriesPerRequest: null });
  const lanes = new Map<InteractiveLane, Queue>(
    INTERACTIVE_LANES.map((lane) => {
      const k = laneKeys(PREFIX, lane);
      return [lane, new Queue(k.queueName, { connection: admin, prefix: k.bullPrefix })];
    }),
  );
  // Ready = every process has its four lane Workers connected (BullMQ names their connections).
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const exited = workers.find((w) => w.child.exitCode !== null);
      if (exited) throw new Error(`headroom worker ${exited.id} exited during start:\n${exited.output()}`);
      const names = (await lanes.get('low')!.getWorkers()).map((w) => String(w.rawname ?? ''));
      if (workers.every((w) => names.some((n) => n.endsWith(`:w:${w.id}`)))) break;
      if (Date.now() > deadline) throw new Error(`headroom workers not ready after 60 s:\n${workers.map((w) => w.output()).join('\n')}`);
      await sleep(200);
    }
  } catch (err) {
    await stopAll(workers, 'SIGKILL');
    await Promise.all([...lanes.values()].map((q) => q.close()));
    admin.disconnect();
    throw err;
  }
  const producer = new Producer({ redis: redis.url, prefix: PREFIX, connectTimeoutMs: 10_000 });
  const bucket = new Bucket(admin, { prefix: PREFIX });
  let maxUtilization = 0;

  const countOf = async (lane: InteractiveLane, ...types: ('wait' | 'prioritized' | 'delayed' | 'active')[]) => {
    const counts = await lanes.get(lane)!.getJobCounts(...types);
    return Object.values(counts).reduce((a, b) => a + b, 0);
  };

  return {
    async enqueue(spec: JobSpec) {
      const handle = await producer.enqueue({
        priority: spec.lane,
        provider: 'anthropic',
        request: requestOf(spec, settings.maxTokens),
        metadata: { seq: spec.seq },
      });
      return handle.id;
    },
    async lowBacklog() {
      // Piggybacks a bucket read on the backlog sample: pressure (what sheds LOW) can never exceed
      // the bucket's utilization, so its maximum says whether shedding could have started.
      const snap = await bucket.snapshot(MODEL, limits);
      for (const d of snap.dimensions) maxUtilization = Math.max(maxUtilization, 1 - d.level / d.capacity);
      return countOf('low', 'wait', 'prioritized', 'delayed');
    },
    async cancelWaiting() {
      const ids: string[] = [];
      for (const queue of lanes.values()) {
        const jobs = await queue.getJobs(['wait', 'prioritized', 'delayed'], 0, -1);
        ids.push(...jobs.map((j) => j.id!).filter(Boolean));
      }
      const removed = await mapLimit(ids, 32, (id) => producer.cancel(id));
      return ids.filter((_, i) => removed[i]);
    },
    async unfinished() {
      let n = 0;
      for (const lane of INTERACTIVE_LANES) n += await countOf(lane, 'wait', 'prioritized', 'delayed', 'active');
      return n;
    },
    async outcome(id, _lane, cancelled): Promise<JobOutcome> {
      const info = await producer.getJob(id);
      if (!info) return cancelled ? { state: 'cancelled' } : { state: 'lost', detail: 'missing' };
      if (info.state === 'completed') {
        const result = info.result as LlmResult;
        return { state: 'completed', waitMs: result.timings.waitMs, attempts: result.attempts };
      }
      if (info.state === 'failed') return { state: 'failed', detail: info.failedReason ?? '' };
      return { state: 'lost', detail: info.state };
    },
    async notes() {
      const snap = await bucket.snapshot(MODEL, limits);
      const c = snap.counters;
      const fmt = (o: Record<string, number | undefined>) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ') || '-';
      const lines = [
        `bucket grants by lane: ${fmt(c.grants)}; waits by reason: ${fmt(c.waits)}; never-fits: ${fmt(c.neverFits)}`,
        `bucket header syncs lowered: ${fmt(c.lowered)}; cooldowns set: ${c.cooldownsSet}`,
        `bucket utilization (1 - level/capacity, most drawn dimension), sampled every 0.5 s: max ${(maxUtilization * 100).toFixed(0)}%`,
      ];
      const warnings = workers.flatMap((w) => w.output().split('\n').filter((l) => l.trim() !== '').map((l) => `${w.id}: ${l}`));
      if (warnings.length > 0) lines.push(`worker log (warn+): ${warnings.length} lines; first: ${warnings.slice(0, 3).join(' | ').slice(0, 600)}`);
      return lines;
    },
    cpuSeconds: () => workers.reduce((t, w) => t + cpuSecondsOf(w.child.pid), 0),
    async close() {
      await producer.close();
      await stopAll(workers);
      await Promise.all([...lanes.values()].map((q) => q.close()));
      admin.disconnect();
    },
  };
}
