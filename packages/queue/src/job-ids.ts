/**
 * Job ids carry their lane (`normal.<uuid>`), so `getJob` and `cancel` go straight to the right
 * queue. BullMQ forbids `:` in custom ids, hence the dot.
 */
import { createHash, randomUUID } from 'node:crypto';
import { leaveDefaultsOut, type LlmJob } from './job.js';
import { LANES, type Lane } from './lanes.js';

export function newJobId(lane: Lane): string {
  return `${lane}.${randomUUID()}`;
}

/**
 * The same key from the same tenant (and scope) always maps to the same id in a lane, so BullMQ's
 * own id check dedupes. The lane is part of the id: the same key in another lane (another
 * priority, or `sla: 'none'`) is another job. Refusing that would need a look at the other lanes,
 * which live in other Cluster slots, outside the lane's atomic add (docs/producer.md says so to
 * callers). Keys are scoped per tenant and per scope (a gateway key bound to no tenant): two
 * tenants choosing the same key get two jobs, and one cannot read or block another's by guessing
 * its keys. A job with neither keeps the id it always had, a job with a tenant only too. Hand-offs
 * to the BATCH lane use ids of their own form (`handOffJobId`), which no key maps to.
 */
export function idempotentJobId(lane: Lane, idempotencyKey: string, tenant?: string, scope?: string): string {
  // NUL never occurs in a tenant or a scope (their alphabet is closed), so no two triples meet.
  const scopedByTenant = tenant === undefined ? idempotencyKey : `tenant\u0000${tenant}\u0000${idempotencyKey}`;
  const scoped = scope === undefined ? scopedByTenant : `scope\u0000${scope}\u0000${scopedByTenant}`;
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
 * Request fields whose written value asks for what leaving them out does, per provider API: a
 * plain call (`stream: false`, what the SDKs' non-streaming params type as `stream?: false`, and
 * OpenAI's `null`), OpenAI's one choice (`n: 1`), and OpenAI's `null` for each field its SDK types
 * `T | null` (its "not set"), which Headroom reads as left out too. Only those whose default the
 * provider documents: `temperature: 1` is not here.
 */
const REQUEST_DEFAULTS: Record<'messages' | 'chat' | 'responses', Readonly<Record<string, readonly unknown[]>>> = {
  messages: { stream: [false] },
  chat: { stream: [false, null], stream_options: [null], n: [1, null], max_tokens: [null], max_completion_tokens: [null], temperature: [null] },
  responses: { stream: [false, null], stream_options: [null], max_output_tokens: [null], temperature: [null], top_p: [null], instructions: [null], prompt: [null], background: [false, null] },
};

/**
 * The request as the key reads it: without the defaults it writes out, so `stream: false` given
 * and left out coalesce. The request sent to the provider keeps them (it is the client's own).
 */
function requestForKey(api: 'messages' | 'chat' | 'responses', request: unknown): unknown {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) return request;
  const defaults = REQUEST_DEFAULTS[api];
  let out: Record<string, unknown> | undefined;
  for (const [field, value] of Object.entries(request)) {
    if (!defaults[field]?.includes(value)) continue;
    out ??= { ...(request as Record<string, unknown>) };
    delete out[field];
  }
  return out ?? request;
}

/** What two requests for one call are compared by: the fields `inOneForm` reads, and whatever else the job holds. */
interface RequestOfJob {
  provider: string;
  api?: string | undefined;
  request: unknown;
  betas?: readonly string[] | undefined;
}

/**
 * The job in the one form two requests for the same call share, for both ways callers meet in one
 * job (the coalescing key, an idempotency key's repeat), so what one takes as the same request the
 * other does too: the job-level defaults it writes out left out (`leaveDefaultsOut`), the
 * request's documented defaults left out (`requestForKey`), and its Anthropic betas as a set (one
 * `anthropic-beta` header however its names are ordered or repeated: the SDK joins `betas` in the
 * caller's order, and the set is what the provider reads). The job itself, sent to the provider,
 * keeps all of them as written.
 */
function inOneForm<T extends RequestOfJob>(input: T): T {
  const job = leaveDefaultsOut(input);
  const request = requestForKey(job.provider === 'anthropic' ? 'messages' : job.api === 'responses' ? 'responses' : 'chat', job.request);
  const betas = job.betas === undefined ? undefined : [...new Set(job.betas)].sort();
  return { ...job, request, betas } as T;
}

/**
 * The coalescing key of a job: a hash of what the provider would see (provider, request, fallback
 * ladder, Anthropic betas), with object keys sorted, so identical requests written differently
 * still coalesce, and of its tenant and scope. Per tenant because a join tells its caller
 * something: that the same request was in flight (`existing`, and how soon it answered), which one
 * tenant must not learn of another's (the reason providers keep prompt caches per organization);
 * and a shared job has one tenant, whose quota it draws and whose cancel stops it. Per scope for
 * the same reason between callers the gateway tells apart by client key only (as it scopes their
 * idempotency keys). And of what the job does when shed (`onShed: 'batch'`): joined, the first
 * caller's choice decided whether the other got a SHED failure or a batch answer. Metadata is left
 * out: the answer does not depend on it.
 */
export function coalesceKeyOf(input: RequestOfJob & { fallback?: readonly string[] | undefined; tenant?: string | undefined; scope?: string | undefined; onShed?: 'fail' | 'batch' | undefined }): string {
  // A default written out (`api: 'chat'`, `onShed: 'fail'`, `stream: false`) is the job that leaves it out: one key.
  const job = inOneForm(input);
  // Betas, the API, the tenant and the scope are left out when absent (`canonical` drops
  // undefined), so a Chat Completions job's key, or one with none of them, is what it was before
  // they counted. No fallback (the config's ladder for the primary) and `fallback: []` (the primary
  // alone) are two ladders: joined into one job, the first caller's ladder answered both. An
  // absent one hashes as it always did; an empty one is marked apart.
  const primaryOnly = job.fallback?.length === 0 ? true : undefined;
  const shedToBatch = job.onShed === 'batch' ? true : undefined;
  return createHash('sha256')
    .update(canonical({ provider: job.provider, api: job.api, request: job.request, fallback: job.fallback ?? [], primaryOnly, betas: job.betas, tenant: job.tenant, scope: job.scope, shedToBatch }))
    .digest('hex')
    .slice(0, 40);
}

/** Whether a job id is one an idempotency key maps to (`idempotentJobId`). */
export function isIdempotentJobId(id: string): boolean {
  return id.includes('.idem-');
}

/**
 * What a repeat of an idempotency key must match to be the key's job (add-9.lua `sameJob`): a
 * digest (sha256 hex, 64 characters) of the whole job in the one form coalescing reads it in
 * (`inOneForm`), with keys sorted. A retry that writes out a default the first request left out
 * (`stream: false` from another SDK or a hand-written curl, OpenAI's `n: 1` or a `null`), names
 * its betas in another order, or orders its object keys otherwise, is the same job; compared byte
 * for byte, it was refused as another. Unlike the coalescing key, every other field counts
 * (priority, metadata, coalesce, onShed...): a repeat asks for the job stored under the key, as it
 * was sent. Only the caller's own `maxWaitMs` is left out: each caller keeps its own deadline
 * (shared-deadline.ts).
 */
export function idempotencyDigestOf(job: LlmJob): string {
  const { maxWaitMs: _ownDeadline, ...asked } = inOneForm(job);
  return createHash('sha256').update(canonical(asked)).digest('hex');
}
