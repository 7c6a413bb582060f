/**
 * A batch entry's `custom_id` is the job id, so each result finds its own job. OpenAI takes any
 * string. Anthropic requires `^[a-zA-Z0-9_-]{1,64}$`, and our ids carry a dot (`batch.<uuid>`), so
 * they are escaped reversibly: `_` starts an escape (`_d` = `.`, `_u` = `_`, `_xHHHH` = any other
 * UTF-16 unit). `batch.<uuid>` becomes `batch_d<uuid>` (43 characters). An id whose escape would
 * pass 64 characters gets `_h` + a hash instead; that one is matched through the claim's own job
 * list (see `customIdMap`), never decoded.
 *
 * ```ts
 * customIdOf('anthropic', 'batch.4f1c…') // 'batch_d4f1c…'
 * jobIdOfCustomId('anthropic', 'batch_d4f1c…') // 'batch.4f1c…'
 * ```
 */
import { createHash } from 'node:crypto';
import type { Provider } from '@headroom/queue';

export const ANTHROPIC_CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_LENGTH = 64;
const PLAIN = /[A-Za-z0-9-]/;

function escapeId(id: string): string {
  let out = '';
  for (const ch of id) {
    if (PLAIN.test(ch)) out += ch;
    else if (ch === '.') out += '_d';
    else if (ch === '_') out += '_u';
    else for (let i = 0; i < ch.length; i++) out += `_x${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
  }
  return out;
}

export function customIdOf(provider: Provider, jobId: string): string {
  if (provider === 'openai') return jobId;
  const escaped = escapeId(jobId);
  if (escaped.length > 0 && escaped.length <= MAX_LENGTH) return escaped;
  // base64url stays inside Anthropic's alphabet; 40 characters keep 240 bits of the hash.
  return `_h${createHash('sha256').update(jobId).digest('base64url').slice(0, 40)}`;
}

/** The job id an escaped custom_id came from; undefined for a hashed one or anything malformed. */
export function jobIdOfCustomId(provider: Provider, customId: string): string | undefined {
  if (provider === 'openai') return customId;
  if (!ANTHROPIC_CUSTOM_ID.test(customId) || customId.startsWith('_h')) return undefined;
  let out = '';
  for (let i = 0; i < customId.length; i++) {
    const ch = customId[i]!;
    if (ch !== '_') {
      out += ch;
      continue;
    }
    const code = customId[i + 1];
    if (code === 'd') out += '.';
    else if (code === 'u') out += '_';
    else if (code === 'x') {
      const hex = customId.slice(i + 2, i + 6);
      if (!/^[0-9a-f]{4}$/.test(hex)) return undefined;
      out += String.fromCharCode(Number.parseInt(hex, 16));
      i += 4;
    } else return undefined;
    i += 1;
  }
  return out;
}

/** custom_id -> job id for the jobs of one claim: works for hashed ids too. */
export function customIdMap(provider: Provider, jobIds: Iterable<string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const id of jobIds) map.set(customIdOf(provider, id), id);
  return map;
}
