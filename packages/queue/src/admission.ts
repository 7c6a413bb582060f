/**
 * Lane admission: the hard caps BullMQ does not have. One script checks that the fleet's settings
 * are published (it fails closed without them), the lane's real size (wait + prioritized +
 * delayed + jobs being put back), the bytes its unfinished jobs hold, the pool's shedding and the
 * tenant's max, and adds the admitted jobs with BullMQ's own add script, all in one atomic call.
 * Counting BullMQ's own structures for the size, rather than keeping a counter, means a slot frees
 * by itself when the job starts, is removed, cancelled or shed. Bytes and tenants are counted
 * per unfinished job, and given back once the job is finished or gone (`releaseJobs`).
 */
import { Job, type IRedisTransaction, type JobsOptions, type Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { poolOf, type HeadroomConfig } from './config.js';
import { FleetUnpublishedError, type HeadroomError, JobStoppingError, JobValidationError, QueueFullError, QuotaExceededError, ShedError } from './errors.js';
import { FailureCode, jobFailure, type JobFailure } from './failure.js';
import { modelLadder, outputBoundField, type LlmJob } from './job.js';
import { idempotencyDigestOf, isIdempotentJobId } from './job-ids.js';
import { laneKeys } from './keys.js';
import { LANES, type Lane } from './lanes.js';
import { runScript } from './scripts.js';
import { fairCostArg } from './tenant-fairness.js';

export interface LaneEntry {
  jobId: string;
  job: LlmJob;
  /** BullMQ options (retention, deduplication); the id is the entry's `jobId`. */
  opts?: Omit<JobsOptions, 'jobId' | 'delay' | 'priority' | 'parent'>;
}

/** The job in the lane: ours, or (`existing`) one with the same id or coalescing key already there. */
export interface Added {
  id: string;
  existing: boolean;
  /**
   * This caller's start deadline as the job's list of its callers' deadlines holds it (add-9.lua's
   * mark). Named when the caller leaves (`cancelIfNotStarted`'s `callerDeadline`), so the job's
   * deadline moves back to the latest of those still waiting. Absent where there is none to name.
   */
  callerDeadline?: string;
}

/** BullMQ's nine keys, then its three arguments. */
type BullmqAdd = (string | Buffer)[];

/**
 * BullMQ's `addStandardJob` keys and arguments for one job, built by BullMQ itself (`Job.addJob`
 * on a transaction that records the command instead of sending it), so the job hash, options
 * encoding and events are what `Queue.add` writes. BullMQ issues the command before its first
 * await, so it is recorded by the time `addJob` returns: no promise per job on the hot path.
 *
 * The id goes to the Job, not into `opts.jobId` as `Queue.add` would put it: BullMQ then stores
 * it in the job's options too, where nothing reads it, and that copy cost the enqueue about 3 µs
 * (validated, copied, msgpack-encoded and stored).
 */
function bullmqAddOf(queue: Queue, name: string, data: LlmJob, opts: LaneEntry['opts'], jobId: string): BullmqAdd {
  let recorded: { name: string; args: (string | Buffer)[] } | undefined;
  const recorder = {
    runCommand(command: string, args: (string | Buffer)[]) {
      recorded = { name: command, args };
      return recorder;
    },
  } as unknown as IRedisTransaction;
  // Invalid options throw synchronously; what the promise later resolves to is the recorder.
  new Job(queue, name, data, opts, jobId).addJob(recorder).catch(() => {});
  if (!recorded?.name.startsWith('addStandardJob:')) {
    throw new Error(`BullMQ recorded ${recorded?.name ?? 'no command'} for job ${jobId}; lanes take standard jobs, added by bullmq 6.7's Job.addJob`);
  }
  return recorded.args;
}

const REPLY_WIDTH = 4;

/**
 * The job's models for the add script, primary first, '\n'-joined; stored as its `hrLadder` when
 * there is more than one. A job that names no fallback of its own (`fallback: []`) gets a trailing
 * '\n', so it is stored too, holding no fallback: without it the lane's fetch read the primary's
 * configured ladder for the job (front-runnable-4.lua), took it for a fallback it does not have,
 * and the worker's plan, with nowhere to go, sent it straight back, round after round.
 */
/**
 * The job with its own `maxWaitMs` as the last field of its data. A repeat of its idempotency key
 * is compared by digest (`idempotencyDigestOf`, which leaves each caller's deadline out); a job
 * stored by a version before the digest has none, and the add script compares its data as it did
 * then, without that last field, cut off the JSON where nothing nested can stand (`sameJob`,
 * add-9.lua): so a retry with another `maxWaitMs` (`headroom-max-wait-ms`) is the same job there too.
 */
function maxWaitLast(job: LlmJob): LlmJob {
  if (job.maxWaitMs === undefined) return job;
  const { maxWaitMs, ...rest } = job;
  return { ...rest, maxWaitMs } as LlmJob;
}

function ladderArg(job: LlmJob, models: readonly string[]): string {
  return job.fallback?.length === 0 ? `${models.join('\n')}\n` : models.join('\n');
}

/**
 * Every job admission adds carries this in its BullMQ options, which BullMQ stores with the job and
 * its fetch hands back: a worker knows an admitted job without a round trip. The value is the
 * job's own id, so the mark does not travel: a copy of an admitted job (another tool's
 * `Queue.add(job.name, job.data, job.opts)`, the way to re-add a job) gets another id and reads as
 * unmarked. Another tool's `Queue.add` does not set it; such a job skipped every cap, quota and
 * shed, and is refused where it is taken (`unadmitted`).
 */
export const ADMITTED_OPTION = 'hrAdmitted';

/**
 * The jobs of `lane` among `jobs` (as a worker took them) that admission never added: without their
 * own mark in their options and not counted by the lane (its `unfinished` entry, which admission
 * writes for every job it adds and which stays until the job is finished). The count is asked for
 * only about jobs without the mark (a job enqueued before the mark existed, or marked `1` as it
 * was until 6 Dec 2026, is still counted, and runs), so a lane of admitted jobs costs nothing here.
 */
/** What a job admission never added fails with, at the worker that takes it. */
export function notAdmittedFailure(): JobFailure {
  return jobFailure(FailureCode.JOB_INVALID, "not admitted: the job reached its lane without Headroom's admission (BullMQ's Queue.add, say), so no cap, quota or shedding applied to it; enqueue it with the producer SDK or through the gateway");
}

export async function unadmitted(redis: Redis | Cluster, prefix: string, lane: Lane, jobs: readonly { id?: string; opts: object }[]): Promise<Set<string>> {
  const unmarked = jobs.filter((j) => (j.opts as Record<string, unknown>)[ADMITTED_OPTION] !== j.id).map((j) => j.id!);
  if (unmarked.length === 0) return new Set();
  const counted = await redis.hmget(laneKeys(prefix, lane).unfinished, ...unmarked);
  return new Set(unmarked.filter((_, i) => counted[i] === null));
}

/** Metadata shown by the dashboard is cut here: it only helps an operator find a job. */
export const SUMMARY_METADATA_MAX_CHARS = 500;

/**
 * What the dashboard shows of a job besides BullMQ's fields: its tenant and the start of its
 * metadata, stored beside the job (`hrSummary`) so listing recent jobs never reads their data
 * (up to 1 MiB each). '' (nothing stored) for a job with neither.
 */
function summaryOf(job: LlmJob): string {
  if (job.tenant === undefined && job.metadata === undefined) return '';
  const summary: { tenant?: string; metadata?: string } = {};
  if (job.tenant !== undefined) summary.tenant = job.tenant;
  if (job.metadata !== undefined) {
    const text = JSON.stringify(job.metadata);
    summary.metadata = text.length > SUMMARY_METADATA_MAX_CHARS ? `${text.slice(0, SUMMARY_METADATA_MAX_CHARS)}…` : text;
  }
  return JSON.stringify(summary);
}

/** `add-9.lua`'s per-job reply code (see the script's header). */
export const AddReply = {
  ADDED: 1,
  EXISTS: 2,
  QUEUE_FULL: -1,
  UNKNOWN_MODEL: -2,
  OTHER_PROVIDER: -3,
  SHED: -4,
  TENANT_MAX_QUEUED: -5,
  UNPUBLISHED: -6,
  BYTES_FULL: -7,
  NO_OUTPUT_BOUND: -8,
  IDEMPOTENCY_CONFLICT: -9,
  STOPPING: -10,
} as const;

/** The error a refusal of `add-9.lua` means for this entry. */
function addRefusalToError(lane: Lane, entry: LaneEntry, models: readonly string[], [code, a, b, c]: (string | number)[]): HeadroomError {
  const field = (model: unknown) => (models[0] === model ? 'request.model' : 'fallback');
  switch (Number(code)) {
    case AddReply.QUEUE_FULL:
      return new QueueFullError(lane, Number(a));
    case AddReply.UNKNOWN_MODEL:
      return new JobValidationError([{ path: field(a), message: `unknown model "${a}": the fleet's config has no such model` }]);
    case AddReply.OTHER_PROVIDER:
      return new JobValidationError([{ path: field(a), message: `"${a}" is an ${b} model, not ${entry.job.provider}` }]);
    case AddReply.SHED:
      return new ShedError(lane, `pool ${b} is under pressure (${Number(c).toFixed(2)})`, Number(a));
    case AddReply.TENANT_MAX_QUEUED:
      return new QuotaExceededError(entry.job.tenant ?? '', `max unfinished jobs in lane ${lane}`, Number(a));
    case AddReply.UNPUBLISHED:
      return new FleetUnpublishedError(lane);
    case AddReply.BYTES_FULL:
      return new QueueFullError(lane, { maxBytes: Number(a), bytes: Number(b), jobBytes: Number(c) });
    case AddReply.NO_OUTPUT_BOUND: {
      const field = outputBoundField(entry.job);
      return new JobValidationError([
        {
          path: `request.${field}`,
          message: `set ${field}${field === 'max_completion_tokens' ? ' (or max_tokens)' : ''}: model "${a}" has no maxOutputTokens in the fleet's config, and Headroom reserves a call's output bound against tokens/min (as OpenAI counts it)`,
        },
      ]);
    }
    case AddReply.IDEMPOTENCY_CONFLICT:
      // A key whose first request coalesced into another job names that job (its own id holds none).
      return new JobValidationError([
        { path: 'idempotencyKey', message: `already names job ${a === '' || a === undefined ? entry.jobId : a}, which holds a different job: a repeat must send the same job again (a new request needs a new key)` },
      ]);
    case AddReply.STOPPING:
      return new JobStoppingError(String(a));
    default:
      throw new Error(`add script returned unknown code ${code}`);
  }
}

function outcomeOf(lane: Lane, entry: LaneEntry, models: readonly string[], reply: (string | number)[]): Added | HeadroomError {
  const [code, a, mark] = reply;
  const callerDeadline = typeof mark === 'string' && mark !== '' ? { callerDeadline: mark } : {};
  if (Number(code) === AddReply.ADDED) return { id: String(a), existing: String(a) !== entry.jobId, ...callerDeadline };
  if (Number(code) === AddReply.EXISTS) return { id: entry.jobId, existing: true, ...callerDeadline };
  return addRefusalToError(lane, entry, models, reply);
}

/**
 * Admits and adds jobs of ONE lane in one atomic call, in order. Each entry of the result is the
 * job in the lane or the error that refuses it (QueueFullError, ShedError, QuotaExceededError,
 * JobValidationError for a model the fleet does not serve). `queue` is the lane's BullMQ Queue.
 */
export async function addToLane(redis: Redis | Cluster, queue: Queue, prefix: string, lane: Lane, entries: readonly LaneEntry[]): Promise<(Added | HeadroomError)[]> {
  if (entries.length === 0) return [];
  const k = laneKeys(prefix, lane);
  // The script builds the lane's own keys from BullMQ's: the Queue must be this lane's.
  if (queue.name !== k.queueName || queue.opts.prefix !== k.bullPrefix) throw new Error(`addToLane: queue ${queue.opts.prefix}:${queue.name} is not lane ${lane}'s queue`);
  const ladders: string[][] = [];
  const args: (string | number | Buffer)[] = [k.ownPrefix];
  let add: BullmqAdd = [];
  for (const { jobId, job, opts } of entries) {
    const models = modelLadder(job);
    ladders.push(models);
    add = bullmqAddOf(queue, `${job.provider}:${job.request.model}`, maxWaitLast(job), { ...opts, [ADMITTED_OPTION]: jobId } as LaneEntry['opts'], jobId);
    const data = add[10]!;
    // Only a key's repeat reads the digest: a job with no key pays for no hash.
    const digest = isIdempotentJobId(jobId) ? idempotencyDigestOf(job) : '';
    args.push(jobId, job.provider, job.tenant ?? '', ladderArg(job, models), summaryOf(job), fairCostArg(job, data.length, lane), job.maxWaitMs ?? '', digest, add[9]!, data, add[11]!);
  }
  // Every job of a lane has the same nine keys.
  const reply = await runScript<(string | number)[]>(redis, 'add', add.slice(0, 9) as string[], args);
  return entries.map((e, i) => outcomeOf(lane, e, ladders[i]!, reply.slice(i * REPLY_WIDTH, (i + 1) * REPLY_WIDTH)));
}

/**
 * Names, under an idempotent job's id in the lane that shed it at admission, the BATCH job it was
 * moved to instead (`onShed: 'batch'`), for `ttlSec`: a repeat of the key is answered with that
 * job by the add script (its `joinedUnder`), also once the pool no longer sheds, rather than run
 * again, as a repeat finds the pointer a worker's hand-off leaves. The value is the add script's
 * alias (`<job id>|<the job's idempotencyDigestOf>`, keys.ts `idempotentAlias`): a repeat with
 * another job under the key is refused as for the key's own job. Written after the
 * BATCH job is added (another hash slot, so not in its call): a producer that dies between the
 * two leaves the key to run again on a repeat once its pool no longer sheds.
 */
export async function rememberHandOff(redis: Redis | Cluster, prefix: string, lane: Lane, jobId: string, handOffId: string, job: LlmJob, ttlSec: number): Promise<void> {
  await redis.set(laneKeys(prefix, lane).idempotentAlias(jobId), `${handOffId}|${idempotencyDigestOf(job)}`, 'EX', Math.ceil(ttlSec));
}

/**
 * Gives back the bytes and tenant counts of jobs of `lane` that are finished or gone (ids of jobs
 * still unfinished are left counted): call it after finishing or removing jobs. Idempotent.
 * Returns how many were released.
 */
export async function releaseJobs(redis: Redis | Cluster, prefix: string, lane: Lane, jobIds: readonly string[]): Promise<number> {
  if (jobIds.length === 0) return 0;
  const k = laneKeys(prefix, lane);
  return Number(await runScript(redis, 'release', [k.unfinished], [k.ownPrefix, k.jobKeyPrefix, ...jobIds]));
}

/**
 * Publishes the lane caps, byte caps, fairness, tenant quotas and weights and the known models
 * (with their output caps) so every producer admits against the fleet's config without holding a
 * copy of it. Workers call this at start, and again whenever they find it missing
 * (lane-upkeep.ts): admission refuses every job while it is.
 */
export async function publishFleetSettings(redis: Redis | Cluster, config: HeadroomConfig): Promise<void> {
  const prefix = config.redis.prefix;
  const models = Object.entries(config.models).flatMap(([name, m]) => [name, `${m.provider}:${poolOf(config, name)}`]);
  const outputCaps = Object.entries(config.models).flatMap(([name, m]) => (m.maxOutputTokens === undefined ? [] : [name, m.maxOutputTokens]));
  const fallbacks = Object.entries(config.models).flatMap(([name, m]) => (m.fallback.length === 0 ? [] : [name, m.fallback.join('\n')]));
  const tenantMax: (string | number)[] = [];
  if (config.tenants.default.maxQueued) tenantMax.push('tenantMax:*', config.tenants.default.maxQueued);
  if (config.tenants.default.weight) tenantMax.push('weight:*', config.tenants.default.weight);
  for (const [tenant, quota] of Object.entries(config.tenants.overrides)) {
    if (quota.maxQueued) tenantMax.push(`tenantMax:${tenant}`, quota.maxQueued);
    if (quota.weight) tenantMax.push(`weight:${tenant}`, quota.weight);
  }
  if (Object.values(config.tenants.overrides).some((q) => q.weight)) tenantMax.push('weights', 1);
  // One MULTI per lane: each lane is its own hash slot.
  await Promise.all(
    LANES.map((lane) => {
      const k = laneKeys(prefix, lane);
      const fair = config.lanes[lane].fairness === 'tenants' ? 1 : 0;
      // `published` names the optional hashes this config fills, so a lost one is told from one the
      // config leaves empty (lane-upkeep.ts republishes it; admission fails closed meanwhile).
      const published = `${outputCaps.length > 0 ? 'output-caps ' : ''}${fallbacks.length > 0 ? 'fallbacks' : ''}`.trim();
      const tx = redis
        .multi()
        .del(k.settings, k.models, k.outputCaps, k.fallbacks)
        .hset(k.settings, 'cap', config.lanes[lane].cap, 'maxBytes', config.lanes[lane].maxBytes, 'fair', fair, 'published', published, ...tenantMax);
      if (fallbacks.length > 0) tx.hset(k.fallbacks, ...fallbacks);
      if (models.length > 0) tx.hset(k.models, ...models);
      if (outputCaps.length > 0) tx.hset(k.outputCaps, ...outputCaps);
      return tx.exec();
    }),
  );
}
