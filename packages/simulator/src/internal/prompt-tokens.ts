// Prompt token counts, with the small per-message overheads both providers add for the chat
// framing. Anthropic prompts are split into segments in cache order (tools, system, messages) so
// prompt caching can price the prefix up to a `cache_control` breakpoint. OpenAI's two endpoints,
// Chat Completions and Responses, count through one path: a Responses prompt is read as the chat
// messages it amounts to.

import { canonicalJson } from './answer.js';
import { countTokens } from './tokenizer.js';

const PER_MESSAGE = 3;
const REPLY_PRIMING = 3;
// Images and PDFs are priced by pixels and pages we do not decode; a fixed, plausible count.
const IMAGE_TOKENS = 1600;
const DOCUMENT_TOKENS = 2000;
// OpenAI's price of one high-detail 512 px image tile set, the same fixed guess for every image.
const OPENAI_IMAGE_TOKENS = 765;
const FIVE_MINUTES_MS = 5 * 60_000;
export const ONE_HOUR_MS = 60 * 60_000;

export interface Segment {
  tokens: number;
  /** What identifies this segment's content for the prompt cache. */
  material: string;
  /** Cache lifetime when this segment carries `cache_control`, else null. */
  breakpointTtlMs: number | null;
}

type Block = Record<string, unknown>;

function ttlOf(block: Block): number | null {
  const control = block.cache_control as Block | null | undefined;
  if (!control || typeof control !== 'object') return null;
  return control.ttl === '1h' ? ONE_HOUR_MS : FIVE_MINUTES_MS;
}

function blockTokens(block: Block): number {
  switch (block.type) {
    case 'text':
      return countTokens(String(block.text ?? ''));
    case 'image':
      return IMAGE_TOKENS;
    case 'document': {
      const source = block.source as Block | undefined;
      return source?.type === 'text' ? countTokens(String(source.data ?? '')) : DOCUMENT_TOKENS;
    }
    case 'tool_use':
    case 'server_tool_use':
      return countTokens(`${String(block.name ?? '')} ${canonicalJson(block.input ?? {})}`);
    case 'tool_result':
      return PER_MESSAGE + contentTokens(block.content as string | Block[] | undefined);
    case 'thinking':
      return countTokens(String(block.thinking ?? ''));
    default:
      return countTokens(canonicalJson(block));
  }
}

function contentTokens(content: string | Block[] | undefined): number {
  if (content === undefined) return 0;
  if (typeof content === 'string') return countTokens(content);
  return content.reduce((sum, block) => sum + blockTokens(block), 0);
}

function segmentOf(block: Block, extra: number): Segment {
  const { cache_control: _ignored, ...content } = block;
  return { tokens: blockTokens(block) + extra, material: canonicalJson(content), breakpointTtlMs: ttlOf(block) };
}

export interface AnthropicPrompt {
  tools?: unknown[] | undefined;
  system?: string | Block[] | undefined;
  messages: { role: string; content: string | Block[] }[];
}

/** The prompt as cacheable segments; their tokens plus REPLY_PRIMING make `anthropicInputTokens`. */
export function anthropicSegments(prompt: AnthropicPrompt): Segment[] {
  const segments: Segment[] = [];
  for (const tool of prompt.tools ?? []) {
    const block = tool as Block;
    const { cache_control: _ignored, ...content } = block;
    segments.push({ tokens: countTokens(canonicalJson(content)), material: `tool:${canonicalJson(content)}`, breakpointTtlMs: ttlOf(block) });
  }
  const { system } = prompt;
  if (typeof system === 'string' && system !== '') {
    segments.push({ tokens: PER_MESSAGE + countTokens(system), material: `system:${system}`, breakpointTtlMs: null });
  } else if (Array.isArray(system)) {
    for (const [i, block] of system.entries()) segments.push(segmentOf(block, i === 0 ? PER_MESSAGE : 0));
  }
  for (const message of prompt.messages) {
    if (typeof message.content === 'string') {
      segments.push({
        tokens: PER_MESSAGE + countTokens(message.content),
        material: `${message.role}:${message.content}`,
        breakpointTtlMs: null,
      });
      continue;
    }
    message.content.forEach((block, i) => {
      const segment = segmentOf(block, i === 0 ? PER_MESSAGE : 0);
      segments.push(i === 0 ? { ...segment, material: `${message.role}:${segment.material}` } : segment);
    });
    if (message.content.length === 0) segments.push({ tokens: PER_MESSAGE, material: `${message.role}:`, breakpointTtlMs: null });
  }
  return segments;
}

export function anthropicInputTokens(segments: readonly Segment[]): number {
  return segments.reduce((sum, s) => sum + s.tokens, REPLY_PRIMING);
}

export interface OpenAIMessage {
  role: string;
  content?: unknown;
  name?: unknown;
  tool_calls?: unknown;
}

export interface OpenAIPrompt {
  messages: OpenAIMessage[];
  tools?: unknown[] | undefined;
}

/** The text a content part carries: Chat's `text`, Responses' `input_text` and `output_text`. */
const TEXT_PARTS = new Set(['text', 'input_text', 'output_text']);
const IMAGE_PARTS = new Set(['image_url', 'input_image']);

/**
 * The prompt as OpenAI caches it, tools first and then one segment per message; their tokens
 * plus REPLY_PRIMING make `openaiPromptTokens`. Framing follows OpenAI's documented count: 3
 * tokens per message, 1 per name, 3 to prime the reply.
 */
export function openaiSegments(prompt: OpenAIPrompt): Segment[] {
  const segments: Segment[] = [];
  if (Array.isArray(prompt.tools) && prompt.tools.length > 0) {
    const material = prompt.tools.map((tool) => canonicalJson(tool));
    segments.push({ tokens: material.reduce((sum, tool) => sum + countTokens(tool), 0), material: `tools:${material.join(',')}`, breakpointTtlMs: null });
  }
  for (const message of prompt.messages) {
    let tokens = PER_MESSAGE + countTokens(message.role);
    if (typeof message.name === 'string') tokens += 1 + countTokens(message.name);
    if (typeof message.content === 'string') tokens += countTokens(message.content);
    else if (Array.isArray(message.content)) {
      for (const part of message.content as Block[]) {
        if (TEXT_PARTS.has(String(part.type))) tokens += countTokens(String(part.text ?? ''));
        else if (IMAGE_PARTS.has(String(part.type))) tokens += OPENAI_IMAGE_TOKENS;
        else tokens += countTokens(canonicalJson(part));
      }
    }
    if (message.tool_calls !== undefined && message.tool_calls !== null) tokens += countTokens(canonicalJson(message.tool_calls));
    segments.push({ tokens, material: canonicalJson(message), breakpointTtlMs: null });
  }
  return segments;
}

/** `segments`, when the caller has them already, saves counting the prompt twice. */
export function openaiPromptTokens(prompt: OpenAIPrompt, segments = openaiSegments(prompt)): number {
  return segments.reduce((sum, s) => sum + s.tokens, REPLY_PRIMING);
}

export interface ResponsesPrompt {
  instructions?: string | null | undefined;
  /** A string, or input items (validated by the caller: objects, message items with a role). */
  input?: string | readonly Block[] | undefined;
  /** A saved prompt (validated by the caller: an object with an id). */
  prompt?: { variables?: Record<string, unknown> | null | undefined } | undefined;
  tools?: unknown[] | undefined;
}

/**
 * A Responses API prompt as the chat messages it amounts to, so both endpoints count (and cache)
 * through `openaiSegments`: `instructions` is a system message (OpenAI: "a system (or developer)
 * message inserted into the model's context"), a saved prompt's variables each a user message, a
 * string input one user message, each message item a message, and any other item (a function
 * call, its output, ...) a message holding its text.
 */
export function responsesPrompt(prompt: ResponsesPrompt): OpenAIPrompt {
  const messages: OpenAIMessage[] = [];
  if (typeof prompt.instructions === 'string' && prompt.instructions !== '') messages.push({ role: 'system', content: prompt.instructions });
  // A saved prompt's template is kept at OpenAI; the simulator keeps none, so it reads the prompt
  // as the values the call gives its variables, each a user message (none: an empty prompt).
  for (const value of Object.values(prompt.prompt?.variables ?? {})) messages.push({ role: 'user', content: typeof value === 'string' ? value : [value as Block] });
  if (typeof prompt.input === 'string') messages.push({ role: 'user', content: prompt.input });
  else for (const item of prompt.input ?? []) messages.push(itemAsMessage(item));
  return { messages, tools: prompt.tools };
}

function itemAsMessage(item: Block): OpenAIMessage {
  // `type: 'message'`, `id` and `status` are framing: the same message counts the same with or without them.
  if (typeof item.role === 'string') return { role: item.role, content: item.content };
  switch (item.type) {
    case 'function_call_output':
    case 'custom_tool_call_output':
      return { role: 'tool', content: item.output };
    case 'function_call':
      return { role: 'assistant', content: `${String(item.name ?? '')} ${String(item.arguments ?? '')}` };
    default: {
      const { id: _id, status: _status, ...content } = item;
      return { role: String(item.type), content: canonicalJson(content) };
    }
  }
}
