// One HTTP exchange as the handlers see it, and the replies they can give. Handlers return data;
// only this file writes to sockets, so the transport faults live in one place.

import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderMap } from './rate-limit-headers.js';

export interface Exchange {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** `http://host:port` as the client addressed us, for absolute URLs such as `results_url`. */
  origin: string;
}

export type Reply =
  | { kind: 'json'; status: number; headers?: HeaderMap; body: unknown }
  | { kind: 'raw'; status: number; headers?: HeaderMap; contentType: string; body: string | Buffer }
  /** Sends the head and the first part of `body`, then destroys the socket. */
  | { kind: 'cut'; status: number; headers?: HeaderMap; contentType: string; body: string }
  /** Sends nothing, not even the head, until the client leaves. */
  | { kind: 'hang'; headers?: HeaderMap }
  /** Sends the head and the first part of `body`, then holds the connection, silent, until the client leaves. */
  | { kind: 'stall'; status: number; headers?: HeaderMap; contentType: string; body: string }
  /** Streaming (SSE): the handler writes the body itself once the head is out. */
  | { kind: 'stream'; status: number; headers?: HeaderMap; write: (res: ServerResponse) => Promise<void> };

export function json(status: number, body: unknown, headers?: HeaderMap): Reply {
  return { kind: 'json', status, body, ...(headers ? { headers } : {}) };
}

/** `reply`, sent `ms` later (at once when 0). The timer never keeps a closing server alive. */
export function replyAfter(reply: Reply, ms: number): Reply | Promise<Reply> {
  if (ms <= 0) return reply;
  return new Promise((resolve) => setTimeout(() => resolve(reply), ms).unref());
}

export class BodyTooLargeError extends Error {}

export function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        reject(new BodyTooLargeError(`request body exceeds ${limitBytes} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export type JsonBody = { ok: true; value: unknown } | { ok: false; message: string };

export function parseJsonBody(body: Buffer): JsonBody {
  if (body.length === 0) return { ok: false, message: 'request body is empty' };
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) };
  } catch (error) {
    return { ok: false, message: `request body is not valid JSON: ${(error as Error).message}` };
  }
}

export async function sendReply(res: ServerResponse, reply: Reply): Promise<void> {
  if (reply.kind === 'hang') return untilClosed(res);
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  switch (reply.kind) {
    case 'json': {
      const text = JSON.stringify(reply.body);
      res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    case 'raw':
      res.writeHead(reply.status, { 'content-type': reply.contentType, 'content-length': Buffer.byteLength(reply.body) });
      res.end(reply.body);
      return;
    case 'cut': {
      // Announce the full length, send half, then drop the connection: the client sees a
      // premature close, exactly what a load balancer reset mid-response produces.
      res.writeHead(reply.status, { 'content-type': reply.contentType, 'content-length': Buffer.byteLength(reply.body) });
      res.write(reply.body.slice(0, Math.floor(reply.body.length / 2)));
      await new Promise((resolve) => setImmediate(resolve));
      res.socket?.destroy();
      return;
    }
    case 'stall':
      // Announce the full length, send half, then nothing more: the client's own timeout decides.
      res.writeHead(reply.status, { 'content-type': reply.contentType, 'content-length': Buffer.byteLength(reply.body) });
      res.write(reply.body.slice(0, Math.floor(reply.body.length / 2)));
      await untilClosed(res);
      return;
    case 'stream':
      res.writeHead(reply.status, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      await reply.write(res);
      if (!res.destroyed) res.end();
      return;
  }
}

/** Resolves once the client has closed the connection (at once if it has). */
export function untilClosed(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableFinished) return Promise.resolve();
  return new Promise((resolve) => res.once('close', () => resolve()));
}

export function sleep(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/** The API key from `x-api-key` or `authorization: Bearer`, whichever the client sent. */
export function apiKeyOf(headers: IncomingHttpHeaders, acceptXApiKey: boolean): string | undefined {
  const xApiKey = headers['x-api-key'];
  if (acceptXApiKey && typeof xApiKey === 'string' && xApiKey.trim() !== '') return xApiKey.trim();
  const authorization = headers.authorization;
  const match = typeof authorization === 'string' ? /^Bearer\s+(.+)$/i.exec(authorization.trim()) : null;
  return match?.[1]?.trim() || undefined;
}
