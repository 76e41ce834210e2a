// Talking to cove-server: JSON over fetch with the session cookie, the CSRF header on
// changes, and server-sent events for live updates.

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrf = token;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(extra = {}) {
  const h = { 'X-Cove-UI': '1', Accept: 'application/json', ...extra };
  if (csrf) h['X-Cove-CSRF'] = csrf;
  return h;
}

export async function api(path, { method = 'GET', body, auth, text = false } = {}) {
  const extra = {};
  if (body !== undefined) extra['Content-Type'] = 'application/json';
  if (auth) extra.Authorization = auth;
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers: headers(extra),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (resp.status === 401 && !auth) {
    onUnauthorized();
  }
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const err = await resp.json();
      if (err && err.message) message = err.message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, message);
  }
  if (resp.status === 204) return null;
  return text ? resp.text() : resp.json();
}

/** Base64 of UTF-8 text (for HTTP Basic). */
export function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * Subscribes to a server-sent-event stream. `handlers` maps event names to callbacks that get
 * the parsed JSON data. Returns a function that closes the stream. The stream closes itself on
 * `end`.
 */
export function subscribe(path, handlers) {
  const source = new EventSource(`/api/v1${path}`, { withCredentials: true });
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === 'onerror') continue;
    source.addEventListener(name, (ev) => {
      let data = null;
      try {
        data = JSON.parse(ev.data);
      } catch {
        data = ev.data;
      }
      fn(data, ev);
    });
  }
  source.addEventListener('end', () => source.close());
  source.onerror = () => {
    if (handlers.onerror) handlers.onerror(source);
  };
  return () => source.close();
}
