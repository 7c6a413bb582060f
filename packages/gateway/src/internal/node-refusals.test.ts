import { describe, expect, it } from 'vitest';
import { nodeRefusal } from './node-refusals.js';

const LIMITS = { headersTimeoutMs: 2_000, requestTimeoutMs: 3_500 };
const timeout = Object.assign(new Error('Request Timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });

/** The answer's status, headers and body, as a client parses them. */
function parse(raw: string) {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) as { type: string; error: Record<string, unknown>; request_id: string } };
}

describe('nodeRefusal', () => {
  it("answers a head that never finished arriving with a 408 both SDKs retry and read as their provider's error", () => {
    const { status, headers, body } = parse(nodeRefusal(timeout, LIMITS, false).raw);
    expect(status).toBe(408);
    expect(headers).toMatchObject({ 'x-should-retry': 'true', 'headroom-error-code': 'HEAD_TIMEOUT', connection: 'close' });
    // Anthropic's envelope, whose error object is exactly OpenAI's.
    expect(body).toEqual({
      type: 'error',
      error: { message: 'the request head did not arrive in time (within 2000 ms: gateway.headersTimeoutMs)', type: 'invalid_request_error', param: null, code: 'timeout' },
      request_id: expect.stringMatching(/^req_headroom_[0-9a-f]{32}$/),
    });
    // The id in the header each SDK reads (Anthropic's request-id, OpenAI's x-request-id) and in the body.
    expect(headers['request-id']).toBe(body.request_id);
    expect(headers['x-request-id']).toBe(body.request_id);
    expect(Number(headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify(body)));
  });

  it("names the body's deadline when the head had arrived", () => {
    const refusal = nodeRefusal(timeout, LIMITS, true);
    expect(refusal).toMatchObject({ status: 408, code: 'BODY_TIMEOUT', message: expect.stringContaining('within 3500 ms') });
  });

  it('refuses a head Node cannot parse, or one over the size limit, and says a retry would fail the same way', () => {
    const malformed = parse(nodeRefusal(Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_HEADER_TOKEN' }), LIMITS, false).raw);
    expect(malformed).toMatchObject({ status: 400, headers: { 'x-should-retry': 'false', 'headroom-error-code': 'MALFORMED_REQUEST' }, body: { error: { message: 'malformed HTTP request (HPE_INVALID_HEADER_TOKEN)', code: null } } });
    const overflow = parse(nodeRefusal(Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW' }), LIMITS, false).raw);
    expect(overflow).toMatchObject({ status: 431, headers: { 'x-should-retry': 'false' }, body: { error: { code: 'request_too_large' } } });
  });
});
