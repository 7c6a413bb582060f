/** The paths and pages of GET /v1/models: a model id from its path, and Anthropic's pages of the list. */
import type { Dialect } from './dialects.js';

/** A path segment as the client meant it, or as sent when it is not valid percent-encoding (no such model then). */
export function decodedId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Anthropic's model list pages (`limit`, 1-1000, default 20; `after_id` / `before_id`, ids in the list); OpenAI's list is whole. */
const DEFAULT_PAGE = 20;
const MAX_PAGE = 1_000;

export function pageOf(models: readonly string[], query: URLSearchParams, dialect: Dialect): { models: readonly string[]; hasMore: boolean } | { error: { path: string; message: string } } {
  if (dialect.provider !== 'anthropic') return { models, hasMore: false };
  const limitText = query.get('limit');
  const limit = limitText === null ? DEFAULT_PAGE : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return { error: { path: 'limit', message: `expected an integer from 1 to ${MAX_PAGE}, got "${limitText}"` } };
  const after = query.get('after_id');
  const before = query.get('before_id');
  const at = (id: string, name: string) => {
    const i = models.indexOf(id);
    return i === -1 ? { error: { path: name, message: `no model "${id}" in this list` } } : i;
  };
  if (before !== null) {
    const end = at(before, 'before_id');
    if (typeof end !== 'number') return end;
    return { models: models.slice(Math.max(0, end - limit), end), hasMore: end - limit > 0 };
  }
  const start = after === null ? 0 : at(after, 'after_id');
  if (typeof start !== 'number') return start;
  const from = after === null ? 0 : start + 1;
  return { models: models.slice(from, from + limit), hasMore: from + limit < models.length };
}
