/**
 * What running a job needs from its worker, and what it knows of the job. The runner takes these
 * rather than a BullMQ job, so every decision it makes can be tested with an injected clock,
 * randomness and pressure.
 */
import type { Cluster, Redis } from 'ioredis';
import { FailureCode, jobFailure, type Bucket, type FleetStatsWriter, type HeadroomConfig, type InteractiveLane, type JobFailure, type LlmResult, type Logger, type Pressure, type Provider, type StreamErrorEvent, type TenantPark } from '@headroom/queue';
import type { WorkerMetrics } from '../metrics.js';
import type { ProviderAdapter } from '../providers/types.js';
import type { RelayingJobs } from './relaying-jobs.js';
import type { GatewayPresence } from './gateway-presence.js';
import type { PromptCacheMemory } from './prompt-cache-memory.js';
import type { LimitNotices } from './limit-notices.js';
import type { PoolHolds } from './pool-holds.js';
import type { TenantWaits } from './tenant-waits.js';
import type { OutageEvidence } from './outage-evidence.js';
import type { ThrottleStates } from './throttle-states.js';
import type { TokenEstimator } from './token-estimator.js';

/** What the runner asks of the pressure monitor: is this lane shed for this pool, and how hard. */
export interface ShedView {
  shedsLane(pool: string, lane: InteractiveLane): boolean;
  pressureOf(pool: string): Pressure | undefined;
  /** When a new job for the pool may be admitted again (the hint admission gives). */
  retryHintMs(pool: string): number;
}

/**
 * The reason a job's signal carries when its caller cancelled it (`producer.cancel`, a stream's
 * abort, a gateway client gone); any other abort is the worker shutting down.
 */
export class JobCancelled extends Error {
  constructor() {
    super('cancelled by its caller');
    this.name = 'JobCancelled';
  }
}

export const isCancel = (signal: AbortSignal): boolean => signal.aborted && signal.reason instanceof JobCancelled;

/** Stopped before its provider call: cancelled by its caller, or handed back by a worker shutting down. */
export function stopped(signal: AbortSignal, progress: JobProgress, when: string): RunOutcome {
  return isCancel(signal) ? { kind: 'failed', failure: jobFailure(FailureCode.CANCELLED, `cancelled by its caller ${when}`), progress } : { kind: 'aborted', progress };
}

export interface RunContext {
  config: HeadroomConfig;
  /** This worker's id, as its heartbeat names it: a streamed job's relay names its writer by it. */
  workerId: string;
  /** Command connection: a streamed job's events are relayed on it. */
  redis: Redis | Cluster;
  bucket: Bucket;
  adapters: Record<Provider, ProviderAdapter>;
  estimator: TokenEstimator;
  /** Each model's fleet-wide throttle as this worker last heard it (for fallback decisions). */
  throttles: ThrottleStates;
  /** Each model's failures this worker has seen since the latest call it served started. */
  outages: OutageEvidence;
  /** The provider's prompt cache as this worker has seen it (cache-aware input reservations). */
  promptCache: PromptCacheMemory;
  metrics: WorkerMetrics;
  stats: FleetStatsWriter;
  pressure: ShedView;
  logger: Logger;
  random: () => number;
  now: () => number;
  /** Each tenant's tokens/min bucket in each pool as the bucket last answered this worker (tenant-waits.ts). */
  tenantWaits: TenantWaits;
  /** Pools held back in a lane by a job of this worker out of it: the pool's sleeper, a job on its way back (pool-holds.ts). */
  poolHolds: PoolHolds;
  /** Says once when the config sets a limit above the provider's announced one. */
  limitNotices: LimitNotices;
  /** Whether the gateway a job names is still there (a killed one's jobs are withdrawn). */
  gateways: GatewayPresence;
  /** The streamed jobs whose relay this worker's calls are writing, for its heartbeat (relaying-jobs.ts). */
  relaying: RelayingJobs;
}

/** Kept in the BullMQ job's `progress`, so attempts survive requeues, delays and worker crashes. */
export interface JobProgress {
  /** Provider calls made for the job (the result's `attempts`). */
  attempts: number;
  /**
   * Of those, failures in a model's outage that cost the job no attempt (see `countedAttempts` in failed-call.ts),
   * and when the first of them failed: a job rides out an outage for `retry.outageGraceMs`.
   */
  outageFailures?: number;
  outageSince?: number;
  /**
   * Models this job has called: a further call to one of them is a retry of it, drawn from its
   * retry budget; a fallback's first call is not.
   */
  triedModels?: string[];
  lastError?: string;
  /** Set with the job's failure, just before BullMQ records it (see `failureOf`). */
  failure?: JobFailure;
}

export interface JobMeta {
  id: string;
  lane: InteractiveLane;
  enqueuedAt: number;
  progress: JobProgress;
  /**
   * In a fair lane, its tenant had nothing queued ahead of it when it was enqueued (`hrFresh` in
   * its options, set by the add script): it may draw the pool's fair reserve, which the jobs of
   * tenants with work queued leave for it. @default false
   */
  fresh?: boolean;
  /**
   * The order in which this worker fetched it (its dispatcher counts fetches): a job fetched
   * earlier is ahead of it in its lane (pool-holds.ts). Undefined: no order kept.
   */
  fetched?: number;
  /**
   * The pool of its primary that could not start it within its maxWaitMs, the queue of that pool's
   * jobs ahead of it counted, when it was taken past them for a fallback (lane-fetch.ts): its plan
   * passes over that pool's models while another remains, since acquired they would take the
   * refill the jobs ahead wait for.
   */
  lateOn?: string;
  /**
   * Taken from its lane before (BullMQ's `attemptsStarted` above 1: a stall, a requeue, a worker's
   * hand-back): an earlier attempt may have streamed part of an answer into its relay.
   */
  takenBefore?: boolean;
  /**
   * Put back by BullMQ's stalled check at least once (its `stalledCounter`): a worker that held it
   * died or lost its lock while it ran, and its caller may have cancelled it meanwhile.
   */
  stalled?: boolean;
}

export type RunOutcome =
  | { kind: 'completed'; result: LlmResult }
  /** `streamError`: the entry its stream ends with, written by the finish that fails it (stream-call.ts). */
  | { kind: 'failed'; failure: JobFailure; progress: JobProgress; streamError?: StreamErrorEvent }
  /** Shed from its lane under pressure, and the job asked to go to the batch lane instead. */
  | { kind: 'to_batch'; failure: JobFailure; progress: JobProgress }
  /**
   * Back to its place in its lane, no attempt spent; its pool backs off in the lane for `waitMs`,
   * for the jobs of tenants with work queued only when `fairShare` (a fresh tenant's job may run).
   * `paceMs`: how long the pool's bucket takes to refill the job's draw, where known.
   */
  | { kind: 'requeue'; waitMs: number; progress: JobProgress; fairShare?: boolean; paceMs?: number }
  /**
   * Into BullMQ's delayed set until `delayMs` from now, holding no slot; `tenantPark`: parked behind
   * its tenant's tokens/min quota, this one (a worker serving the tenant more brings it back).
   */
  | { kind: 'delay'; delayMs: number; progress: JobProgress; tenantPark?: TenantPark }
  /** The worker is shutting down: back to waiting for another worker, no attempt spent. */
  | { kind: 'aborted'; progress: JobProgress };
