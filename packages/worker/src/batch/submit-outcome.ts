/**
 * A failed batch create, as `runSdkCall` classifies it, -> what the batcher may do next. The line
 * that matters: a refusal with a status proves no batch was made; no answer (or a 5xx) proves
 * nothing, so the batch must be looked for before any resubmission.
 */
import type { ProviderCallFailure } from '../providers/types.js';
import type { SubmitOutcome } from './batch-api.js';
import { FailureCode, jobFailure } from '@headroom/queue';

/** A 429 without retry-after (a spend cap) does not clear soon: try again much later. */
const SPEND_CAP_RETRY_MS = 10 * 60_000;
const RATE_LIMIT_RETRY_MS = 30_000;

export function submitOutcomeOf(failure: ProviderCallFailure): SubmitOutcome {
  switch (failure.kind) {
    case 'rate_limit':
      return { kind: 'retry', afterMs: failure.retryAfterMs ?? RATE_LIMIT_RETRY_MS, reason: failure.message };
    case 'spend_cap':
      return { kind: 'retry', afterMs: SPEND_CAP_RETRY_MS, reason: failure.message };
    case 'invalid_request':
    case 'auth':
    case 'not_found':
      return { kind: 'rejected', failure: jobFailure(FailureCode.PROVIDER_REJECTED, `${failure.status ?? 'local'} ${failure.message}`) };
    default:
      // 5xx, 529, a 200 we could not read, a cut or timed-out connection: the batch may exist.
      return { kind: 'uncertain', reason: `${failure.status ?? 'network'} ${failure.kind}: ${failure.message}` };
  }
}
