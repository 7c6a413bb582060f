/**
 * A stream replayed from a job's result (`replayEventsOf`, for a repeat whose events expired)
 * assembles, by the same accumulators that put the first stream together, into the answer the
 * result holds: what it streams is that answer, block for block, with its stop reason and usage.
 */
import { replayEventsOf, type ProviderApi } from '@headroom/queue';
import { ANTHROPIC_MESSAGE, CHAT_COMPLETION, RESPONSE } from '@headroom/testing';
import { ChatCompletionStream } from 'openai/lib/ChatCompletionStream';
import { describe, expect, it } from 'vitest';
import { AnthropicStreamAccumulator } from './anthropic-stream.js';
import { OpenAIResponsesAccumulator } from './openai-responses.js';
import { OpenAIStreamAccumulator } from './openai-stream.js';
import type { StreamAccumulator } from './sdk-stream.js';

function replayed(api: ProviderApi, answer: unknown, acc: StreamAccumulator<Record<string, unknown>>) {
  for (const event of replayEventsOf(api, answer, { includeUsage: true })) acc.add(JSON.parse(event) as Record<string, unknown>);
  return acc.finish();
}

describe('a replayed stream assembles into the stored answer', () => {
  it('Anthropic: thinking, redacted thinking, cited text and a tool call, with the stop reason and usage', () => {
    expect(replayed('messages', ANTHROPIC_MESSAGE, new AnthropicStreamAccumulator())).toEqual({
      response: ANTHROPIC_MESSAGE,
      usage: { inputTokens: 12, outputTokens: 40, cacheReadInputTokens: 3, cacheCreationInputTokens: 0 },
    });
  });

  it('Chat Completions: two choices, one text and one tool call, and the usage chunk', () => {
    expect(replayed('chat', CHAT_COMPLETION, new OpenAIStreamAccumulator(true))).toEqual({
      response: CHAT_COMPLETION,
      usage: { inputTokens: 9, outputTokens: 14, cacheReadInputTokens: 4, cacheCreationInputTokens: 0 },
    });
  });

  it("Chat Completions: a choice's logprobs, a legacy function_call and a custom tool's call, as the SDK's helper assembles them too", async () => {
    const entry = (token: string) => ({ token, logprob: -0.5, bytes: [...Buffer.from(token)], top_logprobs: [] });
    const completion = {
      ...CHAT_COMPLETION,
      choices: [
        { index: 0, message: { role: 'assistant', content: 'Hello there.', refusal: null }, logprobs: { content: [entry('Hello'), entry(' there.')], refusal: null }, finish_reason: 'stop' },
        { index: 1, message: { role: 'assistant', content: null, refusal: null, function_call: { name: 'weather', arguments: '{"city":"Oslo"}' } }, logprobs: null, finish_reason: 'function_call' },
        { index: 2, message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'call_7', type: 'custom', custom: { name: 'grep', input: 'foo src/' } }] }, logprobs: null, finish_reason: 'tool_calls' },
      ],
    };
    expect(replayed('chat', completion, new OpenAIStreamAccumulator(true))).toMatchObject({ response: completion });
    const lines = replayEventsOf('chat', completion, { includeUsage: true }).map((e) => `${e}\n`).join('');
    const sdk = await ChatCompletionStream.fromReadableStream(new Response(lines).body!).finalChatCompletion();
    expect(sdk.choices.map(({ message: { parsed: _parsed, ...message }, ...choice }) => ({ ...choice, message }))).toEqual(completion.choices);
  });

  it('Chat Completions: a spoken answer (audio output), as the SDK’s helper assembles it too', async () => {
    const audio = { id: 'audio_1', data: 'UklGRiQAAABXQVZF', expires_at: 1_750_003_600, transcript: 'Hello there.' };
    const completion = { ...CHAT_COMPLETION, choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null, audio }, logprobs: null, finish_reason: 'stop' }] };
    expect(replayed('chat', completion, new OpenAIStreamAccumulator(true))).toMatchObject({ response: completion });
    const lines = replayEventsOf('chat', completion, { includeUsage: true }).map((e) => `${e}\n`).join('');
    const sdk = await ChatCompletionStream.fromReadableStream(new Response(lines).body!).finalChatCompletion();
    expect(sdk.choices.map(({ message: { parsed: _parsed, ...message }, ...choice }) => ({ ...choice, message }))).toEqual(completion.choices);
  });

  it('Responses: every output item in its events, and the stored Response in the terminal one', () => {
    const acc = new OpenAIResponsesAccumulator();
    expect(replayed('responses', RESPONSE, acc)).toEqual({ response: RESPONSE, usage: { inputTokens: 8, outputTokens: 20, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 } });
    // Output the accumulator counts: the summary, the text and the call's arguments, each once.
    expect(acc.outputText()).toBe('Thought briefly.A harbour story.{"city":"Oslo"}');
  });
});
