import { api, subscribe } from '../api.js';
import { h, replace, badge, shortSha, ago, duration } from '../dom.js';
import { loadReports } from './run_reports.js';

const ACTIVE = new Set(['queued', 'running']);

export async function runsPage(main, { params, query, navigate }) {
  const [owner, name] = params;
  const branch = query.get('branch') || '';
  const branches = await api(`/repos/${owner}/${name}/branches`);
  const select = h('select', { id: 'runs-branch' }, h('option', { value: '' }, 'all branches'), branches.map((b) => h('option', { value: b.name, selected: b.name === branch }, b.name)));
  select.addEventListener('change', () => navigate(`#/repos/${owner}/${name}/runs${select.value ? `?branch=${encodeURIComponent(select.value)}` : ''}`));
  const table = h('div', { 'aria-live': 'polite' }, h('p', {}, 'Loading…'));
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${owner}/${name}` }, `${owner}/${name}`)),
    h('h1', {}, branch ? `Runs on ${branch}` : 'Runs'),
    h('div', { class: 'inline' }, h('label', { for: 'runs-branch' }, 'Branch'), select),
    startForm(owner, name, branches, branch, navigate),
    table,
    await schedulesSection(owner, name),
  );
  const q = branch ? `?branch=${encodeURIComponent(branch)}` : '';
  return subscribe(`/repos/${owner}/${name}/runs/stream${q}`, {
    runs(runs) {
      if (!runs.length) {
        replace(table, h('p', {}, 'No runs yet. Push a commit with a workflow in .codecatalyst/workflows/.'));
        return;
      }
      replace(
        table,
        h(
          'table',
          { id: 'runs-table' },
          h('thead', {}, h('tr', {}, ['Run', 'Workflow', 'Branch', 'Commit', 'Trigger', 'State', 'Started', 'Duration'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            runs.map((r) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row' }, h('a', { href: `#/runs/${r.id}` }, runLabel(r))),
                h('td', {}, r.workflow),
                h('td', {}, r.branch),
                h('td', {}, h('code', {}, shortSha(r.commit))),
                h('td', {}, r.trigger),
                h('td', {}, badge(r.state)),
                h('td', {}, ago(r.created_at_ms)),
                h('td', {}, duration(r.created_at_ms, r.finished_at_ms)),
              ),
            ),
          ),
        ),
      );
    },
  });
}

/** `#N` (the run's number in its repository; the id for a run stored before numbers). */
export function runLabel(run) {
  return run.number ? `#${run.number}` : `#${run.id}`;
}

/** "Run workflow": starts a workflow (its name or file) by hand on a branch (MANUAL triggers). */
function startForm(owner, name, branches, branch, navigate) {
  const workflow = h('input', { id: 'start-workflow', name: 'workflow', required: true, placeholder: 'name or .codecatalyst/workflows/file.yaml', autocomplete: 'off' });
  const on = h('select', { id: 'start-branch', name: 'branch' }, branches.map((b) => h('option', { value: b.name, selected: b.name === branch }, b.name)));
  const error = h('p', { role: 'alert', class: 'error' });
  const button = h('button', { type: 'submit' }, 'Run workflow');
  const form = h(
    'form',
    { id: 'start-run', class: 'inline', 'aria-label': 'Run workflow' },
    h('label', { for: 'start-workflow' }, 'Workflow'),
    workflow,
    h('label', { for: 'start-branch' }, 'on'),
    on,
    button,
    error,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    button.disabled = true;
    try {
      const run = await api(`/repos/${owner}/${name}/runs`, { method: 'POST', body: { workflow: workflow.value.trim(), branch: on.value || null } });
      navigate(`#/runs/${run.id}`);
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/** The repository's SCHEDULE triggers with their next time (UTC). */
async function schedulesSection(owner, name) {
  const list = await api(`/repos/${owner}/${name}/schedules`);
  if (!list.length) return h('div');
  const when = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/:00\.000Z$/, ' UTC') : 'never');
  return h(
    'section',
    { 'aria-labelledby': 'sched-h' },
    h('h2', { id: 'sched-h' }, 'Schedules'),
    h(
      'table',
      { id: 'schedules-table' },
      h('thead', {}, h('tr', {}, ['Workflow', 'Branch', 'Expression (UTC)', 'Next', 'Last run'].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        list.map((s) =>
          h('tr', {}, h('th', { scope: 'row' }, s.workflow), h('td', {}, s.branch), h('td', {}, h('code', {}, s.expression)), h('td', {}, when(s.next_fire_at_ms)), h('td', {}, s.last_run ? `#${s.last_run}` : '–')),
        ),
      ),
    ),
  );
}

/** The deployment environment a deploy action deploys to (a link to its page) and, while
 * it waits, the approvals it needs, under the action's button; other actions: the button. */
function withDeployment(job, repo, button) {
  const d = job.deployment;
  if (!d) return button;
  const slug = job.action.replace(/[^A-Za-z0-9_-]/g, '_');
  return h(
    'div',
    { class: 'job-wrap' },
    button,
    h(
      'p',
      { class: 'job-deploy', id: `deploy-${slug}`, 'data-environment': d.environment },
      'deploys to ',
      h('a', { href: `#/repos/${repo}/deploy/${encodeURIComponent(d.environment)}` }, d.environment),
      d.state === 'refused' ? ' · refused' : '',
      d.waiting ? ` · ${d.waiting}` : '',
    ),
  );
}

/** Columns of the DAG: an action's column is one more than its deepest dependency's. */
function levels(jobs) {
  const byName = new Map(jobs.map((j) => [j.action, j]));
  const memo = new Map();
  const depth = (j, seen = new Set()) => {
    if (memo.has(j.action)) return memo.get(j.action);
    if (seen.has(j.action)) return 0;
    seen.add(j.action);
    const d = Math.max(-1, ...j.depends_on.filter((n) => byName.has(n)).map((n) => depth(byName.get(n), seen))) + 1;
    memo.set(j.action, d);
    return d;
  };
  const cols = [];
  for (const j of jobs) {
    const d = depth(j);
    (cols[d] ||= []).push(j);
  }
  return cols.filter(Boolean);
}

function drawEdges(svg, grid, jobs) {
  const box = grid.getBoundingClientRect();
  svg.setAttribute('width', String(box.width));
  svg.setAttribute('height', String(box.height));
  svg.setAttribute('viewBox', `0 0 ${box.width} ${box.height}`);
  replace(svg);
  for (const j of jobs) {
    const to = grid.querySelector(`[data-action="${CSS.escape(j.action)}"]`);
    for (const dep of j.depends_on) {
      const from = grid.querySelector(`[data-action="${CSS.escape(dep)}"]`);
      if (!from || !to) continue;
      const a = from.getBoundingClientRect();
      const b = to.getBoundingClientRect();
      const x1 = a.right - box.left;
      const y1 = a.top + a.height / 2 - box.top;
      const x2 = b.left - box.left;
      const y2 = b.top + b.height / 2 - box.top;
      const mid = (x1 + x2) / 2;
      const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
      path.setAttribute('d', `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
      path.setAttribute('class', 'edge');
      svg.append(path);
    }
  }
}

export async function runPage(main, { params }) {
  const [id] = params;
  let run = await api(`/runs/${id}`);
  let selected = null;
  let closeLogs = null;
  const title = h('h1', {}, `Run ${runLabel(run)} · ${run.workflow}`);
  const stateBox = h('p', { role: 'status', 'aria-live': 'polite', class: 'run-state' });
  const error = h('p', { role: 'alert', class: 'error' });
  const toolbar = h('div', { class: 'toolbar' });
  const approvals = h('div', { id: 'approvals' });
  const comments = new Map();
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'edges');
  svg.setAttribute('aria-hidden', 'true');
  const grid = h('div', { class: 'dag-grid' });
  const dag = h('div', { class: 'dag', role: 'group', 'aria-label': 'Actions (dependencies left to right)' }, svg, grid);
  const logTitle = h('h2', { id: 'log-h' }, 'Log');
  const logStatus = h('p', { class: 'muted-text', role: 'status' });
  const logBox = h('pre', { class: 'log', id: 'job-log', role: 'log', 'aria-labelledby': 'log-h', tabindex: '0' });
  const artifacts = h('div', { id: 'artifacts' });
  const reports = h('div', { id: 'reports' }, h('p', {}, 'Reports appear when the run has ended.'));
  let reportsFor = null;
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/repos/${run.repo}` }, run.repo), ' / ', h('a', { href: `#/repos/${run.repo}/runs?branch=${encodeURIComponent(run.branch)}` }, `runs on ${run.branch}`)),
    title,
    stateBox,
    approvals,
    toolbar,
    error,
    h('section', { 'aria-labelledby': 'dag-h' }, h('h2', { id: 'dag-h' }, 'Actions'), dag),
    h('section', { 'aria-labelledby': 'log-h', class: 'log-section' }, logTitle, logStatus, logBox),
    h('section', { 'aria-labelledby': 'rep-h' }, h('h2', { id: 'rep-h' }, 'Reports'), reports),
    h('section', { 'aria-labelledby': 'art-h' }, h('h2', { id: 'art-h' }, 'Artifacts'), artifacts),
  );

  function follow(action) {
    if (closeLogs) closeLogs();
    selected = action;
    logBox.textContent = '';
    logTitle.textContent = `Log of ${action}`;
    logStatus.textContent = 'Streaming…';
    closeLogs = subscribe(`/runs/${run.id}/jobs/${encodeURIComponent(action)}/logs/stream`, {
      lines(lines) {
        const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 40;
        for (const l of lines) {
          logBox.append(h('span', { class: `line ${l.stream}`, 'data-seq': l.seq }, `${l.text}\n`));
        }
        if (atBottom) logBox.scrollTop = logBox.scrollHeight;
      },
      end(data) {
        logStatus.textContent = `Finished: ${data.state}.`;
      },
    });
    for (const b of grid.querySelectorAll('.job')) b.setAttribute('aria-pressed', String(b.dataset.action === action));
  }

  function render() {
    replace(
      stateBox,
      badge(run.state, { id: 'run-state' }),
      ` · branch ${run.branch} · commit `,
      h('code', {}, shortSha(run.commit)),
      ` · ${run.trigger} · started ${ago(run.created_at_ms)} · ${duration(run.created_at_ms, run.finished_at_ms)}`,
    );
    const buttons = [];
    if (ACTIVE.has(run.state)) {
      buttons.push(h('button', { type: 'button', class: 'danger small', onclick: () => act('cancel') }, 'Cancel run'));
    } else if (run.state !== 'succeeded') {
      buttons.push(h('button', { type: 'button', class: 'secondary small', onclick: () => act('retry') }, 'Retry failed actions'));
    }
    replace(toolbar, buttons);
    renderApprovals();
    const cols = levels(run.jobs);
    replace(
      grid,
      cols.map((col) =>
        h(
          'div',
          { class: 'dag-col' },
          col.map((j) =>
            withDeployment(
              j,
              run.repo,
              h(
                'button',
                {
                  type: 'button',
                  class: `job state-${j.state}`,
                  'data-action': j.action,
                  'aria-pressed': String(j.action === selected),
                  'aria-label': `${j.action}: ${j.state.replace('_', ' ')}${j.depends_on.length ? `, after ${j.depends_on.join(', ')}` : ''}. Show its log.`,
                  onclick: () => follow(j.action),
                },
                h('span', { class: 'job-name' }, j.action),
                badge(j.state),
                j.ignore_failure ? h('span', { class: 'job-note', title: 'ignore-failure: this build does not fail the run' }, 'failure ignored') : null,
                h('span', { class: 'job-time' }, duration(j.started_at_ms, j.finished_at_ms)),
                j.error ? h('span', { class: 'job-error' }, j.error) : null,
              ),
            ),
          ),
        ),
      ),
    );
    requestAnimationFrame(() => drawEdges(svg, grid, run.jobs));
    const finished = run.jobs.filter((j) => j.finished_at_ms).length;
    if (finished && reportsFor !== `${run.id}:${finished}`) {
      reportsFor = `${run.id}:${finished}`;
      loadReports(reports, run.id);
    }
    const arts = run.jobs.flatMap((j) => j.artifacts.map((a) => [j, a]));
    replace(
      artifacts,
      arts.length
        ? h('ul', {}, arts.map(([j, a]) => h('li', {}, h('a', { href: `/api/v1/runs/${run.id}/jobs/${j.id}/artifacts/${encodeURIComponent(a)}`, download: `${a}.tar` }, `${a}.tar`), ` from ${j.action}`)))
        : h('p', {}, 'No artifacts.'),
    );
    if (!selected && run.jobs.length) {
      const pick = run.jobs.find((j) => j.state === 'running') || run.jobs.find((j) => j.state !== 'pending' && !j.approval) || run.jobs[0];
      if (pick.state !== 'pending' || !ACTIVE.has(run.state)) follow(pick.action);
    }
  }

  /** A banner per approval gate: who may decide and the buttons while it waits; decisions. */
  function renderApprovals() {
    const gates = run.jobs.filter((j) => j.approval);
    const focused = document.activeElement && approvals.contains(document.activeElement) ? document.activeElement.id : null;
    replace(
      approvals,
      gates.map((j) => {
        const a = j.approval;
        const waiting = j.state === 'waiting_approval';
        const slug = j.action.replace(/[^A-Za-z0-9_-]/g, '_');
        const who = a.approvers.length ? a.approvers.join(', ') : 'the repository’s owners';
        const decisions = a.decisions.length
          ? h(
              'ul',
              { class: 'decisions' },
              a.decisions.map((d) =>
                h('li', { 'data-decision': d.decision }, `${d.decision === 'reject' ? 'Rejected' : 'Approved'} by ${d.user} ${ago(d.at_ms)}`, d.comment ? h('q', {}, d.comment) : null),
              ),
            )
          : null;
        if (!waiting) {
          if (!decisions && !a.condition) return null;
          return h('section', { class: 'approval done', 'aria-label': `Approval ${j.action}` }, h('p', {}, h('strong', {}, j.action), ' ', badge(j.state), a.condition ? ` · ${a.condition}` : ''), decisions);
        }
        const box = h('textarea', {
          id: `approval-comment-${slug}`,
          rows: '2',
          maxlength: '4096',
          oninput: (ev) => comments.set(j.action, ev.target.value),
        });
        box.value = comments.get(j.action) || '';
        return h(
          'section',
          { class: 'approval waiting', role: 'region', 'aria-label': `Approval needed: ${j.action}`, 'data-action': j.action },
          h('h2', {}, `Approval needed: ${j.action}`),
          j.deployment ? h('p', {}, 'Deploys to ', h('a', { href: `#/repos/${run.repo}/deploy/${encodeURIComponent(j.deployment.environment)}` }, j.deployment.environment), '.') : null,
          h(
            'p',
            {},
            `${a.approvals} of ${a.approvals_required} approval${a.approvals_required === 1 ? '' : 's'} · may approve: ${who}`,
            a.expires_at_ms ? ` · times out ${new Date(a.expires_at_ms).toLocaleString()}` : '',
          ),
          a.condition ? h('p', { class: 'hint' }, `Why it waits: ${a.condition}`) : null,
          h('label', { for: `approval-comment-${slug}` }, 'Comment'),
          box,
          h(
            'div',
            { class: 'inline' },
            h('button', { type: 'button', id: `approve-${slug}`, onclick: () => decide(j.action, 'approve') }, 'Approve'),
            h('button', { type: 'button', class: 'danger', id: `reject-${slug}`, onclick: () => decide(j.action, 'reject') }, 'Reject'),
          ),
          decisions,
        );
      }),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  async function decide(action, what) {
    error.textContent = '';
    try {
      run = await api(`/runs/${run.id}/actions/${encodeURIComponent(action)}/${what}`, { method: 'POST', body: { comment: comments.get(action) || '' } });
      comments.delete(action);
      render();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function act(what) {
    error.textContent = '';
    try {
      run = await api(`/runs/${run.id}/${what}`, { method: 'POST' });
      if (what === 'retry') {
        selected = null;
        restartStream();
      }
      render();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  let closeRun = null;
  function restartStream() {
    if (closeRun) closeRun();
    closeRun = subscribe(`/runs/${run.id}/stream`, {
      run(next) {
        run = next;
        render();
      },
    });
  }
  render();
  restartStream();
  const onResize = () => drawEdges(svg, grid, run.jobs);
  window.addEventListener('resize', onResize);
  return () => {
    window.removeEventListener('resize', onResize);
    if (closeRun) closeRun();
    if (closeLogs) closeLogs();
  };
}
