import { api, subscribe, maxId } from '../api.js';
import { h, replace, badge, ago } from '../dom.js';
import { envActions } from './envs.js';
import { endpointsSection, sshSection } from './env_ports.js';
import { terminalView } from './terminal.js';
import { editorLink } from './env_editor.js';

/**
 * "Outdated": the devfile of the environment's branch changed in the repository since the
 * environment was created; "Update now" restarts it onto that devfile (`POST …/update`).
 */
function outdatedBanner(env, onError) {
  if (!env.outdated) return null;
  return h(
    'div',
    { class: 'banner', role: 'region', 'aria-label': 'Outdated' },
    h('p', {}, h('strong', {}, 'Outdated: '), `the devfile of branch ${env.branch} changed in the repository since this environment was created.`),
    h('button', { type: 'button', onclick: async (ev) => { ev.target.disabled = true; try { await api(`/environments/${env.id}/update`, { method: 'POST' }); } catch (err) { onError(err); ev.target.disabled = false; } } }, 'Update now'),
  );
}

export async function envPage(main, { params, navigate }) {
  const [id] = params;
  let env = await api(`/environments/${encodeURIComponent(id)}`);
  // An environment belongs to its creator: only they and administrators see its terminal,
  // logs and progress (the server refuses everyone else; the page says so instead of failing).
  const me = await api('/user').catch(() => null);
  const mine = !!me && (me.is_admin || me.username === env.owner);
  const notYours = `This environment belongs to ${env.owner}: only they or an administrator can open its terminal and read its logs.`;
  const title = h('h1', {}, env.name);
  const stateBox = h('p', { class: 'env-state', role: 'status', 'aria-live': 'polite' });
  const error = h('p', { role: 'alert', class: 'error' });
  const banner = h('div', { id: 'restart-banner' });
  const outdated = h('div', { id: 'outdated-banner' });
  const actions = h('div', { class: 'toolbar' });
  const editorBox = h('div', { id: 'editor-link' });
  const endpoints = h('section', { 'aria-labelledby': 'ep-h' });
  const termStatus = h('p', { class: 'term-status', role: 'status' });
  const termBox = h('div', { class: 'terminal', id: 'terminal', 'aria-label': 'Terminal' });
  const termButton = h('button', { type: 'button', class: 'secondary small', onclick: () => connect(true) }, 'Reconnect terminal');
  const progress = h('pre', { class: 'log small-log', role: 'log', 'aria-label': 'Progress' });
  const compSelect = h('select', { id: 'log-component' });
  const logsOut = h('pre', { class: 'log', id: 'component-logs', role: 'log', 'aria-label': 'Component logs' });
  const logsForm = h(
    'form',
    { class: 'inline' },
    h('label', { for: 'log-component' }, 'Component'),
    compSelect,
    h('button', { type: 'submit', class: 'secondary small' }, 'Show logs'),
  );
  logsForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    logsOut.textContent = 'Loading…';
    try {
      logsOut.textContent = (await api(`/environments/${env.id}/logs?component=${encodeURIComponent(compSelect.value)}&tail=300`, { text: true })) || '(no output)';
    } catch (err) {
      logsOut.textContent = err.message;
    }
  });
  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/envs' }, 'Environments'), ' / ', h('a', { href: `#/repos/${env.repo}` }, env.repo)),
    title,
    stateBox,
    banner,
    outdated,
    actions,
    editorBox,
    error,
    h('section', { 'aria-labelledby': 'term-h' }, h('h2', { id: 'term-h' }, 'Terminal'), h('div', { class: 'inline' }, termStatus, termButton), termBox),
    endpoints,
    sshSection(env, mine),
    h('section', { 'aria-labelledby': 'logs-h' }, h('h2', { id: 'logs-h' }, 'Logs'), mine ? logsForm : h('p', {}, notYours), logsOut),
    h('section', { 'aria-labelledby': 'progress-h' }, h('h2', { id: 'progress-h' }, 'Progress'), progress),
  );

  const view = terminalView(termBox, termStatus);
  let termFor = null;
  let pageClosed = false;
  function connect(force) {
    if (!mine) {
      view.placeholder(notYours);
      termButton.hidden = true;
      return;
    }
    if (env.state !== 'running') {
      termFor = null;
      view.placeholder(`The terminal opens when the environment is running (now ${env.state}).`);
      return;
    }
    // A restart replaces the containers: reconnect when the environment becomes running again.
    if (view.connected && !force && termFor === env.last_running_key) return;
    termFor = env.last_running_key;
    view.connect(env, terminalEnded);
  }

  // The shell ended. When the environment changed state meanwhile (a restart recreates the
  // containers), open a new terminal once it is running again; otherwise wait for the user.
  async function terminalEnded() {
    const events = await loadProgress();
    if (!events.some((e) => e.kind === 'state')) return;
    for (let i = 0; i < 60 && !pageClosed; i += 1) {
      try {
        const now = await api(`/environments/${encodeURIComponent(env.id)}`);
        if (now.state === 'running') {
          // Only when no connection is open or opening: the live update may have reconnected
          // already, and its "Connected" must not be overwritten by a message that stays.
          if (!view.connected) termStatus.textContent = 'Environment restarted: reconnecting…';
          show(now);
          // not forced: the live environment update may have reconnected already, and a
          // second connection would cut the first one while someone types into it
          connect(false);
          return;
        }
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  let lastEvent = '0';
  let loading = Promise.resolve([]);
  function loadProgress() {
    // One request at a time, so no event is appended twice.
    loading = loading.then(async () => {
      if (!mine) return [];
      try {
        const events = await api(`/environments/${env.id}/events?after=${lastEvent}`);
        for (const e of events) {
          lastEvent = maxId(lastEvent, e.id);
          progress.append(`${new Date(e.at_ms).toLocaleTimeString()}  ${e.kind}: ${e.message}\n`);
        }
        return events;
      } catch {
        return [];
      }
    });
    return loading;
  }

  let prevState = null;
  let runningSince = 0;
  function show(next) {
    if (prevState !== 'running' && next.state === 'running') runningSince += 1;
    next.last_running_key = runningSince;
    const changed = !prevState || prevState !== next.state;
    prevState = next.state;
    env = next;
    replace(stateBox, badge(env.state, { id: 'env-state' }), ' ', env.reason ? env.reason : '', ` · ${env.repo} · branch ${env.branch}`, env.last_activity_ms ? ` · active ${ago(env.last_activity_ms)}` : '');
    replace(actions, envActions(env, { onError: (err) => (error.textContent = err.message), onDeleted: () => navigate('#/envs') }));
    if (env.restart_required) {
      replace(
        banner,
        h(
          'div',
          { class: 'banner', role: 'region', 'aria-label': 'Restart required' },
          h('p', {}, h('strong', {}, 'Restart required: '), 'the devfile in the workspace changed since this environment was started.'),
          h('pre', { class: 'diff', 'aria-label': 'Devfile changes' }, (env.devfile_changes || '').split('\n').map((l) => h('span', { class: l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : '' }, `${l}\n`))),
          h('button', { type: 'button', onclick: async (ev) => { ev.target.disabled = true; try { await api(`/environments/${env.id}/restart`, { method: 'POST' }); } catch (err) { error.textContent = err.message; ev.target.disabled = false; } } }, 'Restart now'),
        ),
      );
    } else {
      replace(banner);
    }
    replace(outdated, outdatedBanner(env, (err) => (error.textContent = err.message)));
    replace(endpoints, endpointsSection(env, mine));
    replace(editorBox, editorLink(env, mine));
    const sel = compSelect.value;
    replace(compSelect, env.components.map((c) => h('option', { value: c, selected: c === sel }, c)));
    if (changed) {
      connect(false);
      loadProgress();
    }
  }
  show(env);
  const stop = subscribe('/environments/stream', {
    environments(envs) {
      const next = envs.find((e) => e.id === id);
      if (!next) {
        replace(stateBox, 'This environment was deleted.');
        view.disconnect();
        return;
      }
      show(next);
    },
  });
  return () => {
    pageClosed = true;
    stop();
    view.dispose();
  };
}
