import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { estimateInputTokens, estimateOutputTokens } from './token-count.js';

describe('token counts of long runs', () => {
  it('counts a 1 MiB job of one word (a DNA string) as the tokenizer would, without holding the event loop for minutes', () => {
    const dna = 'ACGT'.repeat(262_144);
    // 'ACGT' is two tokens however often it repeats, and the slices fall between repeats.
    expect(countTokens('ACGT'.repeat(64))).toBe(128);
    expect(estimateOutputTokens(dna)).toBe(524_288);
    const request = { model: 'gpt-4.1', messages: [{ role: 'user', content: dna }] };
    expect(estimateInputTokens(request)).toBeGreaterThanOrEqual(524_288);
  });

  it('errs high, by at most two tokens a slice, on a long run the slices cut inside tokens', () => {
    const word = 'headroomqueue'.repeat(1_000);
    const exact = countTokens(word);
    const estimate = estimateOutputTokens(word);
    expect(estimate).toBeGreaterThanOrEqual(exact);
    expect(estimate - exact).toBeLessThanOrEqual(2 * Math.ceil(word.length / 128));
  });

  it('counts ordinary text, code, compact JSON and short runs exactly as the tokenizer does', () => {
    const samples = [
      'The queue keeps every job until a worker takes it. '.repeat(200),
      JSON.stringify({ type: 'object', properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`field_${i}`, { type: 'string', description: 'a value' }])) }),
      'function f(a,b){return a+b}'.repeat(100),
      `${'a'.repeat(128)} ${'-'.repeat(128)}${' '.repeat(128)}y`,
    ];
    for (const text of samples) expect(estimateOutputTokens(text)).toBe(countTokens(text));
  });

  it('slices long runs of punctuation and of whitespace too', () => {
    for (const run of ['='.repeat(5_000), ' '.repeat(5_000), '\n'.repeat(5_000)]) {
      const estimate = estimateOutputTokens(`start ${run} end`);
      expect(estimate).toBeGreaterThanOrEqual(countTokens(`start ${run} end`));
      expect(estimate).toBeLessThanOrEqual(countTokens(`start ${run} end`) + 2 * Math.ceil(run.length / 128) + 2);
    }
  });
});

describe('token counts of null fields', () => {
  it("counts an assistant message's tool_calls: null (the SDK's own \"none\") as none, not as the text null", () => {
    const bare = { model: 'gpt-4.1', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] };
    const withNull = { ...bare, messages: [bare.messages[0], { role: 'assistant', content: 'Hello', tool_calls: null }] };
    expect(estimateInputTokens(withNull)).toBe(estimateInputTokens(bare));
  });
});

describe('token counts of a Responses call with a saved prompt', () => {
  const tools = [{ type: 'function', name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];

  it("counts its variables' values as input (the template is at OpenAI), and its tools as Responses tools", () => {
    const saved = { model: 'gpt-4.1', prompt: { id: 'pmpt_123' }, tools };
    const withInput = { model: 'gpt-4.1', input: 'Oslo', tools };
    const filled = { ...saved, prompt: { id: 'pmpt_123', variables: { city: 'Oslo' } } };
    // A saved prompt with the value as a variable counts as that value given as input.
    expect(estimateInputTokens(filled)).toBe(estimateInputTokens(withInput));
    expect(estimateInputTokens(filled)).toBeGreaterThan(estimateInputTokens(saved));
    // Read as a Responses call: no Anthropic tool-use system prompt added for its tools.
    expect(estimateInputTokens(saved)).toBe(estimateInputTokens({ model: 'gpt-4.1', input: [], tools }) );
  });
});
