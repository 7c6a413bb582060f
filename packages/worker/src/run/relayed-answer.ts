/**
 * The answer an earlier attempt of a streamed job relayed whole, rebuilt from the relay for a
 * rerun. The attempt streamed it to the end, then lost the job before recording it: its lock
 * lapsed while Redis was away (longer than `dispatch.lockMs`), so its finish was refused and the
 * job ran again. The client has that whole answer; it is the job's, so the rerun completes the
 * job from it, with no provider call, instead of failing it STREAM_FAILED. A reader that read the
 * end leaves the relay until the job has ended (the producer's job-stream.ts), so the rerun finds
 * it however fast the client read. An attempt still streaming when the job ran again is followed
 * to its end first (relay-follow.ts).
 *
 * The relay holds the `start` (model, provider request id, wait, when the call started), each
 * provider event as the client was sent it, and the `end` with what the client was not sent but
 * the answer needs (`JobEvent`'s `withheld`): fed to the provider's accumulator, as the earlier
 * attempt's own were, they give the same response and usage. What the relay cannot tell:
 * when the first event reached that worker (the first event's entry is when Redis took it, with
 * the opening events held until the first output: up to `OPENING_HOLD_MS` late for a model that
 * thinks first), nor its run's start before the call; and its times mix that worker's clock
 * (`startedAt`) with Redis's (entry ids).
 */
import { callOptionsOf, cutSecretTokens, type LlmJob, type RelayEntry, type Usage } from '@headroom/queue';
import { streamAccumulatorOf } from '../providers/accumulators.js';

export interface RelayedAnswer {
  /** The model that answered, as the earlier attempt named it in its `start`. */
  model: string;
  response: unknown;
  usage: Usage;
  providerRequestId?: string;
  /** How long the job had waited, and when the earlier attempt's call started (its worker's clock). */
  waitMs: number;
  startedAt: number;
  /** When Redis took the answer's first event, and its end. */
  firstEventAt?: number;
  endedAt: number;
}

/** The whole answer the relay's entries hold, or undefined: none, part of one (no `end`, or an `error`), or one that does not assemble. */
export function relayedAnswer(job: LlmJob, entries: readonly RelayEntry[]): RelayedAnswer | undefined {
  const start = entries[0];
  const end = entries.at(-1);
  if (start?.event.kind !== 'start' || end?.event.kind !== 'end') return undefined;
  const acc = streamAccumulatorOf(job.provider, { request: job.request, ...callOptionsOf(job) });
  let firstEventAt: number | undefined;
  for (const { event, atMs } of entries.slice(1, -1)) {
    if (event.kind !== 'event') return undefined;
    firstEventAt ??= atMs;
    acc.add(JSON.parse(event.data) as Record<string, unknown>);
  }
  // The usage chunk a client did not ask for comes last in a Chat Completions stream too.
  if (end.event.withheld !== undefined) acc.add(JSON.parse(end.event.withheld) as Record<string, unknown>);
  const done = acc.finish();
  if ('incomplete' in done) return undefined;
  const { model, waitMs, startedAt, providerRequestId } = start.event;
  return {
    model,
    // As the adapter's own result: its logprobs' tokens may spell a key the relayed text had cut.
    response: cutSecretTokens(done.response),
    usage: done.usage,
    ...(providerRequestId === undefined ? {} : { providerRequestId }),
    waitMs,
    startedAt,
    ...(firstEventAt === undefined ? {} : { firstEventAt }),
    endedAt: end.atMs,
  };
}
