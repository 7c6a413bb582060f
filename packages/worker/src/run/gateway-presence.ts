/**
 * Whether the gateway waiting on a job is still there. A gateway withdraws the job of a client
 * that leaves, but one killed outright (SIGKILL, OOM, a crash) cannot: its clients were cut off
 * with it, and their SDKs send the call again, to another gateway. The job, left in its lane or
 * streaming, would be paid for with nobody to answer. So a job names its gateway (`LlmJob.gateway`),
 * and the worker about to call the provider for it, or relaying its stream, withdraws it once that
 * gateway's heartbeat is gone (heartbeat.ts: its entry in the fleet's `gateways` hash, with the
 * Redis time it lapses, which already allows for a late beat).
 *
 * An entry still there past its expiry is a gateway that stopped beating: gone at once. An entry
 * absent is not proof: a Redis that lost its data with the connections left open (`FLUSHALL`) has
 * lost every live gateway's entry until each beats again, within its interval. So an absent entry
 * is gone only once this worker has seen it absent for longer than one beat's lifetime (the one it
 * last saw that gateway's entry carry, else 3 x the config's `gateway.heartbeatMs`): a live gateway
 * beats within that, or its entry would have lapsed anyway.
 *
 * No round trip per job on the hot path: one read of the hash (TIME and HGETALL in one MULTI)
 * serves every job of this worker for `PRESENCE_FRESH_MS`, and a gateway it shows alive is taken as
 * alive until its entry's own expiry (counted on from the read by this worker's clock). Only a
 * gateway the read does not show alive costs a read of its own, and only when the cached read is
 * older than the job: a gateway started since could have enqueued it.
 *
 * ```ts
 * const gateways = new GatewayPresence(() => readHeartbeats(redis, prefix, 'gateway'), Date.now, heartbeatTtlMs(config.gateway.heartbeatMs));
 * if (job.gateway !== undefined && (await gateways.gone(job.gateway, takenAt))) withdraw();
 * ```
 */
import { FailureCode, jobFailure, type Heartbeats, type JobFailure } from '@headroom/queue';

/** How long one read of the gateways' heartbeats serves this worker's jobs. */
export const PRESENCE_FRESH_MS = 1_000;

/** A gateway seen absent this long is forgotten (its jobs, if any are left, start its clock again). */
const FORGET_ABSENT_MS = 3600_000;

/** How often a streamed call in flight asks whether its gateway is still there. */
export const STREAM_PRESENCE_CHECK_MS = 1_000;

/**
 * One read of the gateways hash: when this worker began and ended it (its clock), Redis's time,
 * each live entry's expiry, and the entries there past their expiry.
 */
interface View {
  startedAt: number;
  doneAt: number;
  atMs: number;
  expiries: ReadonlyMap<string, number>;
  expired: ReadonlySet<string>;
}

/** A gateway this worker has seen: how long its last entry vouched for it, and since when (its clock) it has been absent. */
interface Seen {
  lifetimeMs: number;
  absentSince?: number;
}

export class GatewayPresence {
  #view: View | undefined;
  #reading: { startedAt: number; view: Promise<View | undefined> } | undefined;
  readonly #seen = new Map<string, Seen>();

  /** `lifetimeMs`: how long a beat vouches for a gateway this worker has not seen beat (3 x the config's `gateway.heartbeatMs`). */
  constructor(
    private readonly read: () => Promise<Heartbeats>,
    private readonly now: () => number,
    private readonly lifetimeMs: number,
    private readonly freshMs: number = PRESENCE_FRESH_MS,
  ) {}

  /**
   * Whether gateway `id` is gone, for a job this worker took at `takenAt` (its clock): its entry
   * lapsed in a read begun after then, or absent from every read for longer than one beat's
   * lifetime. False while Redis does not answer: a job is never withdrawn on a doubt.
   */
  async gone(id: string, takenAt: number): Promise<boolean> {
    const askedAt = this.now();
    const cached = await this.#viewSince(askedAt - this.freshMs);
    if (!cached) return false;
    const expiry = cached.expiries.get(id);
    // Alive at the read, and its entry vouches for it until now: no read of its own.
    if (expiry !== undefined && expiry >= cached.atMs + (askedAt - cached.startedAt)) return false;
    // Not alive in a read begun after the job was taken: a gateway's first beat comes before it
    // names itself on a job (Heartbeat.written), so this is a gateway gone, not one not yet seen.
    if (cached.startedAt >= takenAt && this.#goneIn(cached, id)) return true;
    // A read older than the job, or one that showed the entry alive but lapsed since: read again.
    const fresh = await this.#viewSince(askedAt);
    if (!fresh) return false;
    return this.#goneIn(fresh, id);
  }

  /** Gone as of `view`: its entry lapsed there, or absent there and in every read for a lifetime before. */
  #goneIn(view: View, id: string): boolean {
    const expiry = view.expiries.get(id);
    if (expiry !== undefined) return expiry < view.atMs;
    if (view.expired.has(id)) return true;
    let seen = this.#seen.get(id);
    if (!seen) {
      seen = { lifetimeMs: this.lifetimeMs, absentSince: view.doneAt };
      this.#seen.set(id, seen);
    }
    // A later read showed it there: this one is out of date.
    if (seen.absentSince === undefined) return false;
    // Absent since at the latest `absentSince`, and still at `view.startedAt` at the earliest.
    return view.startedAt - seen.absentSince > seen.lifetimeMs;
  }

  /** What the newest read says of the gateways seen: each one's lifetime, and which went missing when. */
  #note(view: View): void {
    for (const [id, seen] of this.#seen) {
      if (view.expiries.has(id) || view.expired.has(id)) delete seen.absentSince;
      else if (seen.absentSince === undefined) seen.absentSince = view.doneAt;
      else if (view.doneAt - seen.absentSince > FORGET_ABSENT_MS) this.#seen.delete(id);
    }
  }

  /** The latest read begun at `since` or after: the one cached, the one under way, or a new one. */
  #viewSince(since: number): Promise<View | undefined> {
    if (this.#view && this.#view.startedAt >= since) return Promise.resolve(this.#view);
    if (this.#reading && this.#reading.startedAt >= since) return this.#reading.view;
    const startedAt = this.now();
    const view: Promise<View | undefined> = this.read()
      .then(
        (read) => {
          const v: View = { startedAt, doneAt: this.now(), atMs: read.atMs, expiries: new Map(read.alive.map((hb) => [hb.id, hb.expiresAtMs])), expired: new Set(read.expired) };
          if (!this.#view || this.#view.startedAt <= startedAt) {
            this.#view = v;
            for (const hb of read.alive) this.#seen.set(hb.id, { lifetimeMs: hb.expiresAtMs - hb.atMs });
            this.#note(v);
          }
          return v;
        },
        () => undefined,
      )
      .finally(() => {
        if (this.#reading?.view === view) this.#reading = undefined;
      });
    this.#reading = { startedAt, view };
    return view;
  }
}

/** How a job withdrawn because its gateway is gone ends: as its client's cancel would end it. */
export function gatewayGoneFailure(gateway: string, when: string): JobFailure {
  // A retry may start at once: a gateway that in fact lives (its beats lapsed) answers its client
  // with this, and the SDK's retry, sent again, runs the job again (a caller's own cancel carries
  // no retryAfterMs, and the gateway tells the SDK not to retry that: wire-errors.ts).
  return jobFailure(FailureCode.CANCELLED, `withdrawn ${when}: the gateway waiting on it (${gateway}) is gone (its heartbeat lapsed, or stayed absent longer than one beat's lifetime), and its client with it`, GATEWAY_GONE_RETRY_AFTER_MS);
}

/** The `retry-after` of a job withdrawn from a gateway taken for gone: its client may send it again at once. */
const GATEWAY_GONE_RETRY_AFTER_MS = 0;
