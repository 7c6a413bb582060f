import { describe, expect, it } from 'vitest';
import { openaiPromptTokens, openaiSegments, responsesPrompt } from './prompt-tokens.js';
import { countTokens } from './tokenizer.js';

const tokensOf = (prompt: Parameters<typeof responsesPrompt>[0]) => openaiPromptTokens(responsesPrompt(prompt));

describe('a Responses prompt counts as the chat messages it amounts to', () => {
  it('counts instructions as a system message and a string input as a user message', () => {
    const chat = openaiPromptTokens({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }] });
    expect(tokensOf({ instructions: 'Be brief.', input: 'Hi there' })).toBe(chat);
    expect(tokensOf({ instructions: null, input: 'Hi there' })).toBe(openaiPromptTokens({ messages: [{ role: 'user', content: 'Hi there' }] }));
  });

  it('counts and caches a message item the same with or without its framing', () => {
    const bare = responsesPrompt({ input: [{ role: 'user', content: 'Hi there' }] });
    const framed = responsesPrompt({ input: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'user', content: [{ type: 'input_text', text: 'Hi there' }] }] });
    expect(openaiPromptTokens(framed)).toBe(openaiPromptTokens(bare));
    expect(openaiSegments(responsesPrompt({ input: [{ type: 'message', role: 'user', content: 'Hi there' }] }))).toEqual(openaiSegments(bare));
  });

  it('counts a function call and its output by their text, each with a message’s overhead', () => {
    const base = tokensOf({ input: 'Hi' });
    const call = tokensOf({ input: [{ role: 'user', content: 'Hi' }, { type: 'function_call', call_id: 'c1', name: 'lookup', arguments: '{"q":1}' }] });
    expect(call - base).toBe(3 + countTokens('assistant') + countTokens('lookup {"q":1}'));
    const output = tokensOf({ input: [{ role: 'user', content: 'Hi' }, { type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_text', text: 'found it' }] }] });
    expect(output - base).toBe(3 + countTokens('tool') + countTokens('found it'));
  });
});
