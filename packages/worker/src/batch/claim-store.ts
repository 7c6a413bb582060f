/**
 * The batcher's state in Redis, so any worker can take over from a leader that died. A claim is a
 * group of BATCH jobs (one provider, one model) that the batcher holds active in BullMQ under the
 * claim's lock token; its record says where the claim stands:
 *
 * - open        jobs are being gathered; nothing was sent.
 * - submitting  an intent (`intentAt`, `intentCount`) was written, under the leader's fence,
 *               BEFORE the provider was asked: the batch may exist, its id is not known.
 * - submitted   the provider's batch id is recorded (`HSETNX`: the first id recorded wins).
 *
 * The phase is derived from the fields (batch id > intent > nothing), so a crash between two
 * writes can never leave a record that lies. Every key shares the fleet's hash tag.
 */
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { fleetKeys, type Provider } from '@headroom/queue';

export interface ClaimRecord {
  id: string;
  provider: Provider;
  model: string;
  /** "responses" for a claim of OpenAI Responses jobs (its batch's endpoint); absent for Chat Completions. */
  api?: 'responses';
  /** BullMQ lock token of every job in the claim. */
  token: string;
  /** Fence of the lease under which the claim was opened. */
  fence: number;
  createdAt: number;
  /** Enqueue time of the oldest job. */
  oldestAt: number;
  /** Redis time (ms) of the latest submit intent. */
  intentAt?: number;
  intentCount?: number;
  /** OpenAI: the uploaded input file. */
  fileId?: string;
  batchId?: string;
  submittedAt?: number;
  jobIds: Set<string>;
}

export type ClaimPhase = 'open' | 'submitting' | 'submitted';

export function phaseOf(claim: ClaimRecord): ClaimPhase {
  if (claim.batchId !== undefined) return 'submitted';
  return claim.intentAt !== undefined ? 'submitting' : 'open';
}

type Tx = ChainableCommander;

const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));

export class ClaimStore {
  private readonly keys: ReturnType<typeof fleetKeys>;

  constructor(
    private readonly redis: Redis | Cluster,
    prefix: string,
  ) {
    this.keys = fleetKeys(prefix);
  }

  async create(claim: ClaimRecord): Promise<void> {
    const tx = this.redis
      .multi()
      .hset(this.keys.batchClaim(claim.id), {
        provider: claim.provider,
        model: claim.model,
        ...(claim.api ? { api: claim.api } : {}),
        token: claim.token,
        fence: claim.fence,
        createdAt: claim.createdAt,
        oldestAt: claim.oldestAt,
      })
      .zadd(this.keys.batchClaims, claim.createdAt, claim.id);
    if (claim.jobIds.size > 0) tx.sadd(this.keys.batchClaimJobs(claim.id), ...claim.jobIds);
    await exec(tx);
  }

  async addJobs(claimId: string, jobIds: readonly string[], oldestAt: number): Promise<void> {
    if (jobIds.length === 0) return;
    await exec(this.redis.multi().sadd(this.keys.batchClaimJobs(claimId), ...jobIds).hset(this.keys.batchClaim(claimId), 'oldestAt', oldestAt));
  }

  /** `dropFile`: the claim's uploaded file no longer matches its jobs, and goes in the same call. */
  async removeJobs(claimId: string, jobIds: readonly string[], dropFile = false): Promise<void> {
    if (jobIds.length === 0) return;
    const tx = this.redis.multi().srem(this.keys.batchClaimJobs(claimId), ...jobIds);
    if (dropFile) tx.hdel(this.keys.batchClaim(claimId), 'fileId');
    await exec(tx);
  }

  /** The intent, for a fenced transaction (see LeaderLease.fenced). */
  writeIntent(tx: Tx, claimId: string, intentAt: number, count: number): void {
    tx.hset(this.keys.batchClaim(claimId), 'intentAt', intentAt, 'intentCount', count);
  }

  /** The provider has surely not made a batch of this intent: the claim is open again. */
  async clearIntent(claimId: string): Promise<void> {
    await this.redis.hdel(this.keys.batchClaim(claimId), 'intentAt', 'intentCount');
  }

  async setFileId(claimId: string, fileId: string): Promise<void> {
    await this.redis.hset(this.keys.batchClaim(claimId), 'fileId', fileId);
  }

  /**
   * Records the claim's batch id; false when another id was recorded first (a deposed leader's
   * late answer, or a duplicate): the caller then treats its own batch as the orphan.
   */
  async recordBatch(claimId: string, batchId: string, submittedAt: number): Promise<boolean> {
    const won = await this.redis.hsetnx(this.keys.batchClaim(claimId), 'batchId', batchId);
    if (won !== 1) return false;
    await exec(this.redis.multi().hset(this.keys.batchClaim(claimId), 'submittedAt', submittedAt).hset(this.keys.batches, batchId, claimId));
    return true;
  }

  async batchIdOf(claimId: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.batchClaim(claimId), 'batchId')) ?? undefined;
  }

  async knownBatchIds(): Promise<Set<string>> {
    return new Set(await this.redis.hkeys(this.keys.batches));
  }

  /** Every claim in Redis; index entries whose record is gone are dropped. */
  async loadAll(): Promise<ClaimRecord[]> {
    const ids = await this.redis.zrange(this.keys.batchClaims, '0', '-1');
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.batchClaim(id)).smembers(this.keys.batchClaimJobs(id));
    const replies = (await pipe.exec()) ?? [];
    const claims: ClaimRecord[] = [];
    const stale: string[] = [];
    ids.forEach((id, i) => {
      const [hErr, hash] = replies[2 * i] ?? [];
      const [sErr, members] = replies[2 * i + 1] ?? [];
      if (hErr || sErr) throw hErr ?? sErr;
      const h = hash as Record<string, string>;
      if (!h.provider || !h.model || !h.token) {
        stale.push(id);
        return;
      }
      const claim: ClaimRecord = {
        id,
        provider: h.provider as Provider,
        model: h.model,
        // A claim filed before OpenAI had two APIs has no api: Chat Completions, as it was.
        ...(h.api === 'responses' ? { api: 'responses' as const } : {}),
        token: h.token,
        fence: Number(h.fence ?? 0),
        createdAt: Number(h.createdAt ?? 0),
        oldestAt: Number(h.oldestAt ?? h.createdAt ?? 0),
        jobIds: new Set(members as string[]),
      };
      const intentAt = num(h.intentAt);
      const intentCount = num(h.intentCount);
      const submittedAt = num(h.submittedAt);
      if (intentAt !== undefined) claim.intentAt = intentAt;
      if (intentCount !== undefined) claim.intentCount = intentCount;
      if (h.fileId) claim.fileId = h.fileId;
      if (h.batchId) claim.batchId = h.batchId;
      if (submittedAt !== undefined) claim.submittedAt = submittedAt;
      claims.push(claim);
    });
    if (stale.length > 0) await this.redis.zrem(this.keys.batchClaims, ...stale);
    return claims;
  }

  /** The claim is settled (or emptied): its records go. */
  async remove(claim: Pick<ClaimRecord, 'id' | 'batchId'>): Promise<void> {
    const tx = this.redis.multi().del(this.keys.batchClaim(claim.id), this.keys.batchClaimJobs(claim.id)).zrem(this.keys.batchClaims, claim.id);
    if (claim.batchId) tx.hdel(this.keys.batches, claim.batchId);
    await exec(tx);
  }
}

async function exec(tx: Tx): Promise<void> {
  const replies = await tx.exec();
  const failed = replies?.find(([err]) => err);
  if (failed) throw failed[0];
}
