//! What goes into a job container before it starts: the step runner script,
//! one file per command, the initial working directory, and the directories
//! sources and input artifacts are extracted into.
//!
//! The step runner implements rule 1 of the design notes (§6): every command
//! runs in a fresh shell process (`<shell> /cove/bin/step N [NAME=VALUE…]`)
//! that
//!
//! 1. records its pid (= its process group: Docker starts every exec as a
//!    session leader) so cancellation can signal the whole group;
//! 2. sources the previous command's `export -p` dump and `cd`s to its
//!    working directory (every command after the first runs under `env -i`,
//!    so a variable the previous command `unset` stays unset);
//! 3. exports the per-command overrides (`CODEBUILD_BUILD_SUCCEEDING`);
//! 4. turns on allexport (`set -a`), so plain `X=1` assignments are exported
//!    and carry over like `export X=1` — the behaviour of AWS's runner;
//! 5. sources the command file: the command runs in this shell, its status
//!    is that of its last line (a multi-line command does not stop at a
//!    failing line unless it `set -e`s);
//! 6. saves `$?`, `export -p`, `pwd` and `env -0` (for exported variables)
//!    and exits with the saved status.
//!
//! Functions, aliases, traps, shell options and non-exported arrays live
//! only in that process and do not carry over. A command that `exit`s ends
//! its shell before step 6: its status counts, its state changes are lost.

use std::collections::BTreeMap;

/// Where everything lives inside the job container.
pub const ROOT: &str = "/cove";
/// The source tree (`CODEBUILD_SRC_DIR`, `CATALYST_SOURCE_DIR_WorkflowSource`).
pub const SRC_DIR: &str = "/cove/src";
/// Input artifacts are extracted into `/cove/artifacts/<name>`.
pub const ARTIFACTS_DIR: &str = "/cove/artifacts";
pub(crate) const STEP: &str = "/cove/bin/step";
pub(crate) const PID_FILE: &str = "/cove/state/pid";
pub(crate) const ENV0_FILE: &str = "/cove/state/env.0";

const RUNNER: &str = r#"# Cove step runner: $1 is the command number, then NAME=VALUE overrides.
echo $$ > /cove/state/pid
if [ -f /cove/state/env.sh ]; then . /cove/state/env.sh; fi
if ! cd "$(cat /cove/state/pwd)" 2>/dev/null; then
  echo "[cove] the previous working directory is gone; starting in $(pwd)" >&2
fi
echo "$1" > /cove/state/current
shift
while [ $# -gt 0 ]; do export "$1"; shift; done
set -a
. "/cove/steps/$(cat /cove/state/current)"
echo $? > /cove/state/rc
set +a
export -p > /cove/state/env.sh
pwd > /cove/state/pwd
env -0 > /cove/state/env.0 2>/dev/null || env > /cove/state/env.0
exit "$(cat /cove/state/rc)"
"#;

/// Builds the bootstrap tar uploaded at `/` before the container starts.
pub(crate) struct Bootstrap {
    builder: tar::Builder<Vec<u8>>,
}

impl Bootstrap {
    pub(crate) fn new() -> std::io::Result<Self> {
        let mut b = Bootstrap {
            builder: tar::Builder::new(Vec::new()),
        };
        for dir in [
            "cove",
            "cove/src",
            "cove/bin",
            "cove/steps",
            "cove/artifacts",
        ] {
            b.dir(dir, 0o755)?;
        }
        b.dir("cove/state", 0o700)?;
        b.file("cove/bin/step", RUNNER.as_bytes(), 0o755)?;
        Ok(b)
    }

    /// A tar without the runner's own files.
    pub(crate) fn empty() -> Self {
        Bootstrap {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        self.builder.append_data(&mut h, path, std::io::empty())
    }

    pub(crate) fn file(&mut self, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        self.builder.append_data(&mut h, path, data)
    }

    /// Command `n` (file `/cove/steps/<n>`).
    pub(crate) fn command(&mut self, n: usize, text: &str) -> std::io::Result<()> {
        let mut body = text.to_string();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        self.file(&format!("cove/steps/{n}"), body.as_bytes(), 0o644)
    }

    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

/// The command line of command `n`: the first one inherits the container's
/// and the job's environment, later ones start from the saved state only.
pub(crate) fn command_line(
    shell: &str,
    n: usize,
    first: bool,
    overrides: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut cmd = Vec::new();
    if !first {
        cmd.extend(["env".to_string(), "-i".to_string()]);
    }
    cmd.extend([shell.to_string(), STEP.to_string(), n.to_string()]);
    cmd.extend(overrides.iter().map(|(k, v)| format!("{k}={v}")));
    cmd
}

/// Parse `env -0` output (falls back to newline-separated `env`).
pub(crate) fn parse_env(bytes: &[u8]) -> BTreeMap<String, String> {
    let sep = if bytes.contains(&0) { 0 } else { b'\n' };
    bytes
        .split(|b| *b == sep)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_dump_parses_values_with_newlines_and_equals() {
        let env = parse_env(b"A=1\0B=x=y\0C=multi\nline\0");
        assert_eq!(env["B"], "x=y");
        assert_eq!(env["C"], "multi\nline");
    }

    #[test]
    fn later_commands_start_from_a_clean_environment() {
        let o = BTreeMap::from([("CODEBUILD_BUILD_SUCCEEDING".to_string(), "0".to_string())]);
        assert_eq!(
            command_line("/bin/sh", 3, false, &o).join(" "),
            "env -i /bin/sh /cove/bin/step 3 CODEBUILD_BUILD_SUCCEEDING=0"
        );
        assert_eq!(
            command_line("bash", 0, true, &BTreeMap::new()).join(" "),
            "bash /cove/bin/step 0"
        );
    }
}
