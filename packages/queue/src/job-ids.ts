/**
 * Job ids carry their lane (`normal.<uuid>`), so `getJob` and `cancel` go straight to the right
 * queue. BullMQ forbids `:` in custom ids, hence the dot.
 */
import { createHash, randomUUID } from 'node:crypto';
import { LANES, type Lane } from './lanes.js';

export function newJobId(lane: Lane): string {
  return `${lane}.${randomUUID()}`;
}

/**
 * The same key from the same tenant always maps to the same id in a lane, so BullMQ's own id
 * check dedupes. The lane is part of the id: the same key in another lane (another priority, or
 * `sla: 'none'`) is another job. Refusing that would need a look at the other lanes, which live in
 * other Cluster slots, outside the lane's atomic add (docs/producer.md says so to callers). Keys are scoped per tenant: two tenants choosing the same key get two jobs, and
 * one cannot read or block another's by guessing its keys. A job without a tenant keeps the id
 * it always had. Hand-offs to the BATCH lane use ids of their own form (`handOffJobId`), which no
 * key maps to.
 */
export function idempotentJobId(lane: Lane, idempotencyKey: string, tenant?: string): string {
  const scoped = tenant === undefined ? idempotencyKey : `tenant\u0000${tenant}\u0000${idempotencyKey}`;
  return `${lane}.idem-${createHash('sha256').update(scoped).digest('hex').slice(0, 40)}`;
}

/**
 * The BATCH job a shed job becomes (`onShed: 'batch'`): derived from the original's id, so a
 * worker that dies between the add and completing the original hands off to the same job again,
 * and of a form (`batch.shed-…`) that no idempotency key maps to (those are `batch.idem-…`).
 */
export function handOffJobId(originalId: string): string {
  return `batch.shed-${createHash('sha256').update(originalId).digest('hex').slice(0, 40)}`;
}

export function laneOfJobId(id: string): Lane | undefined {
  const lane = id.slice(0, id.indexOf('.'));
  return (LANES as readonly string[]).includes(lane) ? (lane as Lane) : undefined;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The coalescing key of a job: a hash of what the provider would see (provider, request, fallback
 * ladder, Anthropic betas), with object keys sorted, so identical requests written differently
 * still coalesce, and of its tenant. Per tenant because a join tells its caller something: that
 * the same request was in flight (`existing`, and how soon it answered), which one tenant must not
 * learn of another's (the reason providers keep prompt caches per organization); and a shared job
 * has one tenant, whose quota it draws and whose cancel stops it. Metadata is left out: the answer
 * does not depend on it.
 */
export function coalesceKeyOf(job: { provider: string; api?: string | undefined; request: unknown; fallback?: readonly string[] | undefined; betas?: readonly string[] | undefined; tenant?: string | undefined }): string {
  // Betas, the API and the tenant are left out when absent (`canonical` drops undefined), so a
  // Chat Completions job's key, or one with no tenant, is what it was before they counted.
  return createHash('sha256').update(canonical({ provider: job.provider, api: job.api, request: job.request, fallback: job.fallback ?? [], betas: job.betas, tenant: job.tenant })).digest('hex').slice(0, 40);
}
