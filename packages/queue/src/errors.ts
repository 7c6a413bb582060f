/**
 * Every error Headroom raises on purpose. Callers branch on `code`, never on message text.
 * `instanceof` works across duplicate copies of this package (a monorepo with two versions
 * installed) because the check is a `Symbol.for` brand, not the class identity.
 */
import { failureText, type FailureCode, type JobFailure } from './failure.js';

export const ErrorCode = {
  JOB_INVALID: 'JOB_INVALID',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  QUEUE_FULL: 'QUEUE_FULL',
  SHED: 'SHED',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  JOB_FAILED: 'JOB_FAILED',
  JOB_NOT_FOUND: 'JOB_NOT_FOUND',
  TIMEOUT: 'TIMEOUT',
  REDIS_UNAVAILABLE: 'REDIS_UNAVAILABLE',
  CONFIG_INVALID: 'CONFIG_INVALID',
  CLOSED: 'CLOSED',
  /** No fleet has published its settings (caps, models, quotas) on this Redis: admission fails closed. */
  FLEET_UNPUBLISHED: 'FLEET_UNPUBLISHED',
  /** Redis refused a write at its `maxmemory`: nothing was written. */
  REDIS_OOM: 'REDIS_OOM',
  /** A server could not listen where its settings say (the port taken, not ours to bind). */
  ADDRESS_UNAVAILABLE: 'ADDRESS_UNAVAILABLE',
  /**
   * Redis answered, and refused this connection in a way waiting does not fix (a wrong or missing
   * password, a database it does not have, a TLS certificate it cannot verify).
   */
  REDIS_REFUSED: 'REDIS_REFUSED',
  /**
   * A repeat of an idempotency key whose job is stopping: it was running when its last caller
   * cancelled it. Sent again once that job has ended, the repeat runs it again.
   */
  JOB_STOPPING: 'JOB_STOPPING',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const BRAND = Symbol.for('headroom.error');

/**
 * What kind of problem an issue is, in the words OpenAI's errors use for them (its `code`): a
 * required field left out, a value of the wrong type, an integer or a decimal
 * outside its range, an empty array where one item at least belongs, or any other value refused.
 * A rule across fields has none (OpenAI's own such 400s send `code: null`), except the one OpenAI
 * names: both output bounds set (`invalid_parameter_combination`, as its 400 says).
 */
export type IssueCode =
  | 'missing_required_parameter'
  | 'invalid_type'
  | 'integer_below_min_value'
  | 'integer_above_max_value'
  | 'decimal_below_min_value'
  | 'decimal_above_max_value'
  | 'empty_array'
  | 'invalid_parameter_combination'
  | 'invalid_value';

/** One problem in an input, located by its path (`request.messages.0.role`). */
export interface Issue {
  path: string;
  message: string;
  /** Set for a schema's issues (not for a rule across fields, nor a check of the gateway's own). */
  code?: IssueCode;
}

export class HeadroomError extends Error {
  readonly code: ErrorCode;
  /** True when the same call may succeed later without changing the input. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.name = 'HeadroomError';
    Object.defineProperty(this, BRAND, { value: true });
  }

  static [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null || !(BRAND in value)) return false;
    // Subclasses keep ordinary prototype checks so `instanceof QueueFullError` stays precise;
    // `this` is whichever class `instanceof` was asked about, which the class name cannot say.
    // biome-ignore lint/complexity/noThisInStatic: see above
    return this === HeadroomError || Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ');
}

export class JobValidationError extends HeadroomError {
  readonly issues: readonly Issue[];
  constructor(issues: readonly Issue[]) {
    super(ErrorCode.JOB_INVALID, `invalid job: ${formatIssues(issues)}`);
    this.name = 'JobValidationError';
    this.issues = issues;
  }
}

export class PayloadTooLargeError extends HeadroomError {
  readonly sizeBytes: number;
  readonly limitBytes: number;
  constructor(sizeBytes: number, limitBytes: number) {
    super(ErrorCode.PAYLOAD_TOO_LARGE, `job is ${sizeBytes} bytes serialized, over the limit of ${limitBytes} bytes`);
    this.name = 'PayloadTooLargeError';
    this.sizeBytes = sizeBytes;
    this.limitBytes = limitBytes;
  }
}

export class QueueFullError extends HeadroomError {
  readonly lane: string;
  /** Which limit refused: the count of jobs not yet started, or the bytes of unfinished jobs. */
  readonly limit: 'jobs' | 'bytes';
  /** With `limit: 'jobs'`: the lane's cap of jobs not yet started. */
  readonly cap?: number;
  /** With `limit: 'bytes'`: the lane's byte cap, what its unfinished jobs hold, and this job's size. */
  readonly maxBytes?: number;
  readonly bytes?: number;
  readonly jobBytes?: number;
  constructor(lane: string, full: number | { maxBytes: number; bytes: number; jobBytes: number }) {
    super(
      ErrorCode.QUEUE_FULL,
      typeof full === 'number'
        ? `lane ${lane} is full (cap ${full} jobs not yet started)`
        : `lane ${lane} is full: its unfinished jobs hold ${full.bytes} bytes, and this job's ${full.jobBytes} would pass its maxBytes of ${full.maxBytes}`,
      { retryable: true },
    );
    this.name = 'QueueFullError';
    this.lane = lane;
    if (typeof full === 'number') {
      this.limit = 'jobs';
      this.cap = full;
    } else {
      this.limit = 'bytes';
      this.maxBytes = full.maxBytes;
      this.bytes = full.bytes;
      this.jobBytes = full.jobBytes;
    }
  }
}

/**
 * No worker has published the fleet's settings (lane caps, models, tenant quotas) on this Redis:
 * after a Redis restart without persistence, or a FLUSHALL, say. Admission refuses rather than
 * admit against defaults; workers publish them again within `FLEET_UPKEEP_INTERVAL_MS`.
 */
export class FleetUnpublishedError extends HeadroomError {
  readonly lane: string;
  constructor(lane: string) {
    super(ErrorCode.FLEET_UNPUBLISHED, `lane ${lane} refuses jobs: no fleet settings (caps, models, quotas) are published on this Redis; start a worker, or wait for a running one to publish them again`, {
      retryable: true,
    });
    this.name = 'FleetUnpublishedError';
    this.lane = lane;
  }
}

/** Redis is at its `maxmemory` and refused the write (`noeviction`, as BullMQ requires). */
export class RedisOomError extends HeadroomError {
  constructor(cause?: unknown) {
    super(ErrorCode.REDIS_OOM, 'Redis is out of memory (maxmemory reached): nothing was written; retry once the fleet has drained, or raise maxmemory', { retryable: true, cause });
    this.name = 'RedisOomError';
  }
}

/**
 * A LOW (or NORMAL) job shed under pressure: refused at enqueue, or, with `jobId`, accepted and
 * then shed while it waited past its max wait. Both are the same decision, so callers see one code.
 */
export class ShedError extends HeadroomError {
  readonly lane: string;
  readonly retryAfterMs: number;
  /** Why it was shed (the pool and its pressure, say), as the message has it. */
  readonly reason: string;
  /** Set when the job had been accepted and was shed while waiting. */
  readonly jobId?: string;
  constructor(lane: string, reason: string, retryAfterMs: number, jobId?: string) {
    const what = jobId === undefined ? `lane ${lane} is shedding` : `job ${jobId} was shed from lane ${lane}`;
    super(ErrorCode.SHED, `${what}: ${reason}; retry after ${retryAfterMs} ms`, { retryable: true });
    this.name = 'ShedError';
    this.lane = lane;
    this.reason = reason;
    this.retryAfterMs = retryAfterMs;
    if (jobId !== undefined) this.jobId = jobId;
  }
}

/**
 * A repeat of an idempotency key found the key's job stopping: it was running when its last
 * caller cancelled it, and a share added to it would end CANCELLED with it. The producer sends
 * the repeat again for a few seconds (the job's worker stops it within milliseconds of the cancel);
 * raised when it has not ended by then (its worker dead, say: the job ends once its lock lapses).
 */
export class JobStoppingError extends HeadroomError {
  readonly jobId: string;
  constructor(jobId: string) {
    super(ErrorCode.JOB_STOPPING, `the idempotency key's job ${jobId} is stopping (its last caller cancelled it while it ran); send the repeat again once it has ended, and it runs again`, { retryable: true });
    this.name = 'JobStoppingError';
    this.jobId = jobId;
  }
}

export class QuotaExceededError extends HeadroomError {
  readonly tenant: string;
  readonly limit: number;
  constructor(tenant: string, what: string, limit: number) {
    super(ErrorCode.QUOTA_EXCEEDED, `tenant ${tenant} is over its ${what} quota (${limit})`, { retryable: true });
    this.name = 'QuotaExceededError';
    this.tenant = tenant;
    this.limit = limit;
  }
}

export class JobFailedError extends HeadroomError {
  readonly jobId: string;
  /** Why it failed, as a stable code to branch on (`PROVIDER_REJECTED`, `RETRIES_EXHAUSTED`, ...). */
  readonly failureCode: FailureCode;
  /** For people: `CODE: message`, as Bull Board shows it. */
  readonly reason: string;
  /** The failure as stored: code, message, and the provider's HTTP status when one answered. */
  readonly failure: JobFailure;
  constructor(jobId: string, failure: JobFailure) {
    const reason = failureText(failure);
    super(ErrorCode.JOB_FAILED, `job ${jobId} failed: ${reason}`);
    this.name = 'JobFailedError';
    this.jobId = jobId;
    this.failureCode = failure.code;
    this.reason = reason;
    this.failure = failure;
  }
}

export class JobNotFoundError extends HeadroomError {
  readonly jobId: string;
  constructor(jobId: string) {
    super(ErrorCode.JOB_NOT_FOUND, `job ${jobId} not found`);
    this.name = 'JobNotFoundError';
    this.jobId = jobId;
  }
}

export class TimeoutError extends HeadroomError {
  readonly timeoutMs: number;
  /** `result({ cancelOnTimeout: true })`: whether the job was withdrawn before it started (removed, or this caller's share of a shared job given back). */
  cancelled?: boolean;
  /** `cause`: what may have kept the answer away, when known (Redis out of reach: `RedisUnavailableError`; refusing the connection: `RedisRefusedError`), said in the message too. */
  constructor(what: string, timeoutMs: number, cause?: Error) {
    super(ErrorCode.TIMEOUT, `${what} timed out after ${timeoutMs} ms${cause ? ` (${cause.message})` : ''}`, { retryable: true, cause });
    this.name = 'TimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A server (gateway, dashboard, a /metrics port) could not listen: a configuration mistake, not
 * a crash, so it names the address and the setting that chose it.
 */
export class AddressUnavailableError extends HeadroomError {
  /** `host:port` as asked for. */
  readonly address: string;
  /** What chose it: a config path (`dispatch.metricsPort`) or a flag (`--port`). */
  readonly setting: string;
  constructor(what: string, address: string, setting: string, reason: string, cause?: unknown) {
    super(ErrorCode.ADDRESS_UNAVAILABLE, `${what} cannot listen on ${address}: ${reason}; choose another with ${setting}`, { cause });
    this.name = 'AddressUnavailableError';
    this.address = address;
    this.setting = setting;
  }
}

export class RedisUnavailableError extends HeadroomError {
  constructor(detail: string, cause?: unknown) {
    super(ErrorCode.REDIS_UNAVAILABLE, `Redis is unavailable: ${detail}`, { retryable: true, cause });
    this.name = 'RedisUnavailableError';
  }
}

/**
 * Redis refused a connection before it was ever usable, for a reason that does not go away by
 * retrying: a configuration mistake, named with the Redis (its password masked) and the cause.
 */
export class RedisRefusedError extends HeadroomError {
  /** The Redis URL, its password masked. */
  readonly url: string;
  /** Why, with what to check: `WRONGPASS ... (check the user and password in the URL)`. */
  readonly reason: string;
  constructor(url: string, reason: string, cause?: unknown) {
    super(ErrorCode.REDIS_REFUSED, `Redis at ${url} refused the connection: ${reason}`, { cause });
    this.name = 'RedisRefusedError';
    this.url = url;
    this.reason = reason;
  }
}

export class ConfigError extends HeadroomError {
  readonly issues: readonly Issue[];
  constructor(source: string, issues: readonly Issue[]) {
    super(ErrorCode.CONFIG_INVALID, `invalid config ${source}:\n${issues.map((i) => `  ${i.path || '(top level)'}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export class ClosedError extends HeadroomError {
  constructor(what: string) {
    super(ErrorCode.CLOSED, `${what} is closed`);
    this.name = 'ClosedError';
  }
}
