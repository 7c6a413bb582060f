// Injected status faults as Anthropic answers them. Bodies and statuses follow Anthropic's errors
// and rate-limits pages: a tier's monthly spend cap is a 429 `rate_limit_error` that carries
// `details.error_code: enforced_spend_limit_reached` and no `retry-after`; a billing problem is a
// 402 `billing_error`; overload is 529 `overloaded_error`.

import { anthropicError, type AnthropicErrorType } from './anthropic-request.js';
import type { ClientFaultStatus, StatusFaultAction } from './faults.js';
import type { Reply } from './http-exchange.js';
import type { QuotaSnapshot } from './quota.js';
import { anthropicRateLimitHeaders, exhaustRequests } from './rate-limit-headers.js';

/** 00:00 UTC on the first day of the next month, when a monthly spend cap lifts. */
function nextMonthUtc(now: number): string {
  const date = new Date(now);
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1)).toISOString().slice(0, 10);
}

/** Anthropic's error type and message for each refusal it answers with a 4xx (its errors page). */
const CLIENT_ERRORS: Record<ClientFaultStatus, [type: AnthropicErrorType, message: string]> = {
  400: ['invalid_request_error', 'There was an issue with the format or content of your request.'],
  401: ['authentication_error', 'invalid x-api-key'],
  403: ['permission_error', 'Your API key does not have permission to use the specified resource.'],
  404: ['not_found_error', 'The requested resource could not be found.'],
  413: ['request_too_large', 'Request exceeds the maximum allowed number of bytes.'],
};

export function anthropicFaultReply(action: StatusFaultAction, snapshot: QuotaSnapshot, now: number): Reply {
  const headers = anthropicRateLimitHeaders(snapshot, now);
  switch (action.kind) {
    case 'client':
      return anthropicError(action.status, ...CLIENT_ERRORS[action.status], headers);
    case 'server':
      return anthropicError(action.status, action.status === 529 ? 'overloaded_error' : 'api_error', action.status === 529 ? 'Overloaded' : 'Internal server error', headers);
    case 'overloaded':
      return anthropicError(529, 'overloaded_error', 'Overloaded', headers);
    case 'billing':
      return anthropicError(402, 'billing_error', 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.', headers);
    case 'spend-cap':
      return anthropicError(
        429,
        'rate_limit_error',
        `You have reached your API usage limits: your organization has crossed its monthly API usage threshold, set based on your organization's API tier. You will regain access on ${nextMonthUtc(now)} at 00:00 UTC.`,
        headers,
        'enforced_spend_limit_reached',
      );
    case 'rate-limit': {
      if (action.retryAfterSeconds === null) {
        return anthropicError(429, 'rate_limit_error', 'Rate limited by upstream traffic.', anthropicRateLimitHeaders(exhaustRequests(snapshot, action.resetMs), now));
      }
      return anthropicError(429, 'rate_limit_error', 'Rate limited by upstream traffic.', { ...headers, 'retry-after': String(action.retryAfterSeconds) });
    }
  }
}
