/**
 * Reads streamed jobs' events (job-events.ts in @headroom/queue) for every stream this process is
 * waiting on, with one blocking `XREAD` per lane rather than one connection per stream: each
 * lane's job streams share the lane's hash tag, so one command can block on all of them, on a
 * single node or in a Redis Cluster alike.
 *
 * Flow control: a stream is read only while its consumer is waiting for more and has nothing
 * buffered. A reader whose client is slow simply stops asking; its events wait in Redis (at most
 * one answer), and this process holds at most one read (`READ_COUNT` entries) per stream. A
 * stream that starts wanting while the lane's read is blocked on others wakes it through the
 * lane's wake key, a one-entry stream in the same read.
 *
 * The same read takes the producer's replies stream for the lane (keys.ts `replies`): the results
 * of its own jobs, written by the worker that finished each (`listen`). It is read whenever
 * anything is listening, without flow control: an entry is one job's result, handed on at once.
 *
 * A connection that drops resends its read with the same ids on reconnect, so nothing is missed.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { ClosedError, decodeJobEvent, duplicateFor, laneKeys, type JobEvent, type Lane } from '@headroom/queue';

/** Entries taken per stream per read: what one stream may hold in this process. */
const READ_COUNT = 256;
/** A blocked read returns at least this often, so a lost wake costs at most this much. */
const BLOCK_MS = 5_000;
const WAKE_TTL_MS = 60_000;

/** One job's stream, as its consumer sees it. */
export interface EventSubscription {
  /** The next entry; waits for it. Undefined once closed. */
  next(): Promise<JobEvent | undefined>;
  /**
   * The next page of entries (at most `READ_COUNT`) after the last one returned, read now without
   * waiting: for after the job ended. Empty once there is nothing left.
   */
  drain(): Promise<JobEvent[]>;
  close(): void;
}

interface Sub {
  key: string;
  lastId: string;
  buffer: JobEvent[];
  waiting: ((event: JobEvent | undefined) => void) | undefined;
  closed: boolean;
}

/** A stream read whenever its reader runs, each entry's fields handed to `onEntry` as they come. */
interface Listener {
  key: string;
  lastId: string;
  onEntry(fields: string[]): void;
}

/** Stream entry ids (`<ms>-<seq>`) in order. */
function idAfter(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am > bm || (am === bm && as > bs);
}

class LaneReader {
  /**
   * Stream key -> its subscriptions: callers sharing one job (coalesced, an idempotent repeat)
   * in one process each read it, from its own position.
   */
  readonly #subs = new Map<string, Set<Sub>>();
  #listener: Listener | undefined;
  readonly #wakeKey: string;
  #wakeId = '0-0';
  #blocked = false;
  #idle: (() => void) | undefined;
  #running = false;
  #closed = false;

  constructor(
    private readonly conn: Redis | Cluster,
    private readonly command: Redis | Cluster,
    prefix: string,
    lane: Lane,
    readerId: string,
  ) {
    this.#wakeKey = laneKeys(prefix, lane).readerWake(readerId);
  }

  subscribe(key: string): EventSubscription {
    const sub: Sub = { key, lastId: '0-0', buffer: [], waiting: undefined, closed: false };
    const subs = this.#subs.get(key) ?? new Set<Sub>();
    subs.add(sub);
    this.#subs.set(key, subs);
    return {
      next: () => {
        if (sub.closed) return Promise.resolve(undefined);
        const buffered = sub.buffer.shift();
        if (buffered) return Promise.resolve(buffered);
        return new Promise((resolve) => {
          sub.waiting = resolve;
          this.#wanted();
        });
      },
      drain: async () => {
        if (sub.buffer.length > 0) return sub.buffer.splice(0);
        // Its producer closed under a reader still taking the rest: its connection is gone, and
        // the read threw ioredis's own error ("Connection is closed.") where CLOSED is owed.
        if (this.#closed) throw new ClosedError('this Producer');
        const entries = await this.command.xrange(key, `(${sub.lastId}`, '+', 'COUNT', READ_COUNT);
        const out: JobEvent[] = [];
        for (const [id, fields] of entries) {
          sub.lastId = id;
          const event = decodeJobEvent(fields[0] ?? '', fields[1] ?? '');
          if (event) out.push(event);
        }
        return out;
      },
      close: () => {
        sub.closed = true;
        subs.delete(sub);
        if (subs.size === 0 && this.#subs.get(key) === subs) this.#subs.delete(key);
        sub.waiting?.(undefined);
        sub.waiting = undefined;
      },
    };
  }

  /** Reads `key` from its start, for as long as this reader lives (one such key per reader). */
  listen(key: string, onEntry: (fields: string[]) => void): void {
    this.#listener = { key, lastId: '0-0', onEntry };
    this.#wanted();
  }

  close(): void {
    this.#closed = true;
    for (const sub of [...this.#subs.values()].flatMap((subs) => [...subs])) {
      sub.closed = true;
      sub.waiting?.(undefined);
    }
    this.#subs.clear();
    this.#idle?.();
  }

  /** A consumer is waiting: read for it now, waking the blocked read if there is one. */
  #wanted(): void {
    if (!this.#running) {
      this.#running = true;
      void this.#loop();
    } else if (this.#idle) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle();
    } else if (this.#blocked) {
      this.command.multi().xadd(this.#wakeKey, 'MAXLEN', '1', '*', 'w', '1').pexpire(this.#wakeKey, WAKE_TTL_MS).exec().catch(() => {});
    }
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      // Per key, from the earliest position a waiting subscription has reached.
      const readFrom = new Map<string, string>();
      for (const [key, subs] of this.#subs) {
        for (const s of subs) {
          const from = readFrom.get(key);
          if (s.waiting !== undefined && (from === undefined || idAfter(from, s.lastId))) readFrom.set(key, s.lastId);
        }
      }
      const wanting: { key: string; lastId: string }[] = [...readFrom].map(([key, lastId]) => ({ key, lastId }));
      if (this.#listener) wanting.push(this.#listener);
      if (wanting.length === 0) {
        await new Promise<void>((resolve) => { this.#idle = resolve; });
        continue;
      }
      let reply: [string, [string, string[]][]][] | null;
      try {
        this.#blocked = true;
        reply = (await this.conn.xread(
          'COUNT', READ_COUNT, 'BLOCK', BLOCK_MS,
          'STREAMS', this.#wakeKey, ...wanting.map((s) => s.key),
          this.#wakeId, ...wanting.map((s) => s.lastId),
        )) as [string, [string, string[]][]][] | null;
      } catch {
        if (this.#closed) return;
        // The connection resends by itself; an error here is a closed or failed connection.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      } finally {
        this.#blocked = false;
      }
      let handedOn = false;
      for (const [key, entries] of reply ?? []) {
        if (key === this.#wakeKey) {
          this.#wakeId = entries.at(-1)?.[0] ?? this.#wakeId;
          continue;
        }
        const listener = this.#listener;
        if (listener?.key === key) {
          for (const [id, fields] of entries) {
            listener.lastId = id;
            listener.onEntry(fields);
          }
          continue;
        }
        // To the subscriptions waiting, each from past its own position. One not waiting, or
        // behind where this read began (it joined while the read was out), reads its entries
        // when it next asks: they wait in Redis, as for a slow reader.
        const from = readFrom.get(key) ?? '0-0';
        for (const sub of this.#subs.get(key) ?? []) {
          const waiting = sub.waiting;
          if (!waiting || idAfter(from, sub.lastId)) continue;
          for (const [id, fields] of entries) {
            if (!idAfter(id, sub.lastId)) continue;
            sub.lastId = id;
            const event = decodeJobEvent(fields[0] ?? '', fields[1] ?? '');
            if (event) sub.buffer.push(event);
          }
          const first = sub.buffer.shift();
          if (first) {
            sub.waiting = undefined;
            waiting(first);
            handedOn = true;
          }
        }
      }
      // A consumer handed an entry takes the rest of its buffer in microtasks and asks again:
      // one tick later it is waiting and joins the next read, where reading at once would block
      // without it and cost a wake write and a second read for its next entries.
      if (handedOn) await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** One per producer connection and prefix: the lanes' readers, each on a blocking connection of its own. */
export class EventReader {
  readonly #lanes = new Map<Lane, LaneReader>();
  readonly #connections: (Redis | Cluster)[] = [];
  readonly #listening = new Set<Lane>();
  readonly #id = randomUUID().slice(0, 12);

  constructor(
    private readonly command: Redis | Cluster,
    private readonly prefix: string,
  ) {}

  /** What a job sets as its `hrReplyTo` option for its result to come to this reader. */
  get id(): string {
    return this.#id;
  }

  subscribe(lane: Lane, jobId: string): EventSubscription {
    return this.#reader(lane).subscribe(laneKeys(this.prefix, lane).jobEvents(jobId));
  }

  /**
   * Reads this reader's replies stream of `lane` (keys.ts `replies`) from its start, handing each
   * entry's fields to `onEntry`; idempotent per lane.
   */
  listen(lane: Lane, onEntry: (fields: string[]) => void): void {
    if (this.#listening.has(lane)) return;
    this.#listening.add(lane);
    this.#reader(lane).listen(laneKeys(this.prefix, lane).replies(this.#id), onEntry);
  }

  /** Stops reading and deletes the replies streams it read: nothing of this reader stays in Redis. */
  async close(): Promise<void> {
    for (const reader of this.#lanes.values()) reader.close();
    this.#lanes.clear();
    for (const conn of this.#connections.splice(0)) conn.disconnect();
    const keys = [...this.#listening].map((lane) => laneKeys(this.prefix, lane).replies(this.#id));
    this.#listening.clear();
    // One key per call: on a Redis Cluster each lane is its own slot.
    await Promise.all(keys.map((key) => this.command.del(key).catch(() => 0)));
  }

  #reader(lane: Lane): LaneReader {
    let reader = this.#lanes.get(lane);
    if (!reader) {
      const conn = duplicateFor(this.command, 'worker');
      conn.on('error', () => {});
      this.#connections.push(conn);
      reader = new LaneReader(conn, this.command, this.prefix, lane, this.#id);
      this.#lanes.set(lane, reader);
    }
    return reader;
  }
}
