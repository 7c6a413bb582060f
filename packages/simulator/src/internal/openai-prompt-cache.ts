// OpenAI's automatic prompt caching, as far as it matters for limits and usage. OpenAI caches
// every prompt of 1024 tokens or more, with no markers; a later prompt that starts with a prefix
// seen recently reports the matched part as `prompt_tokens_details.cached_tokens`, in steps of 128
// tokens from 1024 (its guide's example: 1920 of 2006). Unlike Anthropic's cache reads, cached
// tokens still count toward TPM ("Do cached prompts contribute to TPM rate limits? Yes, as caching
// does not affect rate limits."), so the caller charges the whole prompt either way.
//
// The simulator matches whole segments (the tools, then each message): a prefix that ends inside
// a message is not matched, which the real cache, working on tokens, would match. Deterministic:
// no routing, no overflow past ~15 requests a minute per prefix.

import { createHash } from 'node:crypto';
import type { Segment } from './prompt-tokens.js';

const MIN_CACHED_TOKENS = 1024;
const CACHE_STEP_TOKENS = 128;
// "Cached prefixes generally remain active for 5 to 10 minutes of inactivity": the short end.
const TTL_MS = 5 * 60_000;

export interface AutomaticCachePlan {
  /** Prompt tokens served from the cache: 0, or a multiple of 128 from 1024 up. */
  cached: number;
  /** Prefixes to remember once the call has run. */
  writes: string[];
}

export class AutomaticPromptCache {
  #entries = new Map<string, number>();

  /** `scope` separates callers that do not share a cache (key and model). */
  plan(scope: string, segments: readonly Segment[], totalTokens: number, now: number): AutomaticCachePlan {
    const running = createHash('sha256').update(scope);
    let cumulative = 0;
    let matched = 0;
    const writes: string[] = [];
    for (const segment of segments) {
      running.update('\u0000').update(segment.material);
      cumulative += segment.tokens;
      if (cumulative < MIN_CACHED_TOKENS) continue;
      const hash = running.copy().digest('hex');
      const expiresAt = this.#entries.get(hash);
      if (expiresAt !== undefined && expiresAt > now) matched = cumulative;
      writes.push(hash);
    }
    const cached = matched >= MIN_CACHED_TOKENS ? Math.floor(matched / CACHE_STEP_TOKENS) * CACHE_STEP_TOKENS : 0;
    return { cached, writes: totalTokens >= MIN_CACHED_TOKENS ? writes : [] };
  }

  /** Remembers (or refreshes) the prefixes of a call that ran. */
  commit(writes: readonly string[], now: number): void {
    for (const hash of writes) this.#entries.set(hash, now + TTL_MS);
    if (this.#entries.size > 100_000) {
      for (const [hash, expiresAt] of this.#entries) if (expiresAt <= now) this.#entries.delete(hash);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
