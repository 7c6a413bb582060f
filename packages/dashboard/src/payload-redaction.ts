/**
 * What Bull Board shows of a job's payload. Prompts and completions are user data: by default
 * the job view shows their shape (how many messages), never their text. Everything else an
 * operator debugs with (model, max_tokens, metadata, usage, cost, timings) stays visible.
 */

/** Request fields that carry prompt text, in either provider's body. */
const PROMPT_FIELDS = ['messages', 'system', 'prompt', 'input', 'instructions'] as const;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(value: unknown): string {
  if (Array.isArray(value)) return `[redacted: ${value.length} item${value.length === 1 ? '' : 's'}]`;
  if (typeof value === 'string') return `[redacted: ${value.length} chars]`;
  return '[redacted]';
}

/** A job's data with its prompt fields replaced by a description. */
export function redactJobData(data: unknown): unknown {
  if (!isRecord(data) || !isRecord(data.request)) return data;
  const request: Record<string, unknown> = { ...data.request };
  for (const field of PROMPT_FIELDS) if (field in request) request[field] = describe(request[field]);
  return { ...data, request };
}

/** A job's result with the provider's response (the completion) replaced by its ids. */
export function redactResult(result: unknown): unknown {
  if (!isRecord(result) || !isRecord(result.response)) return result;
  const r = result.response;
  const kept: Record<string, unknown> = { redacted: 'the completion; start the dashboard with --show-payloads to see it' };
  for (const field of ['id', 'model', 'stop_reason', 'type']) if (field in r) kept[field] = r[field];
  if (Array.isArray(r.choices)) kept.finish_reasons = r.choices.map((c) => (isRecord(c) ? c.finish_reason : undefined));
  return { ...result, response: kept };
}
