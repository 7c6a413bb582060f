/**
 * Job ids carry their lane (`normal.<uuid>`), so `getJob` and `cancel` go straight to the right
 * queue. BullMQ forbids `:` in custom ids, hence the dot.
 */
import { createHash, randomUUID } from 'node:crypto';
import { LANES, type Lane } from './lanes.js';

export function newJobId(lane: Lane): string {
  return `${lane}.${randomUUID()}`;
}

/** The same key always maps to the same id in a lane, so BullMQ's own id check dedupes. */
export function idempotentJobId(lane: Lane, idempotencyKey: string): string {
  return `${lane}.idem-${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 40)}`;
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
 * ladder), with object keys sorted, so identical requests written differently still coalesce.
 * Tenant and metadata are left out on purpose: the answer does not depend on them.
 */
export function coalesceKeyOf(job: { provider: string; request: unknown; fallback?: readonly string[] | undefined }): string {
  return createHash('sha256').update(canonical({ provider: job.provider, request: job.request, fallback: job.fallback ?? [] })).digest('hex').slice(0, 40);
}
