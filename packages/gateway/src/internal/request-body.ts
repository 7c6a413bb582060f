/**
 * Reads a JSON request body within the gateway's limits: the content type, the size (checked
 * against `content-length` before reading, and again while reading a chunked body), and the time
 * the client takes to send it. Never buffers more than the limit.
 */
import type { IncomingMessage } from 'node:http';
import { ErrorCode, jsonIssueAt } from '@headroom/queue';
import { GatewayCode, type WireError } from './wire-errors.js';

export type BodyResult = { ok: true; value: unknown } | { ok: false; error: WireError };

export function readJsonBody(req: IncomingMessage, limits: { maxBytes: number; timeoutMs: number }): Promise<BodyResult> {
  const type = req.headers['content-type'];
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    return Promise.resolve({
      ok: false,
      error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `content-type: expected application/json, got ${type === undefined ? 'none' : `"${type.slice(0, 100)}"`}`, shouldRetry: false, param: 'content-type' },
    });
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    return Promise.resolve({ ok: false, error: tooLarge(declared, limits.maxBytes) });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, error: { kind: 'timeout', code: GatewayCode.BODY_TIMEOUT, message: `the request body did not arrive within ${limits.timeoutMs} ms`, shouldRetry: false } }),
      limits.timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) return finish({ ok: false, error: tooLarge(size, limits.maxBytes) });
      chunks.push(chunk);
    };
    const onEnd = () => {
      const text = Buffer.concat(chunks, size).toString('utf8');
      if (text.trim() === '') return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'the request body is empty; expected a JSON object', shouldRetry: false } });
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `the request body is not valid JSON: ${(err as Error).message}`, shouldRetry: false } });
      }
      // Every route walks the body recursively (validation, the token estimate): see json-value.ts.
      const deep = jsonIssueAt(value);
      if (deep) return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `${deep.path}: ${deep.message}`, shouldRetry: false, param: deep.path } });
      finish({ ok: true, value });
    };
    const onError = () => finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'the request body could not be read', shouldRetry: false } });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(size: number, limit: number): WireError {
  return { kind: 'too_large', code: ErrorCode.PAYLOAD_TOO_LARGE, message: `the request body is ${size} bytes or more, over the gateway's limit of ${limit} bytes`, shouldRetry: false };
}
