/**
 * The baselines of the fleet bench: one BullMQ Queue, jobs added with a `priority` per lane
 * (1..4, never 0: 0 means "no priority" and would jump every prioritized job), worker processes
 * (fleet-baseline-worker.ts) calling the Anthropic SDK with its default retries. With `limiter`,
 * every Worker carries BullMQ's global per-queue rate limit.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { Simulator } from '@headroom/simulator';
import { spawnTsx } from '../support/fleet.js';
import type { BaselineResult } from './fleet-baseline-worker.js';
import { cpuSecondsOf, mapLimit, sleep, type JobOutcome, type ModeDriver } from './fleet-mode.js';
import { requestOf, type BenchLane, type BenchSettings, type JobSpec } from './fleet-workload.js';
import type { EmbeddedRedis } from '@headroom/testing';

const QUEUE = 'bench-llm';
const PRIORITY: Record<BenchLane, number> = { CRITICAL: 1, HIGH: 2, NORMAL: 3, LOW: 4 };
const WORKER_SCRIPT = fileURLToPath(new URL('./fleet-baseline-worker.ts', import.meta.url));

export interface BullmqModeOptions {
  settings: BenchSettings;
  sim: Simulator;
  redis: EmbeddedRedis;
  limiter?: { max: number; duration: number };
  /** Told how to kill the processes as soon as they are spawned, so an interrupted start leaves none behind. */
  track?: (kill: () => Promise<void>) => void;
}

interface BaselineProcess {
  child: ChildProcess;
  id: string;
  output(): string;
  ready: Promise<void>;
  exited: Promise<unknown>;
}

function spawnBaseline(id: string, env: Record<string, string>): BaselineProcess {
  const child = spawnTsx(WORKER_SCRIPT, [], { env: { ...process.env, ...env } });
  let out = '';
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    child.once('exit', (code) => reject(new Error(`baseline worker ${id} exited (${code}) during start:\n${out}`)));
  });
  ready.catch(() => {});
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('ready\n')) markReady();
  });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { child, id, output: () => out, ready, exited };
}

async function stopBaselines(procs: BaselineProcess[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      await p.exited;
      clearTimeout(timer);
    }),
  );
}

export async function startBullmq({ settings, sim, redis, limiter, track }: BullmqModeOptions): Promise<ModeDriver> {
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE, { connection });
  const procs = Array.from({ length: settings.workers }, (_, n) => {
    const id = `bench-b${n + 1}`;
    return spawnBaseline(id, {
      BENCH_BASELINE: JSON.stringify({
        redisUrl: redis.url,
        queue: QUEUE,
        simUrl: sim.url,
        apiKey: 'sk-bench-baseline',
        concurrency: settings.concurrency,
        ...(limiter ? { limiter } : {}),
        id,
      }),
    });
  });
  track?.(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  });
  try {
    await Promise.race([Promise.all(procs.map((p) => p.ready)), sleep(60_000).then(() => { throw new Error('baseline workers not ready after 60 s'); })]);
  } catch (err) {
    await stopBaselines(procs);
    throw err;
  }

  return {
    async enqueue(spec: JobSpec) {
      const job = await queue.add(spec.lane, { lane: spec.lane, seq: spec.seq, request: requestOf(spec, settings.maxTokens) }, { priority: PRIORITY[spec.lane] });
      return job.id!;
    },
    async lowBacklog() {
      const counts = await queue.getCountsPerPriority([PRIORITY.LOW]);
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    async cancelWaiting() {
      const jobs = await queue.getJobs(['prioritized', 'wait', 'delayed'], 0, -1);
      const removed = await mapLimit(jobs, 32, async (job) => {
        try {
          // remove() refuses a job a worker holds the lock of, so a started job is never removed.
          return (await queue.remove(job.id!)) === 1;
        } catch {
          return false;
        }
      });
      return jobs.filter((_, i) => removed[i]).map((j) => j.id!);
    },
    async unfinished() {
      const counts = await queue.getJobCounts('prioritized', 'wait', 'delayed', 'active');
      return Object.values(counts).reduce((a, b) => a + b, 0);
    },
    async outcome(id, _lane, cancelled): Promise<JobOutcome> {
      const job = await queue.getJob(id);
      if (!job) return cancelled ? { state: 'cancelled' } : { state: 'lost', detail: 'missing' };
      const state = await job.getState();
      if (state === 'completed') {
        const r = job.returnvalue as BaselineResult;
        return { state: 'completed', waitMs: Math.max(0, r.callStart - job.timestamp), attempts: r.attempts };
      }
      if (state === 'failed') {
        const match = /^BENCH(\{.*?\})/.exec(job.failedReason ?? '');
        const info = match ? (JSON.parse(match[1]!) as { attempts: number; status: number | string }) : undefined;
        return { state: 'failed', detail: info ? `${info.status} after ${info.attempts} attempts` : (job.failedReason ?? ''), ...(info ? { attempts: info.attempts } : {}) };
      }
      return { state: 'lost', detail: state };
    },
    async notes() {
      const lines: string[] = [];
      if (limiter) lines.push(`BullMQ limiter { max: ${limiter.max}, duration: ${limiter.duration} } = ${((limiter.max * 60_000) / limiter.duration).toFixed(0)} jobs/min`);
      const logs = procs.flatMap((p) => p.output().split('\n').filter((l) => l.trim() !== '' && l !== 'ready').map((l) => `${p.id}: ${l}`));
      if (logs.length > 0) lines.push(`worker log: ${logs.length} lines; first: ${logs.slice(0, 3).join(' | ').slice(0, 600)}`);
      return lines;
    },
    cpuSeconds: () => procs.reduce((t, p) => t + cpuSecondsOf(p.child.pid), 0),
    async close() {
      await stopBaselines(procs);
      await queue.close();
      connection.disconnect();
    },
  };
}
