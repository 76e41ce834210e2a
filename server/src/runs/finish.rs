//! A job's end: artifacts stored, the finish report applied, expired leases reaped.

use cove_api::{FinishRequest, JobOutcome, JobState};
use workflows::Workflow;

use crate::store::{self, JobRow, RunRow};
use crate::AppState;

use super::*;

/// Largest artifact an agent may upload.
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

/// Stores an output artifact of the current attempt from a stream of chunks: written to a
/// temporary file of its own (concurrent uploads never share one), fsynced, renamed into
/// place, the directory fsynced, and only then recorded on the job (so a recorded artifact
/// survives a crash; concurrent uploads of one job all stay recorded).
pub async fn store_artifact<S, E>(
    state: &AppState,
    job_id: i64,
    attempt: u32,
    name: &str,
    body: S,
) -> Result<(), RunsError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if !valid_artifact_name(name) {
        return Err(RunsError::BadRequest(format!(
            "artifact name {name:?} is not valid"
        )));
    }
    let job = current_job(state, job_id, attempt).await?;
    let dir = artifacts_dir(state, job.run_id, job_id);
    let io = |context: &str| {
        let context = context.to_string();
        move |source| RunsError::Io { context, source }
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(io("creating the artifact directory"))?;
    let tmp = dir.join(format!(".{name}.{attempt}.{}.tmp", store::next_id()));
    let written = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("creating an artifact file"))?;
        let mut size = 0u64;
        tokio::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                RunsError::BadRequest(format!("reading the artifact upload failed: {e}"))
            })?;
            size += chunk.len() as u64;
            if size > MAX_ARTIFACT_BYTES {
                return Err(RunsError::TooLarge(format!(
                    "artifacts are limited to {MAX_ARTIFACT_BYTES} bytes"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(io("writing an artifact"))?;
        }
        file.sync_all().await.map_err(io("syncing an artifact"))?;
        tokio::fs::rename(&tmp, artifact_path(state, job.run_id, job_id, name))
            .await
            .map_err(io("storing an artifact"))?;
        tokio::fs::File::open(&dir)
            .await
            .map_err(io("opening the artifact directory"))?
            .sync_all()
            .await
            .map_err(io("syncing the artifact directory"))?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    current_job(state, job_id, attempt).await?;
    state.store().add_job_artifact(job_id, name).await?;
    Ok(())
}

/// SHA-256 of a finish report's JSON (variables are a sorted map, so equal reports hash
/// equally).
pub(super) fn finish_digest(report: &FinishRequest) -> Result<String, RunsError> {
    use sha2::Digest;
    let json = serde_json::to_vec(report).map_err(|e| RunsError::BadRequest(e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(&json)))
}

/// The agent's final report of an attempt. Idempotent: the report that already ended (or
/// requeued) this attempt, sent again because its answer was lost, is accepted and changes
/// nothing; a different report for an ended attempt is stale (409).
pub async fn finish(
    state: &AppState,
    job_id: i64,
    report: &FinishRequest,
) -> Result<(), RunsError> {
    let digest = finish_digest(report)?;
    // The report that already ended this attempt, sent again (its answer was lost)?
    let replayed = || async {
        let stored = state.store().finish_digest(job_id).await?;
        let same = stored.is_some_and(|(a, d)| a == report.attempt && d == digest);
        if same {
            tracing::info!(
                job = job_id,
                attempt = report.attempt,
                "finish report received again; already applied"
            );
        }
        Ok::<_, RunsError>(same)
    };
    let job = match current_job(state, job_id, report.attempt).await {
        Ok(job) => job,
        Err(RunsError::Stale { .. }) if replayed().await? => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = state.runs().clock.now_ms();
    let retry = (report.retry
        || (report.outcome == JobOutcome::Error && report.attempt < job.max_attempts))
        && !job.cancel_requested;
    if retry {
        let why = report
            .error
            .clone()
            .unwrap_or_else(|| "retry requested".into());
        if state
            .store()
            .requeue_finished(job_id, report.attempt, &why, &digest)
            .await?
        {
            tracing::info!(
                job = job_id,
                attempt = report.attempt,
                "job requeued for another attempt"
            );
            state.runs().wake();
            return Ok(());
        }
    }
    let to = match report.outcome {
        JobOutcome::Succeeded => JobState::Succeeded,
        JobOutcome::Failed | JobOutcome::Error => JobState::Failed,
        JobOutcome::Cancelled => JobState::Cancelled,
        JobOutcome::TimedOut => JobState::TimedOut,
    };
    // Reports are read once the steps ended (also after a failed build); a failed success
    // criterion fails a job whose steps succeeded.
    let mut to = to;
    let mut error = report.error.clone();
    let finished_action = if matches!(to, JobState::Succeeded | JobState::Failed) {
        finished_action(state, &job).await
    } else {
        Ok(None)
    };
    if let Ok(Some((run, action))) = &finished_action {
        let failed = reports::collect(state, &job, action).await;
        match failed {
            Ok(failed) if !failed.is_empty() => {
                tracing::info!(job = job_id, reasons = ?failed, "report success criteria failed");
                if to == JobState::Succeeded {
                    to = JobState::Failed;
                    error = Some(failed.join("; "));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = job_id, error = %e, "reading the job's reports failed"),
        }
        if to == JobState::Succeeded {
            if let Err(e) = cache::save(state, run, &job, action).await {
                tracing::warn!(job = job_id, error = %e, "saving the job's caches failed");
            }
        }
    }
    if let Err(e) = finished_action {
        tracing::warn!(job = job_id, error = %e, "the finished job's action cannot be read");
    }
    let vars = serde_json::to_string(&report.variables)
        .map_err(|e| RunsError::BadRequest(e.to_string()))?;
    // Written together with the reports that arrive meanwhile; returns once committed and
    // the run settled (docs/runs.md "Dispatch").
    let ended = dispatch::finish_write(
        state,
        dispatch::FinishItem {
            write: store::FinishWrite {
                job_id,
                attempt: report.attempt,
                to,
                error,
                variables_json: vars,
                now_ms: now,
                digest: digest.clone(),
            },
            run_id: job.run_id,
        },
    )
    .await?;
    if !ended {
        if replayed().await? {
            return Ok(());
        }
        return Err(RunsError::Stale {
            job: job_id,
            attempt: report.attempt,
        });
    }
    Ok(())
}

/// The run and action of a finished job when it declares reports or caches (the run's
/// workflow parsed again).
pub(super) async fn finished_action(
    state: &AppState,
    job: &JobRow,
) -> Result<Option<(RunRow, workflows::Action)>, RunsError> {
    let wants = |wf: &Workflow| {
        wf.action(&job.action)
            .filter(|a| !a.outputs.reports.is_empty() || !a.caching.is_empty())
            .cloned()
    };
    // the run's workflow as its lease parsed it: most actions declare neither, and then the
    // run is not read at all
    if let Some(wf) = state.runs().parsed.workflow(job.run_id) {
        if wants(&wf).is_none() {
            return Ok(None);
        }
    }
    let Some(run) = state.store().run(job.run_id).await? else {
        return Ok(None);
    };
    let wf = parse_run_workflow(state, &run).await?;
    Ok(wants(&wf).map(|a| (run, a)))
}

/// Ends leases whose heartbeats stopped: a requested cancel is finalized as `cancelled`; else
/// the job is retried when its policy allows, or ends `agent_lost`. Returns the jobs handled.
pub async fn reap_expired(state: &AppState) -> Result<Vec<i64>, RunsError> {
    let now = state.runs().clock.now_ms();
    let lease_s = state.runs().config.lease.as_secs_f64();
    let mut handled = Vec::new();
    for job in state.store().expired_leases(now).await? {
        let done = if job.cancel_requested {
            state
                .store()
                .end_job(
                    job.id,
                    JobState::Running,
                    Some(job.attempt),
                    JobState::Cancelled,
                    Some("cancelled (the agent did not confirm before its lease ended)"),
                    None,
                    now,
                )
                .await?
        } else if job.attempt < job.max_attempts {
            state
                .store()
                .requeue_job(
                    job.id,
                    job.attempt,
                    &format!("attempt {} lost its agent; retrying", job.attempt),
                )
                .await?
        } else {
            state
                .store()
                .end_job(
                    job.id,
                    JobState::Running,
                    Some(job.attempt),
                    JobState::AgentLost,
                    Some(&format!(
                        "agent lost: no heartbeat for {lease_s:.0} s (attempt {})",
                        job.attempt
                    )),
                    None,
                    now,
                )
                .await?
        };
        if done {
            state.metrics().lease_expired();
            tracing::warn!(job = job.id, attempt = job.attempt, "lease expired");
            handled.push(job.id);
            settle_run(state, job.run_id).await?;
        }
    }
    Ok(handled)
}

/// The reaper loop, on the leader only (`crate::cluster`; every transition it makes is a
/// conditional update on (state, attempt), so a handover never ends a job twice).
pub fn spawn_reaper(state: AppState) {
    crate::cluster::singleton(&state, "lease reaper", |state| async move {
        let mut tick = tokio::time::interval(state.runs().config.reap_interval);
        loop {
            tick.tick().await;
            if let Err(e) = reap_expired(&state).await {
                tracing::warn!(error = %e, "reaping expired leases failed");
            }
            if let Err(e) = approval::tick(&state).await {
                tracing::warn!(error = %e, "expiring or opening approval gates failed");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// The embedded agent
// ---------------------------------------------------------------------------------------
