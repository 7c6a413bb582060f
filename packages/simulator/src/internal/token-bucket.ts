// A continuous token bucket: capacity = the per-minute limit, refilled at limit/60 per second.
// Providers enforce limits this way rather than in fixed minute windows, so a full minute's quota
// can be spent in a burst, after which throughput is the refill rate.

const MINUTE_MS = 60_000;

export class TokenBucket {
  #capacity: number;
  #level: number;
  #at: number;

  constructor(capacity: number, now: number) {
    this.#capacity = capacity;
    this.#level = capacity;
    this.#at = now;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Tokens available at `now`; negative after a limit was lowered below what was just spent. */
  level(now: number): number {
    const elapsed = Math.max(0, now - this.#at);
    return Math.min(this.#capacity, this.#level + (elapsed * this.#capacity) / MINUTE_MS);
  }

  /** Milliseconds until `amount` can be taken: 0 when it fits now, Infinity when it never can. */
  waitFor(amount: number, now: number): number {
    if (amount > this.#capacity) return Number.POSITIVE_INFINITY;
    const missing = amount - this.level(now);
    return missing <= 0 ? 0 : (missing * MINUTE_MS) / this.#capacity;
  }

  /** Milliseconds until the bucket is full again (what the providers' reset headers report). */
  msUntilFull(now: number): number {
    return ((this.#capacity - this.level(now)) * MINUTE_MS) / this.#capacity;
  }

  take(amount: number, now: number): void {
    this.#sync(now);
    this.#level -= amount;
  }

  refund(amount: number, now: number): void {
    this.#sync(now);
    this.#level = Math.min(this.#capacity, this.#level + amount);
  }

  /**
   * Changes the limit while keeping what was recently spent spent: a halved limit right after a
   * burst leaves less room, as a provider brownout does, instead of handing out a fresh bucket.
   */
  setCapacity(capacity: number, now: number): void {
    this.#sync(now);
    const spent = this.#capacity - this.#level;
    this.#capacity = capacity;
    this.#level = capacity - spent;
  }

  #sync(now: number): void {
    this.#level = this.level(now);
    this.#at = Math.max(this.#at, now);
  }
}
