// The Headroom page: polls /api/overview and /api/recent-jobs and redraws. Every value from the
// server is written with textContent or setAttribute, never innerHTML: job metadata and model
// names are user data, and the page's CSP forbids inline script besides.

const POLL_MS = 2000;
const JOBS_POLL_MS = 5000;
const CHART_SPAN_MS = 10 * 60_000;
const SVG = 'http://www.w3.org/2000/svg';

/** Builds an element; string children become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

const nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const int = (n) => nf.format(Math.round(n));
const pct = (x) => `${(x * 100).toFixed(x !== 0 && Math.abs(x) < 0.01 ? 2 : 1)}%`;
const usd = (n) => `$${n < 1 ? n.toFixed(4) : n.toFixed(2)}`;
function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms <= 0) return 'now';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

function bar(u) {
  const cls = u >= 0.95 ? 'bar bad' : u >= 0.8 ? 'bar warn' : 'bar';
  const fill = el('i');
  fill.style.width = `${Math.max(0, Math.min(1, u)) * 100}%`;
  return el('span', { class: cls }, fill);
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

/** Samples the page has seen, newest last; the server sends only those after `since`. */
let samples = [];
let lastSampleAt = 0;
/** The time of the figures on the page (the last overview read), or null before the first. */
let shownAt = null;

/**
 * A line chart of `series` ([{ name, points: [[t, v], ...] }]) over the last `spanMs`.
 * `threshold` draws a dashed line (the alert level).
 */
function lineChart(node, series, { nowMs, yMax, format, threshold, spanMs = CHART_SPAN_MS }) {
  const W = 800;
  const H = 180;
  const L = 56;
  const R = 120;
  const T = 10;
  const B = 22;
  const from = nowMs - spanMs;
  const top = Math.max(yMax ?? 0, ...series.flatMap((s) => s.points.map((p) => p[1])), 1e-9);
  const x = (t) => L + ((Math.min(t, nowMs) - from) / spanMs) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const parts = [
    svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }),
    svg('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg('text', { x: L - 6, y: T + 10, 'text-anchor': 'end' }, format(top)),
    svg('text', { x: L - 6, y: H - B, 'text-anchor': 'end' }, format(0)),
    svg('text', { x: L, y: H - 6 }, `-${Math.round(spanMs / 60_000)} min`),
    svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'),
  ];
  if (threshold !== undefined && threshold <= top) parts.push(svg('line', { class: 'threshold', x1: L, x2: W - R, y1: y(threshold), y2: y(threshold) }));
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[0] >= from);
    const cls = `s${i % 5}`;
    if (pts.length > 0) parts.push(svg('polyline', { class: cls, points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ') }));
    parts.push(svg('text', { class: `legend ${cls}`, x: W - R + 8, y: T + 12 + i * 15 }, s.name));
  });
  node.replaceChildren(...parts);
}

function renderAlerts(alerts) {
  const section = document.getElementById('alerts');
  section.hidden = alerts.length === 0;
  // Since when: an alert raised at 3 am and one raised a minute ago read the same without it.
  document.getElementById('alert-list').replaceChildren(...alerts.map((a) => el('li', { 'data-alert': a.id }, `${a.summary} · since ${new Date(a.sinceMs).toLocaleTimeString()}`)));
}

function renderPools(pools, nowMs) {
  const root = document.getElementById('pools');
  const cards = pools.map((p) => {
    const rows = p.dimensions.map((d) =>
      el(
        'tr',
        { 'data-dimension': d.dimension },
        el('td', {}, d.dimension, d.source === 'learned' ? ' (learned)' : ''),
        el('td', { 'data-field': 'level' }, `${int(d.level)} / ${int(d.capacity)}`),
        el('td', { 'data-field': 'utilization' }, bar(d.utilization), pct(d.utilization)),
        el('td', { 'data-field': 'burn' }, d.burnPerSec === null ? '–' : `${int(d.burnPerSec * 60)}/min`),
        el('td', { 'data-field': 'exhaust' }, d.exhaustInMs === null ? 'not draining' : duration(d.exhaustInMs)),
        el('td', { 'data-field': 'full-in' }, duration(d.fullInMs)),
      ),
    );
    const notes = [];
    if (p.pressure !== null) notes.push(el('span', { 'data-field': 'pressure' }, `pressure ${pct(p.pressure)}`));
    for (const c of p.cooldowns) notes.push(el('span', { class: 'cooling' }, `${c.model} cooling down ${duration(c.remainingMs)}`));
    for (const t of p.throttles) {
      notes.push(
        el(
          'span',
          { class: `throttle ${t.state}`, 'data-throttle': t.model },
          `${t.model} throttle ${t.state}: admits ${pct(t.admitRatio)}, ${pct(t.successRatio)} of calls served, retry budget ${int(Math.max(0, t.retryBudgetLeft))} / ${int(t.retryBudget)} left`,
          t.state === 'open' ? ` (probes at ${int(t.allowedRpm)}/min)` : '',
        ),
      );
    }
    if (p.unbound.length > 0) notes.push(el('span', {}, `unbound: ${p.unbound.join(', ')}`));
    const chart = svg('svg', { class: 'chart small', viewBox: '0 0 800 180', role: 'img', 'aria-label': `utilization of ${p.pool}` });
    const series = p.dimensions.map((d) => ({
      name: d.dimension,
      points: samples.filter((s) => s.pools[p.pool]?.[d.dimension]).map((s) => [s.atMs, s.pools[p.pool][d.dimension].utilization]),
    }));
    lineChart(chart, series, { nowMs, yMax: 1, format: pct, threshold: 0.8 });
    return el(
      'article',
      { class: 'pool', 'data-pool': p.pool },
      el('h3', {}, p.pool),
      el('div', { class: 'meta' }, `${p.provider} · ${p.models.join(', ')}`),
      el(
        'table',
        { class: 'grid' },
        el('thead', {}, el('tr', {}, el('th', {}, 'dimension'), el('th', {}, 'level / capacity'), el('th', {}, 'utilization'), el('th', {}, 'burn'), el('th', {}, 'time to empty'), el('th', {}, 'full in'))),
        el('tbody', {}, ...rows),
      ),
      el('div', { class: 'notes' }, ...(notes.length > 0 ? notes : [el('span', {}, 'no cooldowns, no model called lately')])),
      chart,
    );
  });
  root.replaceChildren(...(cards.length > 0 ? cards : [el('p', { class: 'hint' }, 'No models in the config.')]));
}

/** What holds a lane back beside the quota: its BullMQ pause, global concurrency and rate limit (set from Bull Board). */
function holdOf(held) {
  const parts = [];
  if (held?.paused) parts.push('paused');
  if (held?.concurrency != null) parts.push(`≤ ${held.concurrency} running`);
  if (held?.rateLimit) parts.push(`≤ ${held.rateLimit.max} started / ${duration(held.rateLimit.durationMs)}`);
  return parts.join(' · ');
}

function renderLanes(lanes, nowMs) {
  const rows = lanes.map((l) =>
    el(
      'tr',
      { 'data-lane': l.lane },
      el('td', {}, l.lane.toUpperCase(), holdOf(l.held) ? el('span', { class: 'held', 'data-field': 'held', title: 'set on the lane in Bull Board: resume or clear it there' }, ` ${holdOf(l.held)}`) : ''),
      el('td', { 'data-field': 'cap' }, int(l.cap)),
      el('td', { 'data-field': 'queued' }, int(l.queued)),
      el('td', { 'data-field': 'running' }, int(l.running)),
      el('td', { 'data-field': 'done' }, int(l.done)),
      el('td', { 'data-field': 'failed' }, int(l.failed)),
      el('td', { 'data-field': 'shed' }, int(l.shed)),
      el('td', { 'data-field': 'shed-total' }, int(l.shedTotal)),
      el('td', { 'data-field': 'p95-wait' }, l.p95WaitMs === null ? '–' : `≤ ${duration(l.p95WaitMs)}`),
    ),
  );
  replaceRows(document.querySelector('#lanes tbody'), rows);
  const series = lanes.map((l) => ({ name: l.lane, points: samples.filter((s) => s.lanes[l.lane]).map((s) => [s.atMs, s.lanes[l.lane].queued]) }));
  lineChart(document.getElementById('lane-chart'), series, { nowMs, format: int });
}

function renderCalls(o) {
  document.getElementById('rate-window').textContent = String(o.calls.windowMinutes);
  document.getElementById('calls-total').textContent = int(o.calls.total);
  document.getElementById('calls-429').textContent = int(o.calls.calls429);
  document.getElementById('rate-429').textContent = pct(o.calls.rate429);
  // Which model the 429s come from, over the same window: the rate alone named none.
  const by429 = Object.entries(o.calls.byModel)
    .filter(([, byStatus]) => (byStatus['429'] ?? 0) > 0)
    .map(([model, byStatus]) => `${model} ${int(byStatus['429'])} of ${int(Object.values(byStatus).reduce((a, b) => a + b, 0))} calls`);
  document.getElementById('models-429').textContent = by429.length > 0 ? by429.join(', ') : '–';
  document.getElementById('cost-window').textContent = `${usd(o.cost.usdWindow)} / ${o.calls.windowMinutes} min`;
  document.getElementById('cost-rate').textContent = `${usd(o.cost.usdPerHour)} / h`;
  document.getElementById('window-minutes').textContent = String(o.windowMinutes);
  const at = (m) => m.minute * 60_000 + 30_000;
  const series = [
    { name: 'calls', points: o.minutes.map((m) => [at(m), m.calls]) },
    { name: '429s', points: o.minutes.map((m) => [at(m), m.calls429]) },
    { name: 'completed', points: o.minutes.map((m) => [at(m), m.completed]) },
  ];
  // Minutes are coarser than samples: show the whole window.
  lineChart(document.getElementById('calls-chart'), series, { nowMs: o.atMs, format: int, spanMs: o.windowMinutes * 60_000 });
}

/** Workers and gateways alike, from their heartbeats: one row each, `inFlight` as the kind shows it. */
function renderProcesses(table, attr, processes, inFlight) {
  replaceRows(
    document.querySelector(`${table} tbody`),
    processes.map((p) =>
      el(
        'tr',
        { [attr]: p.id },
        el('td', {}, p.id),
        el('td', {}, p.host),
        el('td', {}, String(p.pid)),
        el('td', {}, inFlight(p)),
        el('td', {}, `${duration(p.lastSeenMsAgo)} ago`),
      ),
    ),
  );
}

function renderJobs(jobs) {
  replaceRows(
    document.querySelector('#jobs tbody'),
    jobs.map((j) =>
      el(
        'tr',
        { 'data-job': j.id },
        el('td', { class: 'text' }, j.id),
        el('td', {}, j.lane),
        el('td', {}, j.name),
        el('td', {}, j.state),
        el('td', {}, String(j.attempts)),
        el('td', { class: 'text', 'data-field': 'metadata' }, j.metadata ?? ''),
        el('td', { class: 'text' }, j.failedReason ?? ''),
      ),
    ),
  );
}

function setStatus(text, error = false) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    // The server's sentence with its code ("Redis is not reachable (REDIS_UNAVAILABLE)"): the code alone read as jargon.
    const { code, message } = body?.error ?? {};
    throw new Error(code ? (message ? `${message} (${code})` : code) : `HTTP ${res.status}`);
  }
  return res.json();
}

async function refresh() {
  try {
    const o = await getJson(`/api/overview?since=${lastSampleAt}`);
    samples = samples.concat(o.samples).filter((s) => s.atMs >= o.atMs - CHART_SPAN_MS);
    if (o.samples.length > 0) lastSampleAt = o.samples[o.samples.length - 1].atMs;
    document.getElementById('read-only').hidden = !o.readOnly;
    renderAlerts(o.alerts);
    renderPools(o.pools, o.atMs);
    renderLanes(o.lanes, o.atMs);
    renderCalls(o);
    renderProcesses('#workers', 'data-worker', o.workers, (w) => `${w.inFlight} / ${w.concurrency}`);
    document.getElementById('gateways-section').hidden = o.gateways.length === 0;
    renderProcesses('#gateways', 'data-gateway', o.gateways, (g) => String(g.inFlight));
    document.body.dataset.updatedAt = String(o.atMs);
    shownAt = o.atMs;
    setStatus(`updated ${new Date(o.atMs).toLocaleTimeString()} · ${o.workers.length} worker(s)${o.gateways.length ? ` · ${o.gateways.length} gateway(s)` : ''}`);
  } catch (err) {
    // The figures below stay as last read: say how old they are, or they pass for current ones.
    setStatus(`update failed: ${err.message}${shownAt === null ? '' : `; figures as of ${new Date(shownAt).toLocaleTimeString()}`}`, true);
  }
}

async function refreshJobs() {
  try {
    renderJobs((await getJson('/api/recent-jobs')).jobs);
    document.body.dataset.jobsUpdatedAt = String(Date.now());
  } catch {
    // The overview's status line reports connectivity.
  }
}

/** Polls without overlap: the next poll is scheduled when this one ends. */
function loop(fn, ms) {
  const run = async () => {
    await fn();
    setTimeout(run, ms);
  };
  run();
}

loop(refresh, POLL_MS);
loop(refreshJobs, JOBS_POLL_MS);
