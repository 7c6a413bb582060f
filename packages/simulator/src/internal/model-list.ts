// GET /v1/models and GET /v1/models/{id}, in each provider's shape, listing the models the
// simulator was started with (of the provider that asks). Both SDKs' `models.list()` and
// `models.retrieve()` read them; Anthropic's list pages by cursor as the API does.

import { anthropicError } from './anthropic-request.js';
import { type Exchange, json, type Reply } from './http-exchange.js';
import { modelNotFound, openaiError } from './openai-request.js';
import type { Provider, ResolvedModel } from './options.js';
import type { SimulatorState } from './state.js';

/**
 * The date a model was released is not something the simulator knows: the epoch, in each
 * provider's format (Anthropic's RFC 3339 `created_at`, OpenAI's unix-seconds `created`).
 */
const RELEASED_UNKNOWN = { rfc3339: '1970-01-01T00:00:00Z', unixSeconds: 0 };

/** Anthropic's page size: 20 unless asked, 1 to 1000 (its API reference). */
const DEFAULT_PAGE = 20;
const MAX_PAGE = 1000;

const LINES = ['haiku', 'sonnet', 'opus'] as const;

function modelsOf(state: SimulatorState, provider: Provider): ResolvedModel[] {
  return [...state.config.models.values()].filter((model) => model.provider === provider);
}

/** `claude-sonnet-4-6` -> `Claude Sonnet 4.6`, as Anthropic names its models; any other id as it is. */
function displayName(id: string): string {
  const match = /^claude-([a-z]+)-(\d+)-(\d+)$/.exec(id);
  if (!match) return id;
  const [, line = '', major, minor] = match;
  return `Claude ${line.charAt(0).toUpperCase()}${line.slice(1)} ${major}.${minor}`;
}

/**
 * Anthropic's ModelInfo with every field @anthropic-ai/sdk declares: what the simulator knows (its
 * limits as `max_input_tokens` / `max_tokens`, the line from the id) and null for what it does not.
 */
function anthropicModel(model: ResolvedModel) {
  return {
    type: 'model' as const,
    id: model.name,
    display_name: displayName(model.name),
    created_at: RELEASED_UNKNOWN.rfc3339,
    capabilities: null,
    deprecated_at: null,
    lifecycle: 'active' as const,
    line: LINES.find((line) => model.name.includes(`-${line}`)) ?? null,
    max_input_tokens: model.contextWindow,
    max_tokens: model.maxOutputTokens,
    retires_at: null,
  };
}

/** OpenAI's Model. `owned_by` is what OpenAI answers for its own models ("system"). */
function openaiModel(model: ResolvedModel) {
  return { id: model.name, object: 'model' as const, created: RELEASED_UNKNOWN.unixSeconds, owned_by: 'system' };
}

/**
 * One page of Anthropic's list: `limit` models after `after_id`, or before `before_id` (the page
 * that ends just before it). `has_more` says whether more lie in the direction asked.
 */
function anthropicPage(models: ResolvedModel[], query: URLSearchParams): Reply {
  const limitText = query.get('limit');
  const limit = limitText === null ? DEFAULT_PAGE : Number(limitText);
  // Out of range is refused as the API's schema refuses it; the wording is the simulator's.
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    return anthropicError(400, 'invalid_request_error', `limit: Input should be an integer from 1 to ${MAX_PAGE}`);
  }
  const indexOf = (name: 'after_id' | 'before_id'): number | Reply | undefined => {
    const id = query.get(name);
    if (id === null) return undefined;
    const index = models.findIndex((model) => model.name === id);
    return index === -1 ? anthropicError(400, 'invalid_request_error', `${name}: no model ${id} in the list`) : index;
  };
  const before = indexOf('before_id');
  const after = indexOf('after_id');
  if (typeof before === 'object') return before;
  if (typeof after === 'object') return after;
  let page: ResolvedModel[];
  let hasMore: boolean;
  if (before !== undefined) {
    page = models.slice(Math.max(0, before - limit), before);
    hasMore = before - limit > 0;
  } else {
    const from = after === undefined ? 0 : after + 1;
    page = models.slice(from, from + limit);
    hasMore = from + limit < models.length;
  }
  return json(200, {
    data: page.map(anthropicModel),
    has_more: hasMore,
    first_id: page[0]?.name ?? null,
    last_id: page.at(-1)?.name ?? null,
  });
}

export function handleListModels(state: SimulatorState, exchange: Exchange, provider: Provider): Reply {
  const models = modelsOf(state, provider);
  if (provider === 'anthropic') return anthropicPage(models, exchange.query);
  return json(200, { object: 'list', data: models.map(openaiModel) });
}

export function handleGetModel(state: SimulatorState, id: string, provider: Provider): Reply {
  const model = modelsOf(state, provider).find((m) => m.name === id);
  if (provider === 'anthropic') return model ? json(200, anthropicModel(model)) : anthropicError(404, 'not_found_error', `model: ${id}`);
  return model ? json(200, openaiModel(model)) : openaiError(404, modelNotFound(id));
}
