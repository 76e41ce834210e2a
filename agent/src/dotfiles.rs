//! A user's dotfiles in a new environment: cloned on the agent's side (the environment's
//! network cannot reach the host or, often, anything else), streamed as a tar into
//! `~/.dotfiles` of the first source container's user, then the first install script found
//! runs once, as Codespaces and Coder look for them ([`INSTALL_SCRIPTS`]). Everything here is
//! bounded in time and output, and every failure comes back as a [`DotfilesRun`] with a
//! non-zero exit code: dotfiles never fail or block an environment.

use std::process::Stdio;
use std::time::Duration;

use cove_api::agent::EnvDotfiles;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::backend::Backend;
use crate::bounded::ExecLimits;

/// Install scripts, in the order they are looked for (the first one present runs).
pub const INSTALL_SCRIPTS: [&str; 8] = [
    "install.sh",
    "install",
    "bootstrap.sh",
    "bootstrap",
    "script/bootstrap",
    "setup.sh",
    "setup",
    "script/setup",
];

/// The clone's time limit.
pub const CLONE_TIMEOUT: Duration = Duration::from_secs(120);
/// The install script's time limit.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Output of the install script kept for the environment's log.
pub const INSTALL_OUTPUT_BYTES: usize = 64 * 1024;
/// Largest checked-out dotfiles repository (working tree and `.git`) copied into a container.
pub const MAX_BYTES: u64 = 64 << 20;
/// git's error output kept.
const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// What installing the dotfiles did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotfilesRun {
    /// The step or script: `clone`, `install.sh`, … or `none` when no script was found.
    pub step: String,
    /// 0 on success (also when no script was found).
    pub exit_code: i64,
    pub output: String,
}

impl DotfilesRun {
    fn failed(step: &str, output: String) -> Self {
        DotfilesRun {
            step: step.to_string(),
            exit_code: 1,
            output,
        }
    }
}

/// Clone `spec` into `~/.dotfiles` of `component` and run its install script once.
pub async fn install(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    spec: &EnvDotfiles,
) -> DotfilesRun {
    let home = match rt
        .exec(
            env,
            component,
            &["sh", "-c", "printf %s \"$HOME\""],
            &[],
            None,
        )
        .await
    {
        Ok(out) if out.exit_code == 0 && out.stdout.starts_with('/') => out.stdout,
        Ok(out) => {
            return DotfilesRun::failed(
                "home",
                format!("the container user has no home directory: {}", out.stderr),
            )
        }
        Err(e) => return DotfilesRun::failed("home", e.to_string()),
    };
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => return DotfilesRun::failed("clone", e.to_string()),
    };
    let dir = tmp.path().join("dotfiles");
    if let Err(e) = clone(spec, &dir).await {
        return DotfilesRun::failed("clone", e);
    }
    let measured = dir.clone();
    match tokio::task::spawn_blocking(move || tree_bytes(&measured, MAX_BYTES)).await {
        Ok(Ok(n)) if n <= MAX_BYTES => {}
        Ok(Ok(_)) => {
            return DotfilesRun::failed(
                "clone",
                format!(
                    "the dotfiles repository is larger than {} MiB",
                    MAX_BYTES >> 20
                ),
            )
        }
        Ok(Err(e)) => return DotfilesRun::failed("clone", e.to_string()),
        Err(e) => return DotfilesRun::failed("clone", e.to_string()),
    }
    let (body, writer) = crate::sources::tar_stream(dir, ".dotfiles".into());
    let upload = rt
        .upload_tar_stream(env, component, &home, Box::pin(body))
        .await;
    let written = writer
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = written {
        return DotfilesRun::failed("copy", e);
    }
    if let Err(e) = upload {
        return DotfilesRun::failed("copy", e.to_string());
    }
    let script = format!(
        r#"cd "$HOME/.dotfiles" || exit 1
for f in {list}; do
  if [ -f "$f" ]; then
    echo "cove: running ~/.dotfiles/$f"
    if [ -x "$f" ]; then exec "./$f"; else exec sh "./$f"; fi
  fi
done
echo "cove: no install script in ~/.dotfiles (looked for {list})"
exit 0"#,
        list = INSTALL_SCRIPTS.join(" ")
    );
    let limits = ExecLimits {
        output_bytes: INSTALL_OUTPUT_BYTES,
        timeout: INSTALL_TIMEOUT,
    };
    match rt
        .exec_limited(env, component, &["sh", "-c", &script], &[], None, limits)
        .await
    {
        Ok(out) => {
            let step = out
                .stdout
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("cove: running ~/.dotfiles/"))
                .unwrap_or("none")
                .to_string();
            let mut output = out.stdout;
            if !out.stderr.is_empty() {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&out.stderr);
            }
            DotfilesRun {
                step,
                exit_code: out.exit_code,
                output,
            }
        }
        Err(e) => DotfilesRun::failed("install", e.to_string()),
    }
}

/// Bytes of the regular files under `dir` (symbolic links not followed); stops counting once
/// past `limit`.
fn tree_bytes(dir: &std::path::Path, limit: u64) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
                if total > limit {
                    return Ok(total);
                }
            }
        }
    }
    Ok(total)
}

/// `git clone --depth 1` on the agent's side: http(s) only, no redirects, the server's
/// checked address pinned, no prompts, no user or system configuration; the credential
/// travels in `GIT_CONFIG_*` and is scrubbed from errors.
async fn clone(spec: &EnvDotfiles, dir: &std::path::Path) -> Result<(), String> {
    let mut cmd = Command::new("git");
    for var in [
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "GIT_TRACE_PACKET",
        "GIT_CURL_VERBOSE",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_CONFIG_PARAMETERS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "http:https")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    let mut config = vec![
        ("http.followRedirects", "false".to_string()),
        ("credential.helper", String::new()),
        ("core.askPass", String::new()),
    ];
    if let Some(r) = &spec.resolve {
        config.push(("http.curloptResolve", r.clone()));
    }
    if let Some(h) = &spec.auth_header {
        config.push(("http.extraHeader", h.clone()));
    }
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd.args([
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--no-recurse-submodules",
        &spec.clone_url,
    ])
    .arg(dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("git could not be started: {e}"))?;
    let stderr = child.stderr.take();
    let run = async {
        let mut err = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut err).await;
        }
        (child.wait().await, err)
    };
    let (status, err) = tokio::time::timeout(CLONE_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "cloning {} took longer than {} s",
                spec.clone_url,
                CLONE_TIMEOUT.as_secs()
            )
        })?;
    let status = status.map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&err).trim().to_string();
    if let Some(h) = &spec.auth_header {
        detail = detail.replace(h.as_str(), "<redacted>");
        if let Some(secret) = h.rsplit(' ').next() {
            detail = detail.replace(secret, "<redacted>");
        }
    }
    Err(format!("git clone of {} failed: {detail}", spec.clone_url))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tree_bytes_counts_files_and_stops_past_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(tmp.path().join("sub/b"), [0u8; 20]).unwrap();
        assert_eq!(tree_bytes(tmp.path(), 100).unwrap(), 30);
        assert!(tree_bytes(tmp.path(), 15).unwrap() > 15);
    }
}
