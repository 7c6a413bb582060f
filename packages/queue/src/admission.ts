/**
 * Lane admission: the hard cap BullMQ does not have. One script reserves a slot against the
 * lane's real size (wait + paused + prioritized + delayed + live reservations); the producer then
 * adds the job. Counting BullMQ's own structures, rather than keeping a counter, means a slot
 * frees by itself when the job starts, is removed, cancelled or shed.
 */
import type { Cluster, Redis } from 'ioredis';
import { poolOf, type HeadroomConfig } from './config.js';
import { HeadroomError, JobValidationError, QueueFullError, QuotaExceededError, ShedError } from './errors.js';
import { laneKeys } from './keys.js';
import { LANE_DEFAULTS, LANES, type Lane } from './lanes.js';
import { runScript } from './scripts.js';

/** Long enough for any `Queue.add` round trip; short enough that a crashed producer's slot returns soon. */
export const RESERVATION_TTL_MS = 30_000;

export interface AdmitRequest {
  lane: Lane;
  jobId: string;
  provider: string;
  models: readonly string[];
  tenant?: string;
  /** Used while no fleet has published its lane settings. */
  defaultCap?: number;
}

export type AdmitOutcome = 'admitted' | 'exists';

/**
 * Drops the reservation once the job is in the lane (where it now counts itself). Not awaited by
 * callers: it rides the connection ahead of their next command, so it costs no round trip.
 */
export function releaseReservation(redis: Redis | Cluster, prefix: string, lane: Lane, ...jobIds: string[]): Promise<number> {
  return redis.zrem(laneKeys(prefix, lane).reservations, ...jobIds);
}

const REPLY_WIDTH = 4;

function outcomeOf(req: AdmitRequest, [code, a, b, c]: (string | number)[]): AdmitOutcome | HeadroomError {
  const field = (model: unknown) => (req.models[0] === model ? 'request.model' : 'fallback');
  switch (Number(code)) {
    case 1:
      return 'admitted';
    case 2:
      return 'exists';
    case -1:
      return new QueueFullError(req.lane, Number(a));
    case -2:
      return new JobValidationError([{ path: field(a), message: `unknown model "${a}": the fleet's config has no such model` }]);
    case -3:
      return new JobValidationError([{ path: field(a), message: `"${a}" is a ${b} model, not ${req.provider}` }]);
    case -4:
      return new ShedError(req.lane, `pool ${b} is under pressure (${Number(c).toFixed(2)})`, Number(a));
    case -5:
      return new QuotaExceededError(req.tenant ?? '', `max unfinished jobs in lane ${req.lane}`, Number(a));
    default:
      throw new Error(`admit script returned unknown code ${code}`);
  }
}

/**
 * Admits jobs of ONE lane in one atomic call, in order. Each entry of the result is the job's
 * outcome or the error that refuses it (QueueFullError, ShedError, QuotaExceededError,
 * JobValidationError for a model the fleet does not serve).
 */
export async function admitMany(redis: Redis | Cluster, prefix: string, lane: Lane, reqs: readonly AdmitRequest[]): Promise<(AdmitOutcome | HeadroomError)[]> {
  if (reqs.length === 0) return [];
  const k = laneKeys(prefix, lane);
  const args: (string | number)[] = [RESERVATION_TTL_MS, reqs[0]!.defaultCap ?? LANE_DEFAULTS[lane].cap, k.jobKeyPrefix, k.tenantJobsPrefix];
  for (const r of reqs) {
    if (r.lane !== lane) throw new Error(`admitMany: job ${r.jobId} is for lane ${r.lane}, not ${lane}`);
    args.push(r.jobId, r.provider, r.tenant ?? '', r.models.length, ...r.models);
  }
  const reply = await runScript<(string | number)[]>(
    redis,
    'admit',
    [k.wait, k.paused, k.prioritized, k.delayed, k.reservations, k.settings, k.models, k.modelPools, k.shedding, k.stats],
    args,
  );
  return reqs.map((r, i) => outcomeOf(r, reply.slice(i * REPLY_WIDTH, (i + 1) * REPLY_WIDTH)));
}

/** Admits one job; throws the error that refuses it. */
export async function admit(redis: Redis | Cluster, prefix: string, req: AdmitRequest): Promise<AdmitOutcome> {
  const [outcome] = await admitMany(redis, prefix, req.lane, [req]);
  if (outcome instanceof HeadroomError) throw outcome;
  return outcome!;
}

/**
 * Publishes the lane caps and the known models so every producer admits against the fleet's
 * config without holding a copy of it. Workers call this at start.
 */
export async function publishFleetSettings(redis: Redis | Cluster, config: HeadroomConfig): Promise<void> {
  const prefix = config.redis.prefix;
  const models = Object.entries(config.models).flatMap(([name, m]) => [name, m.provider]);
  const pools = Object.keys(config.models).flatMap((name) => [name, poolOf(config, name)]);
  const tenantMax: (string | number)[] = [];
  if (config.tenants.default.maxQueued) tenantMax.push('tenantMax:*', config.tenants.default.maxQueued);
  for (const [tenant, quota] of Object.entries(config.tenants.overrides)) {
    if (quota.maxQueued) tenantMax.push(`tenantMax:${tenant}`, quota.maxQueued);
  }
  // One MULTI per lane: each lane is its own hash slot.
  await Promise.all(
    LANES.map((lane) => {
      const k = laneKeys(prefix, lane);
      const tx = redis.multi().del(k.settings, k.models, k.modelPools).hset(k.settings, 'cap', config.lanes[lane].cap, ...tenantMax);
      if (models.length > 0) tx.hset(k.models, ...models).hset(k.modelPools, ...pools);
      return tx.exec();
    }),
  );
}
