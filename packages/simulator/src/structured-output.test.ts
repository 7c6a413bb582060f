// Structured outputs through the openai SDK's parsing helpers: a request for JSON gets JSON text
// the SDK parses (plain, streamed, Chat and Responses), a schema's value conforms to it, and its
// tokens are counted and streamed like any answer's.

import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import type OpenAI from 'openai';
import { LengthFinishReasonError } from 'openai/error';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Simulator } from './index.js';
import { GPT, simulatorWithClients } from './sdk-clients.fixture.js';

const MODEL = GPT;
const cl100k = new Tiktoken(cl100kBase);

// Every kind the generator knows: nested objects, arrays of objects, enums, integers, numbers,
// booleans, a nullable union and a $ref into $defs, as zod-made schemas use them.
const SCHEMA = {
  type: 'object',
  properties: {
    title: { type: 'string' },
    priority: { type: 'string', enum: ['high', 'low'] },
    count: { type: 'integer' },
    score: { type: 'number' },
    done: { type: 'boolean' },
    owner: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false },
    steps: { type: 'array', items: { $ref: '#/$defs/step' } },
    note: { anyOf: [{ type: 'string' }, { type: 'null' }] },
  },
  required: ['title', 'priority', 'count', 'score', 'done', 'owner', 'steps', 'note'],
  additionalProperties: false,
  $defs: { step: { type: 'object', properties: { label: { type: 'string' } }, required: ['label'], additionalProperties: false } },
};

interface Task {
  title: string;
  priority: string;
  count: number;
  score: number;
  done: boolean;
  owner: { name: string; age: number };
  steps: { label: string }[];
  note: string | null;
}

/** What SCHEMA demands, checked field by field. */
function expectConforms(value: unknown): void {
  const task = value as Task;
  expect(Object.keys(task).sort()).toEqual([...SCHEMA.required].sort());
  expect(typeof task.title).toBe('string');
  expect(['high', 'low']).toContain(task.priority);
  expect(Number.isInteger(task.count)).toBe(true);
  expect(typeof task.score).toBe('number');
  expect(typeof task.done).toBe('boolean');
  expect(Object.keys(task.owner).sort()).toEqual(['age', 'name']);
  expect(typeof task.owner.name).toBe('string');
  expect(Number.isInteger(task.owner.age)).toBe(true);
  expect(task.steps.length).toBeGreaterThan(0);
  for (const step of task.steps) expect(Object.keys(step)).toEqual(['label']);
  expect(task.note === null || typeof task.note === 'string').toBe(true);
}

const chatFormat = { type: 'json_schema' as const, json_schema: { name: 'task', strict: true, schema: SCHEMA } };
const chat = (max_tokens = 400) => ({ model: MODEL, max_tokens, messages: [{ role: 'user' as const, content: 'Plan the release.' }], response_format: chatFormat });

describe('structured outputs through the openai SDK', () => {
  let sim: Simulator;
  let client: OpenAI;

  beforeAll(async () => {
    ({ sim, openai: client } = await simulatorWithClients());
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers Chat json_schema with JSON that conforms, parsed by chat.completions.parse(), the same each time', async () => {
    const parsed = await client.chat.completions.parse(chat());
    const [choice] = parsed.choices;
    expect(choice?.finish_reason).toBe('stop');
    expectConforms(choice?.message.parsed);
    expect(parsed.usage?.completion_tokens).toBe(cl100k.encode(choice?.message.content ?? '').length);
    const again = await client.chat.completions.create(chat());
    expect(again.choices[0]?.message.content).toBe(choice?.message.content);
  });

  it('streams the same JSON token by token, which finalChatCompletion() parses', async () => {
    const plain = await client.chat.completions.create(chat());
    const stream = client.chat.completions.stream({ ...chat(), stream_options: { include_usage: true } });
    let deltas = 0;
    stream.on('content.delta', () => {
      deltas += 1;
    });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
    expectConforms(final.choices[0]?.message.parsed);
    expect(deltas).toBe(plain.usage?.completion_tokens);
    expect(final.usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
  });

  it('answers json_object with a JSON object', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, max_tokens: 400, messages: [{ role: 'user', content: 'Reply in JSON.' }], response_format: { type: 'json_object' } });
    const value: unknown = JSON.parse(completion.choices[0]?.message.content ?? '');
    expect(value).toBeTypeOf('object');
    expect(Array.isArray(value)).toBe(false);
    expect(value).not.toBeNull();
  });

  it('cuts JSON that does not fit max_tokens with finish_reason length, which parse() refuses as the SDK does', async () => {
    const error = await client.chat.completions.parse(chat(5)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LengthFinishReasonError);
  });

  it('answers Responses text.format json_schema with JSON that conforms, plain through responses.parse() and streamed', async () => {
    const request = { model: MODEL, max_output_tokens: 400, input: 'Plan the release.', text: { format: { type: 'json_schema' as const, name: 'task', strict: true, schema: SCHEMA } } };
    const parsed = await client.responses.parse(request);
    expectConforms(parsed.output_parsed);
    expect(parsed.usage?.output_tokens).toBe(cl100k.encode(parsed.output_text).length);

    const stream = client.responses.stream(request);
    let deltas = 0;
    stream.on('response.output_text.delta', () => {
      deltas += 1;
    });
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(parsed.output_text);
    expectConforms(final.output_parsed);
    expect(deltas).toBe(parsed.usage?.output_tokens);
  });
});
