/**
 * Whether the gateway waiting on a job is still there. A gateway withdraws the job of a client
 * that leaves, but one killed outright (SIGKILL, OOM, a crash) cannot: its clients were cut off
 * with it, and their SDKs send the call again, to another gateway. The job, left in its lane or
 * streaming, would be paid for with nobody to answer. So a job names its gateway (`LlmJob.gateway`),
 * and the worker about to call the provider for it, or relaying its stream, withdraws it once that
 * gateway's heartbeat is gone (heartbeat.ts: its entry in the fleet's `gateways` hash, with the
 * Redis time it lapses, which already allows for a late beat).
 *
 * No round trip per job on the hot path: one read of the hash (TIME and HGETALL in one MULTI)
 * serves every job of this worker for `PRESENCE_FRESH_MS`, and a gateway it shows alive is taken as
 * alive until its entry's own expiry (counted on from the read by this worker's clock). Only a
 * gateway the read does not show alive costs a read of its own, and only when the cached read is
 * older than the job: a gateway started since could have enqueued it.
 *
 * ```ts
 * const gateways = new GatewayPresence(() => readHeartbeats(redis, prefix, 'gateway'), Date.now);
 * if (job.gateway !== undefined && (await gateways.gone(job.gateway, takenAt))) withdraw();
 * ```
 */
import { FailureCode, jobFailure, type Heartbeats, type JobFailure } from '@headroom/queue';

/** How long one read of the gateways' heartbeats serves this worker's jobs. */
export const PRESENCE_FRESH_MS = 1_000;

/** How often a streamed call in flight asks whether its gateway is still there. */
export const STREAM_PRESENCE_CHECK_MS = 1_000;

/** One read of the gateways hash: when this worker began it (its clock), Redis's time, and each live entry's expiry. */
interface View {
  startedAt: number;
  atMs: number;
  expiries: ReadonlyMap<string, number>;
}

export class GatewayPresence {
  #view: View | undefined;
  #reading: { startedAt: number; view: Promise<View | undefined> } | undefined;

  constructor(
    private readonly read: () => Promise<Heartbeats>,
    private readonly now: () => number,
    private readonly freshMs: number = PRESENCE_FRESH_MS,
  ) {}

  /**
   * Whether gateway `id` is gone, for a job this worker took at `takenAt` (its clock): its entry
   * absent or lapsed in a read begun after then. False while Redis does not answer: a job is never
   * withdrawn on a doubt.
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
    if (cached.startedAt >= takenAt && (expiry === undefined || expiry < cached.atMs)) return true;
    // A read older than the job, or one that showed the entry alive but lapsed since: read again.
    const fresh = await this.#viewSince(askedAt);
    if (!fresh) return false;
    const now = fresh.expiries.get(id);
    return now === undefined || now < fresh.atMs;
  }

  /** The latest read begun at `since` or after: the one cached, the one under way, or a new one. */
  #viewSince(since: number): Promise<View | undefined> {
    if (this.#view && this.#view.startedAt >= since) return Promise.resolve(this.#view);
    if (this.#reading && this.#reading.startedAt >= since) return this.#reading.view;
    const startedAt = this.now();
    const view: Promise<View | undefined> = this.read()
      .then(
        (read) => {
          const v: View = { startedAt, atMs: read.atMs, expiries: new Map(read.alive.map((hb) => [hb.id, hb.expiresAtMs])) };
          if (!this.#view || this.#view.startedAt <= startedAt) this.#view = v;
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
  return jobFailure(FailureCode.CANCELLED, `withdrawn ${when}: the gateway waiting on it (${gateway}) is gone (its heartbeat lapsed or was removed), and its client with it`, GATEWAY_GONE_RETRY_AFTER_MS);
}

/** The `retry-after` of a job withdrawn from a gateway taken for gone: its client may send it again at once. */
const GATEWAY_GONE_RETRY_AFTER_MS = 0;
