import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@headroom/queue';
import { AlertNotifier, type AlertWebhookBody } from './alert-notifier.js';
import type { AlertEvent } from './alerts.js';

const WEBHOOK = 'https://hooks.example.test/services/T000/B000/XXXXSECRETXXXX';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { logger: createLogger({ destination, level: 'debug' }), lines, raw };
}

const firing: AlertEvent = {
  status: 'firing',
  alert: { id: 'utilization:sonnet-4:itpm', rule: 'utilization', pool: 'sonnet-4', dimension: 'itpm', value: 0.93, threshold: 0.8, sinceMs: 1_000, firedAtMs: 121_000, summary: 'pool sonnet-4 itpm at 93.0%' },
};

/** A fetch that answers with the given statuses in turn and records each request. */
function fakeFetch(statuses: (number | Error)[]) {
  const calls: { url: string; init: RequestInit }[] = [];
  const fn = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    const next = statuses[Math.min(calls.length - 1, statuses.length - 1)]!;
    if (next instanceof Error) throw next;
    return new Response(null, { status: next });
  }) as typeof fetch;
  return { fn, calls };
}

describe('AlertNotifier', () => {
  it('logs each event as a structured line and posts it as JSON', async () => {
    const { logger, lines } = capture();
    const { fn, calls } = fakeFetch([204]);
    await new AlertNotifier({ logger, webhookUrl: WEBHOOK, fetch: fn }).notify([firing]);
    logger.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(lines.find((l) => l.event === 'alert.firing')).toMatchObject({ level: 40, alert: { id: 'utilization:sonnet-4:itpm', pool: 'sonnet-4' } });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.url).toBe(WEBHOOK);
    expect(calls[0]!.init.method).toBe('POST');
    expect(new Headers(calls[0]!.init.headers).get('content-type')).toBe('application/json');
    const body = JSON.parse(String(calls[0]!.init.body)) as AlertWebhookBody;
    expect(body).toEqual({ source: 'headroom', status: 'firing', alert: firing.alert, at: new Date(121_000).toISOString() });
  });

  it('retries 5xx and network errors, then logs the failure without the webhook URL', async () => {
    const { logger, lines, raw } = capture();
    const { fn, calls } = fakeFetch([503, new TypeError('fetch failed'), 502]);
    await new AlertNotifier({ logger, webhookUrl: WEBHOOK, fetch: fn, attempts: 3, retryDelayMs: 1 }).notify([firing]);
    logger.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toHaveLength(3);
    expect(lines.find((l) => l.event === 'alert.webhook_failed')).toMatchObject({ code: 'ALERT_WEBHOOK_FAILED', alertId: firing.alert.id, reason: 'HTTP 502' });
    expect(raw.join('\n')).not.toContain('XXXXSECRETXXXX');
  });

  it('never logs the URL when the last failure is an error whose message quotes it', async () => {
    const { logger, lines, raw } = capture();
    // What some fetch implementations and proxies' clients throw: the request URL in the message.
    const refused = new TypeError(`request to ${WEBHOOK} failed`, { cause: Object.assign(new Error(`connect ECONNREFUSED ${WEBHOOK}`), { code: 'ECONNREFUSED' }) });
    const { fn } = fakeFetch([refused]);
    await new AlertNotifier({ logger, webhookUrl: WEBHOOK, fetch: fn, attempts: 2, retryDelayMs: 1 }).notify([firing]);
    logger.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(lines.find((l) => l.event === 'alert.webhook_failed')).toMatchObject({ code: 'ALERT_WEBHOOK_FAILED', reason: 'network error (ECONNREFUSED)' });
    expect(raw.join('\n')).not.toContain('XXXXSECRETXXXX');
    expect(raw.join('\n')).not.toContain('hooks.example.test');
  });

  it('does not retry a 4xx', async () => {
    const { logger } = capture();
    const { fn, calls } = fakeFetch([400]);
    await new AlertNotifier({ logger, webhookUrl: WEBHOOK, fetch: fn, retryDelayMs: 1 }).notify([firing]);
    expect(calls).toHaveLength(1);
  });

  it('only logs when no webhook is configured', async () => {
    const { logger, lines } = capture();
    const { fn, calls } = fakeFetch([204]);
    const resolved: AlertEvent = { status: 'resolved', alert: { ...firing.alert, resolvedAtMs: 200_000 } };
    await new AlertNotifier({ logger, fetch: fn }).notify([resolved]);
    logger.flush();
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toHaveLength(0);
    expect(lines.find((l) => l.event === 'alert.resolved')).toMatchObject({ level: 30, alert: { resolvedAtMs: 200_000 } });
  });
});
