// Answers carry every field the official SDKs declare on them (non-optional in their types, so the
// API always sends them), null where the simulator models nothing, as the API sends them.

import type Anthropic from '@anthropic-ai/sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Simulator } from './index.js';
import { CLAUDE, simulatorWithClients } from './sdk-clients.fixture.js';

describe('Anthropic answers with every field @anthropic-ai/sdk declares', () => {
  let sim: Simulator;
  let anthropic: Anthropic;
  const params = { model: CLAUDE, max_tokens: 100, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] };

  beforeAll(async () => {
    ({ sim, anthropic } = await simulatorWithClients());
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('sends message_delta with the delta’s container and stop_details and the usage’s details, null', async () => {
    const events: Anthropic.RawMessageStreamEvent[] = [];
    for await (const event of await anthropic.messages.create({ ...params, stream: true })) events.push(event);
    const delta = events.find((event) => event.type === 'message_delta');
    expect(delta).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null, stop_details: null, container: null },
      usage: {
        input_tokens: expect.any(Number),
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: 30,
        output_tokens_details: null,
        server_tool_use: null,
      },
    });
    const start = events.find((event) => event.type === 'message_start');
    expect(start?.message).toMatchObject({ stop_details: null, container: null, diagnostics: null });
  });

  it('sends a Message with diagnostics and the usage’s geo, speed and output details, null', async () => {
    const message = await anthropic.messages.create(params);
    expect(message).toMatchObject({ stop_details: null, container: null, diagnostics: null });
    expect(message.usage).toMatchObject({ inference_geo: null, speed: null, output_tokens_details: null, server_tool_use: null, service_tier: 'standard' });
    // Every key the SDK's Message and Usage name, no more, no fewer.
    const messageKeys: (keyof Anthropic.Message)[] = ['id', 'type', 'role', 'model', 'content', 'stop_reason', 'stop_sequence', 'stop_details', 'container', 'diagnostics', 'usage'];
    expect(Object.keys(message).sort()).toEqual([...messageKeys].sort());
    const usageKeys: (keyof Anthropic.Usage)[] = [
      'input_tokens',
      'output_tokens',
      'cache_creation_input_tokens',
      'cache_read_input_tokens',
      'cache_creation',
      'server_tool_use',
      'service_tier',
      'inference_geo',
      'output_tokens_details',
      'speed',
    ];
    expect(Object.keys(message.usage).sort()).toEqual([...usageKeys].sort());
  });
});
