/**
 * Headroom's options ride in `headroom-*` request headers, so a request body stays exactly the
 * provider's. Each is checked here, and a bad one is named in a 400, like a bad body field.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Issue } from '@headroom/queue';
import type { LaneName } from './client-keys.js';

export interface HeadroomOptions {
  priority?: LaneName;
  tenant?: string;
  fallback?: string[];
  maxWaitMs?: number;
  idempotencyKey?: string;
  coalesce?: boolean;
  sla?: 'interactive' | 'none';
}

/** Headers the gateway reads; any other `headroom-*` header is refused (a typo would be silently ignored). */
export const HEADROOM_HEADERS = [
  'headroom-priority',
  'headroom-tenant',
  'headroom-fallback',
  'headroom-max-wait-ms',
  'headroom-idempotency-key',
  'headroom-coalesce',
  'headroom-sla',
] as const;

const PRIORITIES: readonly string[] = ['critical', 'high', 'normal', 'low'];
/**
 * No control character (a smuggled newline, a tab, NUL, DEL): refused in every header, never
 * passed on. Node hands a header's bytes over as latin1, one character per byte, so \x80-\xff
 * are the bytes of non-ASCII text (UTF-8's included, as curl sends it), not controls.
 */
const NO_CONTROL = /^[\x20-\x7e\x80-\u{10ffff}]*$/u;
/** Printable ASCII: what every header's value but the idempotency key is made of. */
const PRINTABLE = /^[\x20-\x7e]*$/;
/**
 * The idempotency key also takes latin1's other printable characters (a JS or Python client sends
 * "héllo" as those bytes): the key only feeds a SHA-256 job id (job-ids.ts), so any character
 * does, and the producer SDK takes any already.
 */
const KEY_HEADER = 'headroom-idempotency-key';
const MAX_WAIT_CAP_MS = 24 * 3600_000;

function one(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * The `headroom-*` headers of a request, checked. `ignore`: headers the request's key decides
 * (a key with its own tenant ignores `headroom-tenant`), neither read nor refused.
 */
export function readHeadroomHeaders(all: IncomingHttpHeaders, { ignore = [] }: { ignore?: readonly string[] } = {}): { options: HeadroomOptions; issues: Issue[] } {
  const issues: Issue[] = [];
  const options: HeadroomOptions = {};
  const bad = (path: string, message: string) => issues.push({ path, message });
  const headers = ignore.length === 0 ? all : Object.fromEntries(Object.entries(all).filter(([name]) => !ignore.includes(name)));

  for (const name of Object.keys(headers)) {
    if (name.startsWith('headroom-') && !(HEADROOM_HEADERS as readonly string[]).includes(name)) {
      bad(name, `unknown header; Headroom reads ${HEADROOM_HEADERS.join(', ')}`);
    }
  }
  for (const name of HEADROOM_HEADERS) {
    const value = one(headers, name);
    if (value === undefined) continue;
    if (!NO_CONTROL.test(value)) bad(name, 'holds a control character; expected printable characters');
    else if (name !== KEY_HEADER && !PRINTABLE.test(value)) bad(name, 'holds a non-ASCII character; expected printable ASCII');
  }
  if (issues.length > 0) return { options, issues };

  const priority = one(headers, 'headroom-priority')?.trim().toLowerCase();
  if (priority !== undefined) {
    if (PRIORITIES.includes(priority)) options.priority = priority as LaneName;
    else bad('headroom-priority', `expected critical, high, normal or low, got "${priority}"`);
  }
  const tenant = one(headers, 'headroom-tenant')?.trim();
  if (tenant !== undefined) {
    if (/^[\w.:@-]{1,128}$/.test(tenant)) options.tenant = tenant;
    else bad('headroom-tenant', `expected 1-128 characters of letters, digits, . : @ _ -, got "${tenant}"`);
  }
  const fallback = one(headers, 'headroom-fallback');
  // `none`: this call falls back nowhere, whatever the config's ladder for its model says.
  if (fallback?.trim().toLowerCase() === 'none') options.fallback = [];
  else if (fallback !== undefined) {
    const models = fallback.split(',').map((m) => m.trim());
    if (models.some((m) => m === '')) bad('headroom-fallback', `expected a comma-separated list of model names, or none, got "${fallback}"`);
    else if (models.length > 8) bad('headroom-fallback', `at most 8 models, got ${models.length}`);
    else options.fallback = models;
  }
  const maxWait = one(headers, 'headroom-max-wait-ms')?.trim();
  if (maxWait !== undefined) {
    const ms = /^\d{1,9}$/.test(maxWait) ? Number(maxWait) : Number.NaN;
    if (Number.isInteger(ms) && ms >= 1 && ms <= MAX_WAIT_CAP_MS) options.maxWaitMs = ms;
    else bad('headroom-max-wait-ms', `expected a whole number of milliseconds from 1 to ${MAX_WAIT_CAP_MS}, got "${maxWait}"`);
  }
  const idem = one(headers, KEY_HEADER);
  if (idem !== undefined) {
    if (idem.length >= 1 && idem.length <= 256) options.idempotencyKey = idem;
    else bad(KEY_HEADER, `expected 1-256 characters, got ${idem.length}`);
  }
  const coalesce = one(headers, 'headroom-coalesce')?.trim().toLowerCase();
  if (coalesce !== undefined) {
    if (coalesce === 'true' || coalesce === 'false') options.coalesce = coalesce === 'true';
    else bad('headroom-coalesce', `expected true or false, got "${coalesce}"`);
  }
  const sla = one(headers, 'headroom-sla')?.trim().toLowerCase();
  if (sla !== undefined) {
    if (sla === 'interactive' || sla === 'none') options.sla = sla;
    else bad('headroom-sla', `expected interactive or none, got "${sla}"`);
  }
  return { options, issues };
}

/** Where a job field came from, for naming it in an error: a header, or the body. */
export const HEADER_OF_FIELD: Record<string, string> = {
  priority: 'headroom-priority',
  tenant: 'headroom-tenant',
  fallback: 'headroom-fallback',
  maxWaitMs: 'headroom-max-wait-ms',
  idempotencyKey: 'headroom-idempotency-key',
  coalesce: 'headroom-coalesce',
  sla: 'headroom-sla',
  // Anthropic's own header, carried to the provider call as the job's betas.
  betas: 'anthropic-beta',
};
