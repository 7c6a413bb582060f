/**
 * What the fleet bench needs from each contender (Headroom, or BullMQ with a baseline setup):
 * enqueue a job, report the LOW backlog, cancel what is still waiting once the window closes,
 * say how many jobs are not finished, and read each job's end.
 */
import { readFileSync } from 'node:fs';
import type { BenchLane, JobSpec } from './fleet-workload.js';

export type EndState = 'completed' | 'failed' | 'cancelled' | 'lost';

export interface JobOutcome {
  state: EndState;
  /** Enqueue -> start of the provider call that was admitted (completed jobs only). */
  waitMs?: number;
  /** Provider calls the job made (429s included), when known. */
  attempts?: number;
  /** failed: the reason; lost: the state it was left in. */
  detail?: string;
}

export interface ModeDriver {
  enqueue(spec: JobSpec): Promise<string>;
  /** Jobs of the LOW lane not yet started. */
  lowBacklog(): Promise<number>;
  /** Removes every job not yet started; returns the ids it removed. */
  cancelWaiting(): Promise<string[]>;
  /** Jobs anywhere in the system not yet in a terminal state (waiting, delayed, active). */
  unfinished(): Promise<number>;
  outcome(id: string, lane: BenchLane, cancelled: boolean): Promise<JobOutcome>;
  /** Mode-specific lines for the report (bucket counters, worker logs). */
  notes(): Promise<string[]>;
  /** CPU seconds (user + system) the worker processes have used so far. */
  cpuSeconds(): number;
  close(): Promise<void>;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** CPU seconds (user + system) of a process, from /proc (Linux); 0 when unreadable or gone. */
export function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may contain spaces) start at state; utime and stime are the 12th and 13th of them.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
// USER_HZ: 100 on every mainstream Linux build.
const CLOCK_TICKS = 100;
