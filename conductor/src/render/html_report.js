// The report page of `conductor mission report --html`: runs after the
// dashboard's chart code (server/web/dashboard-charts.js), in the same
// inline module, and draws the report from the JSON embedded in the file:
// `report` (engine::report::build) and `series` (engine::series::View).
// Everything from the journal is set as text.

function drawReport() {
  const root = document.getElementById('report');
  const { report, series, generated_us: generated } = JSON.parse(document.getElementById('report-data').textContent);
  const tasks = report.tasks ?? {};
  const cycle = report.cycle_time_us ?? {};
  const tile = (value, label) => el('div', { class: 'tile' }, el('span', { class: 'value', text: String(value) }), el('span', { class: 'label', text: label }));
  const table = (caption, head, rows) =>
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        {},
        el('caption', { class: 'figure-note', text: caption }),
        el('thead', {}, el('tr', {}, head.map(([text, num]) => el('th', { scope: 'col', class: num ? 'num' : null, text })))),
        el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map(([text, num]) => el('td', { class: num ? 'num' : null, text: String(text ?? '–') }))))),
      ),
    );
  root.replaceChildren(
    el(
      'div',
      { class: 'detail-head' },
      el('h1', { text: report.name ?? report.mission }),
      el('code', { class: 'sub', text: report.mission }),
    ),
    el('p', { class: 'figure-note', text: `From the journal up to entry ${series.journal_entries}; written ${formatTime(generated)}.` }),
    el(
      'div',
      { class: 'tiles' },
      tile(tasks.started ?? 0, 'tasks started'),
      tile(tasks.decided ?? 0, 'decided'),
      tile(tasks.failed ?? 0, 'failed'),
      tile(tasks.skipped ?? 0, 'skipped'),
      tile(tasks.open ?? 0, 'open'),
      tile(formatDuration(cycle.mission), 'mission cycle time'),
      tile(formatDuration(cycle.task_median), 'task cycle, median'),
      tile(`${((report.exceptions?.rate ?? 0) * 100).toFixed(1)}%`, 'sent to a gate'),
    ),
    missionPanel(series),
    el(
      'div',
      { class: 'report-tables' },
      table(
        'Gates',
        [['gate'], ['requested', 1], ['approved', 1], ['rejected', 1], ['pending', 1], ['timed out', 1], ['median wait', 1], ['worst wait', 1]],
        (report.gates ?? []).map((g) => [
          [g.gate],
          [g.requested, 1],
          [g.approved, 1],
          [g.rejected, 1],
          [g.pending, 1],
          [g.timed_out, 1],
          [formatDuration(g.time_to_decision_us?.median), 1],
          [formatDuration(g.time_to_decision_us?.worst), 1],
        ]),
      ),
      table(
        'Agents',
        [['agent'], ['started', 1], ['decided', 1], ['failed', 1], ['skipped', 1], ['model calls', 1], ['spent', 1]],
        (report.agents ?? []).map((a) => [[a.agent], [a.started, 1], [a.decided, 1], [a.failed, 1], [a.skipped, 1], [a.model_calls, 1], [formatAmount(a.spent), 1]]),
      ),
    ),
  );
  document.body.dataset.state = 'drawn';
}

drawReport();
