//! Job containers a stopped or killed agent left: found by label and owner, removed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::RemoveContainerOptions;
use bollard::Docker;

use super::*;

/// Remove job containers this agent no longer runs (after an agent crash
/// or restart): every container labelled `cove.role=job` whose job id
/// `running` does not claim. Returns the job ids whose containers were
/// removed.
pub async fn remove_stale_job_containers(
    docker: &Docker,
    running: impl Fn(&str) -> bool,
) -> Result<Vec<String>, JobError> {
    let err = |action: &str| {
        let action = action.to_string();
        move |source| JobError::Docker {
            job: "*".into(),
            action,
            source,
        }
    };
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}=job", crate::pod::LABEL_ROLE)],
    )]);
    let list = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(err("list job containers"))?;
    let mut removed = Vec::new();
    for c in list {
        let Some(job) = c.labels.as_ref().and_then(|l| l.get(LABEL_JOB)).cloned() else {
            continue;
        };
        if running(&job) {
            continue;
        }
        if let Some(id) = &c.id {
            remove_container(docker, id)
                .await
                .map_err(err("remove stale job container"))?;
            tracing::info!(job = %job, container = %id, "removed a stale job container");
            removed.push(job);
        }
    }
    Ok(removed)
}

/// A job container found by [`remove_owned_job_containers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedJob {
    /// The job id of its [`LABEL_JOB`] label (a claimed pooled container: of its name; an
    /// unclaimed one: empty).
    pub job: String,
    /// Its [`LABEL_ATTEMPT`] label (0 when missing).
    pub attempt: u32,
    pub container: String,
}

/// Kills and removes every job container labelled with `owner` (at an agent's start, when
/// none of them can still be driven by it: their commands were run by the process that
/// died; and at a graceful stop, after the job loops were dropped). Returns what was removed.
///
/// A removal already in progress (a dropped job's [`ContainerGuard`] races this at a
/// graceful stop) is not an error: the list is read again until no owned container is left,
/// within a bounded number of rounds, so nothing is reported removed that still runs.
pub async fn remove_owned_job_containers(
    docker: &Docker,
    owner: &str,
) -> Result<Vec<OrphanedJob>, JobError> {
    const ROUNDS: u32 = 50;
    const PAUSE: Duration = Duration::from_millis(200);
    let err = |action: &str| {
        let action = action.to_string();
        move |source| JobError::Docker {
            job: "*".into(),
            action,
            source,
        }
    };
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}=job", crate::pod::LABEL_ROLE),
            format!("{LABEL_OWNER}={owner}"),
        ],
    )]);
    let mut removed: Vec<OrphanedJob> = Vec::new();
    for round in 0..ROUNDS {
        let list = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(err("list job containers"))?;
        if list.is_empty() {
            return Ok(removed);
        }
        let last = round + 1 == ROUNDS;
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            match remove_container(docker, &id).await {
                Ok(()) => {}
                // Someone else is removing it: look again in the next round.
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) if !last => {}
                Err(e) => return Err(err("remove an orphaned job container")(e)),
            }
            if removed.iter().any(|r| r.container == id) {
                continue;
            }
            let mut job = labels.get(LABEL_JOB).cloned().unwrap_or_default();
            let mut attempt = labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            if labels.contains_key(crate::job_pool::LABEL_POOL) {
                // A pooled container: a job claimed it if it carries the job's name.
                (job, attempt) = c
                    .names
                    .iter()
                    .flatten()
                    .find_map(|n| claimed_by(n))
                    .unwrap_or_default();
            }
            tracing::warn!(job = %job, attempt, container = %id, "removed an orphaned job container");
            removed.push(OrphanedJob {
                job,
                attempt,
                container: id,
            });
        }
        tokio::time::sleep(PAUSE).await;
    }
    Err(JobError::Docker {
        job: "*".into(),
        action: "remove orphaned job containers".into(),
        source: DockerError::DockerResponseServerError {
            status_code: 409,
            message: format!("job containers of {owner} still exist after {ROUNDS} rounds"),
        },
    })
}

/// The job and attempt of a container named `cove-job-<job>-<attempt>` (Docker lists names
/// with a leading `/`).
pub(super) fn claimed_by(name: &str) -> Option<(String, u32)> {
    let rest = name.trim_start_matches('/').strip_prefix("cove-job-")?;
    let (job, attempt) = rest.rsplit_once('-')?;
    Some((job.to_string(), attempt.parse().ok()?))
}

pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    match docker.remove_container(id, Some(options)).await {
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}
