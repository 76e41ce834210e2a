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

/**
 * JSON.parse that keeps integers beyond 2^53 exact: Cove's ids are 64-bit, so integers of 16 or
 * more digits outside strings become strings (ids are only compared and put in URLs).
 */
export function parseJson(text) {
  let out = '';
  let i = 0;
  let start = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      // Skip the string, honouring escapes.
      i += 1;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i += 1;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j += 1;
      const num = text.slice(i, j);
      if (/^-?\d{16,}$/.test(num)) {
        out += `${text.slice(start, i)}"${num}"`;
        start = j;
      }
      i = j;
    } else {
      i += 1;
    }
  }
  return JSON.parse(out + text.slice(start));
}

/** The larger of two ids (numbers or digit strings), as a string. */
export function maxId(a, b) {
  return BigInt(a) > BigInt(b) ? String(a) : String(b);
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

/**
 * JSON.stringify that writes BigInt values as plain JSON integers: how a 64-bit id read by
 * parseJson (a digit string) goes back to the server as a number (`BigInt(id)`).
 */
export function stringifyJson(value) {
  return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? `\u0000big:${v}` : v)).replace(/"\\u0000big:(-?\d+)"/g, '$1');
}

export async function api(path, { method = 'GET', body, auth, text = false } = {}) {
  const extra = {};
  if (body !== undefined) extra['Content-Type'] = 'application/json';
  if (auth) extra.Authorization = auth;
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers: headers(extra),
    body: body === undefined ? undefined : stringifyJson(body),
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
  const raw = await resp.text();
  if (text) return raw;
  return raw.trim() ? parseJson(raw) : null;
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
        data = parseJson(ev.data);
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
