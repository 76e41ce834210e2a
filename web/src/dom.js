// A tiny DOM builder: h('button', { onclick, class: 'x' }, 'text', child…).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

const STATE_CLASS = {
  running: 'run',
  waiting_approval: 'warn',
  succeeded: 'ok',
  failed: 'bad',
  timed_out: 'bad',
  agent_lost: 'bad',
  cancelled: 'muted',
  superseded: 'muted',
  skipped: 'muted',
  stopped: 'muted',
  deleting: 'warn',
  stopping: 'warn',
  creating: 'warn',
  starting: 'warn',
  queued: 'pending',
  pending: 'pending',
};

/** A state badge: colour plus the state as text (never colour alone). */
export function badge(state, extra = {}) {
  return h('span', { class: `badge ${STATE_CLASS[state] || 'pending'}`, 'data-state': state, ...extra }, state.replace('_', ' '));
}

export function shortSha(sha) {
  return (sha || '').slice(0, 8);
}

export function ago(ms) {
  if (!ms) return '';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

export function duration(startMs, endMs) {
  if (!startMs) return '';
  const s = Math.round(((endMs || Date.now()) - startMs) / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}
