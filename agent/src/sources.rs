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

use tokio::process::Command;

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
    let repo = spec.repo.clone();
    let archive = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all(&repo, &dir)?;
        builder.into_inner()
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    rt.upload_tar(env, component, projects_root, archive)
        .await?;
    Ok(true)
}
