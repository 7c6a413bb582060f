// Stop sequences through the official SDKs: the answer ends before the first stop string its text
// holds, the output is counted to the cut, and a stream ends at the same place. The stop string is
// a word picked from the answer the same request gets without it (a stop sequence leaves the text
// it cuts the same).

import type Anthropic from '@anthropic-ai/sdk';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import type OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Simulator } from './index.js';
import { CLAUDE, GPT, simulatorWithClients } from './sdk-clients.fixture.js';

const cl100k = new Tiktoken(cl100kBase);

/** A word of `text` past its first few (` word`, with its space, so it is a whole word there), and the text before it. */
function stopWithin(text: string): { stop: string; before: string } {
  const word = text.split(' ')[6]?.replace('.', '');
  if (!word) throw new Error(`answer too short to pick a stop word from: ${text}`);
  const stop = ` ${word}`;
  const before = text.slice(0, text.indexOf(stop));
  expect(before.length).toBeGreaterThan(0);
  expect(before.length).toBeLessThan(text.length);
  return { stop, before };
}

describe('stop sequences through the official SDKs', () => {
  let sim: Simulator;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    ({ sim, openai, anthropic } = await simulatorWithClients());
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  const ask = { model: CLAUDE, max_tokens: 100, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] };
  const textOf = (message: Anthropic.Message) => (message.content[0] as Anthropic.TextBlock).text;

  it('Messages: ends before the stop sequence with stop_reason stop_sequence, naming it, counted to the cut', async () => {
    const full = textOf(await anthropic.messages.create(ask));
    const { stop, before } = stopWithin(full);
    const stopped = await anthropic.messages.create({ ...ask, stop_sequences: ['never-in-the-answer', stop] });
    expect(textOf(stopped)).toBe(before);
    expect(stopped.stop_reason).toBe('stop_sequence');
    expect(stopped.stop_sequence).toBe(stop);
    expect(stopped.usage.output_tokens).toBe(cl100k.encode(before).length);

    const streamed = await anthropic.messages.stream({ ...ask, stop_sequences: [stop] }).finalMessage();
    expect(textOf(streamed)).toBe(before);
    expect(streamed.stop_reason).toBe('stop_sequence');
    expect(streamed.stop_sequence).toBe(stop);
    expect(streamed.usage.output_tokens).toBe(stopped.usage.output_tokens);
  });

  it('Messages: a stop sequence the answer never holds changes nothing', async () => {
    const full = await anthropic.messages.create(ask);
    const unstopped = await anthropic.messages.create({ ...ask, stop_sequences: ['never-in-the-answer'] });
    expect(textOf(unstopped)).toBe(textOf(full));
    expect(unstopped.stop_reason).toBe('end_turn');
    expect(unstopped.stop_sequence).toBeNull();
  });

  const chat = (max_tokens = 100) => ({ model: GPT, max_tokens, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] });

  it('Chat: ends before the stop string (a string or a list) with finish_reason stop, counted to the cut, streamed the same', async () => {
    const full = (await openai.chat.completions.create(chat())).choices[0]?.message.content ?? '';
    const { stop, before } = stopWithin(full);
    for (const given of [stop, ['never-in-the-answer', stop]]) {
      const stopped = await openai.chat.completions.create({ ...chat(), stop: given });
      expect(stopped.choices[0]?.message.content).toBe(before);
      expect(stopped.choices[0]?.finish_reason).toBe('stop');
      expect(stopped.usage?.completion_tokens).toBe(cl100k.encode(before).length);
    }

    const stream = await openai.chat.completions.create({ ...chat(), stop, stream: true, stream_options: { include_usage: true } });
    let content = '';
    let finish: string | null = null;
    let completionTokens = 0;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      completionTokens = chunk.usage?.completion_tokens ?? completionTokens;
    }
    expect(content).toBe(before);
    expect(finish).toBe('stop');
    expect(completionTokens).toBe(cl100k.encode(before).length);
  });

  it('Chat: a stop reached before max_tokens would cut the answer ends it with stop, not length', async () => {
    const clipped = await openai.chat.completions.create(chat(20));
    expect(clipped.choices[0]?.finish_reason).toBe('length');
    const { stop, before } = stopWithin(clipped.choices[0]?.message.content ?? '');
    const stopped = await openai.chat.completions.create({ ...chat(20), stop });
    expect(stopped.choices[0]?.message.content).toBe(before);
    expect(stopped.choices[0]?.finish_reason).toBe('stop');
  });
});
