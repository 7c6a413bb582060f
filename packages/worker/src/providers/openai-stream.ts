/**
 * An OpenAI Chat Completions stream, chunk by chunk: each relayed as the chunk's JSON, and the
 * ChatCompletion assembled from them. The worker always asks for the usage chunk
 * (`stream_options.include_usage`), since the bucket is settled from it; a client that did not ask
 * for it gets the stream it asked for: no `usage` field on the chunks and no usage chunk.
 */
import type { Usage } from '@headroom/queue';
import type { ProviderCallFailure } from './types.js';
import type { StreamAccumulator } from './sdk-stream.js';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

interface Choice {
  index: number;
  message: { role: string; content: string | null; refusal: string | null; tool_calls?: Json[]; function_call?: Json; audio?: Json };
  logprobs: Json | null;
  finish_reason: string | null;
  /** Its last delta held only `audio.expires_at`: how a spoken answer ends, with no finish_reason. */
  audioDone?: boolean;
}

/**
 * A spoken answer's next pieces (audio output): its id and expiry whole, its base64 data and its
 * transcript appended, so the message holds the `audio` a plain call answers with. The answer is
 * done when a delta holds only the expiry (`audioDone`).
 */
function appendAudio(choice: Choice, audio: Json): string {
  choice.message.audio ??= {};
  const into = choice.message.audio;
  if (typeof audio.id === 'string') into.id = audio.id;
  if (typeof audio.data === 'string') into.data = String(into.data ?? '') + audio.data;
  const transcript = typeof audio.transcript === 'string' ? audio.transcript : '';
  if (typeof audio.transcript === 'string') into.transcript = String(into.transcript ?? '') + transcript;
  if (audio.expires_at !== undefined && audio.expires_at !== null) into.expires_at = audio.expires_at;
  return transcript;
}

/** A delta that holds only a spoken answer's expiry (any other field null or absent). */
function isAudioEnd(delta: Json): boolean {
  const { audio, ...rest } = delta;
  if (!isRecord(audio) || audio.expires_at === undefined || audio.expires_at === null) return false;
  const { expires_at: _expiry, ...pieces } = audio;
  return [...Object.values(rest), ...Object.values(pieces)].every((v) => v === undefined || v === null);
}

const isWholeAudio = (audio: Json | undefined): boolean => audio !== undefined && ['id', 'data', 'transcript', 'expires_at'].every((k) => audio[k] !== undefined && audio[k] !== null);

/** Each chunk's token entries appended to the choice's, as the SDK's ChatCompletionStream does. */
function appendLogprobs(choice: Choice, logprobs: Json): void {
  const { content, refusal, ...rest } = logprobs;
  choice.logprobs ??= {};
  const into = choice.logprobs;
  Object.assign(into, rest);
  if (Array.isArray(content)) into.content = [...(Array.isArray(into.content) ? into.content : []), ...content];
  else if (content !== undefined && !('content' in into)) into.content = content;
  if (Array.isArray(refusal)) into.refusal = [...(Array.isArray(into.refusal) ? into.refusal : []), ...refusal];
  else if (refusal !== undefined && !('refusal' in into)) into.refusal = refusal;
}

export class OpenAIStreamAccumulator implements StreamAccumulator<Json> {
  readonly #clientWantsUsage: boolean;
  /** A reasoning model's: its reasoning tokens are billed, and no chunk shows them. */
  readonly #reasons: boolean;
  #meta: Json = {};
  readonly #choices = new Map<number, Choice>();
  #usage: Json | undefined;
  #text = '';

  constructor(clientWantsUsage: boolean, reasons = false) {
    this.#clientWantsUsage = clientWantsUsage;
    this.#reasons = reasons;
  }

  add(chunk: Json): string | undefined {
    let data: string | undefined;
    if (this.#clientWantsUsage) data = JSON.stringify(chunk);
    else if (!(isRecord(chunk.usage) && Array.isArray(chunk.choices) && chunk.choices.length === 0)) {
      const { usage: _usage, ...rest } = chunk;
      data = JSON.stringify(rest);
    }
    if (isRecord(chunk.usage)) this.#usage = chunk.usage;
    for (const key of ['id', 'created', 'model', 'service_tier', 'system_fingerprint']) if (chunk[key] !== undefined) this.#meta[key] = chunk[key];
    if (Array.isArray(chunk.choices)) for (const c of chunk.choices) if (isRecord(c)) this.#choice(c);
    return data;
  }

  #choice(c: Json): void {
    const index = typeof c.index === 'number' ? c.index : 0;
    let choice = this.#choices.get(index);
    if (!choice) {
      choice = { index, message: { role: 'assistant', content: null, refusal: null }, logprobs: null, finish_reason: null };
      this.#choices.set(index, choice);
    }
    if (isRecord(c.logprobs)) appendLogprobs(choice, c.logprobs);
    const delta = isRecord(c.delta) ? c.delta : {};
    if (isRecord(c.delta)) choice.audioDone = isAudioEnd(delta);
    if (isRecord(delta.audio)) this.#text += appendAudio(choice, delta.audio);
    if (typeof delta.role === 'string') choice.message.role = delta.role;
    if (typeof delta.content === 'string') {
      choice.message.content = (choice.message.content ?? '') + delta.content;
      this.#text += delta.content;
    }
    if (typeof delta.refusal === 'string') {
      choice.message.refusal = (choice.message.refusal ?? '') + delta.refusal;
      this.#text += delta.refusal;
    }
    if (Array.isArray(delta.tool_calls)) {
      choice.message.tool_calls ??= [];
      for (const tc of delta.tool_calls) {
        if (!isRecord(tc)) continue;
        const at = typeof tc.index === 'number' ? tc.index : choice.message.tool_calls.length;
        const call = choice.message.tool_calls[at] ?? { id: '', type: 'function' };
        choice.message.tool_calls[at] = call;
        if (typeof tc.id === 'string') call.id = tc.id;
        if (typeof tc.type === 'string') call.type = tc.type;
        // A custom tool's free-form input (`type: "custom"`) or a function's arguments, in pieces.
        if (isRecord(tc.custom)) this.#toolPiece(call, 'custom', 'input', tc.custom);
        else if (call.type === 'function') this.#toolPiece(call, 'function', 'arguments', isRecord(tc.function) ? tc.function : {});
      }
    }
    // The legacy `functions` call (deprecated, still served): a name, then its arguments in pieces.
    if (isRecord(delta.function_call)) this.#toolPiece(choice.message as Json, 'function_call', 'arguments', delta.function_call);
    if (typeof c.finish_reason === 'string') choice.finish_reason = c.finish_reason;
  }

  /**
   * A call's name (sent once; kept whole, as the SDK keeps it) and the next piece of its input:
   * `holder[field]` is a tool call's `function` or `custom`, or a message's legacy `function_call`.
   */
  #toolPiece(holder: Json, field: 'function' | 'custom' | 'function_call', input: 'arguments' | 'input', delta: Json): void {
    const into = isRecord(holder[field]) ? holder[field] : { name: '', [input]: '' };
    holder[field] = into;
    if (typeof delta.name === 'string' && delta.name !== '') into.name = delta.name;
    if (typeof delta[input] === 'string') {
      into[input] = String(into[input]) + delta[input];
      this.#text += delta[input];
    }
  }

  /** The usage a client that did not ask for it was not sent, as a chunk holding only it. */
  withheld(): string | undefined {
    return this.#clientWantsUsage || this.#usage === undefined ? undefined : JSON.stringify({ usage: this.#usage });
  }

  outputText(): string {
    return this.#text;
  }

  progress() {
    const output = this.#usage ? num(this.#usage.completion_tokens) : undefined;
    return { outputText: this.#text, ...(output === undefined ? {} : { outputTokens: output }), ...(this.#reasons ? { hiddenOutput: true as const } : {}) };
  }

  finish() {
    if (this.#choices.size === 0) return { incomplete: 'the stream ended without any choice' };
    // A spoken answer's last chunk holds only its expiry, and no finish_reason follows (as the SDK's
    // stream helper reads it): a whole one ended at a natural stop.
    const choices = [...this.#choices.values()]
      .sort((a, b) => a.index - b.index)
      .map(({ audioDone, ...choice }) => ({ ...choice, finish_reason: choice.finish_reason ?? (audioDone && isWholeAudio(choice.message.audio) ? 'stop' : null) }));
    if (choices.some((c) => c.finish_reason === null)) return { incomplete: 'the stream ended before its finish_reason' };
    if (!this.#usage) return { incomplete: 'the stream ended without its usage chunk' };
    const details = isRecord(this.#usage.prompt_tokens_details) ? this.#usage.prompt_tokens_details : {};
    const usage: Usage = {
      inputTokens: num(this.#usage.prompt_tokens),
      outputTokens: num(this.#usage.completion_tokens),
      cacheReadInputTokens: num(details.cached_tokens),
      cacheCreationInputTokens: 0,
    };
    return { response: { id: this.#meta.id, object: 'chat.completion', created: this.#meta.created, model: this.#meta.model, choices, usage: this.#usage, service_tier: this.#meta.service_tier, system_fingerprint: this.#meta.system_fingerprint }, usage };
  }

  /** OpenAI ends a failing stream with `data: {"error": {...}}`; the SDK keeps the inner object. */
  errorEvent(error: unknown, failure: ProviderCallFailure): string {
    const inner = (error as { error?: unknown } | undefined)?.error;
    if (isRecord(inner) && typeof inner.message === 'string') return JSON.stringify({ error: inner });
    return JSON.stringify({ error: { message: failure.message, type: 'server_error', param: null, code: null } });
  }
}
