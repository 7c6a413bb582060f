/**
 * One batch result entry -> the fate of its job. Succeeded entries carry the same body an
 * interactive call returns (a Message, a ChatCompletion) and are read with the same schemas, so a
 * batch result has the same shape as an interactive one. An entry that failed on the provider's
 * side (a 5xx, an overload, a rate limit, the batch's 24 h window ending first) sends its job back
 * to the BATCH lane for a later batch, as other lanes retry such answers; the request's own fault
 * (400, auth, a model it cannot use) and a cancellation fail it at once. Either way the provider's
 * own words are kept behind a stable code.
 */
import { z } from 'zod';
import { AnthropicMessageBody, anthropicUsage } from '../providers/anthropic.js';
import { OpenAIChatCompletionBody, openaiUsage } from '../providers/openai.js';
import { OpenAIResponseBody, responsesUsage } from '../providers/openai-responses.js';
import type { EntryOutcome } from './batch-api.js';
import { cutSecretTokens, FailureCode, jobFailure } from '@headroom/queue';

type Scrub = (message: string) => string;

const ProviderErrorBody = z.looseObject({
  type: z.string().optional(),
  error: z.looseObject({ type: z.string().optional(), code: z.string().nullish(), message: z.string().optional() }).optional(),
});

/** Anthropic error types that are the provider's state, not the request's fault. */
const ANTHROPIC_TRANSIENT = new Set(['api_error', 'overloaded_error', 'rate_limit_error', 'timeout_error']);
/** OpenAI error codes of a line with no response that are the provider's state, not the request's fault. */
const OPENAI_TRANSIENT_CODES = new Set(['server_error', 'rate_limit_exceeded', 'timeout']);
/** A status a provider answers for its own state: sent again in a later batch. */
const transientStatus = (status: number) => status >= 500 || status === 429 || status === 408;

function errored(transient: boolean, message: string): EntryOutcome {
  return { kind: transient ? 'requeue' : 'failed', failure: jobFailure(FailureCode.BATCH_ERRORED, message) };
}

const EXPIRED: EntryOutcome = { kind: 'requeue', failure: jobFailure(FailureCode.BATCH_EXPIRED, 'the batch reached its 24 h limit before this request ran') };

function bad(issues: z.core.$ZodIssue[]): EntryOutcome {
  const detail = issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
  return { kind: 'failed', failure: jobFailure(FailureCode.BATCH_BAD_RESPONSE, `the result has an unexpected shape: ${detail}`) };
}

const AnthropicEntryResult = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('succeeded'), message: z.unknown() }),
  z.looseObject({ type: z.literal('errored'), error: z.unknown() }),
  z.looseObject({ type: z.literal('canceled') }),
  z.looseObject({ type: z.literal('expired') }),
]);

const AnthropicBatchLine = z.looseObject({ custom_id: z.string(), result: z.unknown() });
export type AnthropicBatchLine = z.infer<typeof AnthropicBatchLine>;

/**
 * Parses one line of a Message Batch's results; undefined when it is not one. A line that cannot
 * be read names no job, so its job counts as missing from the results, as on OpenAI: throwing
 * here (as the SDK's own decoder does) stopped the settle at that line on every poll, and the
 * jobs after it were parked for good.
 */
export function parseAnthropicBatchLine(text: string): AnthropicBatchLine | undefined {
  return parseLine(AnthropicBatchLine, text);
}

/** `result` of one line of a Message Batch's results (`{ custom_id, result }`). */
export function anthropicEntryOutcome(result: unknown, scrub: Scrub = (m) => m): EntryOutcome {
  const parsed = AnthropicEntryResult.safeParse(result);
  if (!parsed.success) return bad(parsed.error.issues);
  const entry = parsed.data;
  switch (entry.type) {
    case 'succeeded': {
      const message = AnthropicMessageBody.safeParse(entry.message);
      if (!message.success) return bad(message.error.issues);
      return { kind: 'succeeded', response: entry.message, usage: anthropicUsage(message.data) };
    }
    case 'errored': {
      const body = ProviderErrorBody.safeParse(entry.error);
      const inner = body.success ? body.data.error : undefined;
      const type = inner?.type ?? 'error';
      return errored(ANTHROPIC_TRANSIENT.has(type), `${type}: ${scrub(inner?.message ?? 'no message')}`);
    }
    case 'canceled':
      return { kind: 'failed', failure: jobFailure(FailureCode.BATCH_CANCELED, 'the batch was canceled before this request ran') };
    case 'expired':
      return EXPIRED;
  }
}

const OpenAIBatchLine = z.looseObject({
  custom_id: z.string(),
  response: z.looseObject({ status_code: z.int(), body: z.unknown() }).nullish(),
  error: z.looseObject({ code: z.string().nullish(), message: z.string().nullish() }).nullish(),
});
export type OpenAIBatchLine = z.infer<typeof OpenAIBatchLine>;

/** Parses one line of an OpenAI batch output or error file; undefined when it is not one. */
export function parseOpenAIBatchLine(text: string): OpenAIBatchLine | undefined {
  return parseLine(OpenAIBatchLine, text);
}

function parseLine<T>(schema: z.ZodType<T>, text: string): T | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** One line of an OpenAI batch output or error file. */
export function openaiEntryOutcome(line: OpenAIBatchLine, scrub: Scrub = (m) => m): EntryOutcome {
  const { response, error } = line;
  if (response && response.status_code >= 200 && response.status_code < 300) {
    // A Responses batch answers Responses (`object: "response"`), a Chat Completions one completions.
    if ((response.body as { object?: unknown } | null)?.object === 'response') {
      const body = OpenAIResponseBody.safeParse(response.body);
      if (!body.success) return bad(body.error.issues);
      return { kind: 'succeeded', response: cutSecretTokens(response.body), usage: responsesUsage(body.data) };
    }
    const body = OpenAIChatCompletionBody.safeParse(response.body);
    if (!body.success) return bad(body.error.issues);
    // A key echoed in the answer is cut from its text by the Redis scrub; its logprobs' tokens spell it in pieces.
    return { kind: 'succeeded', response: cutSecretTokens(response.body), usage: openaiUsage(body.data) };
  }
  if (response) {
    const body = ProviderErrorBody.safeParse(response.body);
    const inner = body.success ? body.data.error : undefined;
    const type = inner?.type ?? inner?.code ?? `HTTP ${response.status_code}`;
    return errored(transientStatus(response.status_code), `${type}: ${scrub(inner?.message ?? `status ${response.status_code}`)}`);
  }
  const code = error?.code ?? 'unknown';
  const message = scrub(error?.message ?? 'no message');
  if (code === 'batch_expired') return { kind: 'requeue', failure: jobFailure(FailureCode.BATCH_EXPIRED, message) };
  if (code === 'batch_cancelled') return { kind: 'failed', failure: jobFailure(FailureCode.BATCH_CANCELED, message) };
  return errored(OPENAI_TRANSIENT_CODES.has(code), `${code}: ${message}`);
}
