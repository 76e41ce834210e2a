//! Retention of runs, their logs and artifact files: per repository (`PUT
//! /api/v1/repos/{owner}/{name}/retention`), else the server-wide default (`[retention]`,
//! default 90 days / the newest 100 finished runs). A periodic pass deletes the expired runs'
//! rows (runs, jobs, logs) and then their artifact directories. Queued and running runs are
//! never touched. See docs/server.md "Retention".

use axum::extract::State;
use axum::Extension;

use crate::extract::Json;
use serde::Deserialize;

use crate::config::Retention;
use crate::error::ApiError;
use crate::store::{RepoRow, StoreError};
use crate::AppState;

/// What one pass deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub runs: usize,
    pub artifact_dirs: usize,
    /// Audit records older than `[retention] audit_days`.
    pub audit_rows: u64,
}

/// The retention that applies to a repository.
pub async fn effective(state: &AppState, repo_id: i64) -> Result<Retention, StoreError> {
    Ok(state
        .store()
        .repo_retention(repo_id)
        .await?
        .unwrap_or(state.limits().retention))
}

/// Removes the artifact directories of these (deleted) runs; returns how many existed.
pub async fn remove_run_files(state: &AppState, run_ids: &[i64]) -> usize {
    let mut removed = 0;
    for run_id in run_ids {
        let dir = state.data_dir().join("artifacts").join(run_id.to_string());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove artifacts"),
        }
    }
    removed
}

/// One retention pass over every repository at `now_ms`.
pub async fn run_once(state: &AppState, now_ms: i64) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    for repo in state.store().list_repos(0, true).await? {
        let retention = effective(state, repo.id).await?;
        let expired = state
            .store()
            .expired_runs(repo.id, retention, now_ms)
            .await?;
        if expired.is_empty() {
            continue;
        }
        // Rows first: a run whose files outlive it (a failed removal, logged) is only disk.
        state.store().delete_runs(&expired).await?;
        pass.runs += expired.len();
        pass.artifact_dirs += remove_run_files(state, &expired).await;
        tracing::info!(
            repo = %format!("{}/{}", repo.owner, repo.name),
            runs = expired.len(),
            days = retention.days,
            keep = retention.runs,
            "retention deleted runs"
        );
    }
    state.metrics().retention_deleted(pass.runs as u64);
    pass.audit_rows = crate::audit::expire(state, now_ms).await?;
    Ok(pass)
}

/// Runs [`run_once`] every `retention_interval` until the token is cancelled, on the leader
/// only (`crate::cluster`).
pub fn spawn(state: AppState) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let every = state.limits().retention_interval;
    crate::cluster::singleton(&state, "retention", move |state| {
        let token = token.clone();
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = run_once(&state, crate::store::now_ms()).await {
                    tracing::warn!(error = %e, "retention pass failed; retrying at the next interval");
                }
            }
        }
    });
    stop
}

/// `GET /api/v1/repos/{owner}/{name}/retention`: the retention that applies (own or default).
pub async fn get_retention(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Retention>, ApiError> {
    Ok(Json(effective(&state, repo.id).await?))
}

/// Body of `PUT …/retention`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    /// Days a finished run is kept (0: no age limit).
    pub days: u32,
    /// Newest finished runs kept (0: no count limit).
    pub runs: u32,
}

/// Longest age limit accepted: 100 years.
const MAX_DAYS: u32 = 36_500;

/// `PUT /api/v1/repos/{owner}/{name}/retention` (repository owner).
pub async fn set_retention(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(body): Json<SetRetention>,
) -> Result<Json<Retention>, ApiError> {
    if body.days > MAX_DAYS {
        return Err(ApiError::BadRequest(format!(
            "days must be at most {MAX_DAYS} (0 keeps runs of any age)"
        )));
    }
    let retention = Retention {
        days: body.days,
        runs: body.runs,
    };
    state.store().set_repo_retention(repo.id, retention).await?;
    Ok(Json(retention))
}
