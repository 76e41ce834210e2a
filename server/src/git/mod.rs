//! Git hosting: bare repositories on disk, the smart HTTP protocol (by spawning
//! `git upload-pack|receive-pack --stateless-rpc` with streamed bodies), and read access
//! through git2 for the REST API.
//!
//! Invariants: request and response bodies of pack transfers are streamed, never buffered
//! whole (only receive-pack's small status report is held until its push events are stored);
//! ref updates of a push are the difference of ref snapshots taken under the repository's
//! lock; a push is acknowledged to the client only after its events are committed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use async_compression::tokio::bufread::GzipDecoder;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use cove_api::{Branch, Commit, ContentEncoding, FileContent, Role, Scope, ZERO_SHA};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::auth::{authenticate, authorize_repo, ClientAddr, Principal};
use crate::error::ApiError;
use crate::store::{RefUpdate, RepoRow};
use crate::AppState;

mod smart_http;

pub use smart_http::{ask_for_basic, info_refs, receive_pack, upload_pack, InfoRefsQuery};

/// A failure of a git operation.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("`git {command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<GitError> for ApiError {
    fn from(err: GitError) -> Self {
        match err {
            GitError::NotFound(what) => ApiError::NotFound(what),
            other => ApiError::internal(other),
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> GitError {
    let context = context.into();
    move |source| GitError::Io { context, source }
}

/// `data_dir/repos/<owner>/<name>.git`. Callers pass validated names only.
pub fn repo_path(data_dir: &Path, owner: &str, name: &str) -> PathBuf {
    data_dir
        .join("repos")
        .join(owner)
        .join(format!("{name}.git"))
}

/// A `git` command with an environment that cannot redirect it to another repository.
pub(crate) fn git() -> Command {
    let mut cmd = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CEILING_DIRECTORIES",
        "GIT_PROTOCOL",
    ] {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true);
    cmd
}

/// Creates an empty bare repository with default branch `main`, replacing any leftover
/// directory at that path (a repository whose creation or deletion was interrupted).
pub async fn init_bare(path: &Path, default_branch: &str) -> Result<(), GitError> {
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(path)
            .await
            .map_err(io_err(format!("removing leftover {}", path.display())))?;
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    let output = git()
        .arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg("-b")
        .arg(default_branch)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io_err("spawning git init"))?;
    if !output.status.success() {
        return Err(GitError::Command {
            command: "init".into(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Removes a repository directory: renamed into `data_dir/trash` first so a crash never
/// leaves a half-deleted repository at its real path.
pub async fn remove_repo(data_dir: &Path, path: &Path, id: i64) -> Result<(), GitError> {
    let trash = data_dir.join("trash");
    tokio::fs::create_dir_all(&trash)
        .await
        .map_err(io_err("creating trash directory"))?;
    let target = trash.join(format!("{id}.git"));
    match tokio::fs::rename(path, &target).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("moving {} to trash", path.display()))(e)),
    }
    tokio::fs::remove_dir_all(&target)
        .await
        .map_err(io_err(format!("removing {}", target.display())))
}

/// Removes receive-pack quarantine directories (`objects/tmp_objdir-incoming-*`) left behind
/// when a push was cut off by a crash: their objects were never referenced. Only call this
/// before serving, when no push of this data directory can be running.
pub fn remove_stale_quarantines(data_dir: &Path) -> Result<usize, GitError> {
    let mut removed = 0;
    let repos = data_dir.join("repos");
    let owners = match std::fs::read_dir(&repos) {
        Ok(it) => it,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(format!("listing {}", repos.display()))(e)),
    };
    for owner in owners.filter_map(Result::ok) {
        let Ok(repos) = std::fs::read_dir(owner.path()) else {
            continue;
        };
        for repo in repos.filter_map(Result::ok) {
            let Ok(objects) = std::fs::read_dir(repo.path().join("objects")) else {
                continue;
            };
            for entry in objects.filter_map(Result::ok) {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("tmp_objdir-incoming-") {
                    std::fs::remove_dir_all(entry.path())
                        .map_err(io_err(format!("removing {}", entry.path().display())))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    tokio::task::spawn_blocking(f).await?
}

/// Every direct ref under `refs/` and the object it points to.
pub async fn snapshot_refs(path: PathBuf) -> Result<BTreeMap<String, String>, GitError> {
    blocking(move || {
        let repo = git2::Repository::open_bare(&path)?;
        let mut refs = BTreeMap::new();
        for reference in repo.references()? {
            let reference = reference?;
            if let (Some(name), Some(target)) = (reference.name(), reference.target()) {
                if name.starts_with("refs/") {
                    refs.insert(name.to_string(), target.to_string());
                }
            }
        }
        Ok(refs)
    })
    .await
}

/// The ref updates that turn `before` into `after`.
pub fn diff_refs(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<RefUpdate> {
    let mut updates = Vec::new();
    for (name, new) in after {
        match before.get(name) {
            Some(old) if old == new => {}
            old => updates.push(RefUpdate {
                ref_name: name.clone(),
                old_sha: old.cloned().unwrap_or_else(|| ZERO_SHA.to_string()),
                new_sha: new.clone(),
            }),
        }
    }
    for (name, old) in before {
        if !after.contains_key(name) {
            updates.push(RefUpdate {
                ref_name: name.clone(),
                old_sha: old.clone(),
                new_sha: ZERO_SHA.to_string(),
            });
        }
    }
    updates
}

/// Branches and their tip commits.
pub async fn branches(path: PathBuf) -> Result<Vec<Branch>, GitError> {
    blocking(move || {
        let repo = git2::Repository::open_bare(&path)?;
        let mut out = Vec::new();
        for branch in repo.branches(Some(git2::BranchType::Local))? {
            let (branch, _) = branch?;
            let reference = branch.get();
            if let (Some(name), Some(target)) = (reference.shorthand(), reference.target()) {
                out.push(Branch {
                    name: name.to_string(),
                    commit: target.to_string(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
}

pub(crate) fn resolve_commit<'r>(
    repo: &'r git2::Repository,
    rev: &str,
) -> Result<git2::Commit<'r>, GitError> {
    if rev.starts_with('-') || rev.len() > 256 || rev.contains('\0') {
        return Err(GitError::NotFound(format!("revision {rev:?}")));
    }
    let object = repo
        .revparse_single(rev)
        .map_err(|_| GitError::NotFound(format!("revision {rev:?}")))?;
    object
        .peel_to_commit()
        .map_err(|_| GitError::NotFound(format!("commit {rev:?}")))
}

/// Up to `limit` commits reachable from `rev`, newest first.
pub async fn commits(path: PathBuf, rev: String, limit: usize) -> Result<Vec<Commit>, GitError> {
    blocking(move || {
        let repo = git2::Repository::open_bare(&path)?;
        let tip = resolve_commit(&repo, &rev)?;
        let mut walk = repo.revwalk()?;
        walk.set_sorting(git2::Sort::TIME | git2::Sort::TOPOLOGICAL)?;
        walk.push(tip.id())?;
        let mut out = Vec::new();
        for oid in walk.take(limit) {
            let commit = repo.find_commit(oid?)?;
            let author = commit.author();
            out.push(Commit {
                id: commit.id().to_string(),
                summary: commit.summary().unwrap_or_default().to_string(),
                author_name: author.name().unwrap_or_default().to_string(),
                author_email: author.email().unwrap_or_default().to_string(),
                time: commit.time().seconds(),
                parents: commit.parent_ids().map(|id| id.to_string()).collect(),
            });
        }
        Ok(out)
    })
    .await
}

/// Largest file the API returns.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// The blob at `file` in the commit `rev`.
pub async fn read_file(path: PathBuf, rev: String, file: String) -> Result<FileContent, GitError> {
    blocking(move || {
        let repo = git2::Repository::open_bare(&path)?;
        let commit = resolve_commit(&repo, &rev)?;
        let not_found = || GitError::NotFound(format!("file {file:?} at {rev}"));
        if file.contains('\0') || file.is_empty() {
            return Err(not_found());
        }
        let entry = commit
            .tree()?
            .get_path(Path::new(&file))
            .map_err(|_| not_found())?;
        let blob = entry
            .to_object(&repo)?
            .into_blob()
            .map_err(|_| not_found())?;
        if blob.size() > MAX_FILE_BYTES {
            return Err(GitError::NotFound(format!(
                "file {file:?} at {rev} (larger than {MAX_FILE_BYTES} bytes)"
            )));
        }
        let (encoding, content) = match std::str::from_utf8(blob.content()) {
            Ok(text) => (ContentEncoding::Utf8, text.to_string()),
            Err(_) => (
                ContentEncoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(blob.content()),
            ),
        };
        Ok(FileContent {
            path: file.clone(),
            commit: commit.id().to_string(),
            size: blob.size() as u64,
            encoding,
            content,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn diff_refs_reports_creates_updates_and_deletes() {
        let before = refs(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "2"),
            ("refs/tags/t", "3"),
        ]);
        let after = refs(&[
            ("refs/heads/a", "1"),
            ("refs/heads/b", "4"),
            ("refs/heads/c", "5"),
        ]);
        let got: Vec<(String, String, String)> = diff_refs(&before, &after)
            .into_iter()
            .map(|u| (u.ref_name, u.old_sha, u.new_sha))
            .collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            got,
            vec![
                (s("refs/heads/b"), s("2"), s("4")),
                (s("refs/heads/c"), s(ZERO_SHA), s("5")),
                (s("refs/tags/t"), s("3"), s(ZERO_SHA)),
            ]
        );
    }
}
