/**
 * What both adapters do around one streamed SDK call: the same deadline and failure
 * classification as a plain call (sdk-call.ts), each event handed on as JSON text the moment the
 * SDK yields it, and the final message assembled beside the relay for the job's result.
 *
 * The SDKs' raw streams are iterated (`create({ stream: true })`), not their helper classes
 * (Anthropic's `MessageStream`, OpenAI's `ChatCompletionStream`): the helpers accumulate into
 * the very event objects they later yield (a `message_start`'s message gains the content and
 * final usage before a slow consumer serializes it), and OpenAI's refuses some valid streams
 * (a `length` finish with a response format). Each event is serialized as it arrives, before
 * anything reads it, so the client sees what the provider sent.
 */
import { cutSecretTokens, PROVIDER_DEFAULTS, registeredSecrets, type Usage } from '@headroom/queue';
import { StreamSecrets } from './stream-secrets.js';
import { lastBytesOf } from './http-fetch.js';
import { classifyError, type Meta } from './sdk-call.js';
import type { SdkCallSpec, SendOptions } from './sdk-call.js';
import type { ProviderCallFailure, ProviderStreamInput, ProviderStreamResult, StreamProgress } from './types.js';

export type StreamSpec = Pick<SdkCallSpec<unknown>, 'provider' | 'apiKey' | 'timeoutMs' | 'errors' | 'requestIdHeader'> & {
  /** The longest silence once the first event came (`providers.<p>.streamIdleMs`). */
  streamIdleMs: number;
  /** The stream's whole life (`providers.<p>.streamTimeoutMs`). */
  streamTimeoutMs: number;
};

/**
 * A stream's bounds from an adapter's options; its whole life never shorter than the wait for its
 * first event (the config refuses that; an adapter built by hand gets it quietly).
 */
export function streamBoundsOf(options: { timeoutMs: number; streamIdleMs?: number | undefined; streamTimeoutMs?: number | undefined }): Pick<StreamSpec, 'streamIdleMs' | 'streamTimeoutMs'> {
  return {
    streamIdleMs: options.streamIdleMs ?? PROVIDER_DEFAULTS.streamIdleMs,
    streamTimeoutMs: Math.max(options.streamTimeoutMs ?? PROVIDER_DEFAULTS.streamTimeoutMs, options.timeoutMs),
  };
}

/** One provider's event handling: relay text, assembly, and its error event. */
export interface StreamAccumulator<E> {
  /** Takes one SDK event; returns the JSON the client is to see, or undefined to send nothing for it. */
  add(event: E): string | undefined;
  /** What a cut-short stream is charged from. */
  progress(): Omit<StreamProgress, 'events' | 'firstEventAt'>;
  /** The output text so far (`progress().outputText`), read after every event. */
  outputText(): string;
  /** The assembled response once the stream ended, or why it is incomplete. */
  finish(): { response: unknown; usage: Usage } | { incomplete: string };
  /**
   * What the answer needs that the client was not sent (Chat Completions' usage, when the client
   * did not ask for it), as one event's JSON `add` takes: the relay's end carries it, so the
   * answer can be rebuilt from the relay alone (run/relayed-answer.ts).
   */
  withheld?(): string | undefined;
  /** The provider-shaped error event a stream that failed after its first event ends with. */
  errorEvent(error: unknown, failure: ProviderCallFailure): string;
}

export interface OpenedStream<E> {
  data: AsyncIterable<E>;
  response: Response;
}

/** Runs one streamed call; never throws. */
export async function runSdkStream<E>(
  spec: StreamSpec,
  input: ProviderStreamInput,
  open: (options: SendOptions) => Promise<OpenedStream<E>>,
  acc: StreamAccumulator<E>,
): Promise<ProviderStreamResult> {
  const deadline = new AbortController();
  let events = 0;
  let firstEventAt: number | undefined;
  /** When the first event adding to the output came: the idle clock starts then (watchStream). */
  let outputFrom: number | undefined;
  let lastEventAt = 0;
  let response: Response | undefined;
  const watch = watchStream(spec, deadline, () => (outputFrom === undefined ? undefined : Math.max(lastEventAt, (response && lastBytesOf(response)) ?? 0)));
  const signal = input.signal === undefined ? deadline.signal : AbortSignal.any([input.signal, deadline.signal]);
  const why = { deadline: deadline.signal, caller: input.signal, timedOut: watch.why };
  // Read once, when the provider answers: the relay's start entry, the result and a failure all carry it.
  let requestId: string | undefined;
  const progress = (): StreamProgress => ({ events, ...(firstEventAt === undefined ? {} : { firstEventAt }), ...acc.progress() });
  try {
    const opened = await open({ timeout: spec.timeoutMs, signal });
    response = opened.response;
    requestId = response.headers.get(spec.requestIdHeader) ?? undefined;
    input.onOpen?.(requestId, response.headers);
    let outputLength = 0;
    // A key the provider echoes in pieces is whole in no one event: see stream-secrets.ts.
    const secrets = registeredSecrets();
    const guard = secrets.length > 0 ? new StreamSecrets(secrets, input.onEvent) : undefined;
    try {
      for await (const event of opened.data) {
        lastEventAt = Date.now();
        const data = acc.add(event);
        if (data === undefined) continue;
        if (events === 0) firstEventAt = lastEventAt;
        events += 1;
        const text = acc.outputText();
        const output = text.length > outputLength;
        if (output) outputFrom ??= lastEventAt;
        if (guard) guard.push(data, event, output);
        else input.onEvent(data, output);
        outputLength = text.length;
      }
    } finally {
      // What a secret's start held back goes before the end, or before the error event.
      guard?.end();
    }
    // No headers in what follows: the head's went to onOpen, and by now they are stale (see types.ts).
    const { status } = response;
    const done = acc.finish();
    if ('incomplete' in done) {
      // Both SDKs end a stream's iteration quietly when its signal aborts, as if the provider had
      // ended it: our deadline cutting a stream that stalled (or ran past `timeoutMs`) read as
      // the provider's own short stream (`200 the stream ended before its message_stop event`),
      // a healthy answer to the throttle. Classified as the abort it was, as a plain call's is.
      if (signal.aborted) throw abortError();
      const failure: ProviderCallFailure = { ok: false, kind: 'bad_response', status, message: done.incomplete, ...(requestId === undefined ? {} : { requestId }) };
      return { ...failure, progress: progress(), errorEvent: acc.errorEvent(undefined, failure) };
    }
    return {
      ok: true,
      status,
      // Its logprobs' tokens, put together from the events, may spell a key the text had cut.
      response: cutSecretTokens(done.response),
      usage: done.usage,
      ...withheldOf(acc),
      ...(requestId === undefined ? {} : { requestId }),
      progress: { ...progress(), firstEventAt: firstEventAt ?? Date.now() },
    };
  } catch (error) {
    const meta: Meta | undefined = response === undefined ? undefined : { status: response.status, headers: response.headers, requestId };
    const classified = classifyError(spec, error, why, meta);
    // Once the head came, any headers here are still its own: stale, and already with onOpen.
    const failure = response === undefined ? classified : withoutHeaders(classified);
    return { ...failure, progress: progress(), errorEvent: acc.errorEvent(error, failure) };
  } finally {
    watch.stop();
  }
}

/**
 * A stream's bounds, on one timer:
 * - its head and first output within `timeoutMs`, as a plain call's answer: a reasoning model may
 *   think for minutes before it, silent on the wire (OpenAI's Chat Completions sends nothing, its
 *   Responses API `response.created` and `response.in_progress`, then nothing), so silence before
 *   the first output is no stall;
 * - from the first output on, no silence (no byte: Anthropic's pings count) longer than
 *   `streamIdleMs`: a model generating sends a delta per token or pings;
 * - its whole life within `streamTimeoutMs`.
 * `activeAt` (undefined before the first output) is read when the timer fires, not re-armed per
 * event, so a busy stream costs no timer work. The cut says which bound it was (`why`).
 */
function watchStream(spec: StreamSpec, deadline: AbortController, activeAt: () => number | undefined): { why: () => string; stop(): void } {
  const startedAt = Date.now();
  let reason = `request timed out after ${spec.timeoutMs} ms`;
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const now = Date.now();
    const active = activeAt();
    const ends =
      active === undefined
        ? [{ at: startedAt + spec.timeoutMs, why: `request timed out after ${spec.timeoutMs} ms` }]
        : [
            { at: active + spec.streamIdleMs, why: `the provider sent nothing for ${spec.streamIdleMs} ms (stream idle timeout, providers.${spec.provider}.streamIdleMs)` },
            { at: startedAt + spec.streamTimeoutMs, why: `stream timed out after ${spec.streamTimeoutMs} ms (providers.${spec.provider}.streamTimeoutMs)` },
          ];
    const next = ends.reduce((a, b) => (b.at < a.at ? b : a));
    if (next.at <= now) {
      reason = next.why;
      deadline.abort();
      return;
    }
    timer = setTimeout(check, next.at - now);
  };
  timer = setTimeout(check, Math.min(spec.timeoutMs, spec.streamIdleMs));
  return { why: () => reason, stop: () => clearTimeout(timer) };
}

/** What `classifyError` reads as an abort (the deadline's or the caller's, by the signals). */
function abortError(): Error {
  const error = new Error('the stream was stopped by its abort signal');
  error.name = 'AbortError';
  return error;
}

function withoutHeaders(failure: ProviderCallFailure): ProviderCallFailure {
  const { headers: _head, ...rest } = failure;
  return rest;
}

function withheldOf(acc: StreamAccumulator<unknown>): { withheld?: string } {
  const withheld = acc.withheld?.();
  return withheld === undefined ? {} : { withheld };
}
