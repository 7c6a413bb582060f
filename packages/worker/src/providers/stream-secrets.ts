/**
 * A secret split across a stream's events. The Redis scrub (connection.ts in @headroom/queue)
 * cuts a registered secret out of every command, but only where it stands whole in one string: a
 * provider that echoes the key it was called with inside a streamed answer sends it in pieces, a
 * few characters per delta, and each piece passed the scrub on its own (relayed to Redis and on
 * to the client, whole once joined).
 *
 * So a stream's events pass through here first, with the output text they add (the deltas joined,
 * as each provider's accumulator keeps it). While that text ends with the start of a registered
 * secret, `HOLD_FROM` characters or more, the events that carry it are held back; once a secret
 * is whole, its characters are cut from the held events' deltas (`[redacted]` where it began) and
 * the events go on; once the text stops matching, they go on untouched. At most `HOLD_FROM - 1`
 * characters of a secret leave before it is recognised, and a stream that ends inside a secret's
 * start has that start cut. Ordinary text is never held (it would need the start of a key).
 */
import { REDACTED } from '@headroom/queue';

/** Characters of a secret's start that hold a stream back; fewer leave unexamined. */
export const HOLD_FROM = 4;

/**
 * The fields a provider's stream events carry output text in (Anthropic `text`, `partial_json`,
 * `thinking`; OpenAI Chat `content`, `refusal`, `arguments`; Responses `delta`), in the order the
 * accumulators join them.
 */
const DELTA_FIELDS = new Set(['text', 'partial_json', 'thinking', 'content', 'refusal', 'arguments', 'delta']);

/** A range of the output text to cut; `[redacted]` stands where the first of it that is sent was. */
interface Cut {
  start: number;
  end: number;
  marked: boolean;
}

interface Held {
  data: string;
  carriesOutput: boolean;
  /** The range of the output text this event added. */
  from: number;
  to: number;
}

export class StreamSecrets {
  readonly #held: Held[] = [];
  /** Ranges of the output text to cut, in order; dropped once every event they touch has gone. */
  #cuts: Cut[] = [];
  #text = '';

  constructor(
    private readonly secrets: readonly string[],
    private readonly emit: (data: string, carriesOutput: boolean) => void,
  ) {}

  /** One event, with the whole output text so far (the event's delta at its end). */
  push(data: string, text: string, carriesOutput: boolean): void {
    const from = this.#text.length;
    this.#text = text;
    this.#held.push({ data, carriesOutput, from, to: text.length });
    this.#cutCompleted(from);
    const start = this.#secretStartAtEnd();
    this.#release(start >= HOLD_FROM ? text.length - start : Number.POSITIVE_INFINITY);
  }

  /** The stream ended (or failed): everything held goes, a secret's start at its very end cut. */
  end(): void {
    const start = this.#secretStartAtEnd();
    if (start >= HOLD_FROM) this.#cuts.push({ start: this.#text.length - start, end: this.#text.length, marked: false });
    this.#release(Number.POSITIVE_INFINITY);
  }

  /** Cuts every secret that became whole with the text added from `from` on. */
  #cutCompleted(from: number): void {
    const text = this.#text;
    for (const secret of this.secrets) {
      let at = text.indexOf(secret, Math.max(0, from - secret.length + 1));
      while (at !== -1) {
        this.#cuts.push({ start: at, end: at + secret.length, marked: false });
        at = text.indexOf(secret, at + secret.length);
      }
    }
    this.#cuts.sort((a, b) => a.start - b.start);
  }

  /** The length of the longest start of a secret (short of the whole) that the text ends with. */
  #secretStartAtEnd(): number {
    const text = this.#text;
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

  /** Sends the held events, in order, up to the first whose text reaches past `upTo`. */
  #release(upTo: number): void {
    while (this.#held.length > 0 && this.#held[0]!.to <= upTo) {
      const event = this.#held.shift()!;
      this.emit(this.#cutFrom(event), event.carriesOutput);
    }
    const next = this.#held[0]?.from ?? this.#text.length;
    this.#cuts = this.#cuts.filter((cut) => cut.end > next);
  }

  /** The event with the cut parts of its delta taken out. */
  #cutFrom(event: Held): string {
    const cuts = this.#cuts.filter((cut) => cut.start < event.to && cut.end > event.from);
    if (cuts.length === 0) return event.data;
    const added = this.#text.slice(event.from, event.to);
    const parsed: unknown = JSON.parse(event.data);
    let at = event.from;
    let mapped = true;
    const rewrite = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(rewrite);
      if (value === null || typeof value !== 'object') return value;
      const out: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(value)) {
        if (DELTA_FIELDS.has(key) && typeof v === 'string' && v !== '') {
          if (!added.startsWith(v, at - event.from)) mapped = false;
          out[key] = cutRange(v, at, cuts);
          at += v.length;
        } else out[key] = rewrite(v);
      }
      return out;
    };
    const cut = rewrite(parsed);
    // Text the event adds but not found in its fields as the accumulator joined them: every delta
    // field is cut whole rather than let a piece through.
    if (!mapped || at !== event.to) return JSON.stringify(cutWhole(parsed));
    return JSON.stringify(cut);
  }
}

/** `value`, standing at `at` in the output text, with the parts inside `cuts` removed (`[redacted]` once per cut). */
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

function cutWhole(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cutWhole);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, v]) => [key, DELTA_FIELDS.has(key) && typeof v === 'string' && v !== '' ? REDACTED : cutWhole(v)]));
}
