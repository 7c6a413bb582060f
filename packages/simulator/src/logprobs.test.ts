// Chat Completions logprobs through the openai SDK: an entry per output token (its text, a
// logprob <= 0, its UTF-8 bytes, and the asked number of alternatives), plain and streamed.

import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Simulator } from './index.js';
import { GPT, simulatorWithClients } from './sdk-clients.fixture.js';

const MODEL = GPT;
const cl100k = new Tiktoken(cl100kBase);
const chat = { model: MODEL, max_tokens: 100, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] };

function expectEntries(content: string, logprobs: OpenAI.ChatCompletion.Choice['logprobs'], top: number): void {
  const entries = logprobs?.content ?? [];
  expect(logprobs?.refusal).toBeNull();
  expect(entries.map((e) => e.token)).toEqual(cl100k.encode(content).map((id) => cl100k.decode([id])));
  for (const entry of entries) {
    expect(entry.logprob).toBeLessThanOrEqual(0);
    expect(entry.bytes).toEqual(Array.from(Buffer.from(entry.token, 'utf8')));
    expect(entry.top_logprobs).toHaveLength(top);
    if (top > 0) expect(entry.top_logprobs[0]).toEqual({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes });
    const probability = entry.top_logprobs.reduce((sum, t) => sum + Math.exp(t.logprob), 0);
    expect(probability).toBeLessThanOrEqual(1.000001);
    for (const alternative of entry.top_logprobs) expect(alternative.logprob).toBeLessThanOrEqual(0);
  }
}

describe('Chat Completions logprobs through the openai SDK', () => {
  let sim: Simulator;
  let client: OpenAI;

  beforeAll(async () => {
    ({ sim, openai: client } = await simulatorWithClients());
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('returns one entry per output token, with top_logprobs alternatives when asked, the text unchanged', async () => {
    const plain = await client.chat.completions.create(chat);
    expect(plain.choices[0]?.logprobs).toBeNull();
    for (const top of [0, 3, 20]) {
      const completion = await client.chat.completions.create({ ...chat, logprobs: true, top_logprobs: top });
      const [choice] = completion.choices;
      expect(choice?.message.content).toBe(plain.choices[0]?.message.content);
      expectEntries(choice?.message.content ?? '', choice?.logprobs ?? null, top);
      expect(choice?.logprobs?.content).toHaveLength(completion.usage?.completion_tokens ?? -1);
    }
  });

  it('streams each token’s entry in its chunk, which the SDK puts back together as the plain answer’s', async () => {
    const plain = await client.chat.completions.create({ ...chat, logprobs: true, top_logprobs: 2 });
    const stream = client.chat.completions.stream({ ...chat, logprobs: true, top_logprobs: 2 });
    const perChunk: number[] = [];
    stream.on('chunk', (chunk) => {
      const entries = chunk.choices[0]?.logprobs?.content;
      if (chunk.choices[0]?.delta.content) perChunk.push(entries?.length ?? 0);
    });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]?.logprobs?.content).toEqual(plain.choices[0]?.logprobs?.content);
    expect(perChunk.every((n) => n === 1)).toBe(true);
    expect(perChunk).toHaveLength(plain.usage?.completion_tokens ?? -1);
  });

  it('refuses a top_logprobs outside 0-20', async () => {
    const error = (await client.chat.completions.create({ ...chat, logprobs: true, top_logprobs: 21 }).catch((e: unknown) => e)) as APIError;
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.param).toBe('top_logprobs');
    expect(error.code).toBe('integer_above_max_value');
  });
});

describe('Responses logprobs through the openai SDK', () => {
  let sim: Simulator;
  let client: OpenAI;
  const ask = { model: MODEL, max_output_tokens: 100, input: 'Tell me about lanes.' };
  const include: OpenAI.Responses.ResponseIncludable[] = ['message.output_text.logprobs'];

  beforeAll(async () => {
    ({ sim, openai: client } = await simulatorWithClients());
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  const outputText = (response: OpenAI.Responses.Response) => {
    const [item] = response.output;
    const part = item?.type === 'message' ? item.content[0] : undefined;
    if (part?.type !== 'output_text') throw new Error('expected an output_text part');
    return part;
  };

  it('returns an entry per output token with include message.output_text.logprobs, none without it, the text unchanged', async () => {
    const plain = outputText(await client.responses.create({ ...ask, top_logprobs: 3 }));
    // top_logprobs alone returns none, as the API answers it.
    expect(plain.logprobs).toEqual([]);
    const included = outputText(await client.responses.create({ ...ask, include, top_logprobs: 3 }));
    expect(included.text).toBe(plain.text);
    expectEntries(included.text, { content: included.logprobs ?? [], refusal: null }, 3);
    const bare = outputText(await client.responses.create({ ...ask, include }));
    expectEntries(bare.text, { content: bare.logprobs ?? [], refusal: null }, 0);
  });

  it('streams each delta with its token’s entry and the done event with them all, as the plain call has them', async () => {
    const plain = outputText(await client.responses.create({ ...ask, include, top_logprobs: 2 }));
    const deltas: OpenAI.Responses.ResponseTextDeltaEvent[] = [];
    let done: OpenAI.Responses.ResponseTextDoneEvent | undefined;
    for await (const event of await client.responses.create({ ...ask, include, top_logprobs: 2, stream: true })) {
      if (event.type === 'response.output_text.delta') deltas.push(event);
      if (event.type === 'response.output_text.done') done = event;
    }
    // The events' entries are the output text's without bytes, one per delta.
    const withoutBytes = (plain.logprobs ?? []).map(({ token, logprob, top_logprobs }) => ({ token, logprob, top_logprobs: top_logprobs.map((t) => ({ token: t.token, logprob: t.logprob })) }));
    expect(deltas.map((d) => d.logprobs)).toEqual(withoutBytes.map((entry) => [entry]));
    expect(deltas.map((d) => d.delta).join('')).toBe(plain.text);
    expect(done?.logprobs).toEqual(withoutBytes);
  });
});
