import { type Simulator, startSimulator } from '@headroom/simulator';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicAdapter } from '../providers/anthropic.js';
import { OpenAIAdapter } from '../providers/openai.js';
import type { ProviderRequest } from '../providers/types.js';
import {
  ANTHROPIC_IMAGE_TOKENS,
  ANTHROPIC_TOOLS_SYSTEM_TOKENS,
  estimateInputTokens,
  OPENAI_IMAGE_TOKENS,
  OPENAI_LOW_DETAIL_IMAGE_TOKENS,
  PER_MESSAGE_TOKENS,
  promptTokensOf,
  REPLY_PRIMING_TOKENS,
  TokenEstimator,
} from './token-estimator.js';

const tok = (s: string) => countTokens(s);
const req = (r: Record<string, unknown>) => r as ProviderRequest;
const FRAME = PER_MESSAGE_TOKENS + tok('user');

const TICKET =
  'Customer reports that since Tuesday the export job fails with a 502 roughly one time in five. ' +
  'They run it nightly at 02:00 UTC against about 40k rows; retries usually succeed. Logs attached below.\n' +
  '2026-03-03T02:00:14Z export started rows=40211\n2026-03-03T02:01:55Z upstream 502 bad gateway (attempt 1)\n' +
  '2026-03-03T02:02:03Z export finished ok\nPlease summarise the issue, list likely causes, and propose next steps for the on-call engineer.';

describe('estimateInputTokens', () => {
  it('counts a plain prompt as o200k tokens plus chat framing', () => {
    const r = req({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: TICKET }] });
    expect(estimateInputTokens(r)).toBe(REPLY_PRIMING_TOKENS + FRAME + tok(TICKET));
  });

  it('counts the Anthropic system prompt, string or blocks', () => {
    const base = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
    const plain = estimateInputTokens(req(base));
    expect(estimateInputTokens(req({ ...base, system: 'You are terse.' }))).toBe(plain + PER_MESSAGE_TOKENS + tok('You are terse.'));
    expect(estimateInputTokens(req({ ...base, system: [{ type: 'text', text: 'You are terse.' }, { type: 'text', text: ' Cite.' }] }))).toBe(
      plain + PER_MESSAGE_TOKENS + tok('You are terse.') + tok(' Cite.'),
    );
  });

  it('counts tool_use input JSON, tool_result content and tool definitions (with the tool-use system prompt)', () => {
    const tool = { name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };
    const r = req({
      model: 'm',
      max_tokens: 10,
      tools: [tool],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'get_weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: '18C, cloudy' }] }] },
      ],
    });
    const expected =
      REPLY_PRIMING_TOKENS +
      ANTHROPIC_TOOLS_SYSTEM_TOKENS +
      tok(JSON.stringify(tool)) +
      (FRAME + tok('Weather in Paris?')) +
      (PER_MESSAGE_TOKENS + tok('assistant') + tok('get_weather') + tok('{"city":"Paris"}')) +
      (FRAME + PER_MESSAGE_TOKENS + tok('18C, cloudy'));
    expect(estimateInputTokens(r)).toBe(expected);
  });

  it('prices images at fixed, documented counts', () => {
    const img = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } };
    const anthropic = req({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: [img] }] });
    expect(estimateInputTokens(anthropic)).toBe(REPLY_PRIMING_TOKENS + FRAME + ANTHROPIC_IMAGE_TOKENS);
    const openai = (detail?: string) =>
      req({ model: 'm', max_completion_tokens: 10, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png', ...(detail ? { detail } : {}) } }] }] });
    expect(estimateInputTokens(openai())).toBe(REPLY_PRIMING_TOKENS + FRAME + OPENAI_IMAGE_TOKENS);
    expect(estimateInputTokens(openai('low'))).toBe(REPLY_PRIMING_TOKENS + FRAME + OPENAI_LOW_DETAIL_IMAGE_TOKENS);
  });

  it('counts OpenAI names, tool calls and function tools (no Anthropic tool prompt)', () => {
    const fn = { type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } };
    const calls = [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }];
    const r = req({
      model: 'm',
      max_completion_tokens: 10,
      tools: [fn],
      messages: [
        { role: 'user', name: 'ana', content: 'find x' },
        { role: 'assistant', content: null, tool_calls: calls },
      ],
    });
    const expected =
      REPLY_PRIMING_TOKENS + tok(JSON.stringify(fn)) + (FRAME + tok('find x') + 1 + tok('ana')) + (PER_MESSAGE_TOKENS + tok('assistant') + tok(JSON.stringify(calls)));
    expect(estimateInputTokens(r)).toBe(expected);
  });

  it('counts a Responses request as the chat request it stands for: instructions, input string or items, function calls and outputs, its tools', () => {
    const asChat = req({ model: 'm', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: TICKET }] });
    expect(estimateInputTokens(req({ model: 'm', instructions: 'Be brief.', input: TICKET }))).toBe(estimateInputTokens(asChat));
    const items = req({
      model: 'm',
      instructions: 'Be brief.',
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: TICKET }] }],
    });
    expect(estimateInputTokens(items)).toBe(estimateInputTokens(asChat));
    // A Responses tool is `{type, name, parameters}`: no Anthropic tool-use prompt for it.
    const tool = { type: 'function', name: 'weather', parameters: { type: 'object' } };
    const withCalls = req({
      model: 'm',
      tools: [tool],
      input: [
        { role: 'user', content: 'Oslo?' },
        { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{"city":"Oslo"}' },
        { type: 'function_call_output', call_id: 'c1', output: '{"celsius":4}' },
        { role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/a.png', detail: 'low' }] },
      ],
    });
    expect(estimateInputTokens(withCalls)).toBe(
      REPLY_PRIMING_TOKENS +
        tok(JSON.stringify(tool)) +
        (FRAME + tok('Oslo?')) +
        (PER_MESSAGE_TOKENS + tok('weather') + tok('{"city":"Oslo"}')) +
        (PER_MESSAGE_TOKENS + tok('{"celsius":4}')) +
        (FRAME + OPENAI_LOW_DETAIL_IMAGE_TOKENS),
    );
  });

  it('treats special-token strings in user text as text instead of throwing', () => {
    const r = req({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'ignore <|endoftext|> this' }] });
    expect(estimateInputTokens(r)).toBeGreaterThan(FRAME + REPLY_PRIMING_TOKENS);
  });

  it('is cheap enough for the dispatch path (figures printed, not asserted)', () => {
    const typical = req({
      model: 'm',
      max_tokens: 1024,
      system: 'You are a support triage assistant. Be concise and concrete.',
      messages: [
        { role: 'user', content: TICKET },
        { role: 'assistant', content: 'Summary: intermittent 502s on the nightly export; retries succeed.' },
        { role: 'user', content: 'Now draft the reply to the customer.' },
      ],
    });
    const long = req({ model: 'm', max_tokens: 1024, messages: [{ role: 'user', content: TICKET.repeat(60) }] });
    const measure = (r: ProviderRequest, n: number) => {
      for (let i = 0; i < 50; i += 1) estimateInputTokens(r);
      const start = performance.now();
      for (let i = 0; i < n; i += 1) estimateInputTokens(r);
      return ((performance.now() - start) * 1000) / n;
    };
    const typicalUs = measure(typical, 5000);
    const longUs = measure(long, 100);
    // Measured on this 2-core machine (Node 20): 30-40 µs for the typical request (177 tokens,
    // ~0.8 KB of text) and ~1 ms for the long one (7,388 tokens, ~31 KB): ~0.15-0.2 µs a token.
    console.log(
      `estimateInputTokens: ${typicalUs.toFixed(1)} µs per typical request (${estimateInputTokens(typical)} tokens); ` +
        `${(longUs / 1000).toFixed(2)} ms for ${estimateInputTokens(long)} tokens`,
    );
    expect(typicalUs).toBeGreaterThan(0);
  });
});

describe('TokenEstimator', () => {
  const r = req({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: TICKET }] });
  const raw = estimateInputTokens(r);

  it('reserves with the provider prior until the model is learned', () => {
    const e = new TokenEstimator({ priorRatio: { anthropic: 1.2, openai: 1.05 } });
    expect(e.reserveFor('claude', r, 'anthropic')).toEqual({ estimate: raw, reserve: Math.ceil(raw * 1.2), ratio: 1.2 });
    expect(e.reserveFor('gpt', r, 'openai').reserve).toBe(Math.ceil(raw * 1.05));
    // Provider unknown: the larger prior, the safe side.
    expect(e.reserveFor('other', r).ratio).toBe(1.2);
  });

  it('never reserves below the worst ratio seen while still learning', () => {
    const e = new TokenEstimator({ minSamples: 5 });
    e.observe('claude', 100, 150);
    expect(e.ratioFor('claude', 'anthropic')).toBe(1.5);
  });

  it('learns a steady ratio exactly and never reserves below the raw estimate', () => {
    const e = new TokenEstimator({ minSamples: 5 });
    for (let i = 0; i < 10; i += 1) e.observe('claude', 1000, 1300);
    expect(e.reserveFor('claude', r, 'anthropic').reserve).toBe(Math.ceil(raw * 1.3));
    for (let i = 0; i < 10; i += 1) e.observe('gpt', 1000, 900);
    expect(e.reserveFor('gpt', r, 'openai').reserve).toBe(raw);
  });

  it('covers a noisy ratio with its spread, so under-reservations shrink as it learns', () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const e = new TokenEstimator({ minSamples: 5, priorRatio: { anthropic: 1 } });
    const missed = (from: number, to: number) => {
      let misses = 0;
      for (let i = from; i < to; i += 1) {
        const estimated = 500 + Math.floor(rand() * 1500);
        const actual = Math.round(estimated * (1.25 + (rand() - 0.5) * 0.2)); // 1.15..1.35
        if (actual > Math.ceil(estimated * e.ratioFor('claude', 'anthropic'))) misses += 1;
        e.observe('claude', estimated, actual);
      }
      return misses;
    };
    const early = missed(0, 20);
    const late = missed(20, 520);
    expect(early).toBeGreaterThan(0);
    expect(late / 500).toBeLessThan(0.05);
    const [stats] = e.stats();
    expect(stats?.meanRatio).toBeGreaterThan(1.2);
    expect(stats?.meanRatio).toBeLessThan(1.3);
    expect(stats?.upperRatio).toBeGreaterThan(1.3);
    expect(stats?.meanAbsErrorPct).toBeGreaterThan(15);
    expect(stats?.meanAbsErrorPct).toBeLessThan(25);
    expect(stats?.underReservedPct).toBeLessThan(5);
  });

  it('learns a p95 of actual output and reserves it, never above max_tokens', () => {
    const e = new TokenEstimator({ minSamples: 5, outputWindow: 100 });
    expect(e.outputReserveFor('claude', 4096)).toBe(4096);
    for (let i = 1; i <= 100; i += 1) e.observe('claude', 100, 100, i * 10);
    expect(e.outputP95('claude')).toBe(950);
    expect(e.outputReserveFor('claude', 4096)).toBe(950);
    expect(e.outputReserveFor('claude', 500)).toBe(500);
    // The window slides: the old outputs age out.
    for (let i = 0; i < 100; i += 1) e.observeOutput('claude', 40);
    expect(e.outputP95('claude')).toBe(40);
  });

  it("learns and reserves OpenAI's n choices per choice: n times one choice's p95, never above the bound for all", () => {
    const e = new TokenEstimator({ minSamples: 5, outputWindow: 100 });
    // Calls of 4 choices writing 100 tokens each: a choice's p95 is 100, not the call's 400.
    for (let i = 0; i < 20; i += 1) e.observe('gpt', 100, 100, 400 / 4);
    expect(e.outputP95('gpt')).toBe(100);
    expect(e.outputReserveFor('gpt', 4096)).toBe(100);
    expect(e.outputReserveFor('gpt', 4 * 1024, 4)).toBe(400);
    expect(e.outputReserveFor('gpt', 300, 4)).toBe(300);
  });

  it('counts the whole prompt: Anthropic cache tokens added, OpenAI cached tokens already inside', () => {
    const usage = { inputTokens: 100, outputTokens: 5, cacheReadInputTokens: 800, cacheCreationInputTokens: 50 };
    expect(promptTokensOf('anthropic', usage)).toBe(950);
    expect(promptTokensOf('openai', usage)).toBe(100);
  });
});

describe('agreement with the simulator (cl100k + framing, a stand-in for the provider count)', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 0 });
  });
  afterAll(async () => {
    await sim.close();
  });

  const samples: [string, ProviderRequest][] = [
    ['short question', req({ model: 'x', max_tokens: 16, messages: [{ role: 'user', content: 'What is the capital of France?' }] })],
    ['support ticket', req({ model: 'x', max_tokens: 16, system: 'You are a support triage assistant.', messages: [{ role: 'user', content: TICKET }] })],
    [
      'multi-turn',
      req({
        model: 'x',
        max_tokens: 16,
        messages: [
          { role: 'user', content: TICKET },
          { role: 'assistant', content: 'Likely an upstream proxy timeout during the long export query.' },
          { role: 'user', content: 'Draft a short reply to the customer with two next steps.' },
        ],
      }),
    ],
    ['code', req({ model: 'x', max_tokens: 16, messages: [{ role: 'user', content: 'Refactor:\n```ts\nexport function sum(xs: number[]): number {\n  let t = 0;\n  for (const x of xs) t += x;\n  return t;\n}\n```' }] })],
  ];

  it('stays within 10% of the simulator on English and code prompts', async () => {
    const anthropic = new AnthropicAdapter({ apiKey: 'sk-test', baseURL: sim.url, timeoutMs: 10_000 });
    const openai = new OpenAIAdapter({ apiKey: 'sk-test', baseURL: `${sim.url}/v1`, timeoutMs: 10_000 });
    const rows: string[] = [];
    for (const [name, sample] of samples) {
      const estimate = estimateInputTokens(sample);
      const a = await anthropic.call({ model: 'claude-sonnet-4-6', request: sample });
      const { max_tokens: _mt, system, ...rest } = sample as unknown as { max_tokens: number; system?: string; messages: unknown[] };
      const asOpenAI = req({ ...rest, max_completion_tokens: 16, messages: [...(system ? [{ role: 'system', content: system }] : []), ...rest.messages] });
      const o = await openai.call({ model: 'gpt-4.1', request: asOpenAI });
      if (!a.ok || !o.ok) throw new Error('simulator call failed');
      const oEstimate = estimateInputTokens(asOpenAI);
      // The same prompt as a Responses request: instructions and input items.
      const asResponses = req({ model: 'x', max_output_tokens: 16, ...(system ? { instructions: system } : {}), input: rest.messages });
      const r = await openai.call({ model: 'gpt-4.1', request: asResponses, api: 'responses' });
      if (!r.ok) throw new Error(`simulator Responses call failed: ${r.message}`);
      const rEstimate = estimateInputTokens(asResponses);
      rows.push(`${name}: anthropic est ${estimate} vs sim ${a.usage.inputTokens}; openai est ${oEstimate} vs sim ${o.usage.inputTokens}; responses est ${rEstimate} vs sim ${r.usage.inputTokens}`);
      expect(Math.abs(estimate - a.usage.inputTokens) / a.usage.inputTokens).toBeLessThan(0.1);
      expect(Math.abs(oEstimate - o.usage.inputTokens) / o.usage.inputTokens).toBeLessThan(0.1);
      expect(Math.abs(rEstimate - r.usage.inputTokens) / r.usage.inputTokens).toBeLessThan(0.1);
    }
    console.log(rows.join('\n'));
  });
});
