/**
 * A rerun's wait on the answer an earlier attempt is still relaying. That attempt's worker lost
 * the job mid-stream (its lock lapsed: Redis away, or the worker paused, longer than
 * `dispatch.lockMs`) but not its provider call, which runs on and keeps writing to the job's relay:
 * the client reads it there as before, and that worker settles the bucket for the call. The
 * rerun cannot answer again (the client has part of this answer), so it waits for the relay's
 * end and completes the job with it (relayed-answer.ts), or for its error and fails with it.
 *
 * Whether the rest may still come is decided from real signals, never a guess: the relay's `start`
 * names the worker writing it, and that worker's heartbeat (telemetry/heartbeat.ts) says whether
 * it lives, and whether its call for this job still runs: each beat lists the jobs whose relay the
 * worker's calls are writing (relaying-jobs.ts). New entries count as life too. The writer is given
 * up on when its heartbeat is gone (it stopped cleanly: its calls ended), or has stayed expired for
 * a heartbeat interval while nothing was written (a worker cut off by a Redis pause beats again
 * within one interval once Redis is back); when it beats on but a beat written after the relay's
 * first entry no longer lists the job: its call ended without ending the relay (Redis refused a
 * relay write, which stops the call, and the error event its worker then writes did not reach the
 * relay), so a quiet relay is given up on one beat after the call ended, not after the provider's
 * call timeout; when the relay is gone (expired `RELAY_TTL_MS` after its last write, or Redis
 * lost it); or after the provider's stream timeout, which bounds the earlier call itself. (A job its
 * caller cancels meanwhile ends CANCELLED: its flag refuses the earlier attempt's writes.) The
 * caller then fails the job and writes its error event to the relay, which ends it: the relay
 * refuses the earlier attempt's next write (CLOSED, lua/relay-2.lua), so a call still running
 * stops there and settles for what it produced.
 */
import { checkRelay, duplicateFor, HEARTBEAT_INTERVAL_MS, readRelayAfter, relayWriterOf, reportOutages, type JobFailure, type LlmJob, type RelayEntry } from '@headroom/queue';
import { callLifeOf } from './plan.js';
import type { JobMeta, RunContext } from './run-context.js';

/** How long one read waits for the next entry before the writer's liveness is checked again. */
export const FOLLOW_READ_MS = 1_000;

export type Followed =
  /** The relay reached its end: `entries` hold the whole answer, its start first. */
  | { kind: 'ended'; entries: RelayEntry[] }
  /** The earlier attempt's stream failed after its first event: its error entry, with the job's failure. */
  | { kind: 'failed'; failure: JobFailure }
  /** The rest will not come: why, and how many provider events the client has. */
  | { kind: 'stopped'; why: string; events: number }
  /** Its caller cancelled the job (its cancel flag is set). */
  | { kind: 'cancelled' }
  /** This rerun was stopped (its worker's shutdown, or its caller's cancel). */
  | { kind: 'aborted' };

export async function followRelay(ctx: RunContext, job: LlmJob, meta: JobMeta, signal: AbortSignal): Promise<Followed> {
  const { prefix } = ctx.config.redis;
  // Blocking reads hold a connection: one of its own, only for the rare rerun that follows.
  const conn = duplicateFor(ctx.redis, 'worker');
  const stopReporting = reportOutages(conn, ctx.logger, 'relay-follow');
  const onAbort = () => conn.disconnect();
  signal.addEventListener('abort', onAbort, { once: true });
  const entries: RelayEntry[] = [];
  const events = () => entries.filter((e) => e.event.kind === 'event').length;
  const startedAt = ctx.now();
  let livedAt = startedAt;
  try {
    for (let after = '0-0'; ; ) {
      if (signal.aborted) return { kind: 'aborted' };
      const read = await readRelayAfter(conn, prefix, meta.id, after, FOLLOW_READ_MS).catch((err: unknown) => {
        if (signal.aborted) return [];
        throw err;
      });
      if (read.length > 0) {
        entries.push(...read);
        after = read.at(-1)!.id;
        livedAt = ctx.now();
        const last = read.at(-1)!.event;
        if (last.kind === 'end') return { kind: 'ended', entries };
        if (last.kind === 'error') return { kind: 'failed', failure: last.failure };
        continue;
      }
      if (signal.aborted) return { kind: 'aborted' };
      const quiet = await whileQuiet(ctx, job, meta, entries, { startedAt, livedAt });
      if (quiet === 'alive') livedAt = ctx.now();
      else if (quiet === 'cancelled') return { kind: 'cancelled' };
      else if (quiet !== undefined) return { kind: 'stopped', why: quiet, events: events() };
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    stopReporting();
    conn.disconnect();
  }
}

/**
 * What a quiet relay says: `alive` (its writer beats), `cancelled` (its caller cancelled the job,
 * which this worker may not have heard: the earlier attempt's writes are refused, so no end
 * comes), why the rest will not come, or undefined while it may still come.
 */
async function whileQuiet(
  ctx: RunContext,
  job: LlmJob,
  meta: JobMeta,
  entries: readonly RelayEntry[],
  times: { startedAt: number; livedAt: number },
): Promise<string | 'alive' | 'cancelled' | undefined> {
  const { prefix } = ctx.config.redis;
  const now = ctx.now();
  const timeoutMs = callLifeOf(ctx.config, job);
  if (now - times.startedAt > timeoutMs) return `its relay did not end within the provider's stream timeout (${timeoutMs} ms)`;
  // The relay's own checks, nothing written: `open` is a relay that is gone.
  const relay = await checkRelay(ctx.redis, prefix, meta.id);
  if (relay === 'cancelled') return 'cancelled';
  if (relay === 'open') return 'its relay is gone (expired after its last write, or Redis lost it)';
  const writer = await relayWriterOf(ctx.redis, prefix, meta.id, entries[0]);
  if (writer.state === 'writing') return 'alive';
  if (writer.state === 'stopped') return writer.why;
  if (now - times.livedAt > HEARTBEAT_INTERVAL_MS + FOLLOW_READ_MS) return `its worker ${writer.worker} is dead: its heartbeat expired and its relay stalled`;
  return undefined;
}
