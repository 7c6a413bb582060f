/**
 * Hears the fleet's cancel channel: a producer or gateway whose caller went away publishes the
 * job's id after trying to remove it (which fails once a worker has taken it). The worker running
 * the job aborts it with `JobCancelled`: before its provider call, nothing is sent; mid-stream, the
 * call is stopped. An id heard before this worker registered the job (the fetch's reply still on
 * its way) is remembered for a while, so that race cancels too.
 *
 * Pub/sub is fire-and-forget: a message lost while this connection reconnects leaves a streamed
 * call to the cancel flag, which stops it at its next relay write (lua/relay-2.lua).
 */
import type { Cluster, Redis } from 'ioredis';
import { fleetKeys, type Logger } from '@headroom/queue';

/** How long an id heard for a job this worker does not run is remembered. */
const REMEMBER_MS = 10_000;

export class CancelListener {
  readonly #heard = new Map<string, number>();

  constructor(
    private readonly conn: Redis | Cluster,
    private readonly prefix: string,
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {}

  /** Subscribes; `onCancel` returns whether this worker runs the job. */
  async start(onCancel: (jobId: string) => boolean): Promise<void> {
    this.conn.on('message', (_channel: string, jobId: string) => {
      if (onCancel(jobId)) {
        this.logger.info({ jobId }, 'job cancelled by its caller while running');
        return;
      }
      const now = this.now();
      for (const [id, at] of this.#heard) if (now - at > REMEMBER_MS) this.#heard.delete(id);
      this.#heard.set(jobId, now);
    });
    await this.conn.subscribe(fleetKeys(this.prefix).cancelChannel);
  }

  /** Whether the job was cancelled just before this worker took it (and forgets it). */
  takeEarly(jobId: string): boolean {
    const at = this.#heard.get(jobId);
    if (at === undefined) return false;
    this.#heard.delete(jobId);
    return this.now() - at <= REMEMBER_MS;
  }
}
