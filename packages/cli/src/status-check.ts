/**
 * `headroom status --check`: one read of the overview as a verdict for a health probe (a container
 * healthcheck, a Kubernetes exec probe, a cron line). The fleet is taking work unless one of these
 * holds, each a reason of its own: no live worker beats under the prefix; a lane is held back by
 * its queue's pause, global concurrency or rate limit (set from Bull Board); a lane is full (at
 * its cap, refusing new jobs QUEUE_FULL); an alert the dashboard would show as firing, by its own
 * rules, as far as one read can tell (`alertsFiringOnOneRead`). The same figures the table shows,
 * so the verdict and the table never disagree.
 */
import { alertsFiringOnOneRead, type Overview } from '@headroom/dashboard';
import type { HeadroomConfig, Lane } from '@headroom/queue';
import { holdOf, isFull } from './status-view.js';

export type CheckReasonCode = 'NO_LIVE_WORKER' | 'LANE_HELD' | 'LANE_FULL' | 'ALERT_FIRING';

export interface CheckReason {
  code: CheckReasonCode;
  lane?: Lane;
  /** The alert's stable id (`rate429`, `utilization:<pool>:<dimension>`). */
  alert?: string;
  /** One line, for stderr. */
  message: string;
}

/** Why the fleet is not taking work, in a stable order; empty when it is. */
export function checkReasons(o: Overview, alerts: HeadroomConfig['dashboard']['alerts']): CheckReason[] {
  const reasons: CheckReason[] = [];
  if (o.workers.length === 0) {
    const stopped = o.expiredWorkers.length > 0 ? `; stopped beating without a clean stop: ${o.expiredWorkers.join(', ')}` : '';
    reasons.push({ code: 'NO_LIVE_WORKER', message: `no live worker beats under redis.prefix "${o.prefix}": nothing takes jobs from the lanes${stopped}` });
  }
  for (const l of o.lanes) {
    const hold = holdOf(l.held);
    if (hold) reasons.push({ code: 'LANE_HELD', lane: l.lane, message: `lane ${l.lane} is held back: ${hold}` });
  }
  for (const l of o.lanes) {
    if (isFull(l)) reasons.push({ code: 'LANE_FULL', lane: l.lane, message: `lane ${l.lane} is full: ${l.queued} queued at its cap of ${l.cap}, new jobs are refused QUEUE_FULL` });
  }
  for (const a of alertsFiringOnOneRead(o, alerts)) {
    reasons.push({ code: 'ALERT_FIRING', alert: a.id, message: `alert firing: ${a.summary}` });
  }
  return reasons;
}
