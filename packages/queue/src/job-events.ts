/**
 * A streamed job's events on their way from the worker to whoever waits on the job. The worker
 * appends them to a Redis stream per job (`relayEvents`, lua/relay-2.lua) as they arrive from
 * the provider; the producer SDK, and through it the gateway, reads that stream (XREAD BLOCK).
 *
 * Why a stream per job rather than pub/sub or a list:
 * - bounded memory with a slow reader: the entries wait in Redis, at most one answer's worth
 *   (`max_tokens` events), and the reader asks for the next ones only once its client took the
 *   last; neither the worker nor the gateway buffers more than one read;
 * - a reader that loses its connection resumes from the last entry id it saw and misses nothing
 *   (pub/sub would drop what was sent meanwhile); a reader that starts late reads from the start;
 * - no leftover keys: the reader deletes the stream once it has read the end and the job has
 *   ended (not before: a rerun of a job whose worker lost it after the end completes it from the
 *   relay, worker's relayed-answer.ts), and it expires `RELAY_TTL_MS` after the worker's last
 *   write if nobody does.
 *
 * Entries, one field each: `s` the start (the model answering, the wait), `e` one provider event
 * (its JSON, as the provider sent it), `x` the provider-shaped error event a stream ended with after
 * its first event, with the job's failure, `d` the end of a complete stream (its value: what a rerun
 * needs to rebuild the answer that the client was not sent, see `JobEvent`).
 */
import type { Cluster, Redis } from 'ioredis';
import { failureText, type JobFailure } from './failure.js';
import type { ProviderApi } from './job.js';
import { fleetKeys, laneKeys } from './keys.js';
import { laneOfJobId } from './job-ids.js';
import { runScript } from './scripts.js';

/** A stream expires this long after the worker's last write unless its reader deleted it. */
export const RELAY_TTL_MS = 5 * 60_000;
/** A cancel flag outlives any job that could still be taken or running when it was set. */
export const CANCEL_FLAG_TTL_MS = 60 * 60_000;

export type JobEvent =
  /**
   * The first entry: the model that answers (a fallback may), how long the job waited, and the
   * provider's id for the call when it sent one (see `LlmResult.providerRequestId`). `worker`: the
   * id of the worker writing it (its heartbeat's, telemetry/heartbeat.ts), so that a rerun of a
   * job this worker lost mid-stream can tell whether the rest of the answer may still come.
   */
  | { kind: 'start'; model: string; waitMs: number; startedAt: number; providerRequestId?: string; worker?: string }
  /** One provider event, as JSON text: an Anthropic SSE event's data, an OpenAI chunk. */
  | { kind: 'event'; data: string }
  /** The stream failed after its first event: the provider's error event (JSON) and the job's failure. */
  | { kind: 'error'; data: string; failure: JobFailure }
  /**
   * The stream is complete. `withheld`: a provider event the client was not sent but the answer
   * needs (the Chat Completions usage chunk a client did not ask for), as JSON, so that a rerun of
   * a job whose worker lost it after the end can rebuild the answer from the relay (`readRelayAfter`).
   */
  | { kind: 'end'; withheld?: string };

/** The entry a stream that failed after its first event ends with, written as its job is failed (lane-finish.ts). */
export type StreamErrorEvent = Extract<JobEvent, { kind: 'error' }>;

const FIELD = { start: 's', event: 'e', error: 'x', end: 'd' } as const;

/** The entry's field and value, as lua/relay-2.lua takes them. */
export function encodeJobEvent(event: JobEvent): [string, string] {
  switch (event.kind) {
    case 'start':
      return [FIELD.start, JSON.stringify({ model: event.model, waitMs: event.waitMs, startedAt: event.startedAt, providerRequestId: event.providerRequestId, worker: event.worker })];
    case 'event':
      return [FIELD.event, event.data];
    case 'error':
      return [FIELD.error, JSON.stringify({ data: event.data, failure: event.failure })];
    case 'end':
      return [FIELD.end, event.withheld ?? ''];
  }
}

/** One stream entry back as an event; undefined for an entry this version does not know. */
export function decodeJobEvent(field: string, value: string): JobEvent | undefined {
  switch (field) {
    case FIELD.event:
      return { kind: 'event', data: value };
    case FIELD.start: {
      const { model, waitMs, startedAt, providerRequestId, worker } = JSON.parse(value) as { model: string; waitMs: number; startedAt: number; providerRequestId?: unknown; worker?: unknown };
      return { kind: 'start', model, waitMs, startedAt, ...(typeof providerRequestId === 'string' ? { providerRequestId } : {}), ...(typeof worker === 'string' ? { worker } : {}) };
    }
    case FIELD.error: {
      const { data, failure } = JSON.parse(value) as { data: string; failure: JobFailure };
      return { kind: 'error', data, failure };
    }
    case FIELD.end:
      return value === '' ? { kind: 'end' } : { kind: 'end', withheld: value };
    default:
      return undefined;
  }
}

/** lua/relay-2.lua's replies below zero. */
export const RelayReply = { CANCELLED: -1, TAKEN: -2, LOST: -3, CLOSED: -4 } as const;
export type RelayOutcome = 'written' | 'cancelled' | 'taken' | 'lost' | 'closed';

function keysOf(prefix: string, jobId: string) {
  const lane = laneOfJobId(jobId);
  if (!lane) throw new Error(`job id ${jobId} names no lane`);
  return laneKeys(prefix, lane);
}

/** The key of a job's event stream. */
export function jobEventsKey(prefix: string, jobId: string): string {
  return keysOf(prefix, jobId).jobEvents(jobId);
}

/**
 * Appends events to the job's stream in one call. `first` marks an attempt's first write, which
 * is refused (`taken`) when an earlier attempt already streamed; a later one (`lost`) when the
 * stream is gone (Redis lost it) or has ended already (`closed`: the job was ended without this
 * attempt); every write is refused (`cancelled`) once the job's caller has cancelled it.
 */
export async function relayEvents(
  redis: Redis | Cluster,
  prefix: string,
  jobId: string,
  events: readonly JobEvent[],
  options: { first: boolean; ttlMs?: number },
): Promise<RelayOutcome> {
  const k = keysOf(prefix, jobId);
  const args: string[] = [String(options.ttlMs ?? RELAY_TTL_MS), options.first ? '1' : '0'];
  for (const event of events) args.push(...encodeJobEvent(event));
  const reply = await runScript<number>(redis, 'relay', [k.jobEvents(jobId), k.jobCancel(jobId)], args);
  if (reply === RelayReply.CANCELLED) return 'cancelled';
  if (reply === RelayReply.TAKEN) return 'taken';
  if (reply === RelayReply.LOST) return 'lost';
  if (reply === RelayReply.CLOSED) return 'closed';
  return 'written';
}

/** Whether an attempt's first write would be taken: `open`, or why not. */
export type RelayCheck = 'open' | Exclude<RelayOutcome, 'written'>;

/**
 * The checks of an attempt's first write (`relayEvents` with `first`), with nothing written: a
 * worker asks before its provider call, so a job whose relay is already refused (an earlier
 * attempt streamed part of an answer, or its caller cancelled it) fails without a call whose
 * answer could never be relayed. The first write still checks: an earlier attempt whose worker
 * lost the job but runs on may write between the two.
 */
export async function checkRelay(redis: Redis | Cluster, prefix: string, jobId: string): Promise<RelayCheck> {
  const outcome = await relayEvents(redis, prefix, jobId, [], { first: true });
  return outcome === 'written' ? 'open' : outcome;
}

/** One entry of a job's relay read back, with its stream id and when Redis appended it (the id's milliseconds, by Redis's clock). */
export interface RelayEntry {
  id: string;
  event: JobEvent;
  atMs: number;
}

/**
 * The entries of a job's relay after `afterId` (`'0-0'`: from the start), oldest first, waiting up
 * to `blockMs` for one when there is none yet (XREAD BLOCK: give it a connection of its own, it
 * holds the connection meanwhile). An empty list: nothing new in that time, or no stream. A rerun
 * reads it to follow an earlier attempt's answer to its end (the worker's relay-follow.ts); the
 * stream is per job and expires after `RELAY_TTL_MS`, so it holds one answer's events at most.
 * Entries this version does not know are left out.
 */
export async function readRelayAfter(redis: Redis | Cluster, prefix: string, jobId: string, afterId: string, blockMs: number): Promise<RelayEntry[]> {
  const reply = await redis.xread('COUNT', 1024, 'BLOCK', blockMs, 'STREAMS', jobEventsKey(prefix, jobId), afterId);
  return relayEntriesOf(reply?.[0]?.[1] ?? []);
}

/** A job's relay's first entry (its `start`, once written), read now; undefined when the relay is gone or empty. */
export async function firstRelayEntry(redis: Redis | Cluster, prefix: string, jobId: string): Promise<RelayEntry | undefined> {
  return relayEntriesOf(await redis.xrange(jobEventsKey(prefix, jobId), '-', '+', 'COUNT', 1))[0];
}

function relayEntriesOf(entries: [id: string, fields: string[]][]): RelayEntry[] {
  const read: RelayEntry[] = [];
  for (const [id, fields] of entries) {
    const event = decodeJobEvent(fields[0] ?? '', fields[1] ?? '');
    if (event) read.push({ id, event, atMs: Number(id.split('-')[0]) });
  }
  return read;
}

/**
 * Marks a job cancelled, for a worker that has taken it or is about to: the flag stops its stream
 * at the next write, and the message on the fleet's cancel channel aborts its call at once (before
 * the provider call, when it has not started). A caller's cancel sets the flag in the call that
 * finds the job started and unshared (lane-cancel.ts), then only publishes (`publishCancel`).
 */
export async function flagCancelled(redis: Redis | Cluster, prefix: string, jobId: string): Promise<void> {
  const k = keysOf(prefix, jobId);
  await redis.set(k.jobCancel(jobId), '1', 'PX', CANCEL_FLAG_TTL_MS);
  await publishCancel(redis, prefix, jobId);
}

/** Tells the fleet's workers at once that a job flagged cancelled is to stop (its worker aborts its call). */
export async function publishCancel(redis: Redis | Cluster, prefix: string, jobId: string): Promise<void> {
  await redis.publish(fleetKeys(prefix).cancelChannel, jobId);
}

/**
 * The error event a stream ends with when it broke without the provider's own (its worker died
 * mid-stream, or the job was cancelled), in the API's shape: Anthropic's SSE `error` event data,
 * OpenAI Chat Completions' `{"error": {...}}` chunk, the Responses API's `error` event (numbered
 * after the `sequence` events before it). The official SDKs throw an API error on reading each.
 */
export function errorEventOf(api: ProviderApi, failure: JobFailure, sequence: number): string {
  const message = failureText(failure);
  switch (api) {
    case 'messages':
      return JSON.stringify({ type: 'error', error: { type: 'api_error', message } });
    case 'chat':
      return JSON.stringify({ error: { message, type: 'server_error', param: null, code: null } });
    case 'responses':
      return JSON.stringify({ type: 'error', code: 'server_error', message, param: null, sequence_number: sequence });
  }
}
