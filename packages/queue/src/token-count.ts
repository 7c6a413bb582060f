/**
 * Token counts of a request's prompt and of output text, with a fast real tokenizer
 * (gpt-tokenizer's `o200k_base`: exact for OpenAI text, about 10x faster than js-tiktoken). No
 * local tokenizer matches Claude's: the worker's estimator learns a margin over these counts from
 * the usage providers report, and the gateway answers `count_tokens` with them, saying so.
 *
 * A separate entry point (`@headroom/queue/token-count`), so a producer that never counts loads
 * no tokenizer.
 *
 * ```ts
 * import { estimateInputTokens } from '@headroom/queue/token-count';
 * const tokens = estimateInputTokens(job.request);
 * ```
 */
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';

// User text may contain strings such as `<|endoftext|>`; the provider bills them as text, and the
// tokenizer's default is to throw on them.
const AS_PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** Chat framing per message (role markers), as OpenAI documents it for its chat models. */
export const PER_MESSAGE_TOKENS = 3;
/** Tokens that prime the assistant's reply. */
export const REPLY_PRIMING_TOKENS = 3;
/**
 * An image whose pixels we do not decode. Anthropic bills about (width * height) / 750 and
 * downsizes anything above ~1.15 megapixels, so 1,600 is its ceiling: an upper bound, never an
 * under-estimate.
 */
export const ANTHROPIC_IMAGE_TOKENS = 1600;
/**
 * OpenAI bills images in 512px tiles: 85 base + 170 per tile. 765 is a 1024x1024 image at
 * `detail: high`/`auto` (the common case); `detail: low` is a flat 85.
 */
export const OPENAI_IMAGE_TOKENS = 765;
export const OPENAI_LOW_DETAIL_IMAGE_TOKENS = 85;
/**
 * Anthropic turns each PDF page into text plus a page image: 1,500-3,000 tokens a page by its
 * docs. Pages we cannot count (URL / file sources, compressed page trees) count as one.
 */
export const DOCUMENT_PAGE_TOKENS = 2000;
/** Anthropic's hidden tool-use system prompt when `tools` is set (346 on Claude 4.x, rounded up). */
export const ANTHROPIC_TOOLS_SYSTEM_TOKENS = 350;

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
/**
 * BPE takes time quadratic in the length of one pre-token piece, and a piece is a whole run of
 * letters, of punctuation or of whitespace: 60 KB of one word (a DNA string, a minified blob) took
 * 2.5 s, and a 1 MiB job would hold the gateway's or a worker's event loop for minutes. Such runs
 * are counted in slices of `LONG_PIECE` characters, which may count a token more per slice: the
 * estimate errs high on them, and ordinary text and JSON are counted exactly as before.
 */
const LONG_PIECE = 128;
const LONG_PIECES = new RegExp(`[\\p{L}\\p{M}]{${LONG_PIECE + 1},}|[^\\s\\p{L}\\p{N}]{${LONG_PIECE + 1},}|\\s{${LONG_PIECE + 1},}`, 'gu');

function countText(s: string): number {
  let total = 0;
  let from = 0;
  for (const match of s.matchAll(LONG_PIECES)) {
    total += countTokens(s.slice(from, match.index), AS_PLAIN_TEXT);
    for (let at = 0; at < match[0].length; at += LONG_PIECE) total += countTokens(match[0].slice(at, at + LONG_PIECE), AS_PLAIN_TEXT);
    from = match.index + match[0].length;
  }
  return total + countTokens(from === 0 ? s : s.slice(from), AS_PLAIN_TEXT);
}

const text = (s: unknown): number => (typeof s === 'string' && s.length > 0 ? countText(s) : 0);
const json = (v: unknown): number => (v === undefined ? 0 : text(JSON.stringify(v)));

function pdfPages(base64: string): number {
  // Only the uncompressed page tree is visible without a PDF parser; one page at least.
  const body = Buffer.from(base64, 'base64').toString('latin1');
  const pages = body.match(/\/Type\s*\/Page(?![a-zA-Z])/g)?.length ?? 0;
  return Math.max(1, pages);
}

// Anthropic content blocks and OpenAI content parts share one walker: their `type`s are
// disjoint but for `text`, which both bill the same way. So a request is counted by its shape,
// and the caller need not say which dialect it is.
function blockTokens(block: unknown): number {
  if (!isRecord(block)) return text(block);
  switch (block.type) {
    case 'text':
    case 'input_text':
    case 'output_text':
      return text(block.text);
    case 'input_image':
      // The Responses API's image part: `detail` on the part itself.
      return block.detail === 'low' ? OPENAI_LOW_DETAIL_IMAGE_TOKENS : OPENAI_IMAGE_TOKENS;
    case 'refusal':
      return text(block.refusal);
    case 'image':
      return ANTHROPIC_IMAGE_TOKENS;
    case 'image_url': {
      const detail = isRecord(block.image_url) ? block.image_url.detail : undefined;
      return detail === 'low' ? OPENAI_LOW_DETAIL_IMAGE_TOKENS : OPENAI_IMAGE_TOKENS;
    }
    case 'document': {
      const source = isRecord(block.source) ? block.source : {};
      if (source.type === 'text') return text(source.data);
      if (source.type === 'content') return contentTokens(source.content);
      if (source.type === 'base64' && typeof source.data === 'string') return pdfPages(source.data) * DOCUMENT_PAGE_TOKENS;
      return DOCUMENT_PAGE_TOKENS;
    }
    case 'tool_use':
    case 'server_tool_use':
      return text(block.name) + json(block.input);
    case 'tool_result':
      return PER_MESSAGE_TOKENS + contentTokens(block.content);
    case 'thinking':
      return text(block.thinking);
    case 'redacted_thinking':
      // Encrypted; Anthropic drops earlier turns' thinking from the prompt anyway.
      return 0;
    default:
      return json(block);
  }
}

function contentTokens(content: unknown): number {
  if (typeof content === 'string') return text(content);
  if (!Array.isArray(content)) return 0;
  let total = 0;
  for (const block of content) total += blockTokens(block);
  return total;
}

/**
 * The raw `o200k_base` estimate of a request's input tokens (Anthropic Messages, OpenAI Chat
 * Completions or OpenAI Responses, told apart by their shape): every billed part of the prompt
 * plus framing. Pure; runs once per job on the dispatch path.
 */
export function estimateInputTokens(request: object): number {
  const body = request as unknown as Json;
  // Responses requests carry `input`, `instructions` or a saved `prompt` where the others carry
  // `messages` (an input_tokens count may carry instructions alone).
  const responses = (body.input != null || body.prompt != null || body.instructions != null) && body.messages === undefined;
  let total = REPLY_PRIMING_TOKENS;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    // Anthropic tools carry `input_schema`; Chat Completions' are `{type:'function', function}`,
    // Responses' `{type:'function', name, parameters}`.
    if (!responses && body.tools.some((t) => isRecord(t) && t.function === undefined)) total += ANTHROPIC_TOOLS_SYSTEM_TOKENS;
    for (const tool of body.tools) total += json(tool);
  }
  if (Array.isArray(body.functions)) for (const fn of body.functions) total += json(fn);
  // A structured-output schema is sent to the model as part of the prompt.
  if (isRecord(body.response_format) && body.response_format.type === 'json_schema') total += json(body.response_format.json_schema);
  if (isRecord(body.text) && isRecord(body.text.format) && body.text.format.type === 'json_schema') total += json(body.text.format.schema);
  if (body.system !== undefined && body.system !== '') total += PER_MESSAGE_TOKENS + contentTokens(body.system);
  const messages = responses ? responsesMessages(body) : Array.isArray(body.messages) ? body.messages : [];
  for (const message of messages) {
    if (!isRecord(message)) continue;
    if (message.role === undefined) {
      // A Responses item that is not a message: a function call or its output, a reasoning item...
      total += PER_MESSAGE_TOKENS + itemTokens(message);
      continue;
    }
    total += PER_MESSAGE_TOKENS + text(message.role) + contentTokens(message.content);
    if (typeof message.name === 'string') total += 1 + text(message.name);
    if (message.tool_calls != null) total += json(message.tool_calls);
  }
  return total;
}

/**
 * A Responses request's prompt as the model reads it: the instructions as a system message, a
 * saved prompt's variables, then the input. A saved prompt's own text is kept at OpenAI, out of
 * sight: only the values the call fills in are counted (the bucket is settled from the usage
 * OpenAI reports, which includes the template).
 */
function responsesMessages(body: Json): unknown[] {
  const instructions = typeof body.instructions === 'string' && body.instructions !== '' ? [{ role: 'system', content: body.instructions }] : [];
  const variables = isRecord(body.prompt) && isRecord(body.prompt.variables) ? Object.values(body.prompt.variables) : [];
  const filled = variables.map((value) => ({ role: 'user', content: typeof value === 'string' ? value : [value] }));
  const input = typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : Array.isArray(body.input) ? body.input : [];
  return [...instructions, ...filled, ...input];
}

/** A Responses input item other than a message, as the model reads it. */
function itemTokens(item: Json): number {
  switch (item.type) {
    case 'function_call':
      return text(item.name) + text(item.arguments);
    case 'function_call_output':
      return typeof item.output === 'string' ? text(item.output) : contentTokens(item.output);
    case 'reasoning':
      // Encrypted or summarised; earlier turns' reasoning is not billed again in full.
      return 0;
    default:
      return json(item);
  }
}

/**
 * Tokens in output text: what a stream cut short had produced, counted the way input is estimated
 * (no provider reports it before a stream's end).
 */
export function estimateOutputTokens(text: string): number {
  return text === '' ? 0 : countText(text);
}

