/**
 * The job contract shared by producers and workers: what a producer may enqueue (checked before
 * anything is written, so a mistake never costs a provider call) and what a worker returns.
 */
import { z } from 'zod';
import { PRIORITIES } from './lanes.js';

const nonEmpty = z.string({ error: 'expected a string' }).min(1, { error: 'must not be empty' });
/** Provider model ids never hold whitespace; admission sends a job's models as one line-separated argument. */
const modelId = nonEmpty.regex(/^\S*$/, { error: 'a model id has no whitespace' });
/**
 * Its minimum is raised as a `too_small` issue of origin "int" (zod's own says "number" for an
 * integer too), so an error can say an integer was below its minimum (OpenAI's
 * `integer_below_min_value`) rather than any number.
 */
const positiveInt = z.int({ error: 'expected a positive integer' }).check((ctx) => {
  if (ctx.value < 1) ctx.issues.push({ code: 'too_small', origin: 'int', minimum: 1, inclusive: true, input: ctx.value, message: 'expected a positive integer' });
});
/**
 * A positive integer of at most `max`, its maximum raised as its minimum is (origin "int"), so an
 * error can say an integer was above it (OpenAI's `integer_above_max_value`).
 */
const positiveIntUpTo = (max: number) =>
  positiveInt.check((ctx) => {
    if (ctx.value > max) ctx.issues.push({ code: 'too_big', origin: 'int', maximum: max, inclusive: true, input: ctx.value, message: `expected at most ${max}` });
  });

// ---- Anthropic Messages ----------------------------------------------------------------

const CacheControl = z.object({ type: z.literal('ephemeral'), ttl: z.enum(['5m', '1h']).optional() }).optional();

const AnthropicTextBlock = z.looseObject({ type: z.literal('text'), text: z.string(), cache_control: CacheControl });
const AnthropicImageBlock = z.looseObject({
  type: z.literal('image'),
  source: z.discriminatedUnion('type', [
    z.looseObject({
      type: z.literal('base64'),
      media_type: z.enum(['image/jpeg', 'image/png', 'image/gif', 'image/webp']),
      data: nonEmpty,
    }),
    z.looseObject({ type: z.literal('url'), url: z.url() }),
    z.looseObject({ type: z.literal('file'), file_id: nonEmpty }),
  ], { error: 'expected a source of type "base64", "url" or "file"' }),
  cache_control: CacheControl,
});
const AnthropicDocumentBlock = z.looseObject({ type: z.literal('document'), source: z.looseObject({ type: nonEmpty }) });
const AnthropicToolUseBlock = z.looseObject({
  type: z.literal('tool_use'),
  id: nonEmpty,
  name: nonEmpty,
  input: z.record(z.string(), z.unknown()),
});
const AnthropicToolResultBlock = z.looseObject({
  type: z.literal('tool_result'),
  tool_use_id: nonEmpty,
  content: z.union([z.string(), z.array(z.looseObject({ type: nonEmpty }))], { error: 'expected a string or an array of content blocks' }).optional(),
  is_error: z.boolean().optional(),
});
const AnthropicThinkingBlock = z.looseObject({ type: z.enum(['thinking', 'redacted_thinking']) });

/** The blocks Headroom reads (to count tokens, or to answer a mistake before it costs a call). */
const CHECKED_BLOCKS: Record<string, z.ZodType> = {
  text: AnthropicTextBlock,
  image: AnthropicImageBlock,
  document: AnthropicDocumentBlock,
  tool_use: AnthropicToolUseBlock,
  tool_result: AnthropicToolResultBlock,
  thinking: AnthropicThinkingBlock,
  redacted_thinking: AnthropicThinkingBlock,
};

/**
 * A content block: one of the kinds above, checked field by field, or any other kind, passed to
 * the provider as it is. Anthropic adds block kinds often (search results, server tools' uses
 * and results, container uploads...), and a conversation with a server tool must send the
 * provider's own blocks back on its next turn: a closed list refused such turns, even when the
 * blocks came from the gateway's own answer. The provider checks what Headroom does not know.
 */
const AnthropicContentBlock = z.looseObject({ type: nonEmpty }).check((ctx) => {
  // The kind's own issues, as they are (a union's branches, the value found): passed on as bare
  // messages, a wrong-typed tool_result's content read "Invalid input" with no word of what was
  // expected. `reportInput` costs nothing on a valid block.
  const checked = CHECKED_BLOCKS[ctx.value.type]?.safeParse(ctx.value, { reportInput: true });
  if (checked && !checked.success) for (const issue of checked.error.issues) ctx.issues.push(issue as z.core.$ZodRawIssue);
});

export const AnthropicMessagesRequest = z.looseObject({
  model: modelId,
  max_tokens: positiveInt,
  messages: z
    .array(
      z.strictObject({
        role: z.enum(['user', 'assistant'], { error: 'expected "user" or "assistant"' }),
        content: z.union([z.string(), z.array(AnthropicContentBlock)], { error: 'expected a string or an array of content blocks' }),
      }),
      { error: 'expected an array of messages' },
    )
    .min(1, { error: 'must not be empty' })
    .superRefine((messages, ctx) => {
      // Anthropic's own rule: a final assistant message may be empty (a prefill the model starts
      // from, its whole answer then); any other message must say something.
      for (const [i, message] of messages.entries()) {
        const prefill = i === messages.length - 1 && message.role === 'assistant';
        if (message.content.length === 0 && !prefill) ctx.addIssue({ code: 'custom', path: [i, 'content'], message: 'must not be empty (only a final assistant message may be)' });
      }
    }),
  system: z.union([z.string(), z.array(AnthropicTextBlock)], { error: 'expected a string or an array of text blocks' }).optional(),
  /** Each tool as the provider takes it (a custom tool, a server tool...): checked there. */
  tools: z.array(z.looseObject({}, { error: 'expected a tool (an object)' }), { error: 'expected an array of tools' }).optional(),
  // Not null, unlike OpenAI's: Anthropic's API refuses `"temperature": null` ("Input should be a
  // valid number"), and its SDK's types take none of these as null.
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: positiveInt.optional(),
  stop_sequences: z.array(z.string()).optional(),
  /** The worker makes a streaming call and relays each event to the waiting client through Redis. */
  stream: z.boolean({ error: 'expected true or false' }).optional(),
});
export type AnthropicMessagesRequest = z.infer<typeof AnthropicMessagesRequest>;

/** An Anthropic count_tokens body: a Messages request, checked as one, without the max_tokens count_tokens does not take. */
export const AnthropicCountTokensRequest = AnthropicMessagesRequest.omit({ max_tokens: true });
export type AnthropicCountTokensRequest = z.infer<typeof AnthropicCountTokensRequest>;

// ---- OpenAI Chat Completions ----------------------------------------------------------

/** The most choices (`n`) an OpenAI Chat call may ask for, as OpenAI bounds it. */
const OPENAI_MAX_CHOICES = 128;

const OpenAIContentPart = z.looseObject({ type: nonEmpty });
const PARTS = { error: 'expected a string or an array of content parts' };
const OpenAIMessage = z.discriminatedUnion(
  'role',
  [
    z.looseObject({ role: z.enum(['system', 'developer']), content: z.union([z.string(), z.array(OpenAIContentPart)], PARTS) }),
    z.looseObject({ role: z.literal('user'), content: z.union([z.string(), z.array(OpenAIContentPart).min(1)], PARTS) }),
    z.looseObject({
      role: z.literal('assistant'),
      content: z.union([z.string(), z.array(OpenAIContentPart), z.null()], { error: 'expected a string, an array of content parts or null' }).optional(),
      // `function` or `custom` (a custom tool's call, answered with free text) today.
      tool_calls: z.array(z.looseObject({ id: nonEmpty, type: nonEmpty })).nullish(),
    }),
    z.looseObject({ role: z.literal('tool'), tool_call_id: nonEmpty, content: z.union([z.string(), z.array(OpenAIContentPart)], PARTS) }),
    // The deprecated answer to a `function_call`, which the API and the SDK's types still take.
    z.looseObject({ role: z.literal('function'), name: nonEmpty, content: z.union([z.string(), z.null()], { error: 'expected a string or null' }) }),
  ],
  { error: 'expected role "system", "developer", "user", "assistant", "tool" or "function"' },
);

export const OpenAIChatRequest = z
  .looseObject({
    model: modelId,
    messages: z.array(OpenAIMessage, { error: 'expected an array of messages' }).min(1, { error: 'must not be empty' }),
    // null is the SDK's own "not set" for each of these (its types say `T | null`): read as absent.
    max_tokens: positiveInt.nullish(),
    max_completion_tokens: positiveInt.nullish(),
    // OpenAI's bound: "Invalid 'n': integer above maximum value. Expected a value <= 128, but got
    // 130 instead." (param n, code integer_above_max_value). Refused here, it costs no provider
    // call, and a job asking for 10,000 choices never reserves 10,000 x its output bound.
    n: positiveIntUpTo(OPENAI_MAX_CHOICES).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    /** The worker makes a streaming call and relays each chunk to the waiting client through Redis. */
    stream: z.boolean({ error: 'expected true or false' }).nullish(),
    stream_options: z.looseObject({ include_usage: z.boolean({ error: 'expected true or false' }).optional() }).nullish(),
  })
  .superRefine((req, ctx) => {
    // OpenAI answers 400 for this; refusing it here costs no provider call.
    if (req.stream_options != null && req.stream !== true) {
      ctx.addIssue({ code: 'custom', path: ['stream_options'], message: 'stream_options is only allowed with "stream": true' });
    }
    // A request with no output bound is OpenAI's default and is allowed: it reserves its models'
    // configured maxOutputTokens, as OpenAI counts it (admission refuses it for a model without).
    if (req.max_tokens != null && req.max_completion_tokens != null) {
      // OpenAI's own 400 for it: `param: max_tokens`, `code: invalid_parameter_combination`.
      ctx.addIssue({ code: 'custom', path: ['max_tokens'], message: "setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported: set only one", params: { code: 'invalid_parameter_combination' } });
    }
  });
export type OpenAIChatRequest = z.infer<typeof OpenAIChatRequest>;

// ---- OpenAI Responses -----------------------------------------------------------------

/** An input item: a message (`role`, with or without `type: "message"`) or a typed item (`function_call_output`, ...). */
const OpenAIInputItem = z.looseObject({ type: z.string().optional(), role: z.string().optional() }).refine((item) => item.type !== undefined || item.role !== undefined, {
  error: 'expected an input item: a message with a "role", or an item with a "type"',
});

export const OpenAIResponsesRequest = z
  .looseObject({
    model: modelId,
    input: z.union([nonEmpty, z.array(OpenAIInputItem).min(1, { error: 'must not be empty' })], { error: 'expected a string or an array of input items' }).optional(),
    /** A saved prompt (a template kept at OpenAI, with values for its variables), in place of or beside `input`. */
    prompt: z.looseObject({ id: nonEmpty, variables: z.record(z.string(), z.unknown()).nullish(), version: z.string().nullish() }).nullish(),
    instructions: z.string().nullish(),
    max_output_tokens: positiveInt.nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    /** The worker makes a streaming call and relays each event to the waiting client through Redis. */
    stream: z.boolean({ error: 'expected true or false' }).nullish(),
    stream_options: z.looseObject({}).nullish(),
    background: z.boolean().nullish(),
  })
  .superRefine((req, ctx) => {
    // The SDK's types make `input` optional: a saved prompt can be the whole of a call.
    if (req.input === undefined && req.prompt == null) {
      ctx.addIssue({ code: 'custom', path: ['input'], message: 'required unless the call names a saved prompt: set input, prompt, or both', params: { code: 'missing_required_parameter' } });
    }
    if (req.stream_options != null && req.stream !== true) {
      ctx.addIssue({ code: 'custom', path: ['stream_options'], message: 'stream_options is only allowed with "stream": true' });
    }
    // A background response answers at once with a queued id the caller polls: the queue would
    // report the call done before the provider ran it, and its usage would never reach the bucket.
    if (req.background === true) {
      ctx.addIssue({ code: 'custom', path: ['background'], message: 'background responses are not supported: Headroom queues the call itself (leave background out, or use sla "none" for work with no deadline)' });
    }
  });
export type OpenAIResponsesRequest = z.infer<typeof OpenAIResponsesRequest>;

/**
 * A Responses input_tokens body (`POST /v1/responses/input_tokens`): a call's fields, each
 * optional as OpenAI has them. A stored conversation (`previous_response_id`, `conversation`) is
 * kept at OpenAI, out of Headroom's sight: counting the call without it would answer too few.
 */
export const OpenAIInputTokensRequest = z
  .looseObject({
    model: modelId.nullish(),
    input: OpenAIResponsesRequest.shape.input.nullish(),
    instructions: z.string().nullish(),
  })
  .superRefine((req, ctx) => {
    for (const field of ['previous_response_id', 'conversation'] as const) {
      if (req[field] != null) {
        ctx.addIssue({ code: 'custom', path: [field], message: 'not counted here: a stored conversation is kept at OpenAI, out of the gateway\'s sight, and the count would leave it out (count the whole input, or ask OpenAI directly)' });
      }
    }
  });

// ---- The job --------------------------------------------------------------------------

export const PROVIDERS = ['anthropic', 'openai'] as const;
export type Provider = (typeof PROVIDERS)[number];

/**
 * A tenant as a job names it (and as config keys name one: `tenants.overrides`, a gateway key's
 * `tenant`): it goes into Redis key fields and the dashboard, so a closed alphabet.
 */
export const TenantId = z.string().regex(/^[\w.:@-]{1,128}$/, { error: 'expected 1-128 characters of letters, digits, . : @ _ -' });
export type TenantId = z.infer<typeof TenantId>;

const JobCommon = {
  priority: z.enum(PRIORITIES, { error: 'expected CRITICAL, HIGH, NORMAL or LOW' }),
  /** Models to try, in order, after `request.model` (same provider). */
  fallback: z.array(modelId).max(8).optional(),
  /** Caller's tenant, for per-tenant quotas. */
  tenant: TenantId.optional(),
  /**
   * Who may share this job, within its tenant: its idempotency key and its coalesced joins meet
   * only jobs of the same scope. The gateway sets it for a client key bound to no tenant, so two
   * such keys never share a job. Never sent to the provider.
   */
  scope: TenantId.optional(),
  /**
   * The gateway process waiting on this job (its id in the fleet's `gateways` heartbeats). A
   * worker withdraws the job, as its client's cancel would, once that gateway's heartbeat is gone:
   * killed, its clients have already been cut off and their SDKs send the call again elsewhere.
   * The gateway sets it only on a job no other caller can share (no idempotency key, no
   * coalescing). Never sent to the provider.
   */
  gateway: TenantId.optional(),
  /** `none`: no deadline; goes to the provider's batch API at half price. */
  sla: z.enum(['interactive', 'none']).optional(),
  /** A repeated enqueue with the same key returns the first job instead of adding another. */
  idempotencyKey: z.string().min(1).max(256).optional(),
  /** Identical in-flight coalesced jobs share one provider call. */
  coalesce: z.boolean().optional(),
  /**
   * The job's deadline, in every lane: the latest a provider call for it may start, counted from
   * enqueue. Past it (or facing a wait that passes it) the job ends DEADLINE_EXCEEDED with no
   * call; a call in flight is never cut. The producer's `result()` rejects so at the deadline,
   * each caller's from its own enqueue (a coalesced join's included), and a job callers share waits
   * for the latest of theirs (shared-deadline.ts). Also the wait after which a job tries its next
   * model, and a LOW job under pressure is shed.
   */
  maxWaitMs: positiveInt.optional(),
  /** What happens to this job when LOW is shed: fail it, or move it to the batch lane. */
  onShed: z.enum(['fail', 'batch']).optional(),
  /** Caller's data, returned untouched with the job (never sent to the provider). */
  metadata: z.record(z.string(), z.unknown()).optional(),
};

/**
 * Anthropic's beta features the call opts into, sent as its `anthropic-beta` header (the SDK's
 * `client.beta.messages.create({ betas })`): a beta's request fields mean nothing without it.
 */
const AnthropicBetas = z
  .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,99}$/, { error: 'expected a beta name: lowercase letters, digits, . _ -, as in "context-1m-2025-08-07"' }))
  .min(1, { error: 'must not be empty (leave betas out)' })
  .max(16);

export const LlmJob = z
  .discriminatedUnion(
    'provider',
    [
      z.strictObject({ ...JobCommon, provider: z.literal('anthropic'), request: AnthropicMessagesRequest, betas: AnthropicBetas.optional() }),
      // OpenAI's two APIs: Chat Completions (`api` "chat", the default) and Responses.
      z.discriminatedUnion(
        'api',
        [
          z.strictObject({ ...JobCommon, provider: z.literal('openai'), api: z.literal('chat').optional(), request: OpenAIChatRequest }),
          z.strictObject({ ...JobCommon, provider: z.literal('openai'), api: z.literal('responses'), request: OpenAIResponsesRequest }),
        ],
        { error: 'expected api "chat" (or none) or "responses"' },
      ),
    ],
    { error: 'expected "anthropic" or "openai"' },
  )
  .superRefine((job, ctx) => {
    // The batch APIs answer hours later, in one piece: nobody could be reading the stream.
    if (job.request.stream === true && job.sla === 'none') {
      ctx.addIssue({ code: 'custom', path: ['request', 'stream'], message: 'a streamed job must be interactive: sla "none" goes to the batch API, which does not stream' });
    }
    // Shed to the batch lane, a streamed job's reader would wait hours for a stream that never comes.
    if (job.request.stream === true && job.onShed === 'batch') {
      ctx.addIssue({ code: 'custom', path: ['onShed'], message: 'a streamed job cannot be shed to the batch API, which does not stream: use onShed "fail" (the default)' });
    }
    // A batch carries one set of headers for all its requests; a job's betas would be lost there.
    if (job.provider === 'anthropic' && job.betas !== undefined && (job.sla === 'none' || job.onShed === 'batch')) {
      ctx.addIssue({ code: 'custom', path: ['betas'], message: 'betas go with interactive calls only: the batch lane (sla "none", onShed "batch") sends none' });
    }
  });
export type LlmJob = z.infer<typeof LlmJob>;
/**
 * The job-level fields whose value here is what leaving them out means: OpenAI's Chat Completions
 * (`api`), an interactive job (`sla`), no coalescing, failing when shed. A caller that writes one
 * out (the gateway for a `headroom-sla: interactive` or `headroom-coalesce: false` header, a
 * service naming `api: 'chat'`) asks for the same job as one that does not, yet the written field
 * went into the job's data and its coalescing key: two such calls neither coalesced nor passed as
 * a repeat of one idempotency key (refused JOB_INVALID, "a different job").
 */
const WRITTEN_DEFAULTS: Readonly<Record<string, unknown>> = { api: 'chat', sla: 'interactive', coalesce: false, onShed: 'fail' };

/**
 * The job with the defaults it wrote out left out, so each request has one form (the one a job
 * that never named them always had, so such a job's data and keys are unchanged). The same object
 * when it writes none.
 */
export function leaveDefaultsOut<T extends object>(job: T): T {
  let out: Record<string, unknown> | undefined;
  for (const [field, value] of Object.entries(WRITTEN_DEFAULTS)) {
    if ((job as Record<string, unknown>)[field] !== value) continue;
    out ??= { ...(job as Record<string, unknown>) };
    delete out[field];
  }
  return (out ?? job) as T;
}
type DeepReadonly<T> = T extends (...args: never[]) => unknown ? T : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;
/** What a producer passes in: same shape, before defaults; `as const` literals are welcome. */
export type LlmJobInput = DeepReadonly<z.input<typeof LlmJob>>;

/** Every model a job may be served by, primary first. */
export function modelLadder(job: Pick<LlmJob, 'request' | 'fallback'>): string[] {
  return [job.request.model, ...(job.fallback ?? [])];
}

/**
 * What the provider call takes from the job beside its request, as the call's input takes it: an
 * Anthropic job's betas, an OpenAI job's API when it is Responses (nothing for a job with neither).
 */
export function callOptionsOf(job: LlmJob): { betas?: readonly string[]; api?: 'responses' } {
  if (job.provider === 'anthropic') return job.betas !== undefined ? { betas: job.betas } : {};
  return job.api === 'responses' ? { api: 'responses' } : {};
}

/** The job asks for a streamed answer (the worker relays its events through Redis). */
export function isStreamed(job: Pick<LlmJob, 'request'>): boolean {
  return job.request.stream === true;
}

/** Which provider API the job calls: Anthropic Messages, OpenAI Chat Completions or OpenAI Responses. */
export type ProviderApi = 'messages' | 'chat' | 'responses';

export function apiOf(job: Pick<LlmJob, 'provider'> & { api?: 'chat' | 'responses' | undefined }): ProviderApi {
  return job.provider === 'anthropic' ? 'messages' : (job.api ?? 'chat');
}

/** How many answers the request asks for (OpenAI's `n`): its output bound counts once per choice. */
export function choicesOf(job: LlmJob): number {
  return job.provider === 'openai' && job.api !== 'responses' ? (job.request.n ?? 1) : 1;
}

/**
 * The output bound the request sets, all choices together, or undefined for an OpenAI request
 * that sets none (it reserves its model's `maxOutputTokens` instead: `outputBoundFor`).
 */
export function maxOutputTokens(job: LlmJob): number | undefined {
  if (job.provider === 'anthropic') return job.request.max_tokens;
  if (job.api === 'responses') return job.request.max_output_tokens ?? undefined;
  // A null bound is the SDK's "not set": the model's default is reserved, never 0 tokens.
  const perChoice = job.request.max_completion_tokens ?? job.request.max_tokens;
  return perChoice == null ? undefined : perChoice * choicesOf(job);
}

/** The request field that bounds the job's output, as its API names it (for messages that ask the caller to set one). */
export function outputBoundField(job: Pick<LlmJob, 'provider'> & { api?: 'chat' | 'responses' | undefined }): string {
  return { messages: 'max_tokens', chat: 'max_completion_tokens', responses: 'max_output_tokens' }[apiOf(job)];
}

/**
 * What a call of the job on a model with this config reserves against output tokens/min: the
 * request's own bound, else the model's `maxOutputTokens` for each choice (what the provider
 * itself counts for a request without one); undefined when neither is set.
 */
export function outputBoundFor(job: LlmJob, model: { maxOutputTokens?: number | undefined }): number | undefined {
  const own = maxOutputTokens(job);
  if (own !== undefined) return own;
  return model.maxOutputTokens === undefined ? undefined : model.maxOutputTokens * choicesOf(job);
}

// ---- The result -----------------------------------------------------------------------

export const Usage = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheReadInputTokens: z.number().int().nonnegative(),
  cacheCreationInputTokens: z.number().int().nonnegative(),
  /**
   * Of `cacheCreationInputTokens`, those written with a 1-hour TTL (Anthropic's
   * `cache_creation.ephemeral_1h_input_tokens`), which Anthropic bills at 2x input where a 5-minute
   * write is 1.25x. Absent when the provider gave no breakdown.
   */
  cacheCreation1hInputTokens: z.number().int().nonnegative().optional(),
});
export type Usage = z.infer<typeof Usage>;

export const LlmResult = z.object({
  provider: z.enum(PROVIDERS),
  /** The model that answered (may be a fallback). */
  model: z.string(),
  /** The provider's own response body, untouched. */
  response: z.unknown(),
  usage: Usage,
  /** Provider calls made for this job, including retries and fallbacks. */
  attempts: z.number().int().positive(),
  timings: z.object({
    enqueuedAt: z.number(),
    /** When the worker that answered began its run of the job (epoch ms): before its plan and acquire. */
    startedAt: z.number(),
    finishedAt: z.number(),
    /** From `enqueuedAt` to the start of the provider call that answered. */
    waitMs: z.number(),
    /** That provider call's length. */
    runMs: z.number(),
    /** Streamed jobs: when the first event arrived from the provider (epoch ms). */
    firstEventAt: z.number().optional(),
    /** Streamed jobs: time to first token, from the start of the provider call to its first event. */
    ttftMs: z.number().optional(),
  }),
  /** True when the answer was streamed; `response` is then the message assembled from its events. */
  streamed: z.boolean().optional(),
  /**
   * The provider's id for the call that answered (Anthropic's `request-id` header, OpenAI's
   * `x-request-id`): what the provider's support asks for. The gateway answers with it in the same
   * header, so an SDK's `_request_id` is the provider's.
   */
  providerRequestId: z.string().optional(),
  cost: z.object({ usd: z.number().nonnegative(), batch: z.boolean() }),
  metadata: z.record(z.string(), z.unknown()).optional(),
});
export type LlmResult = z.infer<typeof LlmResult>;
