/**
 * @headroom/producer-sdk — enqueue LLM calls into a Headroom fleet and get their results.
 *
 * ```ts
 * import { Producer } from '@headroom/producer-sdk';
 * const producer = new Producer({ redis: process.env.REDIS_URL! });
 * const result = await producer.run({
 *   priority: 'HIGH',
 *   provider: 'anthropic',
 *   request: { model: 'claude-sonnet-4-6', max_tokens: 256, messages: [{ role: 'user', content: 'Hi' }] },
 * }, { timeoutMs: 30_000 });
 * console.log(result.model, result.usage, result.response);
 *
 * // Streamed: the provider's own events as they arrive, then the result.
 * const stream = await producer.stream({ priority: 'CRITICAL', provider: 'anthropic', request: { ... } }, { signal });
 * for await (const event of stream) console.log(event);
 * await producer.close();
 * ```
 */
export { Producer } from './producer.js';
export type { ProducerOptions, ResultOptions, StreamOptions, CancelOptions, JobHandle, JobInfo, JobState } from './producer.js';
export type { JobStream, StreamStart } from './internal/job-stream.js';
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
  RedisRefusedError,
  ConfigError,
  ClosedError,
  FleetUnpublishedError,
  RedisOomError,
  FailureCode,
  StreamCut,
} from '@headroom/queue';
export type { Issue, JobFailure, LlmJobInput, LlmResult, LoggerLike, ProviderError, Usage, Priority, Lane, Provider } from '@headroom/queue';
