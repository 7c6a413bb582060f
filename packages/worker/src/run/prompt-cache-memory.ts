/**
 * What this worker knows of the provider's prompt cache, so an input reservation counts what the
 * provider will count. Anthropic does not count cache reads toward input tokens/min on current
 * models: with 80% of every prompt read from the cache, the provider serves five times the
 * prompts its ITPM suggests, and a reservation of the whole prompt would admit a fifth of them.
 *
 * How a cacheable prefix is learned (the choice, and why):
 * - The request says where the cache may end: Anthropic caches up to each `cache_control`
 *   breakpoint (on a tool, a system block or a message block), in the order tools, system,
 *   messages. Each breakpoint's prefix is identified by a hash chained over the blocks before it
 *   (their JSON without `cache_control`), so two requests share an entry exactly when the provider
 *   would see the same prefix. No guessing from text similarity, no tokenizer of Claude's.
 * - The provider says whether it cached: after a call whose usage reports cache reads or writes,
 *   every breakpoint prefix of that request is remembered until its TTL (5 min, or 1 h with
 *   `ttl: '1h'`) runs out, counted from the call's start (the provider's clock starts then; a hit
 *   refreshes it), less a safety margin. A call reporting neither (a prompt below the model's
 *   minimum cacheable length) teaches nothing, so such prompts keep their full reservation.
 * - The reservation then leaves out the longest remembered prefix, at its own o200k estimate
 *   (the learned margin applies to the rest). A settle replaces the reservation with what the
 *   provider counted, so a miss (the entry evicted early, another key) costs a brief overdraw
 *   of the bucket, corrected at the settle, never a lost charge.
 *
 * Process-local, like the token estimator: each worker learns from its own calls (the provider's
 * cache is shared by the fleet's key, so one call per prefix per worker is all it costs). OpenAI
 * is left out: its cached tokens still count toward tokens/min, as OpenAI documents.
 */
import { createHash } from 'node:crypto';
import type { Usage } from '@headroom/queue';
import type { ProviderRequest } from '../providers/types.js';
import { estimateInputTokens, REPLY_PRIMING_TOKENS } from './token-estimator.js';

const FIVE_MINUTES_MS = 5 * 60_000;
const ONE_HOUR_MS = 60 * 60_000;
/** Forget an entry this much before the provider would: never assume a hit the provider lost. */
export const CACHE_SAFETY_MS = 10_000;
/** Entries kept per worker; the oldest go first past it. */
const MAX_ENTRIES = 20_000;

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface Breakpoint {
  /** Hash of everything up to and including the block that carries `cache_control`. */
  hash: string;
  ttlMs: number;
  /** The request cut at the breakpoint, for its estimate (built only when needed). */
  prefix(): ProviderRequest;
}

function ttlOf(block: unknown): number | undefined {
  if (!isRecord(block) || !isRecord(block.cache_control)) return undefined;
  return block.cache_control.ttl === '1h' ? ONE_HOUR_MS : FIVE_MINUTES_MS;
}

function material(block: unknown): string {
  if (!isRecord(block) || block.cache_control === undefined) return JSON.stringify(block);
  const { cache_control: _ignored, ...rest } = block;
  return JSON.stringify(rest);
}

/** The `cache_control` breakpoints of an Anthropic Messages request, in cache order. */
export function cacheBreakpoints(request: ProviderRequest): Breakpoint[] {
  const body = request as unknown as Json;
  const tools = Array.isArray(body.tools) ? (body.tools as unknown[]) : [];
  const system = Array.isArray(body.system) ? (body.system as unknown[]) : body.system;
  const messages = Array.isArray(body.messages) ? (body.messages as Json[]) : [];
  const running = createHash('sha256').update(String(body.model ?? ''));
  const out: Breakpoint[] = [];
  const cut = (parts: Json) => ({ ...parts, model: body.model, max_tokens: body.max_tokens }) as unknown as ProviderRequest;
  const add = (block: unknown, prefix: () => ProviderRequest) => {
    running.update('\u0000').update(material(block));
    const ttlMs = ttlOf(block);
    if (ttlMs !== undefined) out.push({ hash: running.copy().digest('base64url'), ttlMs, prefix });
  };
  for (const [i, tool] of tools.entries()) add(tool, () => cut({ tools: tools.slice(0, i + 1), messages: [] }));
  if (typeof system === 'string') running.update('\u0000s').update(system);
  else if (Array.isArray(system)) {
    for (const [i, block] of system.entries()) add(block, () => cut({ tools, system: system.slice(0, i + 1), messages: [] }));
  }
  for (const [m, message] of messages.entries()) {
    running.update(`\u0000${String(message.role)}:`);
    const content = message.content;
    if (!Array.isArray(content)) {
      running.update(String(content));
      continue;
    }
    for (const [b, block] of content.entries()) {
      add(block, () => cut({ tools, system, messages: [...messages.slice(0, m), { role: message.role, content: content.slice(0, b + 1) }] }));
    }
  }
  return out;
}

/** A prefix's own estimate: what the reservation leaves out when it is cached. */
function prefixEstimate(bp: Breakpoint): number {
  return Math.max(0, estimateInputTokens(bp.prefix()) - REPLY_PRIMING_TOKENS);
}

export class PromptCacheMemory {
  /** `model \0 hash` -> when the provider may have dropped it (less the margin), and the prefix's estimate. */
  readonly #entries = new Map<string, { until: number; estimate: number }>();

  constructor(private readonly now: () => number) {}

  /**
   * Input tokens of the request this worker expects the provider to read from its cache: the
   * estimate of the longest breakpoint prefix remembered and not expired; 0 when none.
   */
  cachedEstimate(model: string, request: ProviderRequest, breakpoints = cacheBreakpoints(request)): number {
    const now = this.now();
    for (let i = breakpoints.length - 1; i >= 0; i--) {
      const entry = this.#entries.get(`${model}\u0000${breakpoints[i]!.hash}`);
      if (entry && entry.until > now) return entry.estimate;
    }
    return 0;
  }

  /**
   * The most the provider could read from its cache for this request: the estimate of its last
   * breakpoint's prefix (0 without breakpoints). For a request that never fits in full.
   */
  cacheableEstimate(breakpoints: Breakpoint[]): number {
    const last = breakpoints[breakpoints.length - 1];
    return last === undefined ? 0 : prefixEstimate(last);
  }

  /** Learns from a call that started at `startedAt` and reported `usage`. */
  remember(model: string, request: ProviderRequest, usage: Usage, startedAt: number): void {
    if (usage.cacheReadInputTokens + usage.cacheCreationInputTokens <= 0) return;
    for (const bp of cacheBreakpoints(request)) {
      const key = `${model}\u0000${bp.hash}`;
      const until = startedAt + bp.ttlMs - CACHE_SAFETY_MS;
      const known = this.#entries.get(key);
      if (known) {
        known.until = Math.max(known.until, until);
        continue;
      }
      this.#entries.set(key, { until, estimate: prefixEstimate(bp) });
    }
    if (this.#entries.size > MAX_ENTRIES) this.#trim();
  }

  get size(): number {
    return this.#entries.size;
  }

  #trim(): void {
    const now = this.now();
    for (const [key, entry] of this.#entries) if (entry.until <= now) this.#entries.delete(key);
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= MAX_ENTRIES) break;
      this.#entries.delete(key);
    }
  }
}
