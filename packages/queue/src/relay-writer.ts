/**
 * Whether the worker writing a job's relay may still write to it: what a reader decides from when
 * the relay has gone quiet, from real signals rather than a guess at the provider's pace. The
 * relay's `start` names the worker writing it, and that worker's heartbeat (telemetry/heartbeat.ts)
 * says whether it lives and whether its call for this job still runs: each beat lists the jobs whose
 * relay the worker's calls are writing (the worker's relaying-jobs.ts). Two readers ask: a rerun
 * following an earlier attempt's relay (the worker's relay-follow.ts), and a caller reading its
 * stream (the producer's stream-guard.ts), so a worker that died or stopped writing ends both.
 */
import type { Cluster, Redis } from 'ioredis';
import type { RelayEntry } from './job-events.js';
import { heartbeatOf, type WorkerHeartbeat } from './telemetry/heartbeat.js';

export type RelayWriter =
  /** Its worker beats and its beat lists the job (or is too old, or too old a version, to tell). */
  | { state: 'writing' }
  /**
   * Its worker's heartbeat has expired: dead, or cut off from Redis (a Redis paused longer than a
   * beat's life shows every worker expired until each beats again, within one interval), so the
   * reader gives up only once the relay also stayed quiet past that interval.
   */
  | { state: 'expired'; worker: string }
  /** The rest will not come, and why. */
  | { state: 'stopped'; why: string };

/** What the worker named in a relay's `start` says of its call, one round trip. `start`: the relay's first entry, undefined when the relay is gone. */
export async function relayWriterOf(redis: Redis | Cluster, prefix: string, jobId: string, start: RelayEntry | undefined): Promise<RelayWriter> {
  if (start === undefined) return { state: 'stopped', why: 'its relay is gone (expired after its last write, or Redis lost it)' };
  const writer = start.event.kind === 'start' ? start.event.worker : undefined;
  // A relay an older version wrote names no writer: nothing tells that its rest may come.
  if (writer === undefined) return { state: 'stopped', why: 'its relay does not name the worker writing it' };
  const { state, entry } = await heartbeatOf(redis, prefix, writer);
  if (state === 'absent') return { state: 'stopped', why: `its worker ${writer} has stopped` };
  if (state === 'expired') return { state: 'expired', worker: writer };
  return relayingStill(entry, jobId, start.atMs) ? { state: 'writing' } : { state: 'stopped', why: `its worker ${writer} beats on but no longer relays it: that call ended without ending the relay` };
}

/**
 * Whether a live writer's beat leaves the job's call running. A beat lists the jobs its worker's
 * calls are relaying as of the beat: one without this job, taken at a Redis time after the relay's
 * first entry, was taken after the call began (the job is listed before its call's first write),
 * so the call has ended. An older beat, or one of a worker before the list, tells nothing: the
 * call may run on. (On a cluster the beat's time and the entry's are two nodes' clocks: the job is
 * listed before its provider request is sent, and the first entry is written only with the
 * answer's first output, a margin well beyond their usual skew.)
 */
function relayingStill(beat: WorkerHeartbeat | undefined, jobId: string, firstEntryAtMs: number): boolean {
  if (beat?.relaying === undefined || beat.atMs <= firstEntryAtMs) return true;
  return beat.relaying.includes(jobId);
}
