/**
 * `new Producer(options)` checked at construction, every option at once: a bad option throws
 * `ConfigError` (`CONFIG_INVALID`) naming each, before a connection is made. Unchecked, a missing
 * URL (`process.env.REDIS_URL!` with the variable unset) threw a bare TypeError from deep in the
 * connection code, and a bad number surfaced only later and in other words (`maxJobBytes: -1`
 * refused every job "over the limit of -1 bytes", `connectTimeoutMs: -5` failed "not ready after
 * -5 ms", `maxJobBytes: 'abc'` let every job through).
 *
 * ```ts
 * const resolved = resolveProducerOptions({ redis: 'redis://127.0.0.1:6379' }); // defaults filled in
 * ```
 */
import { z } from 'zod';
import {
  ConfigError,
  DEFAULT_MAX_JOB_BYTES,
  DEFAULT_PREFIX,
  HeadroomError,
  parseRedisUrl,
  PREFIX_PATTERN,
  toIssues,
  type Issue,
  type LoggerLike,
  type RedisInput,
} from '@headroom/queue';

/** The longest delay a Node timer takes: a connect timeout past it would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const SCHEMES = 'a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL';

const positiveInt = z.int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' });
const nonNegativeInt = z.int({ error: 'expected a non-negative integer' }).nonnegative({ error: 'expected a non-negative integer' });

/** An ioredis `Redis` or `Cluster`, by shape: another copy of ioredis in the app is as good. */
function isConnection(value: unknown): value is Exclude<RedisInput, string> {
  const v = value as { sendCommand?: unknown; duplicate?: unknown; status?: unknown } | null;
  return typeof v === 'object' && v !== null && typeof v.sendCommand === 'function' && typeof v.duplicate === 'function' && typeof v.status === 'string';
}

/**
 * What is wrong with the `redis` option, if anything. Checked beside the schema, not in it: zod
 * would add the refused value to the message, and a URL is never echoed (it may hold a password):
 * the parser says what is wrong with it.
 */
function redisIssue(value: unknown): Issue | undefined {
  const at = (message: string): Issue => ({ path: 'redis', message });
  if (value === undefined || value === null || value === '') {
    const got = value === '' ? 'an empty string' : String(value);
    return at(`no Redis URL (got ${got}): set REDIS_URL, which the quickstart's \`process.env.REDIS_URL!\` reads, or pass ${SCHEMES} or an ioredis connection`);
  }
  if (typeof value === 'string') {
    try {
      parseRedisUrl(value);
      return undefined;
    } catch (err) {
      return at(err instanceof HeadroomError ? err.message : `invalid Redis URL: expected ${SCHEMES}`);
    }
  }
  if (isConnection(value)) return undefined;
  return at(`expected ${SCHEMES}, or an ioredis connection, got ${Array.isArray(value) ? 'an array' : typeof value}`);
}

/** pino's `Logger`, `console`, or any object with these methods: the levels the producer calls. */
function isLogger(value: unknown): value is LoggerLike {
  const v = value as Partial<Record<keyof LoggerLike, unknown>> | null;
  return typeof v === 'object' && v !== null && typeof v.warn === 'function' && typeof v.info === 'function' && typeof v.error === 'function';
}

const RETENTION_DEFAULTS = { completedSec: 24 * 3600, failedSec: 7 * 24 * 3600, completedCount: 10_000, failedCount: 10_000 };

/** `ProducerOptions` checked, with their defaults (producer.ts documents each). */
export const ProducerResolved = z.strictObject({
  /** Checked by `redisIssue`. */
  redis: z.custom<RedisInput>(() => true),
  prefix: z.string({ error: 'expected the fleet\'s prefix: 1-32 letters, digits, _ or -' }).regex(PREFIX_PATTERN, { error: 'expected the fleet\'s prefix: 1-32 letters, digits, _ or -' }).default(DEFAULT_PREFIX),
  maxJobBytes: positiveInt.max(Number.MAX_SAFE_INTEGER, { error: 'expected a positive integer' }).default(DEFAULT_MAX_JOB_BYTES),
  connectTimeoutMs: positiveInt.max(MAX_TIMER_MS, { error: `expected a positive integer of ms, at most ${MAX_TIMER_MS}` }).default(2_000),
  resultCacheTtlMs: nonNegativeInt.max(Number.MAX_SAFE_INTEGER, { error: 'expected a non-negative integer' }).default(0),
  retention: z
    .strictObject({
      completedSec: nonNegativeInt.default(RETENTION_DEFAULTS.completedSec),
      failedSec: nonNegativeInt.default(RETENTION_DEFAULTS.failedSec),
      completedCount: nonNegativeInt.default(RETENTION_DEFAULTS.completedCount),
      failedCount: nonNegativeInt.default(RETENTION_DEFAULTS.failedCount),
    }, { error: 'expected an object: { completedSec?, failedSec?, completedCount?, failedCount? }' })
    .default(RETENTION_DEFAULTS),
  logger: z.custom<LoggerLike>(isLogger, { error: 'expected a logger with warn, info and error methods, each taking (fields, message): a pino logger, or console' }).optional(),
});
export type ProducerResolved = z.infer<typeof ProducerResolved>;

/** Throws `ConfigError` (`CONFIG_INVALID`) naming every bad option; returns them with defaults. */
export function resolveProducerOptions(options: unknown): ProducerResolved {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigError('(Producer options)', [{ path: '(options)', message: `expected an object with at least \`redis\`, got ${options === undefined ? 'nothing' : Array.isArray(options) ? 'an array' : String(options)}` }]);
  }
  const redis = redisIssue((options as { redis?: unknown }).redis);
  const parsed = ProducerResolved.safeParse(options, { reportInput: true });
  if (parsed.success && !redis) return parsed.data;
  const issues: Issue[] = [
    ...(redis ? [redis] : []),
    // The schema's own word on `redis` (a missing key: "expected nonoptional") says less than
    // `redisIssue`, which checks it beside the schema: one issue per bad option.
    ...(parsed.success ? [] : toIssues(parsed.error, { hideSecrets: true }).filter((i) => i.path !== 'redis').map((i) => (i.path === '' ? { ...i, path: '(options)' } : i))),
  ];
  throw new ConfigError('(Producer options)', issues);
}
