/**
 * The worker's end of a streamed job's relay: events are appended to the job's Redis stream as
 * they arrive (job-events.ts in @headroom/queue), one script call in flight at a time. The first
 * event goes out at once; the events that arrive while a call is in flight go together in the
 * next, so a fast stream costs a few round trips, not one per token, and a slow one adds no wait.
 * What waits here is bounded by what arrives during one round trip to Redis.
 */
import type { Cluster, Redis } from 'ioredis';
import { relayEvents, type JobEvent, type RelayOutcome } from '@headroom/queue';

/** Why the relay stopped taking events: the caller cancelled, an earlier attempt streamed, or Redis failed. */
export type RelayRefusal = Exclude<RelayOutcome, 'written'> | Error;

export class EventRelay {
  readonly #pending: JobEvent[] = [];
  #inFlight: Promise<void> | undefined;
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

  push(event: JobEvent): void {
    if (this.#refused !== undefined) return;
    this.#pending.push(event);
    if (this.#inFlight === undefined) this.#send();
  }

  /** Resolves once every event pushed so far is written, or with why writing stopped. */
  async flush(): Promise<RelayRefusal | undefined> {
    while (this.#inFlight !== undefined) await this.#inFlight;
    return this.#refused;
  }

  #send(): void {
    const batch = this.#pending.splice(0);
    const first = this.#first;
    this.#first = false;
    this.#inFlight = relayEvents(this.redis, this.prefix, this.jobId, batch, { first })
      .then(
        (outcome) => {
          if (outcome !== 'written') this.#refuse(outcome);
        },
        (err: unknown) => this.#refuse(err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => {
        this.#inFlight = undefined;
        if (this.#pending.length > 0 && this.#refused === undefined) this.#send();
      });
  }

  #refuse(why: RelayRefusal): void {
    if (this.#refused !== undefined) return;
    this.#refused = why;
    this.#pending.length = 0;
    this.onRefused(why);
  }
}
