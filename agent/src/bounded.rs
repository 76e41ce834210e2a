//! Bounds on every command the agent runs in an environment on a user's
//! behalf (`/exec`, devfile commands, postStart/preStop events, the devfile
//! watcher's file reads): at most [`ExecLimits::output_bytes`] of output is
//! kept — the rest is counted and dropped with a visible note — and the
//! command is abandoned after [`ExecLimits::timeout`].

use std::time::Duration;

/// Output kept per command (stdout and stderr together): 1 MiB.
pub const DEFAULT_OUTPUT_BYTES: usize = 1 << 20;
/// Default time a command may run: 15 minutes (`COVE_EXEC_TIMEOUT_SECS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Time a file read (the devfile watcher's `cat`) may take: 10 s.
pub const FILE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Exit code reported for a command that ran out of time (as `timeout(1)`).
pub const TIMED_OUT_EXIT_CODE: i64 = 124;

/// Output and time bounds of one exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLimits {
    pub output_bytes: usize,
    pub timeout: Duration,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            output_bytes: DEFAULT_OUTPUT_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ExecLimits {
    /// The defaults, with the timeout from `COVE_EXEC_TIMEOUT_SECS` when it is a
    /// positive number of seconds.
    pub fn from_env() -> Self {
        let mut l = ExecLimits::default();
        if let Some(secs) = std::env::var("COVE_EXEC_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
        {
            l.timeout = Duration::from_secs(secs);
        }
        l
    }
}

/// Collects stdout and stderr of one command within a byte budget.
#[derive(Debug, Default)]
pub struct BoundedOutput {
    budget: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dropped_stdout: u64,
    dropped_stderr: u64,
}

impl BoundedOutput {
    pub fn new(budget: usize) -> Self {
        BoundedOutput {
            budget,
            ..Default::default()
        }
    }

    fn room(&self) -> usize {
        self.budget
            .saturating_sub(self.stdout.len() + self.stderr.len())
    }

    /// Keep what fits of `bytes`, count the rest.
    pub fn push(&mut self, stderr: bool, bytes: &[u8]) {
        let take = self.room().min(bytes.len());
        let dropped = (bytes.len() - take) as u64;
        if stderr {
            self.stderr.extend_from_slice(&bytes[..take]);
            self.dropped_stderr += dropped;
        } else {
            self.stdout.extend_from_slice(&bytes[..take]);
            self.dropped_stdout += dropped;
        }
    }

    /// Bytes counted but not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped_stdout + self.dropped_stderr
    }

    /// Kept stdout as it came (for file reads).
    pub fn into_stdout(self) -> Vec<u8> {
        self.stdout
    }

    /// (stdout, stderr) as text, each with a note when output was dropped.
    pub fn finish(self) -> (String, String) {
        let text = |bytes: Vec<u8>, dropped: u64| {
            let mut s = String::from_utf8_lossy(&bytes).into_owned();
            if dropped > 0 {
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push('\n');
                }
                s.push_str(&dropped_note(dropped));
            }
            s
        };
        (
            text(self.stdout, self.dropped_stdout),
            text(self.stderr, self.dropped_stderr),
        )
    }
}

/// The note that replaces dropped output.
pub fn dropped_note(bytes: u64) -> String {
    format!("[cove: {bytes} bytes of output dropped]\n")
}

/// The note added to stderr when a command ran out of time.
pub fn timeout_note(timeout: Duration) -> String {
    format!(
        "[cove: the command did not finish within {} s and was abandoned]\n",
        timeout.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_budget_and_counts_the_rest() {
        let mut o = BoundedOutput::new(10);
        o.push(false, b"12345678");
        o.push(true, b"abcdef");
        o.push(false, b"xyz");
        assert_eq!(o.dropped(), 4 + 3);
        let (out, err) = o.finish();
        assert_eq!(out, "12345678\n[cove: 3 bytes of output dropped]\n");
        assert_eq!(err, "ab\n[cove: 4 bytes of output dropped]\n");
    }

    #[test]
    fn nothing_dropped_means_no_note() {
        let mut o = BoundedOutput::new(10);
        o.push(false, b"hi\n");
        assert_eq!(o.finish(), ("hi\n".to_string(), String::new()));
    }
}

/// The last `cap` bytes of a log read in chunks (memory stays under `2 * cap`), rendered with a
/// note of how much earlier output was dropped.
#[derive(Debug)]
pub struct LogTail {
    cap: usize,
    kept: Vec<u8>,
    dropped: u64,
}

impl LogTail {
    pub fn new(cap: usize) -> Self {
        LogTail {
            cap,
            kept: Vec::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.kept.extend_from_slice(bytes);
        if self.kept.len() > 2 * self.cap {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.kept.len() > self.cap {
            let cut = self.kept.len() - self.cap;
            self.dropped += cut as u64;
            self.kept.drain(..cut);
        }
    }

    /// The kept bytes as text, after a `[cove: N bytes of earlier output dropped]` line when
    /// anything was dropped.
    pub fn into_text(mut self) -> String {
        self.trim();
        let mut text = String::new();
        if self.dropped > 0 {
            text.push_str(&format!(
                "[cove: {} bytes of earlier output dropped]\n",
                self.dropped
            ));
        }
        text.push_str(&String::from_utf8_lossy(&self.kept));
        text
    }
}

#[cfg(test)]
mod log_tail_tests {
    use super::LogTail;

    #[test]
    fn keeps_the_last_bytes_and_says_what_was_dropped() {
        let mut t = LogTail::new(4);
        for chunk in [&b"abc"[..], b"defg", b"hij"] {
            t.push(chunk);
        }
        assert_eq!(
            t.into_text(),
            "[cove: 6 bytes of earlier output dropped]\nghij"
        );
        let mut t = LogTail::new(8);
        t.push(b"short");
        assert_eq!(t.into_text(), "short");
    }
}
