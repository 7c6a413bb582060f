// Anthropic prompt caching, as far as it matters for limits and usage: the longest prefix seen
// before (up to a `cache_control` breakpoint) is a cache read, the rest up to the last breakpoint
// is a cache write, and everything after it is plain input. Cache reads do not count toward
// input tokens/min, which is why a fleet that caches can go faster than its ITPM suggests.

import { createHash } from 'node:crypto';
import { ONE_HOUR_MS, type Segment } from './prompt-tokens.js';

export interface CachePlan {
  /** Plain input tokens (what `usage.input_tokens` reports). */
  input: number;
  cacheCreation: number;
  /** Of `cacheCreation`, the tokens written at a breakpoint with `ttl: '1h'` (billed at 2x input, not 1.25x). */
  cacheCreation1h: number;
  cacheRead: number;
  /** Prefixes to remember once the call has run. */
  writes: { hash: string; ttlMs: number }[];
}

export class PromptCache {
  #entries = new Map<string, number>();

  /**
   * How a prompt of `totalTokens` is priced. `scope` separates callers that do not share a cache
   * (key and model). Tokens outside every segment (the reply priming) are always plain input.
   */
  plan(scope: string, segments: readonly Segment[], totalTokens: number, now: number): CachePlan {
    const running = createHash('sha256').update(scope);
    let cumulative = 0;
    let lastBreakpointTokens = 0;
    let readTokens = 0;
    const writes: CachePlan['writes'] = [];
    const breakpoints: { upTo: number; ttlMs: number }[] = [];
    for (const segment of segments) {
      running.update('\u0000').update(segment.material);
      cumulative += segment.tokens;
      if (segment.breakpointTtlMs === null) continue;
      const hash = running.copy().digest('hex');
      const expiresAt = this.#entries.get(hash);
      if (expiresAt !== undefined && expiresAt > now) readTokens = cumulative;
      lastBreakpointTokens = cumulative;
      writes.push({ hash, ttlMs: segment.breakpointTtlMs });
      breakpoints.push({ upTo: cumulative, ttlMs: segment.breakpointTtlMs });
    }
    // As Anthropic reports it: the tokens written up to a breakpoint, since the one before it (or
    // since what was read), take that breakpoint's TTL.
    let cacheCreation1h = 0;
    let from = readTokens;
    for (const { upTo, ttlMs } of breakpoints) {
      if (upTo <= from) continue;
      if (ttlMs === ONE_HOUR_MS) cacheCreation1h += upTo - from;
      from = upTo;
    }
    return {
      input: totalTokens - lastBreakpointTokens,
      cacheCreation: lastBreakpointTokens - readTokens,
      cacheCreation1h,
      cacheRead: readTokens,
      writes,
    };
  }

  /** Remembers (or refreshes) the prefixes of a call that ran: a hit extends the lifetime. */
  commit(writes: CachePlan['writes'], now: number): void {
    for (const { hash, ttlMs } of writes) {
      this.#entries.set(hash, Math.max(this.#entries.get(hash) ?? 0, now + ttlMs));
    }
    if (this.#entries.size > 100_000) {
      for (const [hash, expiresAt] of this.#entries) if (expiresAt <= now) this.#entries.delete(hash);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
