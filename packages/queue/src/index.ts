/**
 * @headroom/queue — the contract shared by Headroom producers and workers: job and result
 * schemas, lanes, the config schema, the Redis key layout, the Lua scripts and the errors.
 *
 * ```ts
 * import { LlmJob, loadConfig, laneKeys } from '@headroom/queue';
 * const config = loadConfig('headroom.config.yaml');
 * const job = LlmJob.parse({ priority: 'HIGH', provider: 'anthropic', request: { ... } });
 * ```
 */
export {
  ErrorCode,
  HeadroomError,
  JobValidationError,
  PayloadTooLargeError,
  QueueFullError,
  ShedError,
  QuotaExceededError,
  JobStoppingError,
  JobFailedError,
  JobNotFoundError,
  TimeoutError,
  RedisUnavailableError,
  ConfigError,
  ClosedError,
  FleetUnpublishedError,
  RedisOomError,
  AddressUnavailableError,
  RedisRefusedError,
} from './errors.js';
export { listen } from './listen.js';
export type { Issue, IssueCode } from './errors.js';
export { INTERACTIVE_LANES, LANES, PRIORITIES, LANE_DEFAULTS, laneOfPriority } from './lanes.js';
export type { InteractiveLane, Lane, Priority, LaneDefaults } from './lanes.js';
export {
  LlmJob,
  LlmResult,
  Usage,
  AnthropicMessagesRequest,
  OpenAIChatRequest,
  OpenAIResponsesRequest,
  PROVIDERS,
  apiOf,
  choicesOf,
  modelLadder,
  maxOutputTokens,
  outputBoundFor,
  outputBoundField,
  isStreamed,
  callOptionsOf,
} from './job.js';
export type { LlmJobInput, Provider, ProviderApi } from './job.js';
export { checkJob, checkTakenJob, countTokensIssues, parseJob, UnreadableJobData, DEFAULT_MAX_JOB_BYTES } from './job-validation.js';
export { MAX_JSON_DEPTH, jsonIssueAt, kindOf } from './json-value.js';
export { HeadroomConfig, GatewayKeyConfig, PROVIDER_DEFAULTS, ModelConfig, ModelLimits, parseConfig, loadConfig, poolOf, redisUrlOf, tenantTpmOf, throttleParamsOf } from './config.js';
export type { HeadroomConfigInput } from './config.js';
export { OUTPUT_COUNTINGS, PROVIDER_OUTPUT_COUNTING, outputCountingOf, reservesOutputP95 } from './output-counting.js';
export type { OutputCounting } from './output-counting.js';
export { DEFAULT_PREFIX, PREFIX_PATTERN, laneKeys, poolKeys, fleetKeys, keysUnderPattern } from './keys.js';
export { removeKeysUnder } from './remove-prefix.js';
export type { LaneKeys, PoolKeys } from './keys.js';
export { addToLane, ADMITTED_OPTION, notAdmittedFailure, publishFleetSettings, rememberHandOff, releaseJobs, unadmitted, AddReply } from './admission.js';
export { returnToLane, forceReturnToLane, promoteDelayed, promoteRaisedTenantParks, ReturnReply, RETURNING_STALE_MS } from './lane-return.js';
export type { TenantPark } from './tenant-parks.js';
export type { ReturnOutcome, ReturnOptions } from './lane-return.js';
export { finishJob, REPLY_TO_OPTION, CACHE_TTL_OPTION } from './lane-finish.js';
export type { FinishArgsBuilder, FinishOutcome, JobEnd } from './lane-finish.js';
export { SHARED_MAX_WAIT_OPTION, withSharedDeadline } from './shared-deadline.js';
export { cancelIfNotStarted, cancelledFailure, CANCELLED_NOTE_TTL_MS } from './lane-cancel.js';
export { parkBatchJobs } from './batch-park.js';
export { releaseFailedHandOff } from './hand-off-rerun.js';
export type { CancelOutcome } from './lane-cancel.js';
export { LaneUpkeep, FLEET_UPKEEP_INTERVAL_MS } from './lane-upkeep.js';
export { retryFinishedJob, RetryReply } from './lane-retry.js';
export type { LaneUpkeepOptions, UpkeepRound } from './lane-upkeep.js';
export type { Added, LaneEntry } from './admission.js';
export { allFairShareOnly, bringRunnableToFront, fairShareOnly, FAIR_SHARE_ONLY, FRONT_SEARCH_DEPTH, readyJobs, type FrontOutcome, type FrontResult, type LaneBackoffs } from './lane-fetch.js';
export { newJobId, idempotentJobId, handOffJobId, laneOfJobId, coalesceKeyOf } from './job-ids.js';
export { relayEvents, checkRelay, readRelayAfter, firstRelayEntry, flagCancelled, publishCancel, errorEventOf, encodeJobEvent, decodeJobEvent, jobEventsKey, RelayReply, RELAY_TTL_MS, CANCEL_FLAG_TTL_MS } from './job-events.js';
export type { JobEvent, RelayCheck, RelayEntry, RelayOutcome, StreamErrorEvent } from './job-events.js';
export { relayWriterOf } from './relay-writer.js';
export type { RelayWriter } from './relay-writer.js';
export { replayEventsOf } from './stream-replay.js';
export type { ReplayOptions } from './stream-replay.js';
export { FailureCode, StreamCut, jobFailure, answeredFailure, failureText, failureOf, asJobFailure, providerErrorOf, PROVIDER_ERROR_MAX_BYTES, REPLAYED_FAILURES } from './failure.js';
export type { JobFailure, ProviderError } from './failure.js';
export { createRedis, duplicateFor, answeredWithin, asRedisError } from './connection.js';
export { untilReady, watchAttempts, refusalOf, refusalOn, type UntilReadyOptions } from './connection-start.js';
export { parseRedisUrl } from './redis-url.js';
export type { ParsedRedisUrl } from './redis-url.js';
export { toIssues } from './internal/zod-issues.js';
export { reportOutages, isConnectionError } from './connection-outages.js';
export type { RedisInput, ConnectionRole } from './connection.js';
export { registerScripts, runScript } from './scripts.js';
export { holdLease, releaseLease } from './lease.js';
export { Bucket, countedUsage, POOL_DIMENSIONS, TENANT_DIMENSIONS, isTenantDimension, AcquireReply, CooldownReply, THROTTLE_STATES } from './bucket.js';
export type {
  AcquireRequest,
  AcquireResult,
  BucketOptions,
  BucketSnapshot,
  CooldownFor,
  Dimension,
  DimensionSnapshot,
  Need,
  PoolDimension,
  PoolLimits,
  Reservation,
  SettleResult,
  SettleUsage,
  SyncResult,
  TenantDimension,
  TenantLimits,
  ThrottleParams,
  ThrottleSnapshot,
  ThrottleState,
  WaitReason,
} from './bucket.js';
export { parseRateLimitHeaders, parseRetryAfterMs, parseDurationMs } from './rate-limit-headers.js';
export type { Observed, ObservedLimit, HeaderSource } from './rate-limit-headers.js';
export { computePressure, capacityOf } from './pressure.js';
export type { Pressure, PressureInput } from './pressure.js';
export { createLogger, LOG_LEVELS, logLevelOf } from './logger.js';
export { registerSecret, registeredSecrets, redactSecrets, maskUrlPasswords, cutSecretTokens, isTokenEntry, REDACTED } from './redaction.js';
export type { Logger, LoggerLike, LogLevel } from './logger.js';
export { FleetStatsWriter, readFleetStats, SPEND_CAP_STATUS, WAIT_BUCKETS_MS } from './telemetry/fleet-stats.js';
export type { FleetStats, JobOutcome, CallEvent, JobEndEvent } from './telemetry/fleet-stats.js';
export { Heartbeat, readHeartbeats, heartbeatOf, heartbeatTtlMs, HEARTBEAT_INTERVAL_MS } from './telemetry/heartbeat.js';
export { PROCESS_METRICS_PREFIX } from './telemetry/process-metrics.js';
export type { WorkerHeartbeat, Heartbeats, HeartbeatKind, HeartbeatOptions } from './telemetry/heartbeat.js';
export { within } from './within.js';
