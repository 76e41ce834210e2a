//! File caches (issue 17): CodeCatalyst `Caching.FileCaching.<key>` and buildspec `cache`.
//! A cache is stored by the server per repository, workflow, action and key, as the tar the
//! agent made of the cache's paths (entries relative to `/`, at most
//! `cove_agent::jobs::cache::MAX_CACHE_BYTES`), in `<data>/caches/<repo>/<digest>.tar`.
//! At lease time the key, then each restore key (`RestoreKeys`, buildspec `fallback-keys`), is
//! looked up; a hit is fetched by the agent like an input artifact and unpacked before the
//! steps. After a successful job the agent uploads each cache as an output artifact
//! `cove-cache-<i>`; [`save`] then stores it under the cache's key (replacing the old one,
//! written to a temporary file and renamed, so a reader sees the old or the new tar).

use std::path::PathBuf;

use cove_api::JobCacheSpec;

use super::RunsError;
use crate::store::{JobRow, RunRow};
use crate::AppState;

/// The artifact name that carries cache `i` of an action.
pub fn artifact_name(i: usize) -> String {
    format!("cove-cache-{i}")
}

/// The index of a cache artifact name.
pub fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix("cove-cache-")?.parse().ok()
}

/// The key a cache is saved under: the CodeCatalyst cache name or the buildspec `key`.
fn primary_key(c: &workflows::Cache) -> String {
    c.key.clone().unwrap_or_else(|| "default".to_string())
}

fn file_for(state: &AppState, run: &RunRow, action: &str, key: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\0{action}\0{key}", run.workflow).as_bytes());
    state
        .data_dir()
        .join("caches")
        .join(run.repo_id.to_string())
        .join(format!("{}.tar", hex::encode(digest)))
}

/// The stored tar to restore for cache `c`: its key, else the first restore key stored.
fn hit(state: &AppState, run: &RunRow, action: &str, c: &workflows::Cache) -> Option<PathBuf> {
    std::iter::once(primary_key(c))
        .chain(c.restore_keys.iter().cloned())
        .map(|k| file_for(state, run, action, &k))
        .find(|p| p.is_file())
}

/// The caches of a leased job.
pub(super) fn lease_specs(
    state: &AppState,
    run: &RunRow,
    action: &workflows::Action,
) -> Vec<JobCacheSpec> {
    action
        .caching
        .iter()
        .enumerate()
        .map(|(i, c)| JobCacheSpec {
            name: artifact_name(i),
            paths: c.paths.clone(),
            restore: hit(state, run, &action.id, c).is_some(),
        })
        .collect()
}

/// The stored tar the agent asked for as input `cove-cache-<i>`.
pub(super) fn input_file(
    state: &AppState,
    run: &RunRow,
    action: &workflows::Action,
    name: &str,
) -> Option<PathBuf> {
    let c = action.caching.get(index_of(name)?)?;
    hit(state, run, &action.id, c)
}

/// After a successful job: stores each cache it uploaded under its key.
pub(super) async fn save(
    state: &AppState,
    run: &RunRow,
    job: &JobRow,
    action: &workflows::Action,
) -> Result<usize, RunsError> {
    if action.caching.is_empty() {
        return Ok(0);
    }
    let recorded: Vec<String> = match state.store().job(job.id).await? {
        Some(j) => serde_json::from_str(&j.artifacts_json).unwrap_or_default(),
        None => Vec::new(),
    };
    let mut saved = 0;
    for (i, c) in action.caching.iter().enumerate() {
        let name = artifact_name(i);
        if !recorded.contains(&name) {
            continue;
        }
        let from = super::artifact_path(state, job.run_id, job.id, &name);
        let to = file_for(state, run, &action.id, &primary_key(c));
        let io = |what: &'static str| {
            move |e: std::io::Error| RunsError::BadRequest(format!("{what}: {e}"))
        };
        let dir = to
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("creating the cache directory"))?;
        let tmp = dir.join(format!(".{}.tmp", crate::store::next_id()));
        tokio::fs::copy(&from, &tmp)
            .await
            .map_err(io("copying a cache"))?;
        tokio::fs::rename(&tmp, &to)
            .await
            .map_err(io("storing a cache"))?;
        tracing::info!(job = job.id, cache = %name, key = %primary_key(c), "cache saved");
        saved += 1;
    }
    Ok(saved)
}
