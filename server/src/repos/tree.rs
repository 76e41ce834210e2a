//! `GET /api/v1/repos/{owner}/{name}/tree?ref=&path=`: one directory of a repository at a
//! commit, for the web UI's code browser (the files route reads one file).

use axum::extract::State;
use axum::Extension;
use cove_api::{TreeEntry, TreeEntryKind, TreeListing};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::git::{self, GitError};
use crate::store::RepoRow;
use crate::AppState;

/// Entries listed per directory; the rest are counted out with `truncated`.
pub const MAX_TREE_ENTRIES: usize = 5_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// Branch, tag or commit (default: the default branch).
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    rev: Option<String>,
    /// The directory, from the root (default: the root).
    path: Option<String>,
}

pub async fn read_tree(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<TreeQuery>,
) -> Result<Json<TreeListing>, ApiError> {
    let rev = query.rev.unwrap_or_else(|| repo.default_branch.clone());
    let dir = query.path.unwrap_or_default();
    let dir = dir.trim_matches('/').to_string();
    let path = super::repo_dir(&state, &repo);
    let listing = tokio::task::spawn_blocking(move || list_dir(&path, &rev, &dir))
        .await
        .map_err(GitError::from)??;
    Ok(Json(listing))
}

fn list_dir(path: &std::path::Path, rev: &str, dir: &str) -> Result<TreeListing, GitError> {
    let repo = git2::Repository::open_bare(path)?;
    let commit = git::resolve_commit(&repo, rev)?;
    let not_found = || GitError::NotFound(format!("directory {dir:?} at {rev}"));
    if dir.contains('\0') || dir.split('/').any(|part| part == "." || part == "..") {
        return Err(not_found());
    }
    let root = commit.tree()?;
    let tree = if dir.is_empty() {
        root
    } else {
        let entry = root
            .get_path(std::path::Path::new(dir))
            .map_err(|_| not_found())?;
        entry
            .to_object(&repo)?
            .into_tree()
            .map_err(|_| not_found())?
    };
    let mut entries = Vec::new();
    for entry in tree.iter().take(MAX_TREE_ENTRIES) {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let kind = match (entry.kind(), entry.filemode()) {
            (Some(git2::ObjectType::Tree), _) => TreeEntryKind::Dir,
            (Some(git2::ObjectType::Commit), _) => TreeEntryKind::Submodule,
            (_, 0o120000) => TreeEntryKind::Symlink,
            _ => TreeEntryKind::File,
        };
        let size = match kind {
            TreeEntryKind::File | TreeEntryKind::Symlink => repo
                .find_blob(entry.id())
                .ok()
                .map(|blob| blob.size() as u64),
            _ => None,
        };
        let full = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        entries.push(TreeEntry {
            name,
            path: full,
            kind,
            size,
        });
    }
    entries.sort_by(|a, b| {
        (a.kind != TreeEntryKind::Dir)
            .cmp(&(b.kind != TreeEntryKind::Dir))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(TreeListing {
        path: dir.to_string(),
        commit: commit.id().to_string(),
        entries,
        truncated: tree.len() > MAX_TREE_ENTRIES,
    })
}
