/**
 * Secrets out of everything a process writes: the one place that knows what a secret looks like.
 *
 * A process registers the secrets it holds (a worker its provider keys, the dashboard its webhook
 * URL) once, at start. From then on two choke points scrub them, whatever the call site:
 * - every log line, in the logger's output stream (`createLogger`), so an SDK error that quotes a
 *   provider's answer (a 401 echoing the request's `authorization` header, say) is cut wherever
 *   it is logged, the batch path's included;
 * - every command sent on a connection from `createRedis` / `duplicateFor`, so a key echoed into a
 *   failure reason, a job's progress or its result never reaches Redis, and so never a job, the
 *   dashboard or `headroom status`, which only read Redis.
 * Besides the registered values, anything shaped like a provider key or a bearer token is cut
 * from log lines and from the messages a worker keeps (a proxy may echo a key we never held).
 *
 * ```ts
 * registerSecret(process.env.ANTHROPIC_API_KEY);
 * redactSecrets('401: {"authorization":"Bearer sk-ant-..."}'); // '401: {"authorization":"Bearer [redacted]"}'
 * ```
 */

export const REDACTED = '[redacted]';

/** Provider keys (`sk-ant-...`, `sk-proj-...`, `pk-`/`rk-`), whatever their owner. */
const KEY_SHAPED = /\b(?:sk|pk|rk)-[A-Za-z0-9_-]{12,}/g;
/** A bearer credential as an `authorization` header carries it. */
const BEARER = /\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi;
/** `"x-api-key": "..."` and `x-api-key: ...`, as headers are echoed in JSON or in text. */
const API_KEY_HEADER = /((?:x-api-key|api-key)"?\s*[:=]\s*"?)[^\s",}]{8,}/gi;

/** The password of a URL (`//user:pw@host`, `//:pw@host`): the rest of the URL says where, and stays. */
const URL_PASSWORD = /(\/\/[^/@:\s]*:)[^/\s]+@/g;
/**
 * A password in a URL's query: ioredis copies every query parameter into its options, so
 * `redis://host?password=pw` authenticates as surely as `redis://:pw@host` (and
 * `sentinelPassword=` is read the same way). Any parameter whose name ends in "password" counts.
 * The value stops at the next parameter, fragment, space or quote, as a URL is quoted in a message.
 */
const URL_QUERY_PASSWORD = /([?&][A-Za-z_]*password=)[^&#\s"'`]+/gi;

/** Shorter values are too likely to occur by chance to be cut everywhere. */
const MIN_SECRET_LENGTH = 8;

const secrets = new Set<string>();
// Longest first, so a secret that contains another is cut whole.
let ordered: string[] = [];

/**
 * Adds a value this process holds that must never be written anywhere. Empty, missing or very
 * short values are ignored (they would cut ordinary text). Returns whether it was registered.
 */
export function registerSecret(value: string | undefined): boolean {
  if (value === undefined || value.length < MIN_SECRET_LENGTH || secrets.has(value)) return false;
  secrets.add(value);
  ordered = [...secrets].sort((a, b) => b.length - a.length);
  return true;
}

/** The registered secrets, longest first (a stream's relay looks for them across events). */
export function registeredSecrets(): readonly string[] {
  return ordered;
}

/** Whether any secret is registered: the connection scrub costs nothing until one is. */
export function hasRegisteredSecrets(): boolean {
  return ordered.length > 0;
}

/** Cuts the registered secrets only (exact values): what Redis commands get. */
export function redactRegistered(text: string): string {
  let out = text;
  for (const secret of ordered) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  return out;
}

/** Cuts the registered secrets and anything shaped like a key or a bearer token. */
export function redactSecrets(text: string): string {
  return redactRegistered(text).replace(KEY_SHAPED, REDACTED).replace(BEARER, `$1${REDACTED}`).replace(API_KEY_HEADER, `$1${REDACTED}`);
}

/**
 * `text` with every URL's password (userinfo or query) replaced by `***`: a Redis URL named in an error (which server
 * could not be read) or in the demo's banner, where the URL is worth showing and its password never.
 */
export function maskUrlPasswords(text: string): string {
  // The query first: a password there may hold an '@' the userinfo pattern would read as its end.
  return text.replace(URL_QUERY_PASSWORD, '$1***').replace(URL_PASSWORD, '$1***@');
}

/** Whether `url` carries a password, in its userinfo or its query (what `maskUrlPasswords` would mask). */
export function urlHasPassword(url: string): boolean {
  return maskUrlPasswords(url) !== url;
}

/** One entry of a provider's per-token list (OpenAI's `logprobs`): its text and, optionally, its UTF-8 bytes. */
interface TokenEntry {
  token: string;
  bytes?: unknown;
  top_logprobs?: unknown;
}

/** One entry of a per-token list (a logprobs entry): an object with a string `token`. */
export const isTokenEntry = (v: unknown): v is TokenEntry => typeof v === 'object' && v !== null && typeof (v as { token?: unknown }).token === 'string';

/**
 * A registered secret spelled out by a list of tokens. OpenAI's `logprobs` list each token of an
 * answer on its own (`{ token, bytes, logprob, top_logprobs }`): a key the provider echoed is whole
 * in the answer's text, where the Redis scrub cuts it, and in pieces in its logprobs, each piece
 * passing the scrub (and `bytes` spelling it as numbers). Every array of such entries is read as
 * one text, and so is each rank of their `top_logprobs` (the first alternative is mostly the token
 * itself): the tokens a secret overlaps are cut as the text is (`[redacted]` where it began), their
 * `bytes` made the cut token's. `value` itself comes back when no secret is there.
 */
export function cutSecretTokens<T>(value: T, secrets: readonly string[] = ordered): T {
  if (secrets.length === 0 || value === null || typeof value !== 'object') return value;
  // Copied only where something was cut: every streamed answer passes here, nearly all untouched.
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item, i) => {
      const cut = cutSecretTokens(item, secrets);
      if (cut === item) return;
      out ??= [...value];
      out[i] = cut;
    });
    const items = out ?? value;
    const cut = items.length > 0 && items.every(isTokenEntry) ? cutSequence(items as TokenEntry[], secrets) : items;
    return cut as T;
  }
  let copy: Record<string, unknown> | undefined;
  for (const [key, v] of Object.entries(value)) {
    const cut = cutSecretTokens(v, secrets);
    if (cut === v) continue;
    copy ??= { ...(value as Record<string, unknown>) };
    copy[key] = cut;
  }
  return (copy ?? value) as T;
}

/** The entries with the secrets their joined tokens spell cut; each rank of their `top_logprobs` likewise. */
function cutSequence(entries: TokenEntry[], secrets: readonly string[]): TokenEntry[] {
  let out = cutTokens(entries, secrets);
  const ranks = Math.max(0, ...out.map((e) => (Array.isArray(e.top_logprobs) ? e.top_logprobs.length : 0)));
  for (let rank = 0; rank < ranks; rank++) {
    const at = out.map((e, i) => ({ i, alt: Array.isArray(e.top_logprobs) ? (e.top_logprobs[rank] as unknown) : undefined })).filter((x): x is { i: number; alt: TokenEntry } => isTokenEntry(x.alt));
    const cut = cutTokens(
      at.map((x) => x.alt),
      secrets,
    );
    at.forEach((x, k) => {
      if (cut[k] === x.alt) return;
      const top = [...(out[x.i]!.top_logprobs as unknown[])];
      top[rank] = cut[k];
      if (out === entries) out = [...entries];
      out[x.i] = { ...out[x.i]!, top_logprobs: top };
    });
  }
  return out;
}

function cutTokens(entries: TokenEntry[], secrets: readonly string[]): TokenEntry[] {
  const text = entries.map((e) => e.token).join('');
  const cuts: [start: number, end: number][] = [];
  for (const secret of secrets) {
    for (let at = text.indexOf(secret); at !== -1; at = text.indexOf(secret, at + secret.length)) cuts.push([at, at + secret.length]);
  }
  if (cuts.length === 0) return entries;
  cuts.sort((a, b) => a[0] - b[0]);
  let pos = 0;
  const marked = new Set<number>();
  return entries.map((entry) => {
    const from = pos;
    const to = pos + entry.token.length;
    pos = to;
    let token = '';
    let at = from;
    for (const [i, [start, end]] of cuts.entries()) {
      if (end <= at || start >= to) continue;
      token += text.slice(at, Math.max(at, start));
      if (!marked.has(i)) token += REDACTED;
      marked.add(i);
      at = Math.min(end, to);
    }
    if (at === from) return entry;
    token += text.slice(at, to);
    return { ...entry, token, ...(Array.isArray(entry.bytes) ? { bytes: [...Buffer.from(token, 'utf8')] } : {}) };
  });
}
