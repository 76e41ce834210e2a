//! A pull request's diff against the merge base of its destination and head, its commits,
//! and branch lookups — computed with git2 on a blocking thread, a few at a time, within a
//! deadline and under size caps, so a huge or hostile pull request costs bounded memory and
//! time and never holds a tokio worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cove_api::{DiffFile, PullCommit, PullDiff};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Files listed at most; the rest are counted and left out.
pub const MAX_DIFF_FILES: usize = 3000;
/// Patch text served at most, over all files (the rest: `truncated`).
pub const MAX_DIFF_BYTES: usize = 16 * 1024 * 1024;
/// Patch text of one file at most.
pub const MAX_FILE_PATCH_BYTES: usize = 1024 * 1024;
/// Commits listed at most.
pub const MAX_COMMITS: usize = 1000;
/// git2 work for pull requests running at once.
pub const MAX_CONCURRENT: usize = 4;
/// A diff or merge that has not finished by then is abandoned (answered 503).
pub const GIT_DEADLINE: Duration = Duration::from_secs(30);

fn permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT)))
        .clone()
}

/// Runs `work` on a blocking thread within the forge's budget.
pub async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = permits()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match tokio::time::timeout(GIT_DEADLINE, task).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => Err(ApiError::internal(e)),
        Err(_) => Err(ApiError::Unavailable(format!(
            "the repository operation took longer than {} s and was abandoned",
            GIT_DEADLINE.as_secs()
        ))),
    }
}

pub(crate) fn git_err(e: git2::Error) -> ApiError {
    ApiError::internal(anyhow::anyhow!("git: {e}"))
}

pub(crate) fn open(path: &Path) -> Result<git2::Repository, ApiError> {
    git2::Repository::open_bare(path).map_err(git_err)
}

/// The commit a branch points to, `None` when there is no such branch.
pub(crate) fn branch_sha(repo: &git2::Repository, branch: &str) -> Option<git2::Oid> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|r| r.target())
}

/// The heads of `source` and `destination` (each `None` when missing).
pub async fn branch_heads(
    path: PathBuf,
    source: String,
    destination: String,
) -> Result<(Option<String>, Option<String>), ApiError> {
    off_thread(move || {
        let repo = open(&path)?;
        Ok((
            branch_sha(&repo, &source).map(|o| o.to_string()),
            branch_sha(&repo, &destination).map(|o| o.to_string()),
        ))
    })
    .await
}

/// Whether the `destination` branch's head is contained in the `source` branch (the source
/// is up to date with the destination). A missing branch counts as not up to date.
pub async fn contains_destination(
    path: PathBuf,
    source: String,
    destination: String,
) -> Result<bool, ApiError> {
    off_thread(move || {
        let repo = open(&path)?;
        let (Some(src), Some(dst)) = (branch_sha(&repo, &source), branch_sha(&repo, &destination))
        else {
            return Ok(false);
        };
        Ok(src == dst || repo.graph_descendant_of(src, dst).map_err(git_err)?)
    })
    .await
}

/// The diff of `head` against the merge base of `base` and `head`.
pub async fn pull_diff(path: PathBuf, base: String, head: String) -> Result<PullDiff, ApiError> {
    off_thread(move || diff_blocking(&path, &base, &head)).await
}

fn oid(s: &str) -> Result<git2::Oid, ApiError> {
    git2::Oid::from_str(s).map_err(|_| ApiError::BadRequest(format!("not a commit id: {s:?}")))
}

fn diff_blocking(path: &Path, base: &str, head: &str) -> Result<PullDiff, ApiError> {
    let repo = open(path)?;
    let head_id = oid(head)?;
    let base_id = oid(base)?;
    let merge_base = repo.merge_base(base_id, head_id).map_err(|_| {
        ApiError::Conflict("the source and destination have no common history".into())
    })?;
    let old_tree = repo
        .find_commit(merge_base)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    let new_tree = repo
        .find_commit(head_id)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    let mut opts = git2::DiffOptions::new();
    opts.context_lines(3);
    let mut diff = repo
        .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), Some(&mut opts))
        .map_err(git_err)?;
    let mut find = git2::DiffFindOptions::new();
    find.renames(true).rename_limit(MAX_DIFF_FILES);
    diff.find_similar(Some(&mut find)).map_err(git_err)?;
    let stats = diff.stats().map_err(git_err)?;
    let total = diff.deltas().len();
    let mut files = Vec::new();
    let mut bytes = 0usize;
    let mut reasons = Vec::new();
    let mut truncated = false;
    for (idx, delta) in diff.deltas().enumerate() {
        if idx >= MAX_DIFF_FILES {
            truncated = true;
            reasons.push(format!(
                "only the first {MAX_DIFF_FILES} of {total} files are listed"
            ));
            break;
        }
        let status = match delta.status() {
            git2::Delta::Added => "added",
            git2::Delta::Deleted => "deleted",
            git2::Delta::Renamed => "renamed",
            git2::Delta::Copied => "copied",
            git2::Delta::Typechange => "typechange",
            _ => "modified",
        };
        let path_of = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().into_owned());
        let old_path = (delta.status() != git2::Delta::Added)
            .then(|| path_of(delta.old_file()))
            .flatten();
        let new_path = (delta.status() != git2::Delta::Deleted)
            .then(|| path_of(delta.new_file()))
            .flatten();
        let mut file = DiffFile {
            status: status.into(),
            old_path,
            new_path,
            additions: 0,
            deletions: 0,
            binary: delta.flags().is_binary(),
            patch: String::new(),
            truncated: false,
        };
        if bytes >= MAX_DIFF_BYTES {
            file.truncated = true;
            truncated = true;
            files.push(file);
            continue;
        }
        if let Some(mut patch) = git2::Patch::from_diff(&diff, idx).map_err(git_err)? {
            let (_, adds, dels) = patch.line_stats().map_err(git_err)?;
            file.additions = adds as u64;
            file.deletions = dels as u64;
            if patch.delta().flags().is_binary() {
                file.binary = true;
            } else {
                let buf = patch.to_buf().map_err(git_err)?;
                let text = String::from_utf8_lossy(&buf);
                let room = MAX_FILE_PATCH_BYTES.min(MAX_DIFF_BYTES - bytes);
                if text.len() > room {
                    let mut cut = room;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    file.patch = text[..cut].to_string();
                    file.truncated = true;
                    truncated = true;
                } else {
                    file.patch = text.into_owned();
                }
                bytes += file.patch.len();
            }
        }
        files.push(file);
    }
    if files.iter().any(|f| f.truncated) {
        reasons.push(format!(
            "patch text is capped at {} KiB per file and {} MiB in all",
            MAX_FILE_PATCH_BYTES / 1024,
            MAX_DIFF_BYTES / (1024 * 1024)
        ));
    }
    Ok(PullDiff {
        merge_base: merge_base.to_string(),
        head_sha: head.to_string(),
        files_changed: total as u64,
        additions: stats.insertions() as u64,
        deletions: stats.deletions() as u64,
        files,
        truncated,
        truncated_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    })
}

/// The commits of `head` that `base` does not have, oldest first (at most [`MAX_COMMITS`]).
pub async fn pull_commits(
    path: PathBuf,
    base: String,
    head: String,
) -> Result<Vec<PullCommit>, ApiError> {
    off_thread(move || {
        let repo = open(&path)?;
        let mut walk = repo.revwalk().map_err(git_err)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .map_err(git_err)?;
        walk.push(oid(&head)?).map_err(git_err)?;
        walk.hide(oid(&base)?).map_err(git_err)?;
        let mut out = Vec::new();
        for id in walk.take(MAX_COMMITS) {
            let commit = repo.find_commit(id.map_err(git_err)?).map_err(git_err)?;
            out.push(PullCommit {
                sha: commit.id().to_string(),
                summary: commit.summary().unwrap_or_default().to_string(),
                author: commit.author().name().unwrap_or_default().to_string(),
                time: commit.time().seconds(),
            });
        }
        out.reverse();
        Ok(out)
    })
    .await
}
