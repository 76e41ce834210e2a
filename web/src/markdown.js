// A small, safe Markdown renderer for pull-request descriptions and comments. It builds DOM
// nodes with createElement and text nodes only — never innerHTML — so raw HTML in the source
// is shown as text. The subset (docs/forge.md "Web UI"):
//   blocks: paragraphs, # … ###### headings, ``` fenced code, - / * / + bullet lists,
//           1. ordered lists, > block quotes, --- rules;
//   inline: `code`, **strong**, *emphasis* / _emphasis_, [text](url) links and bare
//           http(s) URLs. A link's URL must be http:, https: or mailto: (or relative);
//           anything else (javascript:, data:, vbscript:, …) is rendered as plain text.
import { h } from './dom.js';

const SAFE_SCHEMES = new Set(['http:', 'https:', 'mailto:']);
/** Bounds: a description is at most 64 KiB; rendering stops at these to stay cheap. */
const MAX_CHARS = 128 * 1024;
const MAX_DEPTH = 8;

/** A URL that is safe to put in href, or null. */
export function safeUrl(raw) {
  const url = String(raw || '').trim();
  if (!url || /[\u0000-\u001f\s]/.test(url)) return null;
  // A scheme is letters before the first ':' that comes before any '/', '?' or '#'.
  const scheme = url.match(/^([A-Za-z][A-Za-z0-9+.-]*):/);
  if (scheme) return SAFE_SCHEMES.has(`${scheme[1].toLowerCase()}:`) ? url : null;
  // Relative links (no scheme); "//host" is protocol-relative: allowed, it stays http(s).
  return url;
}

/** `owner/name` while rendering an issue's text: `#N`, `!N` and file paths link (issue 16). */
let refBase = null;
const encRepoPath = (p) => p.split('/').map(encodeURIComponent).join('/');

function link(text, url) {
  const href = safeUrl(url);
  if (!href) return document.createTextNode(text);
  return h('a', { href, rel: 'noopener noreferrer nofollow', target: '_blank' }, text);
}

/** Inline markup of one block's text, as an array of nodes. */
export function inline(text, depth = 0) {
  const out = [];
  let plain = '';
  const flush = () => {
    if (plain) out.push(document.createTextNode(plain));
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    let m;
    if (rest[0] === '\\' && /^\\[\\`*_[\]()#>+\-.!]/.test(rest)) {
      plain += rest[1];
      i += 2;
    } else if (rest[0] === '`' && (m = rest.match(/^(`+)([\s\S]*?[^`])\1(?!`)/))) {
      flush();
      const code = m[2].trim();
      // In an issue, `path/to/file.ext` links to the code browser.
      if (refBase && /^[\w.-]+(\/[\w.-]+)*\.[A-Za-z0-9]{1,10}$/.test(code) && !code.includes('..')) {
        out.push(h('a', { href: `#/repos/${refBase}/code?file=${encodeURIComponent(code)}`, class: 'file-ref' }, h('code', {}, code)));
      } else {
        out.push(h('code', {}, code));
      }
      i += m[0].length;
    } else if (depth < MAX_DEPTH && (m = rest.match(/^\*\*(?=\S)([\s\S]*?\S)\*\*/))) {
      flush();
      out.push(h('strong', {}, inline(m[1], depth + 1)));
      i += m[0].length;
    } else if (depth < MAX_DEPTH && (m = rest.match(/^([*_])(?=\S)([\s\S]*?\S)\1(?![A-Za-z0-9])/))) {
      flush();
      out.push(h('em', {}, inline(m[2], depth + 1)));
      i += m[0].length;
    } else if (rest[0] === '[' && (m = rest.match(/^\[([^\]\n]{1,500})\]\(([^()\s]{0,2000})\)/))) {
      flush();
      out.push(link(m[1], m[2]));
      i += m[0].length;
    } else if (refBase && (m = rest.match(/^([#!])(\d{1,9})(?![A-Za-z0-9_])/)) && !/[A-Za-z0-9_&/]$/.test(plain)) {
      // In an issue: #N is issue N, !N pull request N of the same repository.
      flush();
      out.push(h('a', { href: `#/repos/${refBase}/${m[1] === '#' ? 'issues' : 'pulls'}/${m[2]}`, class: 'ref' }, m[0]));
      i += m[0].length;
    } else if ((m = rest.match(/^https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/)) && !/[A-Za-z0-9]$/.test(plain)) {
      flush();
      out.push(link(m[0], m[0]));
      i += m[0].length;
    } else {
      plain += rest[0];
      i += 1;
    }
  }
  flush();
  return out;
}

/**
 * [`renderMarkdown`] for an issue or comment of `owner/name`: `#N` links to issue N, `!N` to
 * pull request N, a code span that is a file path to the code browser.
 */
export function renderMarkdownIn(source, repo) {
  refBase = encRepoPath(repo);
  try {
    return renderMarkdown(source);
  } finally {
    refBase = null;
  }
}

/** Renders Markdown source into a fragment of safe DOM nodes. */
export function renderMarkdown(source, depth = 0) {
  const frag = document.createDocumentFragment();
  const lines = String(source || '').slice(0, MAX_CHARS).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  let para = [];
  const endPara = () => {
    if (para.length) frag.append(h('p', {}, inline(para.join('\n'))));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      endPara();
      i += 1;
    } else if ((m = line.match(/^\s{0,3}(```+|~~~+)\s*([\w+-]*)\s*$/))) {
      endPara();
      const fence = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i += 1;
      frag.append(h('pre', { class: 'md-code' }, h('code', {}, body.join('\n'))));
    } else if ((m = line.match(/^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/))) {
      endPara();
      // Headings inside user text start at h3 so they never compete with the page's own.
      const level = Math.min(6, m[1].length + 2);
      frag.append(h(`h${level}`, { class: 'md-h' }, inline(m[2])));
      i += 1;
    } else if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      endPara();
      frag.append(h('hr'));
      i += 1;
    } else if (/^\s{0,3}>/.test(line)) {
      endPara();
      const body = [];
      while (i < lines.length && /^\s{0,3}>/.test(lines[i])) body.push(lines[i++].replace(/^\s{0,3}> ?/, ''));
      frag.append(h('blockquote', {}, depth < MAX_DEPTH ? renderMarkdown(body.join('\n'), depth + 1) : body.join('\n')));
    } else if ((m = line.match(/^\s{0,3}([-*+]|\d{1,9}[.)])\s+/))) {
      endPara();
      const ordered = /\d/.test(m[1]);
      const item = ordered ? /^\s{0,3}\d{1,9}[.)]\s+/ : /^\s{0,3}[-*+]\s+/;
      const list = h(ordered ? 'ol' : 'ul');
      while (i < lines.length && item.test(lines[i])) {
        const text = [lines[i++].replace(item, '')];
        // Continuation lines: indented, not a new item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !item.test(lines[i])) text.push(lines[i++].trim());
        list.append(h('li', {}, inline(text.join('\n'))));
      }
      frag.append(list);
    } else {
      para.push(line);
      i += 1;
    }
  }
  endPara();
  return frag;
}
