/**
 * Stored provider answers, one of each API, with every kind of block, choice or item a replayed
 * stream (`replayEventsOf` in @headroom/queue) has a shape for: the queue's tests pin the events
 * made from them, the worker's check that its accumulators assemble them back.
 */

/** An Anthropic Message: thinking with its signature, redacted thinking, cited text, a tool call. */
export const ANTHROPIC_MESSAGE = {
  id: 'msg_01',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-6',
  content: [
    { type: 'thinking', thinking: 'Weigh it.', signature: 'sig-1' },
    { type: 'redacted_thinking', data: 'opaque' },
    { type: 'text', text: 'Oslo is cold.', citations: [{ type: 'char_location', cited_text: 'cold' }] },
    { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Oslo', days: [1, 2] } },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: { input_tokens: 12, output_tokens: 40, cache_creation_input_tokens: 0, cache_read_input_tokens: 3 },
};

/** A ChatCompletion with two choices: text, and a tool call. */
export const CHAT_COMPLETION = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4.1',
  choices: [
    { index: 0, message: { role: 'assistant', content: 'Hello there.', refusal: null }, logprobs: null, finish_reason: 'stop' },
    {
      index: 1,
      message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
      logprobs: null,
      finish_reason: 'tool_calls',
    },
  ],
  usage: { prompt_tokens: 9, completion_tokens: 14, total_tokens: 23, prompt_tokens_details: { cached_tokens: 4 } },
  service_tier: 'default',
  system_fingerprint: 'fp_1',
};

const reasoning = { id: 'rs_1', type: 'reasoning', summary: [{ type: 'summary_text', text: 'Thought briefly.' }] };
const message = { id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'A harbour story.', annotations: [], logprobs: [] }] };
const call = { id: 'fc_1', type: 'function_call', status: 'completed', call_id: 'call_1', name: 'weather', arguments: '{"city":"Oslo"}' };

/** A Responses API Response: a reasoning summary, a message, a function call. */
export const RESPONSE = {
  id: 'resp_1',
  object: 'response',
  created_at: 1_700_000_000,
  status: 'completed',
  completed_at: 1_700_000_001,
  incomplete_details: null,
  model: 'gpt-4.1',
  output: [reasoning, message, call],
  usage: { input_tokens: 8, output_tokens: 20, total_tokens: 28, input_tokens_details: { cached_tokens: 0 } },
};
