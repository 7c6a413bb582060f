import { ANTHROPIC_MESSAGE, CHAT_COMPLETION, RESPONSE } from '@headroom/testing';
import { describe, expect, it } from 'vitest';
import { replayEventsOf } from './stream-replay.js';

const parsed = (events: string[]) => events.map((e) => JSON.parse(e) as Record<string, unknown>);

describe('replayEventsOf: Anthropic Messages', () => {
  const message = ANTHROPIC_MESSAGE;

  it('opens the message empty, streams each block whole in its own deltas, and ends with the stop reason and usage', () => {
    expect(parsed(replayEventsOf('messages', message, { includeUsage: false }))).toEqual([
      { type: 'message_start', message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { ...message.usage, output_tokens: 1 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Weigh it.' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'sig-1' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'redacted_thinking', data: 'opaque' } },
      { type: 'content_block_stop', index: 1 },
      { type: 'content_block_start', index: 2, content_block: { type: 'text', text: '', citations: null } },
      { type: 'content_block_delta', index: 2, delta: { type: 'citations_delta', citation: { type: 'char_location', cited_text: 'cold' } } },
      { type: 'content_block_delta', index: 2, delta: { type: 'text_delta', text: 'Oslo is cold.' } },
      { type: 'content_block_stop', index: 2 },
      { type: 'content_block_start', index: 3, content_block: { type: 'tool_use', id: 'toolu_1', name: 'weather', input: {} } },
      { type: 'content_block_delta', index: 3, delta: { type: 'input_json_delta', partial_json: '{"city":"Oslo","days":[1,2]}' } },
      { type: 'content_block_stop', index: 3 },
      { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: message.usage },
      { type: 'message_stop' },
    ]);
  });

  it('writes each event with its type first, which the gateway names the SSE event by', () => {
    for (const event of replayEventsOf('messages', message, { includeUsage: false })) expect(event).toMatch(/^\{"type":"[a-z_]+"/);
  });
});

describe('replayEventsOf: OpenAI Chat Completions', () => {
  const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4.1', service_tier: 'default', system_fingerprint: 'fp_1' };
  const choice = (index: number, delta: object, finish: string | null = null) => [{ index, delta, logprobs: null, finish_reason: finish }];

  it('streams each choice (role, content, tool calls, finish_reason), then the usage chunk the request asked for', () => {
    expect(parsed(replayEventsOf('chat', CHAT_COMPLETION, { includeUsage: true }))).toEqual([
      { ...base, choices: choice(0, { role: 'assistant', content: '', refusal: null }), usage: null },
      { ...base, choices: choice(0, { content: 'Hello there.' }), usage: null },
      { ...base, choices: choice(0, {}, 'stop'), usage: null },
      { ...base, choices: choice(1, { role: 'assistant', content: null, refusal: null }), usage: null },
      { ...base, choices: choice(1, { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'weather', arguments: '' } }] }), usage: null },
      { ...base, choices: choice(1, { tool_calls: [{ index: 0, function: { arguments: '{"city":"Oslo"}' } }] }), usage: null },
      { ...base, choices: choice(1, {}, 'tool_calls'), usage: null },
      { ...base, choices: [], usage: CHAT_COMPLETION.usage },
    ]);
  });

  it('leaves out the usage, on every chunk and as a chunk, when the request did not ask for it', () => {
    const chunks = parsed(replayEventsOf('chat', CHAT_COMPLETION, { includeUsage: false }));
    expect(chunks).toHaveLength(7);
    for (const chunk of chunks) expect(chunk).not.toHaveProperty('usage');
  });
});

describe('replayEventsOf: OpenAI Responses', () => {
  const response = RESPONSE;
  const [reasoning, message, call] = response.output as [(typeof RESPONSE.output)[0], (typeof RESPONSE.output)[1], (typeof RESPONSE.output)[2]];
  const started = { ...response, status: 'in_progress', completed_at: null, output: [], usage: null };

  it('numbers every event from 0 and ends with response.completed holding the stored Response', () => {
    const events = parsed(replayEventsOf('responses', response, { includeUsage: false }));
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const at = (item_id: string, output_index: number) => ({ item_id, output_index });
    expect(events.map(({ sequence_number: _n, ...e }) => e)).toEqual([
      { type: 'response.created', response: started },
      { type: 'response.in_progress', response: started },
      { type: 'response.output_item.added', output_index: 0, item: { ...reasoning, summary: [] } },
      { type: 'response.reasoning_summary_part.added', ...at('rs_1', 0), summary_index: 0, part: { type: 'summary_text', text: '' } },
      { type: 'response.reasoning_summary_text.delta', ...at('rs_1', 0), summary_index: 0, delta: 'Thought briefly.' },
      { type: 'response.reasoning_summary_text.done', ...at('rs_1', 0), summary_index: 0, text: 'Thought briefly.' },
      { type: 'response.reasoning_summary_part.done', ...at('rs_1', 0), summary_index: 0, part: { type: 'summary_text', text: 'Thought briefly.' } },
      { type: 'response.output_item.done', output_index: 0, item: reasoning },
      { type: 'response.output_item.added', output_index: 1, item: { ...message, status: 'in_progress', content: [] } },
      { type: 'response.content_part.added', ...at('msg_1', 1), content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } },
      { type: 'response.output_text.delta', ...at('msg_1', 1), content_index: 0, delta: 'A harbour story.', logprobs: [] },
      { type: 'response.output_text.done', ...at('msg_1', 1), content_index: 0, text: 'A harbour story.', logprobs: [] },
      { type: 'response.content_part.done', ...at('msg_1', 1), content_index: 0, part: { type: 'output_text', text: 'A harbour story.', annotations: [], logprobs: [] } },
      { type: 'response.output_item.done', output_index: 1, item: message },
      { type: 'response.output_item.added', output_index: 2, item: { ...call, status: 'in_progress', arguments: '' } },
      { type: 'response.function_call_arguments.delta', ...at('fc_1', 2), delta: '{"city":"Oslo"}' },
      { type: 'response.function_call_arguments.done', ...at('fc_1', 2), arguments: '{"city":"Oslo"}' },
      { type: 'response.output_item.done', output_index: 2, item: call },
      { type: 'response.completed', response },
    ]);
  });

  it('ends a clipped answer with response.incomplete, as the provider does', () => {
    const clipped = { ...response, status: 'incomplete', completed_at: null, incomplete_details: { reason: 'max_output_tokens' }, output: [message] };
    const last = parsed(replayEventsOf('responses', clipped, { includeUsage: false })).at(-1);
    expect(last).toMatchObject({ type: 'response.incomplete', response: clipped });
  });
});
