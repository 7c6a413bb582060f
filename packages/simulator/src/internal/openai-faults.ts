// Injected status faults as OpenAI answers them. Running out of credits and hitting the monthly
// spend limit are both a 429 `insufficient_quota` (OpenAI's error-codes guide); overload is a 503.
// OpenAI has no 529: a `status: 529` fault is sent as asked, for tests that want one anyway.

import type { ClientFaultStatus, StatusFaultAction } from './faults.js';
import type { Reply } from './http-exchange.js';
import { openaiError, openaiErrorBody } from './openai-request.js';
import type { QuotaSnapshot } from './quota.js';
import { exhaustRequests, openaiRateLimitHeaders } from './rate-limit-headers.js';

export const OVERLOADED_MESSAGE = 'The engine is currently overloaded, please try again later.';
const OVERLOADED = OVERLOADED_MESSAGE;

const SERVER_MESSAGES: Record<number, string> = {
  500: 'The server had an error while processing your request. Sorry about that!',
  502: 'Bad gateway.',
  503: OVERLOADED,
  529: 'The server is overloaded, please try again later.',
};

/** OpenAI's refusals (its error-codes guide): message, type, code. */
const CLIENT_ERRORS: Record<ClientFaultStatus, [message: string, type: string, code: string | null]> = {
  400: ['Invalid request: the request was refused as malformed.', 'invalid_request_error', null],
  401: ['Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', 'invalid_api_key'],
  403: ['You are not allowed to sample from this model.', 'invalid_request_error', 'model_not_found'],
  404: ['The model does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found'],
  413: ['Request too large: the request body exceeds the maximum size.', 'invalid_request_error', 'request_too_large'],
};

const INSUFFICIENT_QUOTA = 'You exceeded your current quota, please check your plan and billing details.';

export function openaiFaultReply(action: StatusFaultAction, snapshot: QuotaSnapshot): Reply {
  const headers = openaiRateLimitHeaders(snapshot);
  switch (action.kind) {
    case 'client': {
      const [message, type, code] = CLIENT_ERRORS[action.status];
      return openaiError(action.status, openaiErrorBody(message, type, null, code), headers);
    }
    case 'server':
      return openaiError(action.status, openaiErrorBody(SERVER_MESSAGES[action.status] ?? 'Server error.', 'server_error'), headers);
    case 'overloaded':
      return openaiError(503, openaiErrorBody(OVERLOADED, 'server_error'), headers);
    case 'spend-cap':
    case 'billing':
      return openaiError(429, openaiErrorBody(INSUFFICIENT_QUOTA, 'insufficient_quota', null, 'insufficient_quota'), headers);
    case 'rate-limit': {
      const body = openaiErrorBody('Rate limit reached (upstream).', 'requests', null, 'rate_limit_exceeded');
      if (action.retryAfterSeconds === null) return openaiError(429, body, openaiRateLimitHeaders(exhaustRequests(snapshot, action.resetMs)));
      return openaiError(429, body, { ...headers, 'retry-after': String(action.retryAfterSeconds) });
    }
  }
}
