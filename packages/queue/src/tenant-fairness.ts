/**
 * What a job costs in a fair lane: the tokens it will draw from the bucket, estimated by the
 * producer without a tokenizer. The add script (lua/add-9.lua, lua/includes/fair-queue.lua) charges
 * it to the job's tenant when it picks the job's place, so tenants with work waiting share the
 * lane by tokens, not by job count: one tenant's 100k-token prompts do not pass as many jobs as
 * another's one-liners.
 *
 * The estimate is `max output + request bytes / 4`. Output is what the bucket reserves up front
 * (`max_tokens`); four bytes a token is the usual rule for English text and JSON, and the request's
 * envelope counts the same for every tenant. Running the real tokenizer here would cost every
 * enqueue a few hundred microseconds and load it into every producer; fairness needs the ratio
 * between tenants' jobs, not the exact count. Images and documents are over-counted (their base64
 * bytes, not what the provider bills): a tenant sending them is served a little less often.
 */
import { maxOutputTokens, type LlmJob } from './job.js';

/** Bytes of request JSON counted as one token. */
export const BYTES_PER_TOKEN = 4;

/** The job's cost in tokens (at least 1), from its data JSON's length. */
export function fairCost(job: LlmJob, dataBytes: number): number {
  return Math.max(1, maxOutputTokens(job) + Math.ceil(dataBytes / BYTES_PER_TOKEN));
}
