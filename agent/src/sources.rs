//! Putting a repository into an environment's `/projects` volume.
//!
//! The agent clones on its own side (it can reach the Cove server) with a
//! short-lived credential passed to git through the environment
//! (`GIT_CONFIG_*`, never on the command line, never in `.git/config`), then
//! streams the working tree into the container as a tar archive. The
//! credential therefore never enters the container; the clone's `origin`
//! points at the plain repository URL.

use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use cove_api::agent::EnvSource;

use crate::backend::{Backend, BackendError};
use crate::pod::PodError;

/// What to check out: the protocol's [`EnvSource`] (clone URL without
/// credentials, repository directory, branch or new branch, a short-lived
/// `Authorization` header line, git user).
pub type SourceSpec = EnvSource;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git {step} of {url} failed: {detail}")]
    Git {
        step: &'static str,
        url: String,
        detail: String,
    },
    #[error("preparing sources: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

async fn git(
    dir: &Path,
    args: &[&str],
    spec: &SourceSpec,
    step: &'static str,
) -> Result<(), SourceError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(h) = &spec.auth_header {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", h);
    }
    let out = cmd.output().await?;
    if out.status.success() {
        Ok(())
    } else {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(h) = &spec.auth_header {
            detail = detail.replace(h.as_str(), "<redacted>");
        }
        Err(SourceError::Git {
            step,
            url: spec.clone_url.clone(),
            detail,
        })
    }
}

/// Clone `spec` into `<projects_root>/<repo>` of `component`, unless that
/// directory already exists (the sources volume persists across restarts).
/// Returns false when the sources were already there.
pub async fn checkout(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    projects_root: &str,
    spec: &SourceSpec,
) -> Result<bool, SourceError> {
    if present(rt, env, component, projects_root, spec).await? {
        return Ok(false);
    }
    let prepared = prepare(spec).await?;
    upload(rt, env, component, projects_root, spec, &prepared).await?;
    Ok(true)
}

/// Whether `<projects_root>/<repo>` already exists in `component`.
async fn present(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    projects_root: &str,
    spec: &SourceSpec,
) -> Result<bool, SourceError> {
    let target = format!("{}/{}", projects_root.trim_end_matches('/'), spec.repo);
    let probe = rt
        .exec(env, component, &["test", "-e", &target], &[], None)
        .await?;
    Ok(probe.exit_code == 0)
}

/// A checkout of a [`SourceSpec`] made on the agent's host, ready to be unpacked into a
/// container ([`upload`]); removed when dropped.
pub struct Prepared {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

/// Clones and checks out `spec` on the agent's host, with the owner's identity in the clone's
/// config. Needs no container: a create runs it while its containers are being made.
pub async fn prepare(spec: &SourceSpec) -> Result<Prepared, SourceError> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path();
    git(
        base,
        &[
            "clone",
            "--quiet",
            "--no-checkout",
            &spec.clone_url,
            &spec.repo,
        ],
        spec,
        "clone",
    )
    .await?;
    let dir = base.join(&spec.repo);
    // An empty repository has no branch yet: start the branch from nothing.
    let has_branch = git(
        &dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("origin/{}", spec.branch),
        ],
        spec,
        "rev-parse",
    )
    .await
    .is_ok();
    match (&spec.new_branch, has_branch) {
        (Some(nb), true) => {
            git(
                &dir,
                &[
                    "checkout",
                    "--quiet",
                    "-b",
                    nb,
                    &format!("origin/{}", spec.branch),
                ],
                spec,
                "checkout",
            )
            .await?
        }
        (Some(nb), false) => {
            git(
                &dir,
                &["checkout", "--quiet", "--orphan", nb],
                spec,
                "checkout",
            )
            .await?
        }
        (None, true) => {
            git(
                &dir,
                &["checkout", "--quiet", &spec.branch],
                spec,
                "checkout",
            )
            .await?
        }
        (None, false) => {
            git(
                &dir,
                &["checkout", "--quiet", "--orphan", &spec.branch],
                spec,
                "checkout",
            )
            .await?
        }
    }
    git(
        &dir,
        &["config", "user.name", &spec.git_user_name],
        spec,
        "config",
    )
    .await?;
    git(
        &dir,
        &["config", "user.email", &spec.git_user_email],
        spec,
        "config",
    )
    .await?;
    Ok(Prepared { _tmp: tmp, dir })
}

/// Unpacks `prepared` into `<projects_root>/<repo>` of `component`, unless that directory
/// already exists (not looked for when `known_empty`: a sources volume the create or its warm
/// shell just made). Returns false when the sources were already there.
pub async fn upload_prepared(
    rt: &dyn Backend,
    env: &str,
    target: (&str, &str),
    spec: &SourceSpec,
    prepared: &Prepared,
    known_empty: bool,
) -> Result<bool, SourceError> {
    let (component, projects_root) = target;
    if !known_empty && present(rt, env, component, projects_root, spec).await? {
        return Ok(false);
    }
    upload(rt, env, component, projects_root, spec, prepared).await?;
    Ok(true)
}

async fn upload(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    projects_root: &str,
    spec: &SourceSpec,
    prepared: &Prepared,
) -> Result<(), SourceError> {
    // Streamed: a blocking thread writes the tar in 64 KiB chunks into a
    // small channel that is the upload's body, so memory stays bounded
    // whatever the size of the working tree.
    let (body, writer) = tar_stream(prepared.dir.clone(), spec.repo.clone());
    let upload = rt
        .upload_tar_stream(env, component, projects_root, Box::pin(body))
        .await;
    let written = writer
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // The writer's error explains a failed upload best (the upload only sees
    // its body end early).
    written?;
    upload?;
    Ok(())
}

/// Chunk size of a streamed tar, and how many chunks may wait in flight.
const CHUNK: usize = 64 * 1024;
const IN_FLIGHT: usize = 4;

/// A tar of `dir` under the name `name`, as a stream of chunks fed by a
/// blocking thread. At most `IN_FLIGHT` chunks of `CHUNK` bytes are held.
pub(crate) fn tar_stream(
    dir: std::path::PathBuf,
    name: String,
) -> (
    impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    JoinHandle<std::io::Result<()>>,
) {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        });
        builder.follow_symlinks(false);
        let result = builder
            .append_dir_all(&name, &dir)
            .and_then(|()| builder.into_inner())
            .and_then(|mut w| std::io::Write::flush(&mut w));
        if let Err(e) = &result {
            // The upload ends with this error rather than a short archive.
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (stream, writer)
}

/// `Write` into the body channel, in chunks of [`CHUNK`] bytes.
struct ChunkWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// What happened to one devfile project (`projects`/`dependentProjects`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectClone {
    pub name: String,
    /// `PROJECTS_ROOT/<clonePath>`.
    pub path: String,
    /// `cloned`, `present` (already there, left alone) or `failed`.
    pub outcome: String,
    /// Why it failed, or a note (a revision that was not found).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The script of [`clone_project`]; every value comes in through the
/// environment, never through the script text. Clone with `git` into a
/// temporary directory beside the target (with `--sparse` and
/// `git sparse-checkout set DIRS` when directories are listed), add the other
/// remotes, check out the revision (the default branch stays when it is not
/// found, as the devfile schema says), then move it into place.
const CLONE_SCRIPT: &str = r#"
set -u
if [ -e "$COVE_TARGET" ]; then echo present; exit 0; fi
command -v git >/dev/null 2>&1 || { echo "git is not installed in this container" >&2; exit 3; }
tmp="$COVE_TARGET.cove-clone"
rm -rf "$tmp"
mkdir -p "$(dirname "$COVE_TARGET")" || exit 1
if [ -n "$COVE_SPARSE" ]; then
  git clone --quiet --sparse -o "$COVE_REMOTE" "$COVE_URL" "$tmp" || exit 1
  printf '%s\n' "$COVE_SPARSE" | git -C "$tmp" sparse-checkout set --stdin || exit 1
else
  git clone --quiet -o "$COVE_REMOTE" "$COVE_URL" "$tmp" || exit 1
fi
printf '%s\n' "$COVE_REMOTES" | while read -r name url; do
  [ -n "$name" ] && git -C "$tmp" remote add "$name" "$url"
done
if [ -n "$COVE_REV" ]; then
  if ! git -C "$tmp" checkout --quiet "$COVE_REV" 2>/dev/null; then
    git -C "$tmp" fetch --quiet "$COVE_REMOTE" "$COVE_REV" 2>/dev/null \
      && git -C "$tmp" checkout --quiet FETCH_HEAD 2>/dev/null \
      || echo "revision $COVE_REV not found; the default branch is checked out"
  fi
fi
mv "$tmp" "$COVE_TARGET" || exit 1
echo cloned
"#;

/// Clone a devfile project into `projects_root` of `component`, with the
/// container's own `git` and network, so a project can reach only what the
/// environment can (no agent-side fetch, no credentials). Sparse checkout
/// for `sparseCheckoutDirs`. A target that exists is left alone. Zip
/// projects are not downloaded (the plan warns).
pub async fn clone_project(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    projects_root: &str,
    project: &devfiles::ProjectPlan,
) -> ProjectClone {
    let path = format!(
        "{}/{}",
        projects_root.trim_end_matches('/'),
        project.clone_path
    );
    let mut result = ProjectClone {
        name: project.name.clone(),
        path: path.clone(),
        outcome: "failed".into(),
        detail: String::new(),
    };
    let Some(url) = project.clone_url() else {
        result.detail = "not a git project (zip archives are not downloaded)".into();
        return result;
    };
    let remote = project
        .checkout_remote
        .clone()
        .or_else(|| project.remotes.keys().next().cloned())
        .unwrap_or_else(|| "origin".into());
    let others: Vec<String> = project
        .remotes
        .iter()
        .filter(|(name, _)| **name != remote)
        .map(|(name, url)| format!("{name} {url}"))
        .collect();
    let vars = vec![
        ("COVE_TARGET".to_string(), path),
        ("COVE_URL".to_string(), url.to_string()),
        ("COVE_REMOTE".to_string(), remote),
        (
            "COVE_REV".to_string(),
            project.revision.clone().unwrap_or_default(),
        ),
        (
            "COVE_SPARSE".to_string(),
            project.sparse_checkout_dirs.join("\n"),
        ),
        ("COVE_REMOTES".to_string(), others.join("\n")),
    ];
    match rt
        .exec(env, component, &["sh", "-c", CLONE_SCRIPT], &vars, None)
        .await
    {
        Ok(out) if out.exit_code == 0 => {
            let mut lines: Vec<&str> = out.stdout.lines().collect();
            result.outcome = lines.pop().unwrap_or("cloned").to_string();
            result.detail = lines.join("\n");
        }
        Ok(out) => {
            let shown = without_userinfo(url);
            result.detail = format!(
                "git clone of {shown} failed (exit {}): {}",
                out.exit_code,
                out.stderr.trim().replace(url, &shown)
            );
        }
        Err(e) => result.detail = e.to_string(),
    }
    result
}

/// `scheme://user:secret@host/…` as `scheme://***@host/…`: a URL with
/// credentials never reaches a report.
fn without_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// Largest git config a claim rewrites.
const MAX_GIT_CONFIG_BYTES: usize = 64 * 1024;

/// Writes `user.name`/`user.email` of `identity` into the config of the clone at `repo_dir`
/// in `component`: read through the backend, edited with the agent's own git (exactly as the
/// clone of a create wrote them), unpacked back in place. The container needs no git.
pub async fn set_git_identity(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    repo_dir: &str,
    identity: (&str, &str),
) -> Result<(), String> {
    let git_dir = format!("{}/.git", repo_dir.trim_end_matches('/'));
    let text = rt
        .read_file(
            env,
            component,
            &format!("{git_dir}/config"),
            MAX_GIT_CONFIG_BYTES,
        )
        .await
        .map_err(|e| format!("reading the clone's git config: {e}"))?
        .ok_or_else(|| format!("{git_dir}/config cannot be read"))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = tmp.path().join("config");
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    for (key, value) in [("user.name", identity.0), ("user.email", identity.1)] {
        let out = Command::new("git")
            .arg("config")
            .arg("--file")
            .arg(&file)
            .args([key, value])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("git config: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git config {key}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let tar = {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_path_with_name(&file, "config")
            .and_then(|()| builder.into_inner())
            .map_err(|e| e.to_string())?
    };
    rt.upload_tar(env, component, &git_dir, tar)
        .await
        .map_err(|e| format!("writing the clone's git config: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(
            super::without_userinfo("https://u:tok@example.invalid/a.git"),
            "https://***@example.invalid/a.git"
        );
        assert_eq!(
            super::without_userinfo("https://example.invalid/a@b.git"),
            "https://example.invalid/a@b.git"
        );
    }
}
