/**
 * Reads a JSON request body within the gateway's limits: the content type, the size (checked
 * against `content-length` before reading, and again while reading a chunked body), and the time
 * the client takes to send it. Never buffers more than the limit. A body sent compressed
 * (`content-encoding: gzip`, `deflate` or `br`, as HTTP clients with request compression send it)
 * is inflated, and the limit holds for what it inflates to.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip, inflate, type ZlibOptions } from 'node:zlib';
import { ErrorCode, jsonIssueAt } from '@headroom/queue';
import { GatewayCode, paramOf, type WireError } from './wire-errors.js';

export type BodyResult = { ok: true; value: unknown } | { ok: false; error: WireError };

type Inflate = (body: Buffer, opts: ZlibOptions) => Promise<Buffer>;
const INFLATE: Record<string, Inflate> = { gzip: promisify(gunzip), 'x-gzip': promisify(gunzip), deflate: promisify(inflate), br: promisify(brotliDecompress) };

export interface BodyLimits {
  maxBytes: number;
  timeoutMs: number;
  /**
   * Sends `100 Continue` to a client that waits for it (`Expect: 100-continue`), called once the
   * head has passed every check and the body is about to be read: a body refused by its head is
   * never uploaded.
   */
  continue?: () => void;
}

export function readJsonBody(req: IncomingMessage, limits: BodyLimits): Promise<BodyResult> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const inflateBody = encoding === 'identity' ? undefined : INFLATE[encoding];
  if (encoding !== 'identity' && !inflateBody) {
    return Promise.resolve({
      ok: false,
      error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `content-encoding: "${encoding.slice(0, 100)}" is not supported; send the body uncompressed, or as gzip, deflate or br`, shouldRetry: false },
    });
  }
  const type = req.headers['content-type'];
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    return Promise.resolve({
      ok: false,
      error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `content-type: expected application/json, got ${type === undefined ? 'none' : `"${type.slice(0, 100)}"`}`, shouldRetry: false },
    });
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    return Promise.resolve({ ok: false, error: tooLarge(declared, limits.maxBytes) });
  }
  if (/^100-continue$/i.test(req.headers.expect?.trim() ?? '')) limits.continue?.();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEndListener);
      req.off('error', onError);
      resolve(result);
    };
    // Nothing was done with a body that came too slowly: the SDK may send it again, and is told so
    // (Anthropic's answer is a 400, which no SDK retries by its status; OpenAI's stays a 408).
    const timer = setTimeout(
      () => finish({ ok: false, error: { kind: 'body_timeout', code: GatewayCode.BODY_TIMEOUT, message: `the request body did not arrive within ${limits.timeoutMs} ms`, shouldRetry: true } }),
      limits.timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limits.maxBytes) return finish({ ok: false, error: tooLarge(size, limits.maxBytes) });
      chunks.push(chunk);
    };
    const onEnd = async () => {
      let raw: Buffer = Buffer.concat(chunks, size);
      if (inflateBody) {
        try {
          raw = await inflateBody(raw, { maxOutputLength: limits.maxBytes });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return finish({ ok: false, error: tooLarge(limits.maxBytes + 1, limits.maxBytes, 'inflated ') });
          return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `the request body is not valid ${encoding} (content-encoding): ${(err as Error).message}`, shouldRetry: false } });
        }
      }
      const text = raw.toString('utf8');
      // Decoding replaces bytes that are not UTF-8 with U+FFFD: the prompt would reach the provider
      // changed, silently. JSON text is UTF-8 (RFC 8259), so such a body is refused, saying where.
      if (!isUtf8(raw)) return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `the request body is not valid UTF-8 (at byte ${firstInvalidByte(raw, text)}): JSON text must be UTF-8 encoded`, shouldRetry: false } });
      if (text.trim() === '') return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'the request body is empty; expected a JSON object', shouldRetry: false } });
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `the request body is not valid JSON: ${(err as Error).message}`, shouldRetry: false } });
      }
      // Every route walks the body recursively (validation, the token estimate): see json-value.ts.
      const deep = jsonIssueAt(value);
      if (deep) {
        const param = paramOf(`request.${deep.path}`);
        return finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `${deep.path}: ${deep.message}`, shouldRetry: false, ...(param === undefined ? {} : { param }) } });
      }
      finish({ ok: true, value });
    };
    const onEndListener = () => void onEnd();
    const onError = () => finish({ ok: false, error: { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'the request body could not be read', shouldRetry: false } });
    req.on('data', onData);
    req.on('end', onEndListener);
    req.on('error', onError);
  });
}

/** The offset of the first byte of `raw` that is not UTF-8: where its decoding (`text`) put a U+FFFD the bytes did not spell. */
function firstInvalidByte(raw: Buffer, text: string): number {
  for (let at = text.indexOf('\uFFFD'); at !== -1; at = text.indexOf('\uFFFD', at + 1)) {
    const byte = Buffer.byteLength(text.slice(0, at), 'utf8');
    if (!(raw[byte] === 0xef && raw[byte + 1] === 0xbf && raw[byte + 2] === 0xbd)) return byte;
  }
  return 0;
}

function tooLarge(size: number, limit: number, what = ''): WireError {
  return { kind: 'too_large', code: ErrorCode.PAYLOAD_TOO_LARGE, message: `the ${what}request body is ${size} bytes or more, over the gateway's limit of ${limit} bytes`, shouldRetry: false };
}
