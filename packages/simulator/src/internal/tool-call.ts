// Tool calls: a request that forces one (Anthropic `tool_choice: { type: 'tool' | 'any' }`, OpenAI
// `tool_choice: 'required'` or `{ type: 'function' }`, in Chat Completions and Responses) is answered with a call of that tool, its
// arguments made from the tool's JSON schema, deterministically (the same request, the same
// arguments), so the tool paths of the SDKs' stream helpers can be checked through a gateway. A
// request that leaves the choice to the model (`auto`, or none) gets a text answer, as before.
// Left any tool (Anthropic `any`, OpenAI `required`) with two or more, the model calls the first two
// in parallel, unless parallel calls are off (Anthropic `disable_parallel_tool_use`, OpenAI
// `parallel_tool_calls: false`); a named tool, or the Responses API, gets one call.
// Arguments that would not fit `max_tokens` are not cut part-way: the request gets its text answer.

import { prng } from './answer.js';
import { sampleObject } from './json-sample.js';
import { countTokens } from './tokenizer.js';

export interface ToolCall {
  name: string;
  /** The arguments as the model writes them: a JSON object's text. */
  arguments: string;
  outputTokens: number;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** An Anthropic tool: `{ name, input_schema }`. */
function anthropicTool(tool: unknown): { name: string; schema: unknown } | undefined {
  return isObject(tool) && typeof tool.name === 'string' ? { name: tool.name, schema: tool.input_schema } : undefined;
}

/** A Chat Completions tool: `{ type: 'function', function: { name, parameters } }`. */
function openaiTool(tool: unknown): { name: string; schema: unknown } | undefined {
  const fn = isObject(tool) ? tool.function : undefined;
  return isObject(fn) && typeof fn.name === 'string' ? { name: fn.name, schema: fn.parameters } : undefined;
}

export interface Tool {
  name: string;
  schema: unknown;
}

/** The tools a request forces calls of: the named one, or (any tool) the first `most`. */
function forced(tools: unknown, choice: unknown, read: (tool: unknown) => Tool | undefined, named: (choice: Json) => string | undefined, anyOf: (choice: unknown) => boolean, most = 1): Tool[] {
  if (!Array.isArray(tools) || tools.length === 0) return [];
  const all = tools.map(read).filter((t) => t !== undefined);
  const name = isObject(choice) ? named(choice) : undefined;
  if (name !== undefined) return all.filter((t) => t.name === name).slice(0, 1);
  return anyOf(choice) ? all.slice(0, most) : [];
}

/** The tools an Anthropic request forces calls of (none: a text answer). */
export function anthropicForcedTools(params: { tools?: unknown; tool_choice?: unknown }): Tool[] {
  const parallel = !(isObject(params.tool_choice) && params.tool_choice.disable_parallel_tool_use === true);
  return forced(params.tools, params.tool_choice, anthropicTool, (c) => (c.type === 'tool' && typeof c.name === 'string' ? c.name : undefined), (c) => isObject(c) && c.type === 'any', parallel ? 2 : 1);
}

/** A Responses tool: `{ type: 'function', name, parameters }`. */
function responsesTool(tool: unknown): { name: string; schema: unknown } | undefined {
  return isObject(tool) && tool.type === 'function' && typeof tool.name === 'string' ? { name: tool.name, schema: tool.parameters } : undefined;
}

/** The tool a Responses request forces a call of (none: a text answer). */
export function responsesForcedTools(params: { tools?: unknown; tool_choice?: unknown }): Tool[] {
  return forced(params.tools, params.tool_choice, responsesTool, (c) => (c.type === 'function' && typeof c.name === 'string' ? c.name : undefined), (c) => c === 'required');
}

/** The tools a Chat Completions request forces calls of (none: a text answer). */
export function openaiForcedTools(params: { tools?: unknown; tool_choice?: unknown; parallel_tool_calls?: unknown }): Tool[] {
  return forced(
    params.tools,
    params.tool_choice,
    openaiTool,
    (c) => (c.type === 'function' && isObject(c.function) && typeof c.function.name === 'string' ? c.function.name : undefined),
    (c) => c === 'required',
    params.parallel_tool_calls === false ? 1 : 2,
  );
}

/**
 * The calls of `tools` this request gets (`hash`: the request's), or undefined when there are none
 * or they would not fit `maxTokens` together.
 */
export function toolCalls(tools: readonly Tool[], hash: string, maxTokens: number): ToolCall[] | undefined {
  if (tools.length === 0) return undefined;
  const seed = Number.parseInt(hash.slice(8, 16), 16);
  const calls = tools.map((tool, i) => {
    const text = JSON.stringify(sampleObject(tool.schema, prng(seed + i * 7919)));
    return { name: tool.name, arguments: text, outputTokens: countTokens(text) };
  });
  return outputTokensOf(calls) <= maxTokens ? calls : undefined;
}

/** The output tokens of a turn's calls together. */
export function outputTokensOf(calls: readonly ToolCall[]): number {
  return calls.reduce((sum, c) => sum + c.outputTokens, 0);
}
