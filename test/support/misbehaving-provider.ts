/**
 * A provider endpoint for answers the simulator never gives: a real HTTP server placed where the
 * config's `baseURL` points. It forwards every request to the simulator untouched, except those
 * whose last user message holds a marker `wire:<mode>`, which get a scripted bad answer instead:
 * garbage on the wire (malformed JSON, HTML error pages, a 200 missing fields) or an error that
 * echoes the caller's API key back, as some gateways and proxies do. With `echoBatchReads: n`,
 * the first n reads of a provider batch (status, list) get a 401 that echoes every request
 * header, `authorization` included, as a misconfigured proxy in front of a provider does.
 * `echo-stream` answers a streamed call with the caller's key in its text, three characters per
 * delta (Anthropic events or OpenAI chunks, by the path): whole in no one event. `echo-logprobs`
 * answers an OpenAI Chat call, plain or streamed, with the key in its text and, as `logprobs: true`
 * asks, the text again as tokens of three characters (`token`, `bytes`, `top_logprobs`); on
 * `/v1/responses` it streams Responses events (`response.output_text.delta`, three characters each).
 * `echo-stream-error` streams some text and then fails the stream with an error event whose message
 * holds the key (Anthropic `event: error`, an OpenAI Chat `data: {"error": ...}` chunk), after
 * the first output, so the client has part of the answer. `echo-request-id` forwards the call and
 * answers the simulator's response with the key in its request id headers (`request-id`,
 * `x-request-id`), which the worker keeps and the gateway relays.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const WIRE_MODES = [
  'malformed-json',
  'html-502',
  'html-200',
  'empty-200',
  'missing-usage',
  'wrong-types',
  'html-400',
  'echo-400',
  'echo-401',
  'echo-429',
  'echo-500-html',
  'echo-batch-read',
  'echo-stream',
  'echo-logprobs',
  'echo-stream-error',
  'echo-request-id',
] as const;
export type WireMode = (typeof WIRE_MODES)[number];

export interface MisbehavingProvider {
  url: string;
  /** Requests answered by each scripted mode (forwarded ones are not counted). */
  hits: Map<WireMode, number>;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'content-encoding', 'keep-alive']);

function keyOf(req: IncomingMessage): string {
  const bearer = /^Bearer (.+)$/i.exec(String(req.headers.authorization ?? ''))?.[1];
  return bearer ?? String(req.headers['x-api-key'] ?? '');
}

function markerOf(body: string): WireMode | undefined {
  try {
    const parsed = JSON.parse(body) as { messages?: { content?: unknown }[]; input?: unknown };
    const text = JSON.stringify(parsed.messages?.at(-1)?.content ?? parsed.input ?? '');
    const mode = /wire:([a-z0-9-]+)/.exec(text)?.[1];
    return WIRE_MODES.find((m) => m === mode);
  } catch {
    return undefined;
  }
}

const html = (title: string, extra = '') =>
  `<!DOCTYPE html><html><head><title>${title}</title></head><body><center><h1>${title}</h1></center>${extra}<hr><center>nginx</center></body></html>`;

/**
 * A streamed answer whose text, `your key is <key> ok`, comes three characters per delta; an
 * OpenAI request with `n: 2` gets two choices, their chunks interleaved.
 */
function echoStream(path: string, key: string, res: ServerResponse, body: string): void {
  const text = `your key is ${key} ok`;
  const pieces = Array.from({ length: Math.ceil(text.length / 3) }, (_, i) => text.slice(i * 3, i * 3 + 3));
  res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_misbehaving', 'x-request-id': 'req_misbehaving' });
  if (path.startsWith('/v1/chat/completions')) {
    const chunk = (delta: object, extra: object = {}) => `data: ${JSON.stringify({ id: 'chatcmpl-misbehaving', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;
    const choices = (JSON.parse(body) as { n?: number }).n === 2 ? [0, 1] : [0];
    const chunkOf = (index: number, delta: object) => `data: ${JSON.stringify({ id: 'chatcmpl-misbehaving', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [{ index, delta, finish_reason: null }] })}\n\n`;
    res.write(chunk({ role: 'assistant', content: '' }));
    for (const piece of pieces) for (const index of choices) res.write(chunkOf(index, { content: piece }));
    for (const index of choices) res.write(`data: ${JSON.stringify({ id: 'chatcmpl-misbehaving', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [{ index, delta: {}, finish_reason: 'stop' }] })}\n\n`);
    res.end(`data: ${JSON.stringify({ id: 'chatcmpl-misbehaving', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [], usage: { prompt_tokens: 12, completion_tokens: pieces.length, total_tokens: 12 + pieces.length } })}\n\ndata: [DONE]\n\n`);
    return;
  }
  const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  if (path.startsWith('/v1/responses')) {
    let seq = 0;
    const at = { output_index: 0, content_index: 0, item_id: 'msg_misbehaving' };
    const response = { id: 'resp_misbehaving', object: 'response', created_at: 1, status: 'in_progress', model: 'gpt-4.1-mini', output: [] as object[], usage: null as object | null };
    const item = { id: 'msg_misbehaving', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
    res.write(event('response.created', { sequence_number: seq++, response }));
    res.write(event('response.output_item.added', { sequence_number: seq++, output_index: 0, item: { ...item, status: 'in_progress', content: [] } }));
    res.write(event('response.content_part.added', { sequence_number: seq++, ...at, part: { type: 'output_text', text: '', annotations: [] } }));
    for (const piece of pieces) res.write(event('response.output_text.delta', { sequence_number: seq++, ...at, delta: piece, logprobs: [] }));
    res.write(event('response.output_text.done', { sequence_number: seq++, ...at, text, logprobs: [] }));
    res.write(event('response.output_item.done', { sequence_number: seq++, output_index: 0, item }));
    const usage = { input_tokens: 12, output_tokens: pieces.length, total_tokens: 12 + pieces.length, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } };
    res.end(event('response.completed', { sequence_number: seq++, response: { ...response, status: 'completed', output: [item], usage } }));
    return;
  }
  res.write(event('message_start', { message: { id: 'msg_misbehaving', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }));
  res.write(event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
  for (const piece of pieces) res.write(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: piece } }));
  res.write(event('content_block_stop', { index: 0 }));
  res.write(event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: pieces.length } }));
  res.end(event('message_stop', {}));
}

/** An OpenAI Chat answer echoing the key, with its logprobs: every token also spelled as bytes and as the first alternative. */
function echoLogprobs(key: string, res: ServerResponse, body: string): void {
  const text = `your key is ${key} ok`;
  const tokens = Array.from({ length: Math.ceil(text.length / 3) }, (_, i) => text.slice(i * 3, i * 3 + 3));
  const bytes = (t: string) => [...Buffer.from(t, 'utf8')];
  const entry = (token: string) => ({ token, logprob: -0.01, bytes: bytes(token), top_logprobs: [{ token, logprob: -0.01, bytes: bytes(token) }] });
  const usage = { prompt_tokens: 12, completion_tokens: tokens.length, total_tokens: 12 + tokens.length };
  const base = { id: 'chatcmpl-misbehaving', created: 1, model: 'gpt-4.1-mini' };
  if ((JSON.parse(body) as { stream?: boolean }).stream !== true) {
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_misbehaving' });
    res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: { content: tokens.map(entry), refusal: null }, finish_reason: 'stop' }], usage }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req_misbehaving' });
  const chunk = (choice: object, extra: object = {}) => `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [choice], ...extra })}\n\n`;
  res.write(chunk({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
  for (const token of tokens) res.write(chunk({ index: 0, delta: { content: token }, logprobs: { content: [entry(token)], refusal: null }, finish_reason: null }));
  res.write(chunk({ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }));
  res.end(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\ndata: [DONE]\n\n`);
}

/** Part of an answer, then the stream fails with an error event whose message holds the key. */
function echoStreamError(path: string, key: string, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_misbehaving', 'x-request-id': 'req_misbehaving' });
  if (path.startsWith('/v1/chat/completions')) {
    res.write(`data: ${JSON.stringify({ id: 'chatcmpl-misbehaving', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [{ index: 0, delta: { role: 'assistant', content: 'part of an answer' }, finish_reason: null }] })}\n\n`);
    res.end(`data: ${JSON.stringify({ error: { message: `upstream failure for key ${key}`, type: 'server_error', param: null, code: null } })}\n\n`);
    return;
  }
  const event = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  res.write(event('message_start', { message: { id: 'msg_misbehaving', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }));
  res.write(event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
  res.write(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'part of an answer' } }));
  res.end(event('error', { error: { type: 'api_error', message: `upstream failure for key ${key}` } }));
}

function answer(mode: WireMode, key: string, res: ServerResponse, path: string, body: string): void {
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_misbehaving', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body));
  };
  const page = (status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'text/html' }).end(body);
  };
  switch (mode) {
    case 'malformed-json':
      json(200, '{"id":"msg_misbehaving","type":"message","content":[{"type":"text","text":"Hel');
      return;
    case 'html-502':
      page(502, html('502 Bad Gateway'));
      return;
    case 'html-200':
      page(200, html('Welcome to nginx!'));
      return;
    case 'empty-200':
      json(200, '');
      return;
    case 'missing-usage':
      json(200, { id: 'msg_misbehaving', type: 'message', role: 'assistant', content: [{ type: 'text', text: 'hi' }], stop_reason: 'end_turn' });
      return;
    case 'wrong-types':
      json(200, { id: 'msg_misbehaving', type: 'message', role: 'assistant', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: '12', output_tokens: 3 } });
      return;
    case 'html-400':
      page(400, html('400 Bad Request', '<p>The plain HTTP request was sent to HTTPS port</p>'));
      return;
    case 'echo-400':
      json(400, { type: 'error', error: { type: 'invalid_request_error', message: `request from key ${key} is malformed` } });
      return;
    case 'echo-401':
      json(401, { error: { message: `Incorrect API key provided: ${key}. You can find your API key in your dashboard.`, type: 'invalid_request_error', code: 'invalid_api_key' } });
      return;
    case 'echo-429':
      // No retry-after: a spend cap, which ends the job after a bounded number of tries.
      json(429, { type: 'error', error: { type: 'rate_limit_error', message: `key ${key} has reached its monthly spend limit` } });
      return;
    case 'echo-500-html':
      page(500, html('500 Internal Server Error', `<pre>upstream auth header: Bearer ${key}</pre>`));
      return;
    case 'echo-batch-read':
      json(401, { type: 'error', error: { type: 'authentication_error', message: `invalid credentials; request headers: {"authorization":"Bearer ${key}"}` } });
      return;
    case 'echo-stream':
      echoStream(path, key, res, body);
      return;
    case 'echo-logprobs':
      echoLogprobs(key, res, body);
      return;
    case 'echo-stream-error':
      echoStreamError(path, key, res);
      return;
    case 'echo-request-id':
      // Forwarded by the server below, its request ids replaced.
      return;
  }
}

/** A batch's status or the batch list, for either provider. */
const BATCH_READ = /^\/v1\/(?:messages\/)?batches(?:\/[^/?]+)?(?:\?|$)/;

export async function startMisbehavingProvider(upstream: string, opts: { echoBatchReads?: number } = {}): Promise<MisbehavingProvider> {
  const hits = new Map<WireMode, number>();
  let batchEchoes = opts.echoBatchReads ?? 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (batchEchoes > 0 && req.method === 'GET' && BATCH_READ.test(req.url ?? '')) {
        batchEchoes -= 1;
        hits.set('echo-batch-read', (hits.get('echo-batch-read') ?? 0) + 1);
        res.writeHead(401, { 'content-type': 'application/json', 'request-id': 'req_misbehaving' }).end(
          JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: `invalid credentials; request headers: ${JSON.stringify(req.headers)}` } }),
        );
        return;
      }
      const mode = markerOf(body.toString('utf8'));
      if (mode && mode !== 'echo-request-id') {
        hits.set(mode, (hits.get(mode) ?? 0) + 1);
        answer(mode, keyOf(req), res, req.url ?? '/', body.toString('utf8'));
        return;
      }
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([h]) => !HOP_BY_HOP.has(h)).map(([h, v]) => [h, String(v)]));
      void (async () => {
        const up = await fetch(`${upstream}${req.url ?? '/'}`, { method: req.method ?? 'GET', headers, ...(body.length > 0 ? { body } : {}) });
        const out: Record<string, string> = {};
        up.headers.forEach((v, h) => {
          if (!HOP_BY_HOP.has(h)) out[h] = v;
        });
        const payload = Buffer.from(await up.arrayBuffer());
        if (mode === 'echo-request-id') {
          hits.set(mode, (hits.get(mode) ?? 0) + 1);
          out['request-id'] = `req_${keyOf(req)}`;
          out['x-request-id'] = `req_${keyOf(req)}`;
        }
        res.writeHead(up.status, out).end(payload);
      })().catch(() => {
        // The upstream cut the connection (an injected fault): cut ours too, as a proxy would.
        res.destroy();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
