/**
 * The worker's end of a streamed job's relay: events are appended to the job's Redis stream as
 * they arrive (job-events.ts in @headroom/queue), one script call in flight at a time. A write
 * goes out once the events the SDK parsed from the same network read are in (a `setImmediate`:
 * the SDK hands them on in microtasks), and the events that arrive while a call is in flight go
 * together in the next, so a fast stream costs a few round trips, not one per token, and a slow
 * one adds no wait. A provider's first read usually holds `message_start` with the first
 * content events: sent alone, the first token waited for a second write and a second read.
 * The first token itself does not wait for the rest of its read (`push(..., { now: true })`):
 * a fast provider's first read holds the whole answer, and parsing and relaying all of it before
 * the first token reached the client cost that token about 1 ms (`pnpm bench:gateway`).
 * What waits here is bounded by what arrives during one round trip to Redis.
 */
import type { Cluster, Redis } from 'ioredis';
import { relayEvents, type JobEvent, type RelayOutcome } from '@headroom/queue';

/** Why the relay stopped taking events: the caller cancelled, an earlier attempt streamed, or Redis failed. */
export type RelayRefusal = Exclude<RelayOutcome, 'written'> | Error;

export class EventRelay {
  readonly #pending: JobEvent[] = [];
  /** The write under way, from the moment it is scheduled until Redis has answered it. */
  #inFlight: Promise<void> | undefined;
  /** A scheduled write still waiting for the rest of its read, and what starts it early. */
  #waiting: { immediate: NodeJS.Immediate; start(): void } | undefined;
  #first = true;
  #refused: RelayRefusal | undefined;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    private readonly jobId: string,
    /** Called once, when a write is refused: the caller stops the provider call. */
    private readonly onRefused: (why: RelayRefusal) => void,
  ) {}

  /** Whether any event has been handed to Redis (the client may have seen it). */
  get started(): boolean {
    return !this.#first;
  }

  /** `now`: write without waiting for the rest of the read (the first token); it still waits for a write in flight. */
  push(event: JobEvent, options: { now?: boolean } = {}): void {
    if (this.#refused !== undefined) return;
    this.#pending.push(event);
    if (this.#inFlight === undefined) this.#send();
    if (options.now && this.#waiting) {
      clearImmediate(this.#waiting.immediate);
      this.#waiting.start();
    }
  }

  /** Resolves once every event pushed so far is written, or with why writing stopped. */
  async flush(): Promise<RelayRefusal | undefined> {
    while (this.#inFlight !== undefined) await this.#inFlight;
    return this.#refused;
  }

  #send(): void {
    this.#inFlight = new Promise<void>((resolve) => {
      this.#waiting = { immediate: setImmediate(resolve), start: resolve };
    })
      .then(() => {
        this.#waiting = undefined;
        // Empty once refused: a refusal drops what was pending.
        const batch = this.#pending.splice(0);
        if (batch.length === 0) return undefined;
        const first = this.#first;
        this.#first = false;
        return relayEvents(this.redis, this.prefix, this.jobId, batch, { first });
      })
      .then(
        (outcome) => {
          if (outcome !== undefined && outcome !== 'written') this.#refuse(outcome);
        },
        (err: unknown) => this.#refuse(err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => {
        this.#inFlight = undefined;
        if (this.#pending.length > 0 && this.#refused === undefined) this.#send();
      });
  }

  /**
   * Refuses every write from now on, as Redis refuses them once the job is cancelled: for a
   * withdrawal the worker decides itself (the job's gateway is gone, gateway-presence.ts).
   */
  withdraw(): void {
    this.#refuse('cancelled');
  }

  #refuse(why: RelayRefusal): void {
    if (this.#refused !== undefined) return;
    this.#refused = why;
    this.#pending.length = 0;
    this.onRefused(why);
  }
}
