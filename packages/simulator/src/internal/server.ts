// The HTTP front: routing, authentication per provider, request ids, and the last-resort 500.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleAdmin } from './admin-routes.js';
import {
  handleBatchResults,
  handleCancelBatch,
  handleCreateBatch,
  handleDeleteBatch,
  handleGetBatch,
  handleListBatches,
} from './anthropic-batches.js';
import { handleCountTokens, handleCreateMessage } from './anthropic-messages.js';
import { anthropicError } from './anthropic-request.js';
import { newId } from './answer.js';
import type { Controls } from './controls.js';
import { apiKeyOf, BodyTooLargeError, type Exchange, readBody, type Reply, sendReply } from './http-exchange.js';
import { handleCancelOpenAIBatch, handleCreateOpenAIBatch, handleGetOpenAIBatch, handleListOpenAIBatches } from './openai-batches.js';
import { handleChatCompletion } from './openai-chat.js';
import { handleDeleteFile, handleFileContent, handleGetFile, handleListFiles, handleUploadFile } from './openai-files.js';
import { invalidRequest, openaiError } from './openai-request.js';
import { handleCreateResponse } from './openai-responses.js';
import type { Provider } from './options.js';
import type { SimulatorState } from './state.js';

// Anthropic batches may reach 256 MB; anything past that is a mistake, not a workload.
const MAX_BODY_BYTES = 256 * 1024 * 1024;

type Handler = (state: SimulatorState, exchange: Exchange, apiKey: string, id: string) => Reply | Promise<Reply>;

interface Route {
  method: string;
  pattern: RegExp;
  /** The route with ids as `:id`, for stats. */
  label: string;
  provider: Provider;
  handler: Handler;
}

function route(method: string, label: string, provider: Provider, handler: Handler): Route {
  const pattern = new RegExp(`^${label.replace(':id', '([^/]+)')}/?$`);
  return { method, pattern, label, provider, handler };
}

const ROUTES: Route[] = [
  route('POST', '/v1/messages', 'anthropic', (s, e, k) => handleCreateMessage(s, e, k)),
  route('POST', '/v1/messages/count_tokens', 'anthropic', (s, e) => handleCountTokens(s, e)),
  route('POST', '/v1/messages/batches', 'anthropic', (s, e, k) => handleCreateBatch(s, e, k)),
  route('GET', '/v1/messages/batches', 'anthropic', (s, e, k) => handleListBatches(s, e, k)),
  route('GET', '/v1/messages/batches/:id', 'anthropic', (s, e, k, id) => handleGetBatch(s, e, id, k)),
  route('DELETE', '/v1/messages/batches/:id', 'anthropic', (s, _e, k, id) => handleDeleteBatch(s, id, k)),
  route('POST', '/v1/messages/batches/:id/cancel', 'anthropic', (s, e, k, id) => handleCancelBatch(s, e, id, k)),
  route('GET', '/v1/messages/batches/:id/results', 'anthropic', (s, _e, k, id) => handleBatchResults(s, id, k)),
  route('POST', '/v1/chat/completions', 'openai', (s, e, k) => handleChatCompletion(s, e, k)),
  route('POST', '/v1/responses', 'openai', (s, e, k) => handleCreateResponse(s, e, k)),
  route('POST', '/v1/files', 'openai', (s, e, k) => handleUploadFile(s, e, k)),
  route('GET', '/v1/files', 'openai', (s, e, k) => handleListFiles(s, e, k)),
  route('GET', '/v1/files/:id', 'openai', (s, _e, k, id) => handleGetFile(s, id, k)),
  route('DELETE', '/v1/files/:id', 'openai', (s, _e, k, id) => handleDeleteFile(s, id, k)),
  route('GET', '/v1/files/:id/content', 'openai', (s, _e, k, id) => handleFileContent(s, id, k)),
  route('POST', '/v1/batches', 'openai', (s, e, k) => handleCreateOpenAIBatch(s, e, k)),
  route('GET', '/v1/batches', 'openai', (s, e, k) => handleListOpenAIBatches(s, e, k)),
  route('GET', '/v1/batches/:id', 'openai', (s, _e, k, id) => handleGetOpenAIBatch(s, id, k)),
  route('POST', '/v1/batches/:id/cancel', 'openai', (s, _e, k, id) => handleCancelOpenAIBatch(s, id, k)),
];

function authenticate(state: SimulatorState, provider: Provider, exchange: Exchange): { apiKey: string } | { reply: Reply } {
  const apiKey = apiKeyOf(exchange.headers, provider === 'anthropic');
  if (provider === 'anthropic') {
    if (!apiKey) return { reply: anthropicError(401, 'authentication_error', 'x-api-key header is required') };
    if (!state.acceptsKey(apiKey)) return { reply: anthropicError(401, 'authentication_error', 'invalid x-api-key') };
    if (!exchange.headers['anthropic-version']) {
      return { reply: anthropicError(400, 'invalid_request_error', 'anthropic-version: header is required') };
    }
    return { apiKey };
  }
  if (!apiKey) {
    return { reply: openaiError(401, invalidRequest("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")) };
  }
  if (!state.acceptsKey(apiKey)) {
    return { reply: openaiError(401, invalidRequest(`Incorrect API key provided: ${apiKey.slice(0, 3)}***. You can find your API key at https://platform.openai.com/account/api-keys.`, null, 'invalid_api_key')) };
  }
  return { apiKey };
}

function notFound(provider: Provider | null, exchange: Exchange): Reply {
  if (provider === 'openai') return openaiError(404, invalidRequest(`Invalid URL (${exchange.method} ${exchange.path})`));
  return anthropicError(404, 'not_found_error', `Not found: ${exchange.method} ${exchange.path}`);
}

// A path the simulator does not serve still answers in the dialect of the SDK that asked.
function providerOfPath(path: string): Provider | null {
  if (path.startsWith('/v1/messages')) return 'anthropic';
  if (/^\/v1\/(chat|files|batches|responses|embeddings|completions|models)/.test(path)) return 'openai';
  return null;
}

async function dispatch(state: SimulatorState, controls: Controls, req: IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://simulator');
  const body = await readBody(req, MAX_BODY_BYTES);
  const exchange: Exchange = {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: url.searchParams,
    headers: req.headers,
    body,
    origin: `http://${req.headers.host ?? 'localhost'}`,
  };
  if (exchange.path.startsWith('/_sim/')) return handleAdmin(controls, exchange);

  let matched: Route | undefined;
  let id = '';
  for (const candidate of ROUTES) {
    const match = candidate.method === exchange.method ? candidate.pattern.exec(exchange.path) : null;
    if (match) {
      matched = candidate;
      id = decodeURIComponent(match[1] ?? '');
      break;
    }
  }
  const provider = matched?.provider ?? providerOfPath(exchange.path);
  const requestIdHeader = provider === 'openai' ? 'x-request-id' : 'request-id';
  const requestId = newId(provider === 'openai' ? 'req_' : 'req_011', provider === 'openai' ? 32 : 21);
  state.stats.request(matched ? `${matched.method} ${matched.label}` : 'unmatched');

  let reply: Reply;
  if (!matched) reply = notFound(provider, exchange);
  else {
    const auth = authenticate(state, matched.provider, exchange);
    reply = 'reply' in auth ? auth.reply : await matched.handler(state, exchange, auth.apiKey, id);
  }
  return { ...reply, headers: { ...reply.headers, [requestIdHeader]: requestId } };
}

function internalError(error: unknown): Reply {
  if (error instanceof BodyTooLargeError) return anthropicError(413, 'request_too_large', error.message);
  // `{ type, error: { type, message } }` parses as an APIError in both SDKs.
  return anthropicError(500, 'api_error', `simulator error: ${String(error)}`);
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startServer(state: SimulatorState, controls: Controls, port: number): Promise<RunningServer> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    dispatch(state, controls, req)
      .catch(internalError)
      .then((reply) => sendReply(res, reply))
      .catch(() => res.destroy());
  });
  // Node's default keep-alive timeout (5 s) is shorter than undici's; a client reusing a socket the
  // server just closed gets a spurious connection error. Outlive the client instead.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${bound}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
