/**
 * Sends alert events: a structured log line always, and a JSON POST to the webhook when one is
 * configured. The webhook URL is a secret (most embed a token), so it is never logged: a failed
 * attempt is described by its status or its error's code, never by an error message, which may
 * quote the URL; and the URL is registered as a secret, so the logger cuts it from any line.
 */
import { registerSecret, type Logger } from '@headroom/queue';
import type { AlertEvent } from './alerts.js';

export interface AlertNotifierOptions {
  logger: Logger;
  webhookUrl?: string | undefined;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Per attempt. @default 5000 */
  timeoutMs?: number;
  /** @default 3 */
  attempts?: number;
  /** Between attempts. @default 1000 */
  retryDelayMs?: number;
}

/** The webhook's JSON body: one event. */
export interface AlertWebhookBody {
  source: 'headroom';
  status: 'firing' | 'resolved';
  alert: AlertEvent['alert'];
  /** ISO time of the evaluation that produced the event. */
  at: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class AlertNotifier {
  readonly #o: AlertNotifierOptions;

  constructor(options: AlertNotifierOptions) {
    this.#o = options;
    registerSecret(options.webhookUrl);
  }

  get hasWebhook(): boolean {
    return Boolean(this.#o.webhookUrl);
  }

  async notify(events: readonly AlertEvent[]): Promise<void> {
    for (const e of events) {
      const fields = { event: `alert.${e.status}`, alert: e.alert };
      if (e.status === 'firing') this.#o.logger.warn(fields, `alert firing: ${e.alert.summary}`);
      else this.#o.logger.info(fields, `alert resolved: ${e.alert.summary}`);
      if (this.#o.webhookUrl) await this.#post(e);
    }
  }

  async #post(e: AlertEvent): Promise<void> {
    const doFetch = this.#o.fetch ?? fetch;
    const at = e.status === 'firing' ? e.alert.firedAtMs : (e.alert.resolvedAtMs ?? e.alert.firedAtMs);
    const body: AlertWebhookBody = { source: 'headroom', status: e.status, alert: e.alert, at: new Date(at).toISOString() };
    const attempts = this.#o.attempts ?? 3;
    let last = '';
    for (let i = 1; i <= attempts; i++) {
      try {
        const res = await doFetch(this.#o.webhookUrl!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5_000),
        });
        // Drain the body so the connection can be reused.
        await res.arrayBuffer().catch(() => {});
        if (res.ok) return;
        last = `HTTP ${res.status}`;
        // A 4xx says the request is wrong: another attempt would be refused the same way.
        if (res.status < 500 && res.status !== 429) break;
      } catch (err) {
        last = describeFailure(err);
      }
      if (i < attempts) await sleep(this.#o.retryDelayMs ?? 1_000);
    }
    this.#o.logger.error({ event: 'alert.webhook_failed', code: 'ALERT_WEBHOOK_FAILED', alertId: e.alert.id, status: e.status, reason: last }, 'alert webhook failed');
  }
}

/**
 * A failed fetch in words that cannot carry the URL: `timed out`, or the network error's code
 * (`ECONNREFUSED`, `ENOTFOUND`, `UND_ERR_...`) from its cause chain.
 */
function describeFailure(err: unknown): string {
  if ((err as Error | undefined)?.name === 'TimeoutError') return 'timed out';
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code)) return `network error (${code})`;
  }
  return `network error (${err instanceof Error ? err.name : typeof err})`;
}
