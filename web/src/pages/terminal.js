// The web terminal: xterm.js over the terminal WebSocket of an environment
// (`GET /api/v1/environments/{env}/terminal`; docs/ui.md "The terminal").
//
// - Fit: the terminal fills its element (fit addon, re-fitted whenever the element's size
//   changes) and tells the server its size (`{"type":"resize"}`), so `stty size` inside agrees.
// - Copy and paste: Ctrl+Shift+C / Ctrl+Insert copy the selection, Ctrl+Shift+V / Shift+Insert
//   paste; the browser's own copy and paste (context menu, Cmd+C / Cmd+V) work through
//   xterm's copy and paste events. A paste goes to the shell as typed input (bracketed when
//   the program asks for it).
// - Reconnect: every session has a random reconnect id. When the socket drops (not when the
//   shell exits or access ends), the page reconnects by itself with back-off, showing
//   "Reconnecting…", and the server hands it the same shell and the output it missed.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { h, replace } from '../dom.js';

/**
 * xterm.js options of the web terminal. `lineHeight` above 1 leaves room below the baseline:
 * with a line height of 1 the rows of the DOM renderer are exactly one font height tall and
 * clip glyphs drawn at the very bottom of the cell, so underscores were invisible.
 */
export function terminalOptions() {
  return {
    cursorBlink: true,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
    fontSize: 14,
    lineHeight: 1.2,
    theme: { background: '#0d1117', foreground: '#e6edf3', cursor: '#e6edf3' },
  };
}

/** Waits before reconnect attempt n (1, 2, …): 0.5 s, 1 s, 2 s, 4 s, then 8 s. */
export const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
/** Attempts before the page gives up and offers the Reconnect button (about a minute). */
export const MAX_RECONNECT_ATTEMPTS = 10;

/** WebSocket close codes after which the page does not reconnect by itself. */
const CLOSE_ACCESS_WITHDRAWN = 1008;
const CLOSE_TAKEN_OVER = 4000;

/** A reconnect id: 24 random bytes as 48 hex digits (works outside secure contexts too). */
function newSessionId() {
  const bytes = new Uint8Array(24);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Puts `text` on the clipboard (the Clipboard API, else a hidden textarea and `copy`). */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    /* not a secure context, or no permission: fall back */
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  try {
    document.execCommand('copy');
  } finally {
    area.remove();
  }
}

/**
 * The page's terminal: one xterm.js instance (kept across reconnects, so its scrollback stays)
 * and a WebSocket to the environment's main container that `connect` (re)opens.
 * `status` shows the connection's state to people (and `data-state` to tests and styles).
 */
export function terminalView(box, status) {
  let term = null;
  let fit = null;
  let ws = null;
  let observer = null;
  let onEnded = null;
  let env = null;
  // the reconnecting session: its id, the bytes of its output shown, whether it ended
  let sessionId = null;
  let received = 0;
  let exited = false;
  let attempts = 0;
  let retryTimer = null;
  const enc = new TextEncoder();
  const setStatus = (text, state) => {
    status.textContent = text;
    status.dataset.state = state;
    box.dataset.connection = state;
  };
  const send = (data) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(data);
  };
  const refit = () => {
    try {
      if (term) fit.fit();
    } catch {
      /* not visible */
    }
  };
  const paste = async () => {
    try {
      const text = await navigator.clipboard.readText();
      if (text && term) term.paste(text);
    } catch {
      setStatus('The browser did not allow reading the clipboard: paste with the context menu instead.', status.dataset.state || 'connected');
    }
  };
  function keys(ev) {
    if (ev.type !== 'keydown') return true;
    const key = ev.key.toLowerCase();
    const copy = (ev.ctrlKey && ev.shiftKey && key === 'c') || (ev.ctrlKey && !ev.shiftKey && key === 'insert');
    const pasteKey = (ev.ctrlKey && ev.shiftKey && key === 'v') || (ev.shiftKey && !ev.ctrlKey && key === 'insert');
    if (copy) {
      ev.preventDefault();
      if (term.hasSelection()) copyText(term.getSelection());
      return false;
    }
    if (pasteKey) {
      ev.preventDefault();
      paste();
      return false;
    }
    return true;
  }
  function ensure() {
    if (term) return;
    term = new Terminal(terminalOptions());
    fit = new FitAddon();
    term.loadAddon(fit);
    replace(box);
    term.open(box);
    refit();
    box.dataset.cols = String(term.cols);
    box.dataset.rows = String(term.rows);
    term.attachCustomKeyEventHandler(keys);
    term.onData((d) => send(enc.encode(d)));
    term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    term.onResize(({ cols, rows }) => {
      box.dataset.cols = String(cols);
      box.dataset.rows = String(rows);
      send(JSON.stringify({ type: 'resize', cols, rows }));
    });
    // the element's size, not only the window's: layout changes resize it too
    observer = new ResizeObserver(() => refit());
    observer.observe(box);
    window.addEventListener('resize', refit);
  }
  /** Closes the socket; `end` also ends the session on the server (no grace period). */
  function disconnect(end = true) {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (!ws) return;
    const old = ws;
    ws = null;
    old.onclose = null;
    if (end && old.readyState === WebSocket.OPEN) old.send(JSON.stringify({ type: 'close' }));
    old.close();
  }
  function open() {
    retryTimer = null;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams({ cols: String(term.cols), rows: String(term.rows), reconnect: sessionId, since: String(received) });
    const url = `${proto}://${location.host}/api/v1/environments/${encodeURIComponent(env.id)}/terminal?${q}`;
    const socket = new WebSocket(url);
    ws = socket;
    socket.binaryType = 'arraybuffer';
    if (!attempts) setStatus('Connecting…', 'connecting');
    socket.onmessage = (ev) => {
      if (typeof ev.data === 'string') {
        let msg = null;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          term.write(ev.data);
          return;
        }
        if (msg.type === 'session') {
          if (!msg.resumed && received > 0) term.write('\r\n\x1b[2m[the earlier shell ended: this is a new one]\x1b[0m\r\n');
          if (msg.resumed && msg.offset > received) term.write('\r\n\x1b[2m[some output was lost while disconnected]\x1b[0m\r\n');
          received = msg.offset;
          attempts = 0;
          setStatus(`Connected to ${env.components[0] || 'main'} — terminal in /projects`, 'connected');
          term.focus();
        } else if (msg.type === 'exit') {
          exited = true;
          setStatus(`Shell exited with code ${msg.code}.`, 'exited');
        }
        return;
      }
      received += ev.data.byteLength;
      term.write(new Uint8Array(ev.data));
    };
    socket.onclose = (ev) => {
      if (ws !== socket) return;
      ws = null;
      if (exited) {
        if (onEnded) onEnded();
        return;
      }
      if (ev.code === CLOSE_ACCESS_WITHDRAWN || ev.code === CLOSE_TAKEN_OVER) {
        setStatus(`Disconnected: ${ev.reason || 'the server closed the terminal'}.`, 'closed');
        return;
      }
      retry();
    };
  }
  /** The socket dropped: try again after a growing pause, then give up. */
  function retry() {
    attempts += 1;
    if (attempts > MAX_RECONNECT_ATTEMPTS) {
      attempts = 0;
      setStatus('Disconnected: the server cannot be reached.', 'closed');
      if (onEnded) onEnded();
      return;
    }
    const delay = RECONNECT_DELAYS_MS[Math.min(attempts, RECONNECT_DELAYS_MS.length) - 1];
    setStatus(`Reconnecting… (attempt ${attempts} of ${MAX_RECONNECT_ATTEMPTS})`, 'reconnecting');
    retryTimer = setTimeout(open, delay);
  }
  /**
   * Opens the terminal of `next`: with `resume`, the current session again when it has not
   * ended (the server keeps it for a grace period); otherwise a new shell. `ended` runs when
   * the shell exits or the page gives up reconnecting.
   */
  function connect(next, ended, { resume = false } = {}) {
    ensure();
    const same = resume && sessionId && !exited && env && env.id === next.id;
    disconnect(!same);
    env = next;
    onEnded = ended;
    attempts = 0;
    if (!same) {
      sessionId = newSessionId();
      received = 0;
      exited = false;
    }
    open();
  }
  function placeholder(text) {
    disconnect();
    if (term) {
      term.write(`\r\n\x1b[2m[${text}]\x1b[0m\r\n`);
    } else {
      replace(box, h('p', { class: 'term-placeholder' }, text));
    }
    setStatus('', 'none');
  }
  function dispose() {
    disconnect();
    window.removeEventListener('resize', refit);
    if (observer) observer.disconnect();
    if (term) term.dispose();
    term = null;
  }
  return {
    connect,
    disconnect,
    placeholder,
    dispose,
    /** A socket is open or being opened, or a reconnect is pending. */
    get connected() {
      return ws !== null || retryTimer !== null;
    },
  };
}
