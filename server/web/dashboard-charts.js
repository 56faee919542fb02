// The dashboard's charts, drawn as inline SVG with no library: spend
// against the budget over time, reviewers' time to decision, a task
// progress bar, and the latest failures. The same file is served to the
// dashboard (/static/dashboard-charts.js) and copied whole into the
// self-contained report that `conductor mission report --html` writes, so
// it imports nothing and fetches nothing; it only builds elements.
//
// Everything it shows comes from the journal (case ids, failure
// messages): it is set as text (textContent, SVG attributes), never
// parsed as HTML.
//
// The data are `engine::series::View` (GET /api/missions/{id}/series) and
// the counts of GET /api/missions.

/** The SVG namespace: an identifier for createElementNS, never fetched. */
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Chart size in SVG units; it scales to its box (viewBox). */
const CHART_WIDTH = 640;
const CHART_HEIGHT = 240;
const MARGIN = { top: 18, right: 18, bottom: 34, left: 64 };
/** Latency buckets shown at least, so a single short wait still has a scale. */
const LATENCY_BUCKETS_SHOWN_MIN = 6;

/** An element of `tag` (HTML) with attributes and children (text or nodes). */
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element of `tag`; attributes are set as given. */
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name === 'class') node.setAttribute('class', value);
    else if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// ------------------------------------------------------------ formats

/** A duration in microseconds, as a person reads it. */
export function formatDuration(us) {
  if (us === null || us === undefined || !Number.isFinite(us)) return '–';
  const s = us / 1e6;
  if (s < 1) return `${Math.round(us / 1e3)} ms`;
  if (s < 120) return `${+s.toFixed(1)} s`;
  if (s < 7200) return `${+(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${+(s / 3600).toFixed(1)} h`;
  return `${+(s / 86400).toFixed(1)} d`;
}

/** A bucket bound: "1s", "5min", "2d" (short, for an axis). */
function formatBound(us) {
  const s = us / 1e6;
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${s / 60}min`;
  if (s < 86400) return `${s / 3600}h`;
  return `${s / 86400}d`;
}

/** A budget amount with thousands separators. */
export function formatAmount(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

/** A journal time (Unix µs) as local date and time. */
export function formatTime(us, { withDate = true } = {}) {
  if (!Number.isFinite(us)) return '–';
  const date = new Date(us / 1e3);
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return withDate ? `${date.toLocaleDateString()} ${time}` : time;
}

/** A round step near `span / count`: 1, 2 or 5 times a power of ten. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  return Math.max(step, 1);
}

function frame(className, label) {
  return svg('svg', {
    class: `chart ${className}`,
    viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`,
    role: 'img',
    'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet',
  });
}

function emptyChart(className, label, text) {
  const chart = frame(className, label);
  chart.append(svg('text', { class: 'empty-text', x: CHART_WIDTH / 2, y: CHART_HEIGHT / 2, 'text-anchor': 'middle', text }));
  return chart;
}

/** Horizontal grid lines and their labels for 0..max, in `step`s. */
function yGrid(chart, max, step, y, format) {
  for (let v = 0; v <= max + 1e-9; v += step) {
    const at = y(v);
    chart.append(
      svg('line', { class: 'grid', x1: MARGIN.left, x2: CHART_WIDTH - MARGIN.right, y1: at, y2: at }),
      svg('text', { class: 'tick', x: MARGIN.left - 6, y: at + 4, 'text-anchor': 'end', text: format(v) }),
    );
  }
}

// -------------------------------------------------------------- spend

/**
 * Cumulative settled spend (a line over a shaded area) and the limit in
 * force (a dashed step line), over the mission's time; one circle per
 * point, its title giving the numbers.
 */
export function spendChart(series) {
  const points = series?.spend ?? [];
  const label = 'Spend against the budget over time';
  if (points.length === 0) return emptyChart('spend-chart', label, 'Nothing recorded yet');
  const plotW = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const plotH = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const t0 = points[0].t_us;
  const t1 = Math.max(points[points.length - 1].t_us, t0 + 1e6);
  const top = Math.max(1, ...points.map((p) => Math.max(p.settled, p.limit)));
  const step = niceStep(top, 4);
  const yMax = Math.ceil((top * 1.05) / step) * step;
  const x = (t) => MARGIN.left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v) => MARGIN.top + plotH - (v / yMax) * plotH;
  const chart = frame('spend-chart', label);
  chart.dataset.points = String(points.length);
  yGrid(chart, yMax, step, y, formatAmount);

  // The limit: a step after each change.
  let limitPath = `M${x(points[0].t_us)},${y(points[0].limit)}`;
  for (const p of points.slice(1)) limitPath += ` H${x(p.t_us)} V${y(p.limit)}`;
  chart.append(svg('path', { class: 'limit-line', d: limitPath }));

  const line = points.map((p) => `${x(p.t_us)},${y(p.settled)}`).join(' ');
  const base = y(0);
  chart.append(
    svg('path', { class: 'spend-area', d: `M${x(t0)},${base} L${line.replaceAll(' ', ' L')} L${x(points[points.length - 1].t_us)},${base} Z` }),
    svg('polyline', { class: 'spend-line', points: line }),
  );
  const withDate = t1 - t0 > 86400e6;
  for (const p of points) {
    chart.append(
      svg(
        'circle',
        { class: 'point', cx: x(p.t_us), cy: y(p.settled), r: points.length > 60 ? 1.5 : 3 },
        svg('title', { text: `${formatTime(p.t_us)}: ${formatAmount(p.settled)} settled of ${formatAmount(p.limit)}` }),
      ),
    );
  }
  // Time axis: start, middle, end.
  const axisY = CHART_HEIGHT - MARGIN.bottom + 16;
  [
    [t0, 'start'],
    [(t0 + t1) / 2, 'middle'],
    [t1, 'end'],
  ].forEach(([t, anchor]) => {
    chart.append(svg('text', { class: 'tick', x: x(t), y: axisY, 'text-anchor': anchor, text: formatTime(t, { withDate }) }));
  });
  // Legend.
  const lx = MARGIN.left + 8;
  chart.append(
    svg('line', { class: 'spend-line', x1: lx, x2: lx + 18, y1: MARGIN.top + 6, y2: MARGIN.top + 6 }),
    svg('text', { class: 'legend', x: lx + 24, y: MARGIN.top + 10, text: 'settled' }),
    svg('line', { class: 'limit-line', x1: lx + 90, x2: lx + 108, y1: MARGIN.top + 6, y2: MARGIN.top + 6 }),
    svg('text', { class: 'legend', x: lx + 114, y: MARGIN.top + 10, text: 'limit' }),
  );
  return chart;
}

// ------------------------------------------------------------ latency

/** Reviewers' time to decision: one bar per bucket, counts on the axis. */
export function latencyChart(latency) {
  const label = 'Time from a gate request to its decision';
  const buckets = latency?.buckets ?? [];
  if (!latency || latency.decided === 0) return emptyChart('latency-chart', label, 'No gate decided yet');
  let last = 0;
  buckets.forEach((b, i) => {
    if (b.count > 0) last = i;
  });
  const shown = buckets.slice(0, Math.min(buckets.length, Math.max(last + 1, LATENCY_BUCKETS_SHOWN_MIN)));
  const plotW = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const plotH = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const top = Math.max(1, ...shown.map((b) => b.count));
  const step = niceStep(top, 4);
  const yMax = Math.ceil(top / step) * step;
  const y = (v) => MARGIN.top + plotH - (v / yMax) * plotH;
  const slot = plotW / shown.length;
  const chart = frame('latency-chart', label);
  yGrid(chart, yMax, step, y, (v) => String(v));
  shown.forEach((b, i) => {
    const left = MARGIN.left + i * slot;
    const name = b.le_us === null ? `over ${formatBound(buckets[buckets.length - 2]?.le_us ?? 0)}` : `≤ ${formatBound(b.le_us)}`;
    if (b.count > 0) {
      chart.append(
        svg(
          'rect',
          { class: 'bar', x: left + slot * 0.15, y: y(b.count), width: slot * 0.7, height: y(0) - y(b.count) },
          svg('title', { text: `${b.count} decided in ${name}` }),
        ),
      );
    }
    chart.append(svg('text', { class: 'tick', x: left + slot / 2, y: CHART_HEIGHT - MARGIN.bottom + 16, 'text-anchor': 'middle', text: b.le_us === null ? '>' : formatBound(b.le_us) }));
  });
  return chart;
}

/** The sentence under the latency chart. */
export function latencySummary(latency) {
  if (!latency) return '';
  const parts = [`${latency.decided} decided`];
  if (latency.decided > 0) {
    parts.push(`median ≤ ${formatDuration(latency.p50_us)}`, `90% ≤ ${formatDuration(latency.p90_us)}`, `longest ${formatDuration(latency.max_us)}`);
  }
  if (latency.timed_out > 0) parts.push(`${latency.timed_out} timed out`);
  parts.push(`${latency.pending} waiting`);
  return parts.join(' · ');
}

// ----------------------------------------------------------- progress

/** The parts of a progress bar, in order, with their CSS class. */
const PARTS = [
  ['decided', 'decided', 'decided'],
  ['failed', 'failed', 'failed'],
  ['skipped', 'skipped', 'skipped'],
  ['awaiting_review', 'awaiting', 'awaiting review'],
  ['unfinished', 'unfinished', 'to do'],
];

/** A stacked bar of a mission's task counts (GET /api/missions `counts`). */
export function progressBar(counts) {
  const total = PARTS.reduce((sum, [key]) => sum + (counts?.[key] ?? 0), 0);
  const width = 160;
  const bar = svg('svg', { class: 'progress', viewBox: `0 0 ${width} 10`, role: 'img', preserveAspectRatio: 'none' });
  const words = PARTS.filter(([key]) => counts?.[key] > 0).map(([key, , word]) => `${counts[key]} ${word}`);
  bar.setAttribute('aria-label', total ? words.join(', ') : 'no tasks yet');
  bar.append(svg('rect', { class: 'track', x: 0, y: 0, width, height: 10 }));
  let x = 0;
  for (const [key, cls, word] of PARTS) {
    const n = counts?.[key] ?? 0;
    if (!total || !n) continue;
    const w = (n / total) * width;
    bar.append(svg('rect', { class: `part ${cls}`, x, y: 0, width: w, height: 10 }, svg('title', { text: `${n} ${word}` })));
    x += w;
  }
  return bar;
}

/** How much of a whole: a thin bar (queue depth, spend). */
export function meter(value, max, className) {
  const width = 100;
  const fraction = max > 0 ? Math.min(1, value / max) : 0;
  return svg(
    'svg',
    { class: `meter ${className}`, viewBox: `0 0 ${width} 6`, preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    svg('rect', { class: 'track', x: 0, y: 0, width, height: 6 }),
    svg('rect', { class: `fill${fraction >= 0.9 ? ' high' : ''}`, x: 0, y: 0, width: fraction * width, height: 6 }),
  );
}

// ----------------------------------------------------------- failures

/** The latest failures, newest first (`series.failures`). */
export function failureList(series) {
  const failures = series?.failures ?? [];
  if (failures.length === 0) return el('p', { class: 'empty-note', id: 'no-failures', text: 'No task has failed.' });
  const list = el('ol', { class: 'failures', id: 'failures' });
  for (const f of failures) {
    list.append(
      el(
        'li',
        { 'data-case': f.case },
        el('span', { class: 'when', text: formatTime(f.time_us) }),
        ' ',
        el('strong', { class: 'case', text: f.case }),
        ' ',
        el('code', { class: 'code', text: f.code }),
        el('div', { class: 'failure-message', text: f.message }),
      ),
    );
  }
  return list;
}

// --------------------------------------------------------------- panel

/**
 * One mission's charts and failures: what the dashboard shows for the
 * selected mission and the report for its mission.
 */
export function missionPanel(series) {
  const latency = series?.latency;
  const failedMore = (series?.failed ?? 0) - (series?.failures?.length ?? 0);
  return el(
    'div',
    { class: 'panel' },
    el(
      'figure',
      { class: 'figure' },
      el('figcaption', {}, el('h3', { text: 'Spend against the budget' }), el('p', { class: 'figure-note', text: `${formatAmount(series?.settled)} settled of ${formatAmount(series?.limit)}` })),
      spendChart(series),
    ),
    el(
      'figure',
      { class: 'figure' },
      el('figcaption', {}, el('h3', { text: 'Gate latency: request to decision' }), el('p', { class: 'figure-note latency-summary', text: latencySummary(latency) })),
      latencyChart(latency),
    ),
    el(
      'section',
      { class: 'failures-section' },
      el('h3', { text: `Recent failures${series?.failed ? ` (${series.failed})` : ''}` }),
      failureList(series),
      failedMore > 0 ? el('p', { class: 'figure-note', text: `and ${failedMore} earlier; every failure is in the journal (conductor ledger show --tasks).` }) : null,
    ),
  );
}
