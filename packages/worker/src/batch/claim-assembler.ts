/**
 * Groups BATCH jobs into claims, one open claim per (provider, model, API) — an OpenAI batch file
 * must hold a single model and a batch a single endpoint (Chat Completions or Responses), and
 * grouping Anthropic the same way keeps batches and costs per model — and
 * decides when a claim is due: full (N requests or the provider's size limit), or its oldest job
 * has waited T. Pure: time comes in as an argument, Redis is the caller's business.
 */
import type { Provider } from '@headroom/queue';

export interface ProviderBatchLimits {
  maxRequests: number;
  maxBytes: number;
}

/**
 * The providers' own ceilings: Anthropic 100,000 requests or 256 MB per Message Batch; OpenAI
 * 50,000 requests and a 200 MB input file. 1% is kept back for the JSON around the entries
 * (`{"requests":[...]}`, commas, multipart framing).
 */
export const PROVIDER_BATCH_LIMITS: Record<Provider, ProviderBatchLimits> = {
  anthropic: { maxRequests: 100_000, maxBytes: Math.floor(256 * 1024 * 1024 * 0.99) },
  openai: { maxRequests: 50_000, maxBytes: Math.floor(200 * 1024 * 1024 * 0.99) },
};

export function batchLimitsFor(provider: Provider, maxRequests: number): ProviderBatchLimits {
  const ceiling = PROVIDER_BATCH_LIMITS[provider];
  return { maxRequests: Math.min(maxRequests, ceiling.maxRequests), maxBytes: ceiling.maxBytes };
}

export interface FillingClaim {
  id: string;
  provider: Provider;
  model: string;
  /** OpenAI Responses jobs' claims; Chat Completions (and Anthropic) claims have none. */
  api?: 'responses';
  count: number;
  bytes: number;
  /** Enqueue time of the oldest job in the claim. */
  oldestAt: number;
  /** When this claim was opened (leader's clock). */
  openedAt: number;
  /** Full: nothing more may join it. */
  sealed: boolean;
}

export interface IncomingJob {
  provider: Provider;
  model: string;
  api?: 'responses';
  /** Serialized size of the job's batch entry. */
  bytes: number;
  enqueuedAt: number;
}

export interface AssemblerOptions {
  limitsOf(provider: Provider): ProviderBatchLimits;
  maxWaitMs: number;
  newClaimId(): string;
}

export class ClaimAssembler {
  private readonly filling = new Map<string, FillingClaim>();
  private readonly full: FillingClaim[] = [];

  constructor(private readonly opts: AssemblerOptions) {}

  /** The claim this job joins; a claim that cannot take it is sealed and a new one opened. */
  add(job: IncomingJob, now: number): { claim: FillingClaim; opened: boolean } {
    const key = `${job.provider}\u0000${job.model}\u0000${job.api ?? ''}`;
    const limits = this.opts.limitsOf(job.provider);
    let claim = this.filling.get(key);
    if (claim && claim.count > 0 && claim.bytes + job.bytes > limits.maxBytes) {
      this.seal(key, claim);
      claim = undefined;
    }
    let opened = false;
    if (!claim) {
      claim = { id: this.opts.newClaimId(), provider: job.provider, model: job.model, ...(job.api ? { api: job.api } : {}), count: 0, bytes: 0, oldestAt: job.enqueuedAt, openedAt: now, sealed: false };
      this.filling.set(key, claim);
      opened = true;
    }
    claim.count += 1;
    claim.bytes += job.bytes;
    claim.oldestAt = Math.min(claim.oldestAt, job.enqueuedAt);
    if (claim.count >= limits.maxRequests) this.seal(key, claim);
    return { claim, opened };
  }

  /**
   * Claims to submit now, taken out of the assembler. A claim is due when full, or when its oldest
   * job has waited `maxWaitMs` and either the lane is drained (nothing more would join it soon) or
   * the claim itself has been open that long — so a backlog fills batches to N first, yet a
   * steady stream of other groups never holds a small group back for more than 2T.
   */
  takeDue(now: number, laneDrained: boolean): FillingClaim[] {
    const due = this.full.splice(0);
    for (const [key, claim] of this.filling) {
      const waited = now - claim.oldestAt >= this.opts.maxWaitMs;
      if (waited && (laneDrained || now - claim.openedAt >= this.opts.maxWaitMs)) {
        this.filling.delete(key);
        due.push(claim);
      }
    }
    return due;
  }

  /** Earliest time a filling claim could come due by waiting (for the idle sleep). */
  nextDueAt(): number | undefined {
    let next: number | undefined;
    for (const claim of this.filling.values()) {
      const at = claim.oldestAt + this.opts.maxWaitMs;
      if (next === undefined || at < next) next = at;
    }
    return this.full.length > 0 ? 0 : next;
  }

  /** Every claim still held, full or filling. */
  all(): FillingClaim[] {
    return [...this.full, ...this.filling.values()];
  }

  clear(): void {
    this.filling.clear();
    this.full.length = 0;
  }

  private seal(key: string, claim: FillingClaim): void {
    claim.sealed = true;
    this.filling.delete(key);
    this.full.push(claim);
  }
}
