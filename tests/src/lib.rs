//! Helpers for Cove's end-to-end tests: drive the real docker engine through the
//! `docker` CLI (`std::process::Command`).
//!
//! The engine is brought up by `scripts/test-env.sh`, which also builds the
//! `cove/*` images. Tests never skip silently: when the engine or an image is
//! missing they fail with a message that says to run that script.
//!
//! Every container a test starts carries the label [`TEST_LABEL`] and a unique
//! name, and is owned by a [`Container`] guard that removes it on drop (also when
//! the test panics). Leftovers of a killed run can be listed with
//! `docker ps -a --filter label=cove.test`.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// Label put on every container the tests create.
pub const TEST_LABEL: &str = "cove.test";

/// Images built by `images/build.sh`.
pub const IMAGE_BASE: &str = "cove/base:bookworm";
/// The default dev image (python3 + boto3, node, git, awscli).
pub const IMAGE_UNIVERSAL: &str = "cove/universal:latest";
/// DynamoDB-compatible server (dynalite) listening on port 8000.
pub const IMAGE_DYNAMODB_LOCAL: &str = "cove/dynamodb-local:latest";
/// busybox-static only; starts fastest.
pub const IMAGE_BUSYBOX: &str = "cove/busybox:latest";
/// Runtime for a containerized `cove-agent` (iptables, git; the binary is bind-mounted).
pub const IMAGE_AGENT: &str = "cove/agent:latest";
/// A service sidecar whose own ENTRYPOINT is the server (busybox httpd on 8080).
pub const IMAGE_ECHO_SERVER: &str = "cove/echo-server:latest";
/// VS Code in the browser (docs/vscode.md).
pub const IMAGE_CODE_SERVER: &str = "cove/code-server:latest";
/// All images `images/build.sh` produces.
pub const ALL_IMAGES: [&str; 7] = [
    IMAGE_BASE,
    IMAGE_UNIVERSAL,
    IMAGE_DYNAMODB_LOCAL,
    IMAGE_BUSYBOX,
    IMAGE_AGENT,
    IMAGE_ECHO_SERVER,
    IMAGE_CODE_SERVER,
];

const SETUP_HINT: &str = "run `bash scripts/test-env.sh` as root first (installs docker.io, \
     starts dockerd, builds the cove/* images), then export DOCKER_HOST from \
     /tmp/cove-dockerd/env or just run `bash scripts/test.sh`";

/// Default time limit for one `docker` invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The socket `scripts/test-env.sh` starts its own dockerd on.
fn cove_dockerd_socket() -> PathBuf {
    let dir = std::env::var_os("COVE_DOCKERD_DIR").unwrap_or_else(|| "/tmp/cove-dockerd".into());
    Path::new(&dir).join("docker.sock")
}

/// The `DOCKER_HOST` the tests use: the caller's, else none when the default
/// socket exists, else the socket of the dockerd that `scripts/test-env.sh` starts.
pub fn docker_host() -> Option<String> {
    if let Some(host) = std::env::var_os("DOCKER_HOST") {
        return Some(host.to_string_lossy().into_owned());
    }
    if Path::new("/var/run/docker.sock").exists() {
        return None;
    }
    let sock = cove_dockerd_socket();
    sock.exists().then(|| format!("unix://{}", sock.display()))
}

/// A `docker` command aimed at the test engine.
pub fn docker<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("docker");
    if let Some(host) = docker_host() {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.args(args);
    cmd
}

/// Runs `cmd` to completion, killing it after `timeout`. Stdout and stderr are captured.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {shown} (is the docker CLI installed?)"))?;
    let mut out_pipe = child.stdout.take().context("stdout was piped")?;
    let mut err_pipe = child.stderr.take().context("stderr was piped")?;
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `docker ARGS`, fails unless it exits 0, returns its trimmed stdout.
pub fn docker_ok<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = docker(args);
    let out = output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Fails the calling test (panics) with a setup hint unless a docker engine answers.
pub fn require_docker() {
    let mut cmd = docker(["version", "--format", "{{.Server.Version}}"]);
    match output_with_timeout(&mut cmd, Duration::from_secs(15)) {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "no docker engine reachable (DOCKER_HOST={:?}): {}\n=> {SETUP_HINT}",
            docker_host(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run docker: {e:#}\n=> {SETUP_HINT}"),
    }
}

/// Whether `tag` exists in the engine.
pub fn image_exists(tag: &str) -> Result<bool> {
    let mut cmd = docker(["image", "inspect", "--format", "{{.Id}}", tag]);
    Ok(output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)?
        .status
        .success())
}

/// Fails the calling test (panics) with a setup hint unless the engine answers and has `tag`.
pub fn require_image(tag: &str) {
    require_docker();
    match image_exists(tag) {
        Ok(true) => {}
        Ok(false) => panic!("image {tag} is missing\n=> {SETUP_HINT}"),
        Err(e) => panic!("cannot inspect image {tag}: {e:#}\n=> {SETUP_HINT}"),
    }
}

/// A container name unique across tests, processes and runs: `cove-test-PREFIX-PID-N-NANOS`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cove-test-{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// A container owned by a test; `docker rm -f -v` on drop.
#[derive(Debug)]
pub struct Container {
    /// Full container id (or, before it is known, the name).
    pub id: String,
    /// The unique `--name` it was created with.
    pub name: String,
}

impl Container {
    /// `docker run -d --label cove.test=… --name <unique> ARGS…` (ARGS: options, image, command).
    pub fn start(prefix: &str, args: &[&str]) -> Result<Container> {
        let name = unique_name(prefix);
        let label = format!("{TEST_LABEL}={prefix}");
        let mut full = vec!["run", "-d", "--label", &label, "--name", &name];
        full.extend_from_slice(args);
        // Guard by name first, so a container created by a run that then fails is removed too.
        let mut guard = Container {
            id: name.clone(),
            name: name.clone(),
        };
        guard.id = docker_ok(&full)?;
        Ok(guard)
    }

    /// Runs a one-shot container in the foreground (`docker run --label … --name <unique> ARGS…`)
    /// and returns its output; it is removed afterwards whatever happens.
    pub fn run_once(prefix: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        let name = unique_name(prefix);
        let label = format!("{TEST_LABEL}={prefix}");
        let _guard = Container {
            id: name.clone(),
            name: name.clone(),
        };
        let mut full = vec!["run", "--label", &label, "--name", &name];
        full.extend_from_slice(args);
        output_with_timeout(&mut docker(&full), timeout)
    }

    /// `docker logs` of this container (stdout and stderr together), for failure messages.
    pub fn logs(&self) -> String {
        let mut cmd = docker(["logs", &self.id]);
        match output_with_timeout(&mut cmd, DEFAULT_TIMEOUT) {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("<docker logs failed: {e:#}>"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let mut cmd = docker(["rm", "-f", "-v", &self.id]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        // Best effort; a container that never got created is fine to miss.
        let _ = output_with_timeout(&mut cmd, DEFAULT_TIMEOUT);
    }
}

/// Removes every container, volume and network labelled `cove.env=<id>` and
/// the firewall rules tagged with it when dropped, so a failing end-to-end
/// test leaves no environment behind.
pub struct EnvCleanup(pub String);

impl Drop for EnvCleanup {
    fn drop(&mut self) {
        let filter = format!("label=cove.env={}", self.0);
        let ids = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let containers = ids(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .output();
        }
        let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
        if !volumes.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
        // the environment's network and its firewall rules (comment `cove.env=<id>`)
        for network in ids(&["network", "ls", "-q", "--filter", &filter]) {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &network])
                .output();
        }
        let tag = format!("cove.env={}", self.0);
        for chain in ["INPUT", "DOCKER-USER"] {
            let Ok(listing) = std::process::Command::new("iptables")
                .args(["-w", "-S", chain])
                .output()
            else {
                continue;
            };
            for line in String::from_utf8_lossy(&listing.stdout).lines() {
                let words: Vec<String> = line
                    .split_whitespace()
                    .map(|w| w.trim_matches('"').to_string())
                    .collect();
                if words.len() > 2 && words[0] == "-A" && words.contains(&tag) {
                    let _ = std::process::Command::new("iptables")
                        .args(["-w", "-D", chain])
                        .args(&words[2..])
                        .output();
                }
            }
        }
    }
}

/// The path of binary `bin` of workspace package `package`, built on first use with
/// `$CARGO build -q -p <package> --bin <bin>` (same target directory — `CARGO_TARGET_DIR` is
/// honoured — and profile as the running test). `CARGO_BIN_EXE_*` only covers binaries of the
/// test's own package; this covers the others. Cargo's build lock is free while tests run.
pub fn cargo_bin(package: &str, bin: &str) -> Result<PathBuf> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<(String, String), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built
        .lock()
        .map_err(|_| anyhow::anyhow!("a cargo_bin build panicked"))?;
    let key = (package.to_string(), bin.to_string());
    if let Some(path) = built.get(&key) {
        return Ok(path.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate lives in the workspace")?
        .join("Cargo.toml");
    let release = std::env::current_exe()
        .map(|p| p.components().any(|c| c.as_os_str() == "release"))
        .unwrap_or(false);
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-q",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
    ])
    .args(["--bin", bin])
    .arg("--manifest-path")
    .arg(&manifest)
    .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running cargo build -p {package} --bin {bin}"))?;
    if !out.status.success() {
        bail!("cargo build -p {package} --bin {bin} failed");
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build named no executable for {package}/{bin}"))?;
    built.insert(key, path.clone());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_valid_container_names() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
    }
}
