/**
 * `headroom status` and the demo's live table: the dashboard's overview, as text. One source of
 * truth for what the fleet looks like (@headroom/dashboard's overview, read by `openOverviewReader`),
 * two renderings. Every figure counted over a window says which: the lanes' over the overview's
 * window, calls, 429s and cost together over the 429 alert window.
 */
import type { Overview } from '@headroom/dashboard';

const pad = (s: string | number, n: number) => String(s).padStart(n);
const ms = (v: number | null) => (v === null ? '-' : v >= 60_000 ? `${(v / 60_000).toFixed(1)}m` : v >= 1000 ? `${(v / 1000).toFixed(1)}s` : `${Math.round(v)}ms`);
const pct = (v: number) => `${Math.round(v * 100)}%`;

/**
 * A lane at its cap: the cap counts jobs not yet started, and a lane at it refuses new jobs
 * QUEUE_FULL, which a bare depth hid.
 */
export const isFull = (l: Overview['lanes'][number]): boolean => l.queued >= l.cap;

/** A lane's BullMQ pause, global concurrency and rate limit, in words; '' when none is set. */
export function holdOf(held: Overview['lanes'][number]['held']): string {
  const parts: string[] = [];
  if (held.paused) parts.push('paused: none of its jobs starts');
  if (held.concurrency !== null) parts.push(`at most ${held.concurrency} of its jobs running at once, fleet-wide`);
  if (held.rateLimit) parts.push(`at most ${held.rateLimit.max} of its jobs started per ${ms(held.rateLimit.durationMs)}`);
  return parts.join('; ');
}

export function renderStatus(o: Overview): string {
  const lines: string[] = [];
  const gateways = o.gateways.length > 0 ? `, ${o.gateways.length} gateway(s) (${o.gateways.reduce((n, g) => n + g.inFlight, 0)} requests in flight)` : '';
  lines.push(`Headroom fleet "${o.prefix}" — ${new Date(o.atMs).toISOString()} — ${o.workers.length} worker(s)${gateways}`);
  // An all-zero table read the same for a fleet whose workers all died, one never started, and a
  // status pointed at the wrong Redis or prefix: say that nothing takes jobs, and where it looked.
  if (o.workers.length === 0) {
    const stopped = o.expiredWorkers.length > 0 ? `; stopped beating without a clean stop: ${o.expiredWorkers.join(', ')}` : '';
    lines.push(`no live worker: nothing takes jobs from these lanes (none beats under redis.prefix "${o.prefix}" on this Redis${stopped})`);
  }
  lines.push('');
  lines.push(`lanes (done, failed, shed and p95 wait over the last ${o.windowMinutes} min; full: new jobs refused QUEUE_FULL)`);
  lines.push(`${'lane'.padEnd(10)}${pad('queued', 8)}${pad('cap', 8)}${pad('running', 9)}${pad('done', 8)}${pad('failed', 8)}${pad('shed', 7)}${pad('p95 wait', 10)}`);
  for (const l of o.lanes) {
    const full = isFull(l) ? '  full' : '';
    lines.push(`${l.lane.padEnd(10)}${pad(l.queued, 8)}${pad(l.cap, 8)}${pad(l.running, 9)}${pad(l.done, 8)}${pad(l.failed, 8)}${pad(l.shed, 7)}${pad(ms(l.p95WaitMs), 10)}${full}`);
  }
  // Set on a lane's queue from Bull Board, these stay until cleared and hold its jobs back whatever
  // the quota: without a word here a paused lane read as a fleet that had stopped taking work.
  for (const l of o.lanes) {
    const hold = holdOf(l.held);
    if (hold) lines.push(`${l.lane} is held back: ${hold} (set on the lane's queue, e.g. from Bull Board; resume or clear it there)`);
  }
  lines.push('');
  lines.push(`${'pool'.padEnd(22)}${'utilization by dimension'.padEnd(44)}${pad('pressure', 9)}  cooldowns`);
  for (const p of o.pools) {
    const dims = p.dimensions.map((d) => `${d.dimension} ${pct(d.utilization)}`).join('  ') + (p.unbound.length ? `  (${p.unbound.join(',')} unbound)` : '');
    const cool = p.cooldowns.map((c) => `${c.model} ${ms(c.remainingMs)}`).join(', ') || '-';
    lines.push(`${p.pool.padEnd(22)}${dims.padEnd(44)}${pad(p.pressure === null ? '-' : p.pressure.toFixed(2), 9)}  ${cool}`);
  }
  const throttles = o.pools.flatMap((p) => p.throttles ?? []);
  if (throttles.length > 0) {
    lines.push('');
    lines.push(`${'model (fleet-wide throttle)'.padEnd(30)}${'state'.padEnd(11)}${pad('admits', 7)}${pad('served', 8)}${pad('allowed', 11)}${pad('retry budget', 14)}`);
    for (const t of throttles) {
      lines.push(`${t.model.padEnd(30)}${t.state.padEnd(11)}${pad(pct(t.admitRatio), 7)}${pad(pct(t.successRatio), 8)}${pad(`${Math.round(t.allowedRpm)}/min`, 11)}${pad(`${Math.max(0, Math.floor(t.retryBudgetLeft))}/${Math.floor(t.retryBudget)}`, 14)}`);
    }
  }
  lines.push('');
  lines.push(`last ${o.calls.windowMinutes} min: calls ${o.calls.total}, 429s ${o.calls.calls429} (${(o.calls.rate429 * 100).toFixed(2)}%), cost $${o.cost.usdWindow.toFixed(4)} ($${o.cost.usdPerHour.toFixed(2)}/h)`);
  // A 429 rate alone did not say which model to look at.
  const by429 = Object.entries(o.calls.byModel)
    .filter(([, byStatus]) => (byStatus['429'] ?? 0) > 0)
    .map(([model, byStatus]) => `${model} ${byStatus['429']} of ${Object.values(byStatus).reduce((a, b) => a + b, 0)} calls`);
  if (by429.length > 0) lines.push(`429s by model: ${by429.join(', ')}`);
  return lines.join('\n');
}

/**
 * What `headroom status --watch` shows while it cannot read Redis: which Redis (its password
 * masked), since when and why, and how old the last figures it drew are, so a table left on
 * screen is never taken for the fleet as it is now.
 */
export function renderUnreachable(u: { redisUrl: string; failure: string; sinceMs: number; lastReadAtMs: number | undefined; nowMs: number; retryMs: number }): string {
  const figures = u.lastReadAtMs === undefined ? 'no figures read yet' : `the last figures are ${ms(u.nowMs - u.lastReadAtMs)} old (read at ${new Date(u.lastReadAtMs).toISOString()})`;
  return `Redis at ${u.redisUrl} unreachable since ${new Date(u.sinceMs).toISOString()}: ${u.failure}; ${figures}; trying again every ${ms(u.retryMs)}`;
}
