//! The devfile of an environment, read from the repository with git2 (parents from the same commit).

use crate::extract::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cove_api::InvalidDevfile;
use devfiles::Resolver;

use crate::error::ApiError;

/// Reads parents from the repository at the same commit.
pub(super) struct GitResolver {
    pub(super) repo: std::path::PathBuf,
    pub(super) rev: String,
    /// The devfile's `parent.id` parent, fetched ahead (`envs::registry`).
    pub(super) registry: Option<super::registry::Fetched>,
}

pub(super) fn read_blob(repo: &std::path::Path, rev: &str, path: &str) -> Option<String> {
    let repo = git2::Repository::open_bare(repo).ok()?;
    let commit = repo.revparse_single(rev).ok()?.peel_to_commit().ok()?;
    let entry = commit
        .tree()
        .ok()?
        .get_path(std::path::Path::new(path))
        .ok()?;
    let blob = entry.to_object(&repo).ok()?.into_blob().ok()?;
    String::from_utf8(blob.content().to_vec()).ok()
}

pub(super) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

impl Resolver for GitResolver {
    fn read_registry(
        &self,
        _registry_url: Option<&str>,
        _id: &str,
        _version: Option<&str>,
    ) -> Result<(String, String), String> {
        match &self.registry {
            Some(fetched) => fetched.clone(),
            // a registry parent of a parent: not fetched ahead
            None => Err("only the devfile's own parent is read from a devfile registry; commit this parent into the repository and use `parent.uri`".into()),
        }
    }

    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String> {
        if uri.contains("://") {
            return Err(
                "parents from URLs are not fetched; commit the parent into the repository".into(),
            );
        }
        let dir = from_file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let joined = normalize(&format!("{dir}/{uri}"))
            .ok_or_else(|| format!("{uri} leaves the repository"))?;
        read_blob(&self.repo, &self.rev, &joined)
            .map(|t| (joined.clone(), t))
            .ok_or_else(|| format!("{joined} does not exist at {}", self.rev))
    }
}

/// The devfile of `rev`: the requested path, else the first of the usual
/// names, else Cove's default. Returns (path, text) with path `None` for the
/// default devfile.
pub(super) fn devfile_at(
    repo: &std::path::Path,
    rev: &str,
    requested: Option<&str>,
) -> Result<(Option<String>, String), ApiError> {
    if let Some(p) = requested {
        let p = normalize(p)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("invalid devfile path {p:?}")))?;
        return read_blob(repo, rev, &p)
            .map(|t| (Some(p.clone()), t))
            .ok_or_else(|| ApiError::BadRequest(format!("devfile {p} does not exist on {rev}")));
    }
    for name in devfiles::DEVFILE_NAMES {
        if let Some(t) = read_blob(repo, rev, name) {
            return Ok((Some(name.to_string()), t));
        }
    }
    Ok((None, devfiles::DEFAULT_DEVFILE.to_string()))
}

pub(super) fn invalid_devfile(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(InvalidDevfile {
            error: "invalid_devfile".into(),
            message,
        }),
    )
        .into_response()
}
