/**
 * The edge check every job passes before anything is written: plain JSON (json-value.ts), shape
 * (zod, every bad field by path) and serialized size.
 */
import { JobValidationError, PayloadTooLargeError, type Issue } from './errors.js';
import { FailureCode, jobFailure, type JobFailure } from './failure.js';
import { toIssues } from './internal/zod-issues.js';
import { AnthropicCountTokensRequest, leaveDefaultsOut, LlmJob, OpenAIInputTokensRequest, type ProviderApi } from './job.js';
import { jsonIssueAt, kindOf } from './json-value.js';

export const DEFAULT_MAX_JOB_BYTES = 1024 * 1024;

/**
 * The job's shape: plain JSON no deeper than MAX_JSON_DEPTH, then zod (every bad field by path), with
 * the defaults it wrote out left out (`leaveDefaultsOut`). Throws
 * `JobValidationError`. A worker checks each job it takes with this, since a lane can hold jobs
 * no admission of its version checked (written by another tool, or a newer version's producer).
 */
export function checkJob(input: unknown): LlmJob {
  // The schema's first word on one would be its provider's ("expected anthropic or openai").
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new JobValidationError([{ path: '', message: `expected a job (an object), got ${kindOf(input)}` }]);
  }
  // Before anything recursive walks it (zod, JSON.stringify): see json-value.ts.
  const notJson = jsonIssueAt(input);
  if (notJson) throw new JobValidationError([notJson]);
  // `reportInput` is only wanted for the message of a refusal, and a valid job paid for it: timed
  // inside a sequential enqueue loop, the parse took 29 µs with it and 20 µs without. So parse a
  // second time, with it, only to say what was wrong.
  const parsed = LlmJob.safeParse(input);
  if (!parsed.success) throw new JobValidationError(toIssues(LlmJob.safeParse(input, { reportInput: true }).error ?? parsed.error));
  // One form per request: its data (what a repeat of its idempotency key is compared with) and its
  // coalescing key are the same whether the caller wrote a default out or not.
  return leaveDefaultsOut(parsed.data);
}

/**
 * What a worker holds as the data of a job it took whose stored fields are not JSON, or JSON of the
 * wrong kind (written into a lane by hand): the worker reads what it can and
 * `checkTakenJob` fails it `JOB_INVALID` with `reason`, as it fails any other job it cannot run.
 */
export class UnreadableJobData {
  constructor(readonly reason: string) {}
}

/**
 * `checkJob` for a job a worker took from a lane: its validated data, or the `JOB_INVALID` failure
 * to end it with, naming each bad field. Any other error (not the job's) is thrown.
 */
export function checkTakenJob(input: unknown): { job: LlmJob } | { failure: JobFailure } {
  if (input instanceof UnreadableJobData) return { failure: jobFailure(FailureCode.JOB_INVALID, `${input.reason} (read by a worker of this version)`) };
  try {
    return { job: checkJob(input) };
  } catch (err) {
    if (!(err instanceof JobValidationError)) throw err;
    return { failure: jobFailure(FailureCode.JOB_INVALID, `${err.message} (checked by a worker of this version)`) };
  }
}

/** Returns the validated job and its serialized form, or throws `JobValidationError` / `PayloadTooLargeError`. */
export function parseJob(input: unknown, maxJobBytes = DEFAULT_MAX_JOB_BYTES): { job: LlmJob; json: string } {
  const job = checkJob(input);
  const json = JSON.stringify(job);
  const size = Buffer.byteLength(json, 'utf8');
  if (size > maxJobBytes) throw new PayloadTooLargeError(size, maxJobBytes);
  return { job, json };
}

/**
 * What is wrong with a token-count body (none when it is fine): Anthropic's count_tokens, checked
 * as a Messages job's request is, or OpenAI's Responses input_tokens, checked as a Responses
 * call's fields are, named by the same paths (`request.messages.0.role`): a body the call's own
 * endpoint refuses is not counted either.
 */
export function countTokensIssues(body: unknown, api: Exclude<ProviderApi, 'chat'> = 'messages'): Issue[] {
  const parsed = (api === 'messages' ? AnthropicCountTokensRequest : OpenAIInputTokensRequest).safeParse(body, { reportInput: true });
  if (parsed.success) return [];
  return toIssues(parsed.error).map((issue) => ({ ...issue, path: issue.path === '' ? 'request' : `request.${issue.path}` }));
}
