/**
 * Lane admission: the hard cap BullMQ does not have. One script reserves a slot against the
 * lane's real size (wait + paused + prioritized + delayed + live reservations); the producer then
 * adds the job. Counting BullMQ's own structures, rather than keeping a counter, means a slot
 * frees by itself when the job starts, is removed, cancelled or shed.
 */
import type { Cluster, Redis } from 'ioredis';
import { poolOf, type HeadroomConfig } from './config.js';
import { JobValidationError, QueueFullError, QuotaExceededError, ShedError } from './errors.js';
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
export function releaseReservation(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string): Promise<number> {
  return redis.zrem(laneKeys(prefix, lane).reservations, jobId);
}

export async function admit(redis: Redis | Cluster, prefix: string, req: AdmitRequest): Promise<AdmitOutcome> {
  const k = laneKeys(prefix, req.lane);
  const reply = await runScript<[number, ...(string | number)[]]>(
    redis,
    'admit',
    [k.wait, k.paused, k.prioritized, k.delayed, k.reservations, k.settings, k.models, k.modelPools, k.shedding, k.tenantJobs(req.tenant ?? ''), k.stats],
    [req.jobId, RESERVATION_TTL_MS, req.defaultCap ?? LANE_DEFAULTS[req.lane].cap, `${k.bullPrefix}:${k.queueName}:`, req.provider, req.tenant ?? '', ...req.models],
  );
  const [code, a, b] = reply;
  switch (code) {
    case 1:
      return 'admitted';
    case 2:
      return 'exists';
    case -1:
      throw new QueueFullError(req.lane, Number(a));
    case -2:
      throw new JobValidationError([{ path: req.models[0] === a ? 'request.model' : 'fallback', message: `unknown model "${a}": the fleet's config has no such model` }]);
    case -3:
      throw new JobValidationError([{ path: req.models[0] === a ? 'request.model' : 'fallback', message: `"${a}" is a ${b} model, not ${req.provider}` }]);
    case -4:
      throw new ShedError(req.lane, `pool ${b} is under pressure (${Number(reply[3]).toFixed(2)})`, Number(a));
    case -5:
      throw new QuotaExceededError(req.tenant ?? '', `max queued jobs in lane ${req.lane}`, Number(a));
    default:
      throw new Error(`admit script returned unknown code ${code}`);
  }
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
