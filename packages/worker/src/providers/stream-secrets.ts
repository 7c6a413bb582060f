/**
 * A secret split across a stream's events. The Redis scrub (connection.ts in @headroom/queue)
 * cuts a registered secret out of every command, but only where it stands whole in one string: a
 * provider that echoes the key it was called with inside a streamed answer sends it in pieces, a
 * few characters per delta, and each piece passed the scrub on its own (relayed to Redis and on
 * to the client, whole once joined).
 *
 * So a stream's events pass through here first. Each event's text fields (`DELTA_FIELDS`) are
 * joined per channel: the part of the answer they continue (Anthropic's content block, OpenAI's
 * choice and tool call, a Responses output item and content part), named by the event's own
 * indexes, so interleaved choices or blocks are never read as one text. While a channel's text
 * ends with the start of a registered secret, `HOLD_FROM` characters or more, the event that
 * carries it and every event after it are held back (the stream keeps its order); once the secret
 * is whole, its characters are cut from the held events' fields (`[redacted]` where it began) and
 * the events go on; once the text stops matching, they go on untouched. At most `HOLD_FROM - 1`
 * characters of a secret leave before it is recognised, and a stream that ends inside a secret's
 * start has that start cut. Ordinary text is never held (it would need the start of a key).
 */
import { isTokenEntry, REDACTED } from '@headroom/queue';

/** Characters of a secret's start that hold a stream back; fewer leave unexamined. */
export const HOLD_FROM = 4;

/**
 * The fields a provider's stream events carry answer text in: Anthropic `text`, `partial_json`,
 * `thinking`; OpenAI Chat `content`, `refusal`, `arguments`; every Responses `*.delta` (output
 * text, function and custom tool call input, code, transcripts) and its `.done` events' `text`;
 * and OpenAI's logprobs, which list the same text again token by token (`token`, with its
 * `bytes`, and each alternative's in `top_logprobs`).
 */
const DELTA_FIELDS = new Set(['text', 'partial_json', 'thinking', 'content', 'refusal', 'arguments', 'delta', 'input', 'code', 'transcript', 'token']);

/** The top-level fields that say which part of the answer an event continues. */
const PART_FIELDS = ['index', 'output_index', 'content_index', 'summary_index', 'item_id'] as const;

/** A range of a channel's text to cut; `[redacted]` stands where the first of it that is sent was. */
interface Cut {
  start: number;
  end: number;
  marked: boolean;
}

interface Channel {
  text: string;
  cuts: Cut[];
  /** Where the start of a secret that the text ends with begins, or Infinity: events reaching past it are held. */
  holdFrom: number;
}

/** One text field of an event: where it stands in its channel, and how to reach it in the event. */
interface Delta {
  channel: Channel;
  from: number;
  to: number;
  path: (string | number)[];
}

interface Held {
  data: string;
  carriesOutput: boolean;
  deltas: Delta[];
}

export class StreamSecrets {
  readonly #channels = new Map<string, Channel>();
  readonly #held: Held[] = [];

  constructor(
    private readonly secrets: readonly string[],
    private readonly emit: (data: string, carriesOutput: boolean) => void,
  ) {}

  /** One event: its JSON as the client is to see it, and the event it was serialized from. */
  push(data: string, event: unknown, carriesOutput: boolean): void {
    const deltas: Delta[] = [];
    const part = partOf(event);
    walk(event, [], [], (path, channelPath, value) => {
      const key = `${part}|${channelPath.join('.')}`;
      let channel = this.#channels.get(key);
      if (!channel) {
        channel = { text: '', cuts: [], holdFrom: Number.POSITIVE_INFINITY };
        this.#channels.set(key, channel);
      }
      const from = channel.text.length;
      channel.text += value;
      deltas.push({ channel, from, to: channel.text.length, path });
    });
    this.#held.push({ data, carriesOutput, deltas });
    for (const { channel, from } of deltas) {
      this.#cutCompleted(channel, from);
      const start = this.#secretStartAtEnd(channel.text);
      channel.holdFrom = start >= HOLD_FROM ? channel.text.length - start : Number.POSITIVE_INFINITY;
    }
    this.#release(false);
  }

  /** The stream ended (or failed): everything held goes, a secret's start at a channel's very end cut. */
  end(): void {
    for (const channel of this.#channels.values()) {
      const start = this.#secretStartAtEnd(channel.text);
      if (start >= HOLD_FROM) channel.cuts.push({ start: channel.text.length - start, end: channel.text.length, marked: false });
    }
    this.#release(true);
  }

  /** Cuts every secret that became whole in the channel with the text added from `from` on. */
  #cutCompleted(channel: Channel, from: number): void {
    for (const secret of this.secrets) {
      let at = channel.text.indexOf(secret, Math.max(0, from - secret.length + 1));
      while (at !== -1) {
        channel.cuts.push({ start: at, end: at + secret.length, marked: false });
        at = channel.text.indexOf(secret, at + secret.length);
      }
    }
    channel.cuts.sort((a, b) => a.start - b.start);
  }

  /** The length of the longest start of a secret (short of the whole) that `text` ends with. */
  #secretStartAtEnd(text: string): number {
    let longest = 0;
    for (const secret of this.secrets) {
      // Only where the secret's first character stands: ordinary text costs a scan of its tail.
      const first = secret.charCodeAt(0);
      for (let at = Math.max(0, text.length - secret.length + 1); at < text.length - longest; at++) {
        if (text.charCodeAt(at) === first && secret.startsWith(text.slice(at))) {
          longest = text.length - at;
          break;
        }
      }
    }
    return longest;
  }

  /** Sends the held events, in order, up to the first whose text reaches into a held secret's start (all, at the end). */
  #release(all: boolean): void {
    while (this.#held.length > 0) {
      const event = this.#held[0]!;
      if (!all && event.deltas.some((d) => d.to > d.channel.holdFrom)) break;
      this.#held.shift();
      this.emit(this.#cutFrom(event), event.carriesOutput);
    }
  }

  /** The event with the cut parts of its text fields taken out. */
  #cutFrom(event: Held): string {
    const cut = event.deltas.filter((d) => d.channel.cuts.some((c) => c.start < d.to && c.end > d.from));
    if (cut.length === 0) return event.data;
    const parsed = JSON.parse(event.data) as unknown;
    for (const d of cut) {
      const parent = d.path.slice(0, -1).reduce<unknown>((node, step) => (node as Record<string | number, unknown> | undefined)?.[step], parsed) as Record<string | number, unknown> | undefined;
      const leaf = d.path.at(-1)!;
      // The client's JSON may leave out what the event held (OpenAI's usage when not asked for): a field not there is not sent.
      if (parent && typeof parent[leaf] === 'string') {
        parent[leaf] = cutRange(parent[leaf] as string, d.from, d.channel.cuts);
        // A token's bytes spell what it did: they follow its cut text.
        if (leaf === 'token' && Array.isArray(parent.bytes)) parent.bytes = [...Buffer.from(parent[leaf] as string, 'utf8')];
      }
    }
    return JSON.stringify(parsed);
  }
}

/** Which part of the answer a top-level event continues, by its own indexes. */
function partOf(event: unknown): string {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return '';
  const e = event as Record<string, unknown>;
  return PART_FIELDS.map((f) => (e[f] === undefined ? '' : String(e[f]))).join(',');
}

/**
 * Calls `found` for every non-empty text field, in the event's order, with its path (object keys
 * and array positions) and its channel path (the array elements' own `index` where they carry one,
 * as OpenAI's choices and tool calls do, and the field's name).
 */
function walk(value: unknown, path: (string | number)[], channelPath: (string | number)[], found: (path: (string | number)[], channelPath: (string | number)[], text: string) => void): void {
  if (Array.isArray(value)) {
    value.forEach((item, i) => {
      const own = (item as { index?: unknown } | null)?.index;
      walk(item, [...path, i], [...channelPath, typeof own === 'number' ? own : i], found);
    });
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string') {
      if (DELTA_FIELDS.has(key) && v !== '') found([...path, key], [...channelPath, key], v);
    } else if (Array.isArray(v) && key !== 'top_logprobs' && v.some(isTokenEntry)) {
      // A list of tokens continues one text, across the list and the events: positions are not
      // parts. Each rank of the alternatives (`top_logprobs`) is a text of its own.
      v.forEach((item, i) => {
        walk(item, [...path, key, i], [...channelPath, key], found);
      });
    } else if (typeof v === 'object' && v !== null) walk(v, [...path, key], channelPath, found);
  }
}

/** `value`, standing at `at` in its channel's text, with the parts inside `cuts` removed (`[redacted]` once per cut). */
function cutRange(value: string, at: number, cuts: readonly Cut[]): string {
  let out = '';
  let pos = at;
  const end = at + value.length;
  for (const cut of cuts) {
    if (cut.end <= pos || cut.start >= end) continue;
    out += value.slice(pos - at, Math.max(pos, cut.start) - at);
    if (!cut.marked) out += REDACTED;
    cut.marked = true;
    pos = Math.min(cut.end, end);
  }
  return out + value.slice(pos - at);
}
