//! `PUT /api/v1/repos/{owner}/{name}/contents/{path}` (writers): commit one file's new text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{EditFile, EditResult, ZERO_SHA};

use super::{check_branch_name, check_path, MAX_EDIT_BYTES, MAX_MESSAGE_BYTES};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::forge::http::check_text;
use crate::store::{RefUpdate, RepoRow};
use crate::AppState;

/// What the file is at a commit: absent, or its blob id, mode and whether it can be edited.
enum Existing {
    Absent,
    File { blob: String, mode: String },
}

/// The file at `commit`: refuses directories, links, submodules, binary and oversized files.
async fn file_at(path: PathBuf, commit: String, file: String) -> Result<Existing, ApiError> {
    tokio::task::spawn_blocking(move || -> Result<Existing, ApiError> {
        let repo = git2::Repository::open_bare(&path).map_err(ApiError::internal)?;
        let oid = git2::Oid::from_str(&commit)
            .map_err(|_| ApiError::BadRequest(format!("not a commit id: {commit:?}")))?;
        let commit_obj = repo
            .find_commit(oid)
            .map_err(|_| ApiError::NotFound(format!("commit {commit}")))?;
        let tree = commit_obj.tree().map_err(ApiError::internal)?;
        let entry = match tree.get_path(std::path::Path::new(&file)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Existing::Absent),
            Err(e) => return Err(ApiError::internal(e)),
        };
        let mode = entry.filemode();
        if mode != 0o100644 && mode != 0o100755 {
            return Err(ApiError::Unprocessable(format!(
                "{file} is not a regular file (a directory, link or submodule); it cannot be edited here"
            )));
        }
        let blob = repo.find_blob(entry.id()).map_err(ApiError::internal)?;
        if blob.size() > MAX_EDIT_BYTES {
            return Err(ApiError::Unprocessable(format!(
                "{file} is {} bytes; files above {MAX_EDIT_BYTES} bytes cannot be edited in the browser",
                blob.size()
            )));
        }
        if blob.is_binary() || std::str::from_utf8(blob.content()).is_err() {
            return Err(ApiError::Unprocessable(format!(
                "{file} is a binary file; it cannot be edited in the browser"
            )));
        }
        Ok(Existing::File {
            blob: entry.id().to_string(),
            mode: format!("{mode:o}"),
        })
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn edit_file(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<EditFile>,
) -> Result<(StatusCode, Json<EditResult>), ApiError> {
    let file = params.get("path").cloned().unwrap_or_default();
    check_path(&file)?;
    check_branch_name(&req.branch)?;
    if let Some(new_branch) = &req.new_branch {
        check_branch_name(new_branch)?;
    }
    check_text("message", &req.message, MAX_MESSAGE_BYTES, true)?;
    if req.content.len() > MAX_EDIT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the new content is {} bytes; at most {MAX_EDIT_BYTES} can be committed from the browser",
            req.content.len()
        )));
    }
    if req.content.contains('\0') {
        return Err(ApiError::Unprocessable(
            "the new content contains a NUL byte (binary files cannot be edited here)".into(),
        ));
    }
    if req.base_commit.len() != 40 || !req.base_commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "base_commit must be a 40-character commit id (got {:?})",
            req.base_commit
        )));
    }
    let user = &principal.user;
    let path = crate::repos::repo_dir(&state, &repo);
    // Serialized with pushes and merges; `update-ref` with the old value guards the rest.
    let _guard = crate::cluster::lock_repo(&state, repo.id).await?;
    let head = super::head_of(path.clone(), req.branch.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("branch {}", req.branch)))?;
    let at_base = file_at(path.clone(), req.base_commit.clone(), file.clone()).await?;
    let at_head = file_at(path.clone(), head.clone(), file.clone()).await?;
    let mode = match (&at_base, &at_head) {
        (Existing::Absent, Existing::Absent) => "100644".to_string(),
        (Existing::File { blob: a, .. }, Existing::File { blob: b, mode }) if a == b => {
            mode.clone()
        }
        _ => {
            return Err(ApiError::Conflict(format!(
                "{file} changed on {} since {} (now at {}); nothing was overwritten — reload \
                 the file and apply your change again",
                req.branch,
                &req.base_commit[..12],
                &head[..12]
            )))
        }
    };
    let (target, old) = match &req.new_branch {
        Some(new_branch) => {
            if super::head_of(path.clone(), new_branch.clone())
                .await?
                .is_some()
            {
                return Err(ApiError::Conflict(format!(
                    "branch {new_branch} already exists"
                )));
            }
            (new_branch.clone(), None)
        }
        None => (req.branch.clone(), Some(head.clone())),
    };
    let ref_name = format!("refs/heads/{target}");
    // Checked against the rules before anything is written (new: a placeholder id).
    let mut update = RefUpdate {
        ref_name: ref_name.clone(),
        old_sha: old.clone().unwrap_or_else(|| ZERO_SHA.to_string()),
        new_sha: head.clone(),
    };
    super::check_rules(&state, &repo, user, &update).await?;
    let email = user
        .email
        .clone()
        .unwrap_or_else(|| format!("{}@cove.invalid", user.username));
    let message = if req.message.ends_with('\n') {
        req.message.clone()
    } else {
        format!("{}\n", req.message)
    };
    let (commit, blob) = super::commit_file(super::NewCommit {
        path: &path,
        parent: &head,
        file: &file,
        mode: &mode,
        content: req.content.as_bytes(),
        message: &message,
        author: (&user.username, &email),
    })
    .await?;
    if let Existing::File { blob: old_blob, .. } = &at_head {
        if *old_blob == blob && req.new_branch.is_none() {
            return Err(ApiError::BadRequest(format!(
                "{file} already has this content on {}: nothing to commit",
                req.branch
            )));
        }
    }
    super::update_ref(path, &ref_name, &commit, old.as_deref()).await?;
    update.new_sha = commit.clone();
    super::record_push(&state, &repo, user, vec![update], "in-browser edit").await?;
    Ok((
        StatusCode::CREATED,
        Json(EditResult {
            commit,
            branch: target,
            path: file,
            blob,
        }),
    ))
}
