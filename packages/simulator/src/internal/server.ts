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
import { handleGetModel, handleListModels } from './model-list.js';
import { invalidRequest, openaiError, openaiErrorBody } from './openai-request.js';
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
  // Both providers serve the models at the same paths; the SDK that asks is told by its headers.
  route('GET', '/v1/models', 'anthropic', (s, e) => handleListModels(s, e, 'anthropic')),
  route('GET', '/v1/models', 'openai', (s, e) => handleListModels(s, e, 'openai')),
  route('GET', '/v1/models/:id', 'anthropic', (s, _e, _k, id) => handleGetModel(s, id, 'anthropic')),
  route('GET', '/v1/models/:id', 'openai', (s, _e, _k, id) => handleGetModel(s, id, 'openai')),
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

/**
 * The provider a request speaks to, for a path both serve (`/v1/models`) or none does: the
 * Anthropic SDK sends `anthropic-version` and `x-api-key`, the OpenAI SDK neither. A path the
 * simulator does not serve still answers in the dialect of the SDK that asked.
 */
function providerOf(path: string, headers: Exchange['headers']): Provider | null {
  if (path.startsWith('/v1/messages')) return 'anthropic';
  if (path.startsWith('/v1/models')) return headers['anthropic-version'] !== undefined || headers['x-api-key'] !== undefined ? 'anthropic' : 'openai';
  if (/^\/v1\/(chat|files|batches|responses|embeddings|completions)/.test(path)) return 'openai';
  return null;
}

/** The route for the request, and the id it names; of two at one path, the asking provider's. */
function routeOf(exchange: Exchange, asked: Provider | null): { route: Route; id: string } | undefined {
  let found: { route: Route; id: string } | undefined;
  for (const candidate of ROUTES) {
    const match = candidate.method === exchange.method ? candidate.pattern.exec(exchange.path) : null;
    if (!match) continue;
    const hit = { route: candidate, id: decodedId(match[1] ?? '') };
    if (candidate.provider === asked) return hit;
    found ??= hit;
  }
  return found;
}

/** A path segment decoded; one that is not valid percent-encoding is the id as sent (an unknown one). */
function decodedId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The id a provider names a request by, in its own format. */
function newRequestId(provider: Provider | null): string {
  return provider === 'openai' ? newId('req_', 32) : newId('req_011', 21);
}

/**
 * Every answer carries its request id as the provider sends it: OpenAI's `x-request-id` header,
 * Anthropic's `request-id` header and, on an error, the same id as the body's top-level
 * `request_id` (its SDK types ErrorResponse so).
 */
function withRequestId(reply: Reply, provider: Provider | null, requestId: string): Reply {
  const headers = { ...reply.headers, [provider === 'openai' ? 'x-request-id' : 'request-id']: requestId };
  if (provider !== 'openai' && reply.kind === 'json' && isAnthropicError(reply.body)) {
    return { ...reply, headers, body: { ...reply.body, request_id: requestId } };
  }
  return { ...reply, headers };
}

function isAnthropicError(body: unknown): body is Record<string, unknown> {
  return typeof body === 'object' && body !== null && (body as { type?: unknown }).type === 'error';
}

async function dispatch(state: SimulatorState, controls: Controls, req: IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://simulator');
  const path = url.pathname;
  if (path.startsWith('/_sim/')) {
    const body = await readBody(req, MAX_BODY_BYTES);
    return handleAdmin(controls, { method: req.method ?? 'GET', path, query: url.searchParams, headers: req.headers, body, origin: `http://${req.headers.host ?? 'localhost'}` });
  }
  const provider = providerOf(path, req.headers);
  const requestId = newRequestId(provider);
  let reply: Reply;
  try {
    reply = await answer(state, req, url, provider);
  } catch (error) {
    reply = internalError(error, provider);
  }
  return withRequestId(reply, provider, requestId);
}

async function answer(state: SimulatorState, req: IncomingMessage, url: URL, asked: Provider | null): Promise<Reply> {
  const body = await readBody(req, MAX_BODY_BYTES);
  const exchange: Exchange = {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: url.searchParams,
    headers: req.headers,
    body,
    origin: `http://${req.headers.host ?? 'localhost'}`,
  };
  const matched = routeOf(exchange, asked);
  state.stats.request(matched ? `${matched.route.method} ${matched.route.label}` : 'unmatched');
  if (!matched) return notFound(asked, exchange);
  const auth = authenticate(state, matched.route.provider, exchange);
  return 'reply' in auth ? auth.reply : matched.route.handler(state, exchange, auth.apiKey, matched.id);
}

/** A body too large, or a fault of the simulator's own: the provider's 413 or 500, in its shape. */
function internalError(error: unknown, provider: Provider | null): Reply {
  const tooLarge = error instanceof BodyTooLargeError;
  const message = tooLarge ? error.message : `simulator error: ${String(error)}`;
  if (provider === 'openai') {
    return tooLarge ? openaiError(413, invalidRequest(message, null, 'request_too_large')) : openaiError(500, openaiErrorBody(message, 'server_error'));
  }
  return tooLarge ? anthropicError(413, 'request_too_large', message) : anthropicError(500, 'api_error', message);
}

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startServer(state: SimulatorState, controls: Controls, port: number): Promise<RunningServer> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    dispatch(state, controls, req)
      // Only an admin request can still throw here: the provider paths answer their own errors.
      .catch((error: unknown) => anthropicError(500, 'api_error', `simulator error: ${String(error)}`))
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
