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

use crate::pod::{PodError, Runtime};

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
    rt: &Runtime,
    env: &str,
    component: &str,
    projects_root: &str,
    spec: &SourceSpec,
) -> Result<bool, SourceError> {
    let target = format!("{}/{}", projects_root.trim_end_matches('/'), spec.repo);
    let probe = rt
        .exec(env, component, &["test", "-e", &target], &[], None)
        .await?;
    if probe.exit_code == 0 {
        return Ok(false);
    }
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
    // Streamed: a blocking thread writes the tar in 64 KiB chunks into a
    // small channel that is the upload's body, so memory stays bounded
    // whatever the size of the working tree.
    let (body, writer) = tar_stream(dir.clone(), spec.repo.clone());
    let upload = rt
        .upload_tar_stream(env, component, projects_root, body)
        .await;
    let written = writer
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    // The writer's error explains a failed upload best (the upload only sees
    // its body end early).
    written?;
    upload?;
    Ok(true)
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
