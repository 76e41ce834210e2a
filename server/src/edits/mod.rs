//! In-browser edits (issue 16; docs/issues.md "In-browser edits"): one file's new text
//! committed as the caller to an existing branch or a new one, with git plumbing on the bare
//! repository and no working tree — `hash-object`, `read-tree` + `update-index` on a
//! temporary index, `write-tree`, `commit-tree`, and `update-ref` with the old value, so a
//! concurrent change is refused (409), never overwritten. The commit is then recorded as a
//! push by the caller ([`record_push`], as `crate::git` records one), so PUSH workflows start
//! and `Fixes #N` on the default branch closes issues. `http.rs`: the `PUT …/contents/{path}`
//! handler (route in `crate::routes`).
//!
//! Also used by `crate::issues` to create a branch from an issue.

pub mod http;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cove_api::ZERO_SHA;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::forge::rules::{check_update, PushCheck};
use crate::store::{RefUpdate, RepoRow, UserRow};
use crate::AppState;

/// Largest file that can be edited (before and after), in bytes.
pub const MAX_EDIT_BYTES: usize = 1024 * 1024;
/// Longest commit message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// A branch name git accepts, not starting with `-`, at most 255 bytes.
pub fn check_branch_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || name.contains('\0')
        || !git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
    {
        return Err(ApiError::BadRequest(format!(
            "not a valid branch name: {name:?}"
        )));
    }
    Ok(())
}

/// A repository-relative file path: no leading or trailing `/`, no empty, `.` or `..`
/// component, no `.git` component, no control character or backslash, at most 4096 bytes.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > 4096
        || path.chars().any(char::is_control)
        || path.contains('\\')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.eq_ignore_ascii_case(".git"));
    if bad {
        return Err(ApiError::BadRequest(format!(
            "not a file path in the repository: {path:?}"
        )));
    }
    Ok(())
}

/// The commit `refs/heads/<branch>` points to, if the branch exists.
pub async fn head_of(path: PathBuf, branch: String) -> Result<Option<String>, ApiError> {
    let found = tokio::task::spawn_blocking(move || -> Result<Option<String>, git2::Error> {
        let repo = git2::Repository::open_bare(&path)?;
        let found = match repo.find_reference(&format!("refs/heads/{branch}")) {
            Ok(r) => r.peel_to_commit().ok().map(|c| c.id().to_string()),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(found)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(found)
}

/// Branch rules apply to edits as to pushes (an edit is a fast-forward): a branch that takes
/// changes only through pull requests refuses it, and a mirror refuses every edit.
pub async fn check_rules(
    state: &AppState,
    repo: &RepoRow,
    user: &UserRow,
    update: &RefUpdate,
) -> Result<(), ApiError> {
    if let Some(mirror) = state.store().mirror(repo.id).await? {
        return Err(ApiError::Conflict(format!(
            "this repository is a mirror of {}; change the upstream",
            mirror.url
        )));
    }
    let rules = state.store().branch_rules(repo.id).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let is_owner =
        crate::auth::role_of_user(state.store(), user, repo).await? == Some(cove_api::Role::Owner);
    match check_update(
        &rules,
        &update.ref_name,
        &update.old_sha,
        &update.new_sha,
        false,
        is_owner,
    ) {
        PushCheck::Refuse(reason) => Err(ApiError::Forbidden(reason)),
        PushCheck::Allow | PushCheck::FastForwardOnly(_) => Ok(()),
    }
}

/// Runs `git --git-dir <path> <args>` (with `stdin` and extra environment), its trimmed
/// standard output; a failure is `Err` with git's message.
async fn run_git(
    path: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    envs: &[(&str, &str)],
) -> Result<String, (String, ApiError)> {
    let mut cmd = crate::git::git();
    cmd.arg("--git-dir").arg(path).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let what = || format!("git {}", args.first().copied().unwrap_or_default());
    let mut child = cmd.spawn().map_err(|e| {
        (
            e.to_string(),
            ApiError::internal(anyhow::anyhow!("{}: {e}", what())),
        )
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(|e| (e.to_string(), ApiError::internal(e)))?;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| (e.to_string(), ApiError::internal(e)))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let error = ApiError::internal(anyhow::anyhow!("{} failed: {stderr}", what()));
        return Err((stderr, error));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn git_out(
    path: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    envs: &[(&str, &str)],
) -> Result<String, ApiError> {
    run_git(path, args, stdin, envs).await.map_err(|(_, e)| e)
}

/// `git update-ref <ref> <new> <old>`: `old` `None` means the ref must not exist. A ref that
/// is not at `old` any more is a 409.
pub async fn update_ref(
    path: PathBuf,
    ref_name: &str,
    new: &str,
    old: Option<&str>,
) -> Result<(), ApiError> {
    let old = old.unwrap_or(ZERO_SHA);
    match run_git(&path, &["update-ref", ref_name, new, old], None, &[]).await {
        Ok(_) => Ok(()),
        Err((stderr, _)) if old == ZERO_SHA => Err(ApiError::Conflict(format!(
            "{} already exists ({stderr})",
            ref_name.trim_start_matches("refs/heads/")
        ))),
        Err((stderr, _)) => Err(ApiError::Conflict(format!(
            "{} moved while this change was being committed; nothing was overwritten — \
             reload the file and apply your change again ({stderr})",
            ref_name.trim_start_matches("refs/heads/")
        ))),
    }
}

/// One file's new content as a commit on top of `parent`: the commit id and the blob id.
pub struct NewCommit<'a> {
    pub path: &'a Path,
    pub parent: &'a str,
    pub file: &'a str,
    /// `100644` or `100755`.
    pub mode: &'a str,
    pub content: &'a [u8],
    pub message: &'a str,
    /// Author and committer: (name, email).
    pub author: (&'a str, &'a str),
}

/// Writes the blob, a tree with it in place of `file` (a temporary index read from
/// `parent`), and a commit; moves no ref.
pub async fn commit_file(new: NewCommit<'_>) -> Result<(String, String), ApiError> {
    let blob = git_out(
        new.path,
        &["hash-object", "-w", "--stdin"],
        Some(new.content),
        &[],
    )
    .await?;
    let scratch = tempfile::tempdir().map_err(ApiError::internal)?;
    let index = scratch.path().join("index");
    let index = index.to_string_lossy().into_owned();
    let env = [("GIT_INDEX_FILE", index.as_str())];
    git_out(new.path, &["read-tree", new.parent], None, &env).await?;
    let cacheinfo = format!("{},{blob},{}", new.mode, new.file);
    // git refuses paths it cannot place (under an existing file, names it does not allow).
    run_git(
        new.path,
        &["update-index", "--add", "--cacheinfo", &cacheinfo],
        None,
        &env,
    )
    .await
    .map_err(|(stderr, _)| {
        ApiError::Unprocessable(format!("{} cannot be written: {stderr}", new.file))
    })?;
    let tree = git_out(new.path, &["write-tree"], None, &env).await?;
    let (name, email) = new.author;
    let ident = [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    ];
    let commit = git_out(
        new.path,
        &["commit-tree", &tree, "-p", new.parent, "-F", "-"],
        Some(new.message.as_bytes()),
        &ident,
    )
    .await?;
    Ok((commit, blob))
}

/// Records ref updates made by the server on `user`'s behalf as a push by them — the same
/// steps as `crate::git` after receive-pack: push events stored (PUSH workflows start from
/// them), open pull requests revised and issues closed (`crate::forge::after_push`), the push
/// bus, the audit log.
pub async fn record_push(
    state: &AppState,
    repo: &RepoRow,
    user: &UserRow,
    updates: Vec<RefUpdate>,
    what: &str,
) -> Result<(), ApiError> {
    let stored = state
        .store()
        .insert_push_events(repo, Some(user), &updates)
        .await?;
    crate::forge::after_push(state, repo, Some(&user.username), &stored).await;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    for event in stored {
        tracing::info!(
            repo = %full_name,
            r#ref = %event.ref_name,
            old = %event.old_sha,
            new = %event.new_sha,
            pusher = event.pusher.as_deref().unwrap_or_default(),
            what,
            "push event stored"
        );
        state.publish(crate::repos::push_event_dto(&full_name, event));
    }
    crate::audit::push(state, repo, &user.username, &updates, "ok").await;
    Ok(())
}
