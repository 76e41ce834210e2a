// The "Reports" section of a run page: test totals, failed cases with their messages,
// coverage per file and failed success criteria (GET /api/v1/runs/{run}/reports).
import { api } from '../api.js';
import { h, replace } from '../dom.js';

const pct = (x) => `${x.toFixed(1)}%`;

function testBlock(t) {
  return [
    h('p', { class: 'report-totals' }, `${t.total} tests: ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped · pass rate ${pct(t.pass_rate)}`),
    t.failures.length
      ? h(
          'ul',
          { class: 'report-failures' },
          t.failures.map((f) =>
            h('li', {}, h('strong', {}, f.suite ? `${f.suite}.${f.name}` : f.name), f.message ? h('pre', { class: 'report-message' }, f.message) : null),
          ),
        )
      : null,
  ];
}

function coverageBlock(c) {
  return [
    h('p', { class: 'report-totals' }, `lines ${c.lines_covered}/${c.lines_total} (${pct(c.line_rate)}) · branches ${c.branches_covered}/${c.branches_total} (${pct(c.branch_rate)})`),
    h(
      'table',
      { class: 'report-files' },
      h('thead', {}, h('tr', {}, h('th', {}, 'file'), h('th', {}, 'lines'), h('th', {}, 'branches'))),
      h(
        'tbody',
        {},
        c.files.map((f) =>
          h('tr', {}, h('td', {}, h('code', {}, f.path)), h('td', {}, `${f.lines_covered}/${f.lines_total}`), h('td', {}, `${f.branches_covered}/${f.branches_total}`)),
        ),
      ),
    ),
  ];
}

/** Fills `box` with the run's reports. */
export async function loadReports(box, runId) {
  let reports;
  try {
    reports = await api(`/runs/${runId}/reports`);
  } catch (err) {
    replace(box, h('p', { class: 'error' }, err.message));
    return;
  }
  if (!reports.length) {
    replace(box, h('p', {}, 'No reports.'));
    return;
  }
  replace(
    box,
    reports.map((r) =>
      h(
        'article',
        { class: 'report', 'data-report': `${r.action}/${r.name}` },
        h('h3', {}, `${r.action} / ${r.name} `, h('small', {}, `${r.format} · ${r.files} file${r.files === 1 ? '' : 's'}`)),
        r.tests ? testBlock(r.tests) : null,
        r.coverage ? coverageBlock(r.coverage) : null,
        r.criteria_failed.map((why) => h('p', { class: 'error' }, `Success criterion failed: ${why}`)),
        r.errors.map((e) => h('p', { class: 'muted-text' }, e)),
      ),
    ),
  );
}
