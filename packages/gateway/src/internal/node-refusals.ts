/**
 * The answers to requests Node's HTTP parser refuses before the handler sees them: a head that did
 * not arrive within `gateway.headersTimeoutMs` (a slow-loris, or a client stalled on the network), a
 * head Node cannot parse, one over `gateway.maxHeaderBytes`. They go out from `clientError` as raw
 * bytes on the socket, which is then closed.
 *
 * The request's path is not known then: Node's parser keeps a head's bytes in C++ until the head is
 * complete (reading them in JavaScript would take every connection off Node's native parsing, for
 * an answer only a stalled or broken client gets). So the body is one that both SDKs read as their
 * provider's own error: Anthropic's envelope (`type: "error"`, `error.type`, `error.message`,
 * `request_id`), whose `error` object is exactly OpenAI's (`message`, `type`, `param`, `code`).
 * Each SDK reads the fields it knows and no field of one means anything else to the other.
 */
import { STATUS_CODES } from 'node:http';
import { GatewayCode, gatewayRequestId } from './wire-errors.js';

export interface NodeRefusal {
  status: number;
  /** The gateway's code for it, sent as `headroom-error-code`. */
  code: string;
  message: string;
  /** The gateway's id for the answer, in both providers' request-id headers and in the body. */
  requestId: string;
  /** The whole HTTP/1.1 answer, `connection: close`. */
  raw: string;
}

export interface NodeRefusalLimits {
  headersTimeoutMs: number;
  /** Node's deadline for a whole request, when a head arrived and its body did not (request-body.ts answers first as a rule). */
  requestTimeoutMs: number;
}

/**
 * The answer to a request Node refused with `err` (its `clientError`). `headArrived`: the request's
 * head was parsed (a handler holds its answer), so a timeout is its body's.
 */
export function nodeRefusal(err: NodeJS.ErrnoException, limits: NodeRefusalLimits, headArrived: boolean): NodeRefusal {
  const { status, code, message, retry, openaiCode } = refusalOf(err, limits, headArrived);
  const requestId = gatewayRequestId();
  const body = JSON.stringify({ type: 'error', error: { message, type: 'invalid_request_error', param: null, code: openaiCode }, request_id: requestId });
  const raw =
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'content-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `x-should-retry: ${String(retry)}\r\n` +
    `headroom-error-code: ${code}\r\n` +
    `request-id: ${requestId}\r\n` +
    `x-request-id: ${requestId}\r\n` +
    'connection: close\r\n\r\n' +
    body;
  return { status, code, message, requestId, raw };
}

function refusalOf(err: NodeJS.ErrnoException, limits: NodeRefusalLimits, headArrived: boolean) {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    // Nothing was done with it, and a client that was slow once may not be the next time: a 408,
    // which both SDKs retry by its status, told so besides (`x-should-retry: true`, which both obey
    // first), with OpenAI's code for its own request timeouts. The Anthropic SDK (1.13) raises it as
    // its RequestTimeoutError, the OpenAI SDK as a plain APIError with status 408.
    return headArrived
      ? { status: 408, code: GatewayCode.BODY_TIMEOUT, message: `the request body did not arrive in time (within ${limits.requestTimeoutMs} ms of the request's start: gateway.headersTimeoutMs + gateway.bodyTimeoutMs + 1 s)`, retry: true, openaiCode: 'timeout' }
      : { status: 408, code: GatewayCode.HEAD_TIMEOUT, message: `the request head did not arrive in time (within ${limits.headersTimeoutMs} ms: gateway.headersTimeoutMs)`, retry: true, openaiCode: 'timeout' };
  }
  // A request Node cannot parse fails the same way again: no retry.
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, code: GatewayCode.MALFORMED_REQUEST, message: `the request head is over the gateway's limit (gateway.maxHeaderBytes): malformed HTTP request (${err.code})`, retry: false, openaiCode: 'request_too_large' };
  }
  return { status: 400, code: GatewayCode.MALFORMED_REQUEST, message: `malformed HTTP request (${err.code ?? 'parse error'})`, retry: false, openaiCode: null };
}
