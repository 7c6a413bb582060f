/**
 * The gateway's own client keys: each configured by name with the environment variable holding
 * its value, the tenant its requests run as and the lanes it may use. A request authenticates
 * with the provider's own header (`x-api-key`, or `Authorization: Bearer`), so an official SDK
 * sends it unchanged; the presented key is compared with every configured one in constant time
 * (hashes of both, `timingSafeEqual`, no early exit), so response timing says nothing about
 * which bytes matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError, registerSecret, type GatewayKeyConfig, type HeadroomConfig, type Issue } from '@headroom/queue';

export type LaneName = 'critical' | 'high' | 'normal' | 'low';
const RANK: Record<LaneName, number> = { low: 0, normal: 1, high: 2, critical: 3 };

export interface ClientKey {
  name: string;
  tenant?: string;
  defaultPriority: LaneName;
  maxPriority: LaneName;
}

interface Entry {
  digest: Buffer;
  key: ClientKey;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

export class ClientKeys {
  readonly #entries: Entry[];

  private constructor(entries: Entry[]) {
    this.#entries = entries;
  }

  /**
   * Reads every key's value from the environment. Throws `ConfigError` naming each unset
   * variable, a config with no keys (every request would be refused), and two keys with one value.
   * Each value is registered as a secret of the process (redaction.ts), as a worker's provider
   * keys are: a refusal quotes what the request sent (a header's value, a model id), the gateway
   * logs its refusals, and a key a client put in the wrong place (`headroom-tenant: <key>`, the
   * model) was logged, or stored in Redis as a tenant's name; now it is cut out of both.
   */
  static fromConfig(config: HeadroomConfig, env: NodeJS.ProcessEnv): ClientKeys {
    const issues: Issue[] = [];
    const entries: Entry[] = [];
    const seen = new Map<string, string>();
    const keys = Object.entries(config.gateway.keys) as [string, GatewayKeyConfig][];
    if (keys.length === 0) issues.push({ path: 'gateway.keys', message: 'no client keys: every request would be refused; add at least one' });
    for (const [name, cfg] of keys) {
      const value = env[cfg.keyEnv]?.trim();
      if (!value) {
        issues.push({ path: `gateway.keys.${name}.keyEnv`, message: `environment variable ${cfg.keyEnv} is not set` });
        continue;
      }
      if (value.length < 16) {
        issues.push({ path: `gateway.keys.${name}.keyEnv`, message: `the key in ${cfg.keyEnv} is shorter than 16 characters` });
        continue;
      }
      const twin = seen.get(value);
      if (twin !== undefined) {
        issues.push({ path: `gateway.keys.${name}.keyEnv`, message: `holds the same key as gateway.keys.${twin}: each client key must be its own` });
        continue;
      }
      seen.set(value, name);
      registerSecret(value);
      entries.push({
        digest: digest(value),
        key: { name, ...(cfg.tenant === undefined ? {} : { tenant: cfg.tenant }), defaultPriority: cfg.defaultPriority, maxPriority: cfg.maxPriority },
      });
    }
    if (issues.length > 0) throw new ConfigError('(gateway keys)', issues);
    return new ClientKeys(entries);
  }

  /** The key a request presented, or undefined. Looks at every key whatever matches. */
  authenticate(presented: string | undefined): ClientKey | undefined {
    if (presented === undefined || presented === '') return undefined;
    const d = digest(presented);
    let found: ClientKey | undefined;
    for (const entry of this.#entries) if (timingSafeEqual(d, entry.digest)) found = entry.key;
    return found;
  }
}

/** The lane a request runs in: asked for (or the key's default), never above the key's highest. */
export function laneFor(key: ClientKey, asked: LaneName | undefined): LaneName {
  const wanted = asked ?? key.defaultPriority;
  return RANK[wanted] > RANK[key.maxPriority] ? key.maxPriority : wanted;
}

/** What a request's auth headers present: a key, none, or two that disagree. */
export type Presented = { key: string } | { missing: true } | { conflict: string };

/**
 * The key in the provider's own auth header: `x-api-key` or `Authorization: Bearer <key>`. Both
 * present must agree, and each must come once: Node keeps the first of two `authorization`
 * headers and joins two `x-api-key`s, so a valid key beside a wrong one passed (or failed) by
 * which came first, and a client sending two credentials by mistake was never told. An
 * Authorization that is not a Bearer (a proxy's Basic) is not a key of ours.
 */
export function presentedKey(headers: { 'x-api-key'?: string[] | undefined; authorization?: string[] | undefined }): Presented {
  const xs = headers['x-api-key'] ?? [];
  const bearers = (headers.authorization ?? []).flatMap((auth) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? [m[1] as string] : [];
  });
  if (xs.length > 1) return { conflict: 'x-api-key sent more than once' };
  if (bearers.length > 1) return { conflict: 'Authorization: Bearer sent more than once' };
  const x = xs[0] === '' ? undefined : xs[0];
  const bearer = bearers[0];
  if (x !== undefined && bearer !== undefined && x !== bearer) return { conflict: 'x-api-key and Authorization: Bearer hold different keys' };
  const key = x ?? bearer;
  return key === undefined ? { missing: true } : { key };
}
