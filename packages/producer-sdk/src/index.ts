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
 * await producer.close();
 * ```
 */
export { Producer } from './producer.js';
export type { ProducerOptions, ResultOptions, JobHandle, JobInfo, JobState } from './producer.js';
export {
  ErrorCode,
  HeadroomError,
  JobValidationError,
  PayloadTooLargeError,
  QueueFullError,
  ShedError,
  QuotaExceededError,
  JobFailedError,
  JobNotFoundError,
  TimeoutError,
  RedisUnavailableError,
  ClosedError,
  FleetUnpublishedError,
  RedisOomError,
  FailureCode,
} from '@headroom/queue';
export type { Issue, JobFailure, LlmJobInput, LlmResult, Usage, Priority, Lane, Provider } from '@headroom/queue';
