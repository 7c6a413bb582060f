/**
 * One batcher leader for the whole fleet: a lease in Redis (`SET` with a TTL, renewed by its
 * holder) carrying a fencing token that grows with every new lease. A holder that dies is
 * replaced once its lease runs out; a holder that stalls (GC, a frozen VM) finds on waking that
 * its renewal and its fenced writes fail, because the lease value — holder id and fence — is no
 * longer its own.
 *
 * Compare-and-set without Lua: every check-then-write is WATCH / GET / MULTI / EXEC on a
 * connection this class owns, one transaction at a time, so an EXEC that would act on a stale
 * lease is discarded by Redis itself. (Lua scripts belong in @headroom/queue; this keeps the batch
 * router inside the worker.)
 *
 * ```ts
 * const lease = new LeaderLease({ redis, keys: fleetKeys('hr'), holder: 'worker-1', ttlMs: 15_000 });
 * if (await lease.tryAcquire()) await lease.fenced((tx) => tx.hset(key, 'intentAt', t));
 * ```
 */
import type { ChainableCommander, Cluster, Redis } from 'ioredis';

export interface LeaderLeaseOptions {
  /** A connection for this lease alone: WATCH state is per connection (all keys share one slot). */
  redis: Redis | Cluster;
  keys: { batchLeader: string; batchFence: string };
  holder: string;
  ttlMs: number;
  /** A monotonic clock in ms. @default performance.now */
  monotonic?: () => number;
}

export class LeaderLease {
  private value: string | undefined;
  private fenceValue: number | undefined;
  /** Monotonic time until which the lease is surely ours (taken before the write that set it). */
  private validUntil = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly monotonic: () => number;

  constructor(private readonly opts: LeaderLeaseOptions) {
    this.monotonic = opts.monotonic ?? (() => performance.now());
  }

  /** The fencing token of the lease held, if any. */
  get fence(): number | undefined {
    return this.isHeld() ? this.fenceValue : undefined;
  }

  /**
   * True while the lease is surely ours by our own clock, with a margin: a holder whose renewals
   * stopped arriving stops acting before Redis lets anyone else in.
   */
  isHeld(): boolean {
    return this.value !== undefined && this.monotonic() < this.validUntil - this.margin();
  }

  /** Takes the lease if nobody holds it; returns whether we hold it now. */
  tryAcquire(): Promise<boolean> {
    return this.serial(async () => {
      if (this.isHeld()) return true;
      const { redis, keys, holder, ttlMs } = this.opts;
      await redis.watch(keys.batchLeader, keys.batchFence);
      const [current, fence] = await Promise.all([redis.get(keys.batchLeader), redis.get(keys.batchFence)]);
      if (current !== null) {
        await redis.unwatch();
        this.value = undefined;
        return false;
      }
      const next = Number(fence ?? 0) + 1;
      const value = `${holder}|${next}`;
      // The lease's TTL starts when Redis runs the SET, after this: counted from here, not from
      // before the WATCH, which may have waited out a Redis restart in the offline queue (the
      // lease then looked expired the moment it was taken, and nobody led until its TTL ran out).
      const started = this.monotonic();
      const done = await redis.multi().set(keys.batchLeader, value, 'PX', ttlMs).set(keys.batchFence, next).exec();
      if (done === null) return false;
      this.value = value;
      this.fenceValue = next;
      this.validUntil = started + ttlMs;
      return true;
    });
  }

  /** Extends the lease; false (and no longer held) when someone else has it now. */
  renew(): Promise<boolean> {
    return this.serial(async () => {
      if (this.value === undefined) return false;
      const started = this.monotonic();
      const ok = await this.ifHolder((tx) => tx.pexpire(this.opts.keys.batchLeader, this.opts.ttlMs));
      if (ok) this.validUntil = started + this.opts.ttlMs;
      else this.value = undefined;
      return ok;
    });
  }

  /** Gives the lease up at once (graceful stop), so another worker need not wait for the TTL. */
  release(): Promise<void> {
    return this.serial(async () => {
      if (this.value === undefined) return;
      await this.ifHolder((tx) => tx.del(this.opts.keys.batchLeader));
      this.value = undefined;
    });
  }

  /**
   * Runs `write` in a transaction that commits only while we hold the lease; false otherwise.
   * For writes that must never come from a deposed leader (a submit intent).
   */
  fenced(write: (tx: ChainableCommander) => void): Promise<boolean> {
    return this.serial(async () => {
      if (!this.isHeld()) return false;
      return this.ifHolder(write);
    });
  }

  /** Forgets the lease locally (the connection died, the process is stopping). */
  drop(): void {
    this.value = undefined;
  }

  private margin(): number {
    return Math.min(1_000, this.opts.ttlMs / 10);
  }

  private async ifHolder(write: (tx: ChainableCommander) => void): Promise<boolean> {
    const { redis, keys } = this.opts;
    await redis.watch(keys.batchLeader);
    if ((await redis.get(keys.batchLeader)) !== this.value) {
      await redis.unwatch();
      return false;
    }
    const tx = redis.multi();
    write(tx);
    const replies = await tx.exec();
    if (replies === null) return false;
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
    return true;
  }

  /** One transaction at a time on the connection: an interleaved WATCH would void another's. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}
