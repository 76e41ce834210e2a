//! Secret masking for job logs, and the log lines that leave the agent.
//!
//! Every byte a job writes passes through a [`StreamMasker`] before it is cut
//! into [`LogLine`]s and sent to a [`LogSink`]. The masker replaces each
//! occurrence of a secret with [`MASK`] in every form a build commonly prints
//! it:
//!
//! - the value itself, and each line of a multi-line value (so a PEM key
//!   printed line by line, or with `\r\n`, is still masked);
//! - its base64 encodings, standard and URL-safe alphabets, at each of the
//!   three byte alignments it can have inside a larger encoded blob (only the
//!   characters fully determined by the secret's bytes are matched, so the
//!   surrounding bytes do not matter), plus the padded encoding of the value
//!   alone and the 76-column lines `base64` wraps it into;
//! - its percent-encodings (upper- and lower-case hex, and the form encoding
//!   that writes a space as `+`);
//! - its hex digits (lower and upper case, as `xxd -p` prints them) and its
//!   JSON string escaping (a multi-line key inside a JSON document).
//!
//! **Streaming.** The matcher is an Aho–Corasick automaton over all those
//! patterns whose state survives across writes, so a value split over two
//! `printf`s, two Docker frames or two lines is found like any other. Bytes
//! are released as soon as no pattern occurrence can still cover them: the
//! masker holds back only the longest suffix of the input that is a prefix of
//! some pattern (the automaton state's depth, at most the longest pattern − 1
//! bytes), so ordinary output is never delayed and a line that merely *might*
//! continue into a secret waits for the next write (or the end of the step).
//! Overlapping and adjacent occurrences merge into one [`MASK`].
//!
//! **Values shorter than [`MIN_SECRET_LEN`] bytes are not masked.** Masking a
//! one- to three-character value (`1`, `yes`, `dev`) would replace that text
//! everywhere in the log — every digit, every word containing it — making the
//! log useless while protecting nothing: such a value is guessable by brute
//! force, and the pattern of masked positions would itself reveal it. GitLab
//! refuses to mask values under 8 characters and Woodpecker skips values of
//! at most 3 (design notes §4); Cove masks from 4. The same threshold applies
//! to each line of a multi-line value and to each encoded form.
//!
//! What is *not* caught: transformations other than the ones above (hex
//! dumps with separators, reversing, `base64 | base64`, hashes), a value
//! printed one character
//! per write with other output interleaved between the characters, and a
//! prefix of a secret left over when the step ends mid-value.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What a masked occurrence is replaced with.
pub const MASK: &str = "***";

/// Secret values (and lines of values, and encoded forms) shorter than this
/// are not masked; see the module documentation for why.
pub const MIN_SECRET_LEN: usize = 4;

/// Lines longer than this are cut into chunks of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Flag on a DFA transition whose target state ends a pattern.
const MATCH: u32 = 1 << 31;

/// A masker never holds more than this many bytes back, even when masked
/// occurrences keep overlapping (e.g. a secret `aaaa` inside a megabyte of
/// `a`s): past it the pending text is released (still masked).
const MAX_PENDING: usize = 64 * 1024;

/// Every pattern the masker looks for, given the secret values.
///
/// Exposed so tests and the documentation can show exactly what is masked.
pub fn patterns_for(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut values: Vec<&[u8]> = Vec::new();
    if secret.len() >= MIN_SECRET_LEN {
        values.push(secret);
    }
    if secret.contains(&b'\n') {
        for line in secret.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() >= MIN_SECRET_LEN {
                values.push(line);
            }
        }
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for v in values {
        out.push(v.to_vec());
        for upper in [true, false] {
            out.push(percent_encode(v, upper, false));
        }
        out.push(percent_encode(v, true, true));
        for upper in [false, true] {
            out.push(hex(v, upper));
        }
        if let Ok(text) = std::str::from_utf8(v) {
            // a JSON string body: quotes, backslashes, newlines escaped
            if let Ok(json) = serde_json::to_string(text) {
                out.push(json.as_bytes()[1..json.len() - 1].to_vec());
            }
        }
        for url_safe in [false, true] {
            for offset in 0..3 {
                out.push(base64_core(v, offset, url_safe));
            }
            let engine = if url_safe {
                base64::engine::general_purpose::URL_SAFE
            } else {
                base64::engine::general_purpose::STANDARD
            };
            let full = engine.encode(v).into_bytes();
            if full.len() > 76 {
                // `base64` (coreutils) wraps its output at 76 columns
                out.extend(full.chunks(76).map(<[u8]>::to_vec));
            }
            out.push(full);
        }
    }
    let mut seen = HashSet::new();
    out.retain(|p| p.len() >= MIN_SECRET_LEN && seen.insert(p.clone()));
    out
}

/// Percent-encoding of `v`: RFC 3986 unreserved bytes stay, everything else
/// becomes `%XX`; `form` writes a space as `+` (HTML forms, `urlencode`).
fn percent_encode(v: &[u8], upper: bool, form: bool) -> Vec<u8> {
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else if form && b == b' ' {
            out.push(b'+');
        } else {
            out.extend([b'%', hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
        }
    }
    out
}

/// Hex digits of `v` (`xxd -p`, `od`-style dumps, hashes printed as hex).
fn hex(v: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    v.iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

/// The base64 characters fully determined by `v` when it starts `offset`
/// bytes (0–2) into the encoded data: whatever precedes or follows it, these
/// characters appear in the encoding.
fn base64_core(v: &[u8], offset: usize, url_safe: bool) -> Vec<u8> {
    let mut data = vec![0u8; offset];
    data.extend_from_slice(v);
    let enc = if url_safe {
        URL_SAFE_NO_PAD.encode(&data)
    } else {
        STANDARD_NO_PAD.encode(&data)
    };
    let start = (8 * offset).div_ceil(6);
    let end = (8 * (offset + v.len())) / 6;
    enc.as_bytes()
        .get(start..end.min(enc.len()))
        .unwrap_or_default()
        .to_vec()
}

/// The compiled patterns of a set of secrets: a dense Aho–Corasick automaton
/// over byte classes. Build once per job, share with [`Arc`].
#[derive(Debug)]
pub struct MaskSet {
    /// Byte → class; bytes that occur in no pattern share class 0.
    class: [u16; 256],
    classes: usize,
    /// `delta[state + class]` → next state (complete DFA). States are
    /// premultiplied (`id * classes`); [`MATCH`] is set on transitions into a
    /// state where a pattern ends, so the hot loop needs one lookup per byte.
    delta: Vec<u32>,
    /// Length of the longest pattern ending in this state (0: none).
    out: Vec<u32>,
    /// Trie depth: the length of the input suffix this state stands for.
    depth: Vec<u32>,
    longest: usize,
    patterns: usize,
}

impl MaskSet {
    /// Compile the masks for `secrets` (values shorter than
    /// [`MIN_SECRET_LEN`] are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut seen = HashSet::new();
        for s in secrets {
            for p in patterns_for(s.as_ref()) {
                if seen.insert(p.clone()) {
                    patterns.push(p);
                }
            }
        }
        Self::from_patterns(&patterns)
    }

    fn from_patterns(patterns: &[Vec<u8>]) -> Self {
        let mut class = [0u16; 256];
        let mut classes = 1usize;
        for p in patterns {
            for &b in p {
                if class[usize::from(b)] == 0 {
                    class[usize::from(b)] = classes as u16;
                    classes += 1;
                }
            }
        }
        const NONE: u32 = u32::MAX;
        // trie
        let mut goto: Vec<u32> = vec![NONE; classes];
        let mut out: Vec<u32> = vec![0];
        let mut depth: Vec<u32> = vec![0];
        for p in patterns {
            let mut s = 0usize;
            for &b in p {
                let c = usize::from(class[usize::from(b)]);
                let next = goto[s * classes + c];
                s = if next == NONE {
                    let n = out.len();
                    goto[s * classes + c] = n as u32;
                    goto.resize(goto.len() + classes, NONE);
                    out.push(0);
                    depth.push(depth[s] + 1);
                    n
                } else {
                    next as usize
                };
            }
            out[s] = out[s].max(p.len() as u32);
        }
        // failure links, breadth first, turning `goto` into a complete DFA
        let states = out.len();
        let mut fail = vec![0u32; states];
        let mut queue = VecDeque::new();
        for t in goto.iter_mut().take(classes) {
            if *t == NONE {
                *t = 0;
            } else {
                fail[*t as usize] = 0;
                queue.push_back(*t as usize);
            }
        }
        while let Some(s) = queue.pop_front() {
            let f = fail[s] as usize;
            out[s] = out[s].max(out[f]);
            for c in 0..classes {
                let t = goto[s * classes + c];
                if t == NONE {
                    goto[s * classes + c] = goto[f * classes + c];
                } else {
                    fail[t as usize] = goto[f * classes + c];
                    queue.push_back(t as usize);
                }
            }
        }
        for t in goto.iter_mut() {
            let id = *t as usize;
            *t = (id * classes) as u32 | if out[id] > 0 { MATCH } else { 0 };
        }
        MaskSet {
            class,
            classes,
            delta: goto,
            out,
            depth,
            longest: patterns.iter().map(Vec::len).max().unwrap_or(0),
            patterns: patterns.len(),
        }
    }

    /// True when nothing will ever be masked.
    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    /// Number of distinct patterns (all forms of all secrets).
    pub fn pattern_count(&self) -> usize {
        self.patterns
    }

    /// Length of the longest pattern: a masker holds back at most this many
    /// bytes minus one.
    pub fn longest_pattern(&self) -> usize {
        self.longest
    }

    /// A streaming masker over these patterns.
    pub fn stream(self: &Arc<Self>) -> StreamMasker {
        StreamMasker {
            set: Arc::clone(self),
            state: 0,
            pos: 0,
            pending: Vec::new(),
            pending_start: 0,
            intervals: VecDeque::new(),
        }
    }

    /// Mask a complete text at once.
    pub fn mask(self: &Arc<Self>, input: &[u8]) -> Vec<u8> {
        let mut m = self.stream();
        let mut out = Vec::with_capacity(input.len());
        m.write(input, &mut out);
        m.finish(&mut out);
        out
    }

    /// [`MaskSet::mask`] for text.
    pub fn mask_str(self: &Arc<Self>, input: &str) -> String {
        String::from_utf8_lossy(&self.mask(input.as_bytes())).into_owned()
    }
}

/// Secrets that exist only after a job has started — deploy credentials refreshed while the
/// job runs (docs/deployments.md). Cloned handles share one list; every line, variable and
/// error that leaves the agent after [`LateSecrets::add`] is masked with it as a second pass
/// (a credential has no newline, so a whole line holds the whole value).
#[derive(Clone, Debug, Default)]
pub struct LateSecrets {
    inner: Arc<std::sync::RwLock<LateInner>>,
}

#[derive(Debug, Default)]
struct LateInner {
    values: Vec<String>,
    set: Option<Arc<MaskSet>>,
}

impl LateSecrets {
    /// Add values (ignored when already known); the mask set is rebuilt.
    pub fn add<I: IntoIterator<Item = String>>(&self, values: I) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let before = inner.values.len();
        for v in values {
            if !inner.values.contains(&v) {
                inner.values.push(v);
            }
        }
        if inner.values.len() != before {
            inner.set = Some(Arc::new(MaskSet::new(inner.values.iter())));
        }
    }

    /// Every value added so far.
    pub fn values(&self) -> Vec<String> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values
            .clone()
    }

    /// `text` with every value added so far masked.
    pub fn mask_str(&self, text: &str) -> String {
        let set = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .clone();
        match set {
            Some(set) if !set.is_empty() => set.mask_str(text),
            _ => text.to_string(),
        }
    }
}

/// Masks one byte stream (e.g. a step's stdout) written in arbitrary chunks.
#[derive(Debug)]
pub struct StreamMasker {
    set: Arc<MaskSet>,
    /// Current DFA state (premultiplied).
    state: u32,
    /// Bytes consumed so far.
    pos: u64,
    /// Consumed but not yet released bytes, starting at `pending_start`.
    pending: Vec<u8>,
    pending_start: u64,
    /// Disjoint, sorted, non-adjacent masked ranges `[start, end)`.
    intervals: VecDeque<(u64, u64)>,
}

impl StreamMasker {
    /// Consume `chunk`; append to `out` every byte that is now final (masked).
    pub fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let set = Arc::clone(&self.set);
        if set.is_empty() {
            out.extend_from_slice(chunk);
            self.pos += chunk.len() as u64;
            self.pending_start = self.pos;
            return;
        }
        let mut state = self.state as usize;
        let base = self.pos;
        for (i, &b) in chunk.iter().enumerate() {
            let next = set.delta[state + usize::from(set.class[usize::from(b)])];
            state = (next & !MATCH) as usize;
            if next & MATCH != 0 {
                let end = base + i as u64 + 1;
                let len = set.out[state / set.classes];
                self.add_interval(end - u64::from(len), end);
            }
        }
        self.pos = base + chunk.len() as u64;
        self.state = state as u32;
        self.pending.extend_from_slice(chunk);
        let mut release = self.pos - u64::from(set.depth[state / set.classes]);
        // never cut through a masked run that may still grow
        for &(s, e) in self.intervals.iter().rev() {
            if e < release {
                break;
            }
            if s < release {
                release = s;
            }
        }
        if self.pending.len() > MAX_PENDING {
            release = self.pos;
        }
        self.release(release, out);
    }

    /// End of stream: release everything (a trailing partial secret is
    /// released as is) and start over.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.release(self.pos, out);
        self.state = 0;
    }

    fn add_interval(&mut self, mut start: u64, end: u64) {
        start = start.max(self.pending_start);
        while let Some(&(s, e)) = self.intervals.back() {
            if e >= start {
                start = start.min(s);
                self.intervals.pop_back();
            } else {
                break;
            }
        }
        self.intervals.push_back((start, end));
    }

    fn release(&mut self, upto: u64, out: &mut Vec<u8>) {
        if upto <= self.pending_start {
            return;
        }
        let base = self.pending_start;
        let mut at = base;
        while let Some(&(s, e)) = self.intervals.front() {
            if s >= upto {
                break;
            }
            out.extend_from_slice(&self.pending[(at - base) as usize..(s - base) as usize]);
            out.extend_from_slice(MASK.as_bytes());
            if e <= upto {
                at = e;
                self.intervals.pop_front();
            } else {
                // forced release inside a run: the rest is masked again later
                at = upto;
                if let Some(front) = self.intervals.front_mut() {
                    front.0 = upto;
                }
                break;
            }
        }
        if at < upto {
            out.extend_from_slice(&self.pending[(at - base) as usize..(upto - base) as usize]);
        }
        self.pending.drain(..(upto - base) as usize);
        self.pending_start = upto;
    }
}

/// Which output a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Written by the agent (phase and step banners, exit statuses, errors).
    System,
}

/// One line of a job's log, already masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// 0-based, gap-free, in emission order over the whole job.
    pub seq: u64,
    pub stream: LogStream,
    /// When the line was cut, milliseconds since the Unix epoch.
    pub ts: u64,
    /// Without the trailing `\n`; a chunk of at most [`MAX_LINE_BYTES`]
    /// bytes of a longer line; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
}

/// Where masked lines go: a bounded channel, so a slow consumer slows the
/// job's log reading (and so the job) instead of growing memory. A dropped
/// receiver is not an error: the job goes on, its lines are discarded.
pub struct LogSink {
    tx: tokio::sync::mpsc::Sender<LogLine>,
    seq: u64,
}

impl LogSink {
    pub fn new(tx: tokio::sync::mpsc::Sender<LogLine>) -> Self {
        LogSink { tx, seq: 0 }
    }

    /// Lines sent so far.
    pub fn sent(&self) -> u64 {
        self.seq
    }

    pub async fn send(&mut self, stream: LogStream, text: String) {
        let line = LogLine {
            seq: self.seq,
            stream,
            ts: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            text,
        };
        self.seq += 1;
        if self.tx.send(line).await.is_err() {
            tracing::trace!("log receiver dropped; discarding line");
        }
    }
}

/// Cuts a byte stream into lines on `\n`, long lines into chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Add bytes; return the lines completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            if let Some(body) = piece.strip_suffix(b"\n") {
                self.buf.extend_from_slice(body);
                self.cut_long(&mut lines);
                let line = std::mem::take(&mut self.buf);
                lines.push(text_of(line));
            } else {
                self.buf.extend_from_slice(piece);
                self.cut_long(&mut lines);
            }
        }
        lines
    }

    fn cut_long(&mut self, lines: &mut Vec<String>) {
        while self.buf.len() > MAX_LINE_BYTES {
            // cut on a UTF-8 boundary when there is one close by
            let mut cut = MAX_LINE_BYTES;
            while cut > MAX_LINE_BYTES - 4 && (self.buf[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            let rest = self.buf.split_off(cut);
            lines.push(text_of(std::mem::replace(&mut self.buf, rest)));
        }
    }

    /// The unterminated last line, if any.
    pub fn flush(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            None
        } else {
            Some(text_of(std::mem::take(&mut self.buf)))
        }
    }
}

fn text_of(mut line: Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A step's output on its way out: per stream, mask then split into lines,
/// then send. Stdout and stderr lines leave in the order their bytes arrived.
pub struct MaskedOutput<'a> {
    sink: &'a mut LogSink,
    set: Arc<MaskSet>,
    out: (StreamMasker, LineSplitter),
    err: (StreamMasker, LineSplitter),
    buf: Vec<u8>,
}

impl<'a> MaskedOutput<'a> {
    pub fn new(sink: &'a mut LogSink, set: &Arc<MaskSet>) -> Self {
        MaskedOutput {
            sink,
            set: Arc::clone(set),
            out: (set.stream(), LineSplitter::default()),
            err: (set.stream(), LineSplitter::default()),
            buf: Vec::new(),
        }
    }

    /// Feed bytes the step wrote to `stream` (stdout or stderr).
    pub async fn write(&mut self, stream: LogStream, bytes: &[u8]) {
        let (masker, lines) = if stream == LogStream::Stderr {
            &mut self.err
        } else {
            &mut self.out
        };
        self.buf.clear();
        masker.write(bytes, &mut self.buf);
        for line in lines.push(&self.buf) {
            self.sink.send(stream, line).await;
        }
    }

    /// A line written by the agent itself (masked too).
    pub async fn system(&mut self, text: &str) {
        let masked = self.set.mask_str(text);
        self.sink.send(LogStream::System, masked).await;
    }

    /// End of the step: release held bytes and unterminated lines.
    pub async fn finish(&mut self) {
        for (stream, (masker, lines)) in [
            (LogStream::Stdout, &mut self.out),
            (LogStream::Stderr, &mut self.err),
        ] {
            self.buf.clear();
            masker.finish(&mut self.buf);
            let mut done = lines.push(&self.buf);
            done.extend(lines.flush());
            for line in done {
                self.sink.send(stream, line).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_secrets_mask_what_was_added_after_the_start() {
        let late = LateSecrets::default();
        let shared = late.clone();
        assert_eq!(
            late.mask_str("key ASIAFIRSTKEY123 here"),
            "key ASIAFIRSTKEY123 here"
        );
        shared.add(["ASIAFIRSTKEY123".to_string()]);
        shared.add([
            "ASIAFIRSTKEY123".to_string(),
            "refreshed-secret-42".to_string(),
        ]);
        let out = late.mask_str("a ASIAFIRSTKEY123 b refreshed-secret-42 c");
        assert!(
            !out.contains("ASIAFIRSTKEY123") && !out.contains("refreshed-secret-42"),
            "{out}"
        );
        assert_eq!(late.values().len(), 2);
    }

    fn set(secrets: &[&str]) -> Arc<MaskSet> {
        Arc::new(MaskSet::new(secrets.iter().map(|s| s.as_bytes())))
    }

    #[test]
    fn base64_cores_appear_in_any_alignment() {
        let v = b"hunter2-password";
        for prefix in ["", "a", "ab", "abc"] {
            for suffix in ["", "x", "xy"] {
                let mut data = prefix.as_bytes().to_vec();
                data.extend_from_slice(v);
                data.extend_from_slice(suffix.as_bytes());
                let enc = base64::engine::general_purpose::STANDARD.encode(&data);
                let off = prefix.len() % 3;
                let core = base64_core(v, off, false);
                assert!(core.len() >= 16);
                assert!(
                    enc.as_bytes().windows(core.len()).any(|w| w == core),
                    "{enc} lacks core for offset {off}"
                );
            }
        }
    }

    #[test]
    fn masks_split_and_overlapping() {
        let s = set(&["s3cret-value"]);
        let mut m = s.stream();
        let mut out = Vec::new();
        m.write(b"before s3cr", &mut out);
        assert_eq!(out, b"before ", "holds back only the possible prefix");
        m.write(b"et-value after s3cret-values3cret-value", &mut out);
        m.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "before *** after ***");
    }

    #[test]
    fn short_values_are_not_masked() {
        let s = set(&["abc", ""]);
        assert!(s.is_empty());
        assert_eq!(s.mask_str("abc abc"), "abc abc");
    }

    #[test]
    fn splitter_cuts_long_lines_and_keeps_partial() {
        let mut sp = LineSplitter::default();
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let lines = sp.push(format!("a\r\nb\n{long}\npartial").as_bytes());
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "a");
        assert_eq!(lines[2].len(), MAX_LINE_BYTES);
        assert_eq!(lines[3].len(), 10);
        assert_eq!(sp.flush().as_deref(), Some("partial"));
    }
}
