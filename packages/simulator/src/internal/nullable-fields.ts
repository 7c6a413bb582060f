// Optional request fields the APIs take as `null` (the official SDKs type them `| null`): a null
// there means "not given", so the simulator drops it before validating and reading the request.
// Everything after validation can then read such a field as absent or as its documented type,
// never as a null it would take for an object or an array.

/** Chat Completions fields typed `| null` in the openai SDK (ChatCompletionCreateParamsBase). */
export const CHAT_NULLABLE = [
  'audio',
  'frequency_penalty',
  'logprobs',
  'max_completion_tokens',
  'max_tokens',
  'metadata',
  'modalities',
  'moderation',
  'n',
  'prediction',
  'presence_penalty',
  'prompt_cache_key',
  'prompt_cache_retention',
  'reasoning_effort',
  'safety_identifier',
  'seed',
  'service_tier',
  'stop',
  'store',
  'stream',
  'stream_options',
  'temperature',
  'top_logprobs',
  'top_p',
  'verbosity',
] as const;

/**
 * Responses fields typed `| null` in the openai SDK (ResponseCreateParamsBase), and `tools`: typed
 * without null there, but a null one was always taken as no tools here, and crashed the prompt count.
 */
export const RESPONSES_NULLABLE = [
  'background',
  'context_management',
  'conversation',
  'include',
  'instructions',
  'max_output_tokens',
  'max_tool_calls',
  'metadata',
  'moderation',
  'parallel_tool_calls',
  'previous_response_id',
  'prompt',
  'prompt_cache_key',
  'prompt_cache_retention',
  'reasoning',
  'safety_identifier',
  'service_tier',
  'store',
  'stream',
  'stream_options',
  'temperature',
  'tools',
  'top_logprobs',
  'top_p',
  'truncation',
] as const;

/** Messages fields typed `| null` in @anthropic-ai/sdk (MessageCreateParamsBase). */
export const MESSAGES_NULLABLE = ['cache_control', 'container', 'diagnostics', 'inference_geo', 'speed'] as const;

/** `body` without the `fields` it holds as null; the same object when there are none. */
export function withoutNulls(body: Record<string, unknown>, fields: readonly string[]): Record<string, unknown> {
  if (!fields.some((field) => body[field] === null)) return body;
  return Object.fromEntries(Object.entries(body).filter(([field, value]) => !(value === null && fields.includes(field))));
}
