/**
 * What a job costs in a fair lane: the tokens it will draw from the bucket, estimated by the
 * producer without a tokenizer. The add script (lua/add-9.lua, lua/includes/fair-queue.lua) charges
 * it to the job's tenant when it picks the job's place, so tenants with work waiting share the
 * lane by tokens, not by job count: one tenant's 100k-token prompts do not pass as many jobs as
 * another's one-liners.
 *
 * The estimate is `max output + request bytes / 4`. Output is what the bucket reserves up front
 * (`max_tokens`, or the model's `maxOutputTokens` for a request without one); four bytes a token
 * is the usual rule for English text and JSON, and the request's envelope counts the same for
 * every tenant. Running the real tokenizer here would cost every
 * enqueue a few hundred microseconds and load it into every producer; fairness needs the ratio
 * between tenants' jobs, not the exact count. Images and documents are over-counted (their base64
 * bytes, not what the provider bills): a tenant sending them is served a little less often.
 */
import { choicesOf, maxOutputTokens, type LlmJob } from './job.js';
import type { Lane } from './lanes.js';

/** Bytes of request JSON counted as one token. */
export const BYTES_PER_TOKEN = 4;

/**
 * The job's cost in tokens (at least 1), from its data JSON's length, as the add script takes it:
 * a request with no output bound of its own (an OpenAI default) costs its primary model's
 * `maxOutputTokens` per choice, which only the fleet's published config knows, so it is sent as
 * `<cost without output>*<choices>` and the script adds the rest.
 */
export function fairCostArg(job: LlmJob, dataBytes: number, lane: Lane): string {
  const output = maxOutputTokens(job);
  const cost = Math.max(1, (output ?? 0) + Math.ceil(dataBytes / BYTES_PER_TOKEN));
  // The batch lane's calls go to the batch API, never drawn from the bucket: nothing to reserve.
  return output === undefined && lane !== 'batch' ? `${cost}*${choicesOf(job)}` : String(cost);
}
