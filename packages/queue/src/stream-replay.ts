/**
 * A finished job's answer as the stream its API sends, made from the response in its result: what
 * a repeat of a streamed job's idempotency key (or a coalesced join) is served once the job's own
 * events have expired (`RELAY_TTL_MS` after the last). The client asked for a stream and its SDK's
 * stream helper reads one; the answer is the one the job already paid for, so it is told again,
 * not refused or run again.
 *
 * Each block, part or item is opened, given its whole content in one delta, and closed, in the
 * order and shapes the providers (and the simulator) stream them, so the official SDKs' helpers
 * assemble the very message, completion or Response the result holds:
 * - Anthropic Messages: message_start (the message without content, its stop reason unset), per
 *   block content_block_start / content_block_delta (text_delta after any citations_delta,
 *   input_json_delta for tool_use and server_tool_use, thinking_delta then signature_delta) /
 *   content_block_stop (a redacted_thinking block, or any other, comes whole in its start),
 *   message_delta with the stop reason and the whole usage, message_stop. No ping: the worker
 *   never relays one.
 * - OpenAI Chat Completions: per choice a role chunk, its content, a spoken answer's audio (its
 *   id and data, its transcript, then its expiry alone, which ends the choice at a natural stop
 *   with no finish_reason chunk, as the API streams it), refusal, each tool call
 *   (opened with its id and name, then its arguments, or a custom tool's input) or a legacy function_call (its name, then
 *   its arguments), and its finish_reason, its logprobs whole on the first of these; with
 *   `stream_options.include_usage`, `usage: null` on each of those and a last chunk with the
 *   usage and no choices. The gateway adds `data: [DONE]`.
 * - OpenAI Responses: response.created and response.in_progress (no output, no usage), per output
 *   item output_item.added ... output_item.done (a message's parts with output_text or refusal
 *   events, a function call's arguments, a reasoning item's summary parts), then
 *   response.completed, or response.incomplete, with the stored Response; numbered from 0.
 */
import type { ProviderApi } from './job.js';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const records = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isRecord) : []);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

export interface ReplayOptions {
  /** The request asked for Chat Completions' usage chunk (`stream_options.include_usage`). */
  includeUsage: boolean;
}

/** The stream's events as JSON text, as the worker relays them (an SSE event's data, a chunk). */
export function replayEventsOf(api: ProviderApi, response: unknown, options: ReplayOptions): string[] {
  const body = isRecord(response) ? response : {};
  const events = api === 'messages' ? messageEvents(body) : api === 'chat' ? chunkEvents(body, options.includeUsage) : responseEvents(body);
  return events.map((event) => JSON.stringify(event));
}

function messageEvents(message: Json): Json[] {
  const usage = isRecord(message.usage) ? message.usage : {};
  const events: Json[] = [
    {
      type: 'message_start',
      // Output so far, as the API counts it in its first event; message_delta carries the total.
      message: { ...message, content: [], stop_reason: null, stop_sequence: null, ...('stop_details' in message ? { stop_details: null } : {}), usage: { ...usage, output_tokens: Math.min(1, Number(usage.output_tokens ?? 0)) } },
    },
  ];
  for (const [index, block] of records(message.content).entries()) {
    const delta = (d: Json) => events.push({ type: 'content_block_delta', index, delta: d });
    switch (block.type) {
      case 'text': {
        const citations = records(block.citations);
        events.push({ type: 'content_block_start', index, content_block: { ...block, text: '', ...(Array.isArray(block.citations) ? { citations: null } : {}) } });
        for (const citation of citations) delta({ type: 'citations_delta', citation });
        if (text(block.text) !== '') delta({ type: 'text_delta', text: block.text });
        break;
      }
      case 'tool_use':
      case 'server_tool_use':
        events.push({ type: 'content_block_start', index, content_block: { ...block, input: {} } });
        delta({ type: 'input_json_delta', partial_json: JSON.stringify(block.input ?? {}) });
        break;
      case 'thinking':
        events.push({ type: 'content_block_start', index, content_block: { ...block, thinking: '', signature: '' } });
        if (text(block.thinking) !== '') delta({ type: 'thinking_delta', thinking: block.thinking });
        if (text(block.signature) !== '') delta({ type: 'signature_delta', signature: block.signature });
        break;
      default:
        // redacted_thinking and the result blocks of server tools: whole in their start, as the API sends them.
        events.push({ type: 'content_block_start', index, content_block: block });
    }
    events.push({ type: 'content_block_stop', index });
  }
  const delta: Json = { stop_reason: message.stop_reason ?? null, stop_sequence: message.stop_sequence ?? null };
  // As the message has them, null included (the API sends both in every message_delta, null when
  // unset): the SDK's helper takes stop_details from this event, an absent one as undefined.
  if ('stop_details' in message) delta.stop_details = message.stop_details;
  if ('container' in message) delta.container = message.container;
  events.push({ type: 'message_delta', delta, usage }, { type: 'message_stop' });
  return events;
}

function chunkEvents(completion: Json, includeUsage: boolean): Json[] {
  const base = {
    id: completion.id,
    object: 'chat.completion.chunk',
    created: completion.created,
    model: completion.model,
    service_tier: completion.service_tier,
    system_fingerprint: completion.system_fingerprint,
  };
  const chunks: Json[] = [];
  for (const choice of records(completion.choices)) {
    const index = typeof choice.index === 'number' ? choice.index : 0;
    const message = isRecord(choice.message) ? choice.message : {};
    const calls = records(message.tool_calls);
    const legacyCall = isRecord(message.function_call) ? message.function_call : undefined;
    // The choice's token entries (content and refusal arrays) go whole on its first output chunk:
    // the SDK appends each chunk's entries, so one chunk holding them all assembles the same.
    let logprobs = isRecord(choice.logprobs) ? choice.logprobs : null;
    const chunk = (delta: Json, finish: unknown = null) => {
      const output = finish !== null || Object.keys(delta).some((k) => k !== 'role');
      chunks.push({ ...base, choices: [{ index, delta, logprobs: output ? logprobs : null, finish_reason: finish }], ...(includeUsage ? { usage: null } : {}) });
      if (output) logprobs = null;
    };
    const audio = isRecord(message.audio) ? message.audio : undefined;
    chunk({ role: message.role ?? 'assistant', content: calls.length > 0 || legacyCall || audio ? null : '', refusal: null });
    if (text(message.content) !== '') chunk({ content: message.content });
    if (audio) {
      chunk({ audio: { id: audio.id, data: text(audio.data) } });
      chunk({ audio: { transcript: text(audio.transcript) } });
      chunk({ audio: { expires_at: audio.expires_at } });
    }
    if (text(message.refusal) !== '') chunk({ refusal: message.refusal });
    for (const [at, call] of calls.entries()) {
      // A custom tool's call carries free-form `input` where a function's carries `arguments`.
      const [field, input] = call.type === 'custom' ? (['custom', 'input'] as const) : (['function', 'arguments'] as const);
      const part = isRecord(call[field]) ? call[field] : {};
      chunk({ tool_calls: [{ index: at, id: call.id, type: call.type ?? 'function', [field]: { name: part.name, [input]: '' } }] });
      chunk({ tool_calls: [{ index: at, [field]: { [input]: text(part[input]) } }] });
    }
    if (legacyCall) {
      chunk({ function_call: { name: legacyCall.name, arguments: '' } });
      if (text(legacyCall.arguments) !== '') chunk({ function_call: { arguments: legacyCall.arguments } });
    }
    // A spoken answer's expiry chunk ends it at a natural stop: no finish_reason chunk follows.
    if (!audio || (choice.finish_reason ?? 'stop') !== 'stop') chunk({}, choice.finish_reason ?? 'stop');
  }
  if (includeUsage) chunks.push({ ...base, choices: [], usage: completion.usage ?? null });
  return chunks;
}

function responseEvents(response: Json): Json[] {
  const events: Json[] = [];
  const send = (type: string, fields: Json) => events.push({ type, sequence_number: events.length, ...fields });
  const started = { ...response, status: 'in_progress', completed_at: null, incomplete_details: null, output: [], usage: null };
  send('response.created', { response: started });
  send('response.in_progress', { response: started });
  for (const [output_index, item] of records(response.output).entries()) {
    const at = { item_id: item.id, output_index };
    const inProgress = 'status' in item ? { status: 'in_progress' } : {};
    switch (item.type) {
      case 'message': {
        send('response.output_item.added', { output_index, item: { ...item, ...inProgress, content: [] } });
        for (const [content_index, part] of records(item.content).entries()) {
          const where = { ...at, content_index };
          if (part.type === 'output_text') {
            send('response.content_part.added', { ...where, part: { ...part, text: '', annotations: [] } });
            send('response.output_text.delta', { ...where, delta: text(part.text), logprobs: [] });
            send('response.output_text.done', { ...where, text: text(part.text), logprobs: [] });
          } else if (part.type === 'refusal') {
            send('response.content_part.added', { ...where, part: { ...part, refusal: '' } });
            send('response.refusal.delta', { ...where, delta: text(part.refusal) });
            send('response.refusal.done', { ...where, refusal: text(part.refusal) });
          } else {
            send('response.content_part.added', { ...where, part });
          }
          send('response.content_part.done', { ...where, part });
        }
        break;
      }
      case 'function_call':
        send('response.output_item.added', { output_index, item: { ...item, ...inProgress, arguments: '' } });
        send('response.function_call_arguments.delta', { ...at, delta: text(item.arguments) });
        send('response.function_call_arguments.done', { ...at, arguments: text(item.arguments) });
        break;
      case 'reasoning':
        send('response.output_item.added', { output_index, item: { ...item, ...inProgress, summary: [] } });
        for (const [summary_index, part] of records(item.summary).entries()) {
          const where = { ...at, summary_index };
          send('response.reasoning_summary_part.added', { ...where, part: { ...part, text: '' } });
          send('response.reasoning_summary_text.delta', { ...where, delta: text(part.text) });
          send('response.reasoning_summary_text.done', { ...where, text: text(part.text) });
          send('response.reasoning_summary_part.done', { ...where, part });
        }
        break;
      default:
        send('response.output_item.added', { output_index, item });
    }
    send('response.output_item.done', { output_index, item });
  }
  send(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
  return events;
}
