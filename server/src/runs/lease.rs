//! Leases: a job handed to an agent with everything it needs (scripts, secrets, source,
//! inputs), heartbeats and log batches of a leased attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use cove_api::{
    HeartbeatResponse, JobArtifactSpec, JobLease, JobLogLine, JobPhase, JobScript, JobState,
    LogBatch,
};
use workflows::Format;

use crate::git::{self};
use crate::store::JobRow;
use crate::AppState;

use super::*;

/// Waits up to `wait` for a ready job and leases it to the embedded agent (long poll, woken
/// by [`Notify`]).
pub async fn lease(state: &AppState, wait: Duration) -> Result<Option<JobLease>, RunsError> {
    lease_for(state, wait, None).await
}

/// [`lease`] for the registered agent `agent` (`None`: the embedded agent); the job records
/// which agent holds it.
pub async fn lease_for(
    state: &AppState,
    wait: Duration,
    agent: Option<i64>,
) -> Result<Option<JobLease>, RunsError> {
    Ok(lease_many_for(state, wait, agent, 1)
        .await?
        .into_iter()
        .next())
}

/// Waits up to `wait` for ready jobs and leases up to `slots` of them (an agent's free slots,
/// at most [`MAX_LEASES_PER_POLL`]) to `agent` in one placement round.
pub async fn lease_many_for(
    state: &AppState,
    wait: Duration,
    agent: Option<i64>,
    slots: usize,
) -> Result<Vec<JobLease>, RunsError> {
    let deadline = tokio::time::Instant::now() + wait;
    let runs = state.runs();
    loop {
        let notified = runs.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let leases = try_lease_many_for(state, agent, slots).await?;
        if !leases.is_empty() {
            return Ok(leases);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(Vec::new());
        }
    }
}

/// One scheduling pass: supersede what the run modes say, lease the first ready job.
pub async fn try_lease(state: &AppState) -> Result<Option<JobLease>, RunsError> {
    try_lease_for(state, None).await
}

/// [`try_lease`] for the registered agent `agent` (`None`: the embedded agent).
pub async fn try_lease_for(
    state: &AppState,
    agent: Option<i64>,
) -> Result<Option<JobLease>, RunsError> {
    Ok(try_lease_many_for(state, agent, 1)
        .await?
        .into_iter()
        .next())
}

/// [`try_lease_for`] of up to `slots` jobs. The agent's poll joins the next placement round
/// (`dispatch`): the rounds are serialized, and a job is leased at most once per attempt (the
/// conditional update). A job that cannot start (missing secret, bad reference) fails,
/// visibly, and is not returned.
pub async fn try_lease_many_for(
    state: &AppState,
    agent: Option<i64>,
    slots: usize,
) -> Result<Vec<JobLease>, RunsError> {
    let runs = state.runs();
    let mut out = Vec::new();
    for job in dispatch::lease_jobs(state, agent, slots).await? {
        let (job_id, attempt) = (job.id, job.attempt);
        match build_lease(state, &job, attempt).await {
            Ok(lease) => {
                tracing::info!(job = job_id, attempt, action = %job.action, agent, "job leased");
                out.push(lease);
            }
            Err(e) => {
                let now = runs.clock.now_ms();
                // The job cannot start (missing secret, bad reference): it fails, visibly.
                let message = e.to_string();
                tracing::warn!(job = job_id, error = %message, "job cannot start");
                state
                    .store()
                    .append_logs(
                        job_id,
                        &[JobLogLine {
                            seq: cove_agent::job_worker::seq_base(attempt),
                            stream: cove_api::LogStreamKind::System,
                            ts: u64::try_from(now).unwrap_or(0),
                            text: format!("[cove] the job cannot start: {message}"),
                        }],
                    )
                    .await?;
                state
                    .store()
                    .end_job(
                        job_id,
                        JobState::Running,
                        Some(attempt),
                        JobState::Failed,
                        Some(&message),
                        None,
                        now,
                    )
                    .await?;
                settle_run(state, job.run_id).await?;
            }
        }
    }
    Ok(out)
}

pub(super) fn phase_to_wire(
    p: &workflows::Phase,
    interp: &dyn Fn(&str) -> Result<String, RunsError>,
) -> Result<JobPhase, RunsError> {
    let (on_failure, retry_count, retry_regex) = match &p.on_failure {
        None => (None, None, None),
        Some(workflows::OnFailure::Abort) => (Some("ABORT".to_string()), None, None),
        Some(workflows::OnFailure::Continue) => (Some("CONTINUE".to_string()), None, None),
        Some(workflows::OnFailure::Retry { count, regex }) => {
            (Some("RETRY".to_string()), *count, regex.clone())
        }
    };
    Ok(JobPhase {
        name: p.name.key().to_string(),
        commands: p
            .commands
            .iter()
            .map(|c| interp(c))
            .collect::<Result<_, _>>()?,
        finally: p
            .finally
            .iter()
            .map(|c| interp(c))
            .collect::<Result<_, _>>()?,
        on_failure,
        retry_count,
        retry_regex,
    })
}

/// The secrets `names` of a repository for a run on `branch`, opened: every secret on the
/// default branch, elsewhere only those marked for all branches. A name that is not defined, or
/// not given to this branch, is an error naming it and the reason (the job fails before it
/// starts; nothing is silently empty).
pub async fn open_secrets_for(
    state: &AppState,
    repo_id: i64,
    branch: &str,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, RunsError> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let repo = state
        .store()
        .repo_by_id(repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository {repo_id}")))?;
    let rules = state.store().branch_rules(repo_id).await?;
    let every = secrets::branch_gets_every_secret(&repo.default_branch, branch, &rules);
    let stored = state.store().list_secrets(repo_id).await?;
    for name in names {
        let row = stored.iter().find(|s| &s.name == name).ok_or_else(|| {
            RunsError::BadRequest(format!(
                "secret `{name}` is not defined for this repository (cove secret set)"
            ))
        })?;
        if !every && !row.all_branches {
            return Err(RunsError::BadRequest(secrets::withheld_reason(
                name,
                &repo.default_branch,
                branch,
            )));
        }
        let value = state.runs().key.open(repo_id, name, &row.sealed)?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Most text (steps, phase commands, input variables) one job gets after interpolation.
pub(super) const MAX_JOB_TEXT_BYTES: usize = 4 * workflows::interpolate::MAX_INTERPOLATED_BYTES;

/// Turns a job's action into what the agent runs: interpolation (`${Secrets.x}` stays a
/// variable reference; its value travels in `secrets`), outputs of finished dependencies,
/// source and input artifacts.
pub(super) async fn build_lease(
    state: &AppState,
    job: &JobRow,
    attempt: u32,
) -> Result<JobLease, RunsError> {
    let (run, wf) = run_and_workflow(state, job.run_id).await?;
    let action = wf
        .action(&job.action)
        .ok_or_else(|| RunsError::BadRequest(format!("action {} is gone", job.action)))?;
    let mut ctx = workflows::Context::for_action(action, workflows::Target::Shell);
    ctx.commit_id = run.commit_sha.clone();
    ctx.branch_name = run.branch.clone();
    // Other actions' outputs reach only their dependents (a `${Action.Var}` reference is an
    // edge of the plan): a job without dependencies needs no read of its run's jobs.
    let others = if job.depends_on.is_empty() {
        Vec::new()
    } else {
        state.store().jobs_of_run(run.id).await?
    };
    for other in others {
        if other.state == JobState::Succeeded {
            let vars: BTreeMap<String, String> =
                serde_json::from_str(&other.variables_json).unwrap_or_default();
            ctx.outputs.insert(other.action.clone(), vars);
        }
    }
    let mut referenced: BTreeSet<String> = action
        .secrets
        .iter()
        .filter_map(|s| match s {
            workflows::SecretRef::Codecatalyst { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    // each text is capped by `interpolate`; all of one job's together are capped here
    let interpolated = std::sync::atomic::AtomicUsize::new(0);
    let interp = |text: &str| -> Result<String, RunsError> {
        let out = workflows::interpolate(text, &ctx)
            .map_err(|e| RunsError::BadRequest(format!("action {}: {e}", action.id)))?;
        let total = interpolated.fetch_add(out.len(), Ordering::Relaxed) + out.len();
        if total > MAX_JOB_TEXT_BYTES {
            return Err(RunsError::BadRequest(format!(
                "action {}: its steps and variables are longer than {MAX_JOB_TEXT_BYTES} bytes \
                 once references are substituted",
                action.id
            )));
        }
        Ok(out)
    };
    let mut note_secrets = |text: &str| {
        for r in workflows::interpolate::references(text) {
            if r.scope == "Secrets" {
                referenced.insert(r.name.to_string());
            }
        }
    };
    let mut steps = Vec::new();
    let mut phases = Vec::new();
    for step in &action.configuration.steps {
        match step {
            workflows::Step::Run { command } => {
                note_secrets(command);
                steps.push(interp(command)?);
            }
            workflows::Step::Phase(p) => {
                for c in p.commands.iter().chain(&p.finally) {
                    note_secrets(c);
                }
                phases.push(phase_to_wire(p, &interp)?);
            }
            workflows::Step::Github { .. } => {
                return Err(RunsError::BadRequest(format!(
                    "action {}: GitHub Actions steps are not supported by Cove's runner",
                    action.id
                )))
            }
        }
    }
    let mut env = Vec::new();
    for v in &action.inputs.variables {
        note_secrets(&v.value);
        env.push((v.name.clone(), interp(&v.value)?));
    }
    env.push(("CATALYST_WORKFLOW_RUN_ID".into(), run.id.to_string()));
    env.push(("CATALYST_SOURCE_COMMIT".into(), run.commit_sha.clone()));
    env.push(("CATALYST_SOURCE_BRANCH".into(), run.branch.clone()));
    let script = if phases.is_empty() {
        JobScript::Steps(steps)
    } else {
        JobScript::Phases(phases)
    };
    let secrets = open_secrets_for(state, run.repo_id, &run.branch, &referenced)
        .await?
        .into_iter()
        .map(|(name, value)| (workflows::interpolate::secret_env_name(&name), value))
        .collect();
    let sources = &action.inputs.sources;
    let source = wf.format == Format::Buildspec
        || sources.iter().any(|s| s == "WorkflowSource")
        || (sources.is_empty() && action.inputs.artifacts.is_empty());
    let packages = packages::job_packages(state, run.repo_id, action).await?;
    let mut secrets: Vec<(String, String)> = secrets;
    let mut deploy = None;
    if let Some(d) = crate::deploy::for_lease(state, &run, job, action).await? {
        env.extend(d.env);
        secrets.extend(d.secrets);
        deploy = d.role;
    }
    let runs = state.runs();
    Ok(JobLease {
        job_id: job.id,
        run_id: run.id,
        attempt,
        action: job.action.clone(),
        image: action
            .configuration
            .container
            .as_ref()
            .map(|c| c.image.clone())
            .unwrap_or_else(|| runs.config.default_image.clone()),
        shell: action
            .configuration
            .shell
            .clone()
            .unwrap_or_else(|| "/bin/sh".into()),
        script,
        env,
        secrets,
        source,
        inputs: action.inputs.artifacts.clone(),
        outputs: action
            .outputs
            .artifacts
            .iter()
            .map(|a| JobArtifactSpec {
                name: a.name.clone(),
                files: a.files.clone(),
                base_directory: a.base_directory.clone(),
                discard_paths: a.discard_paths,
                exclude_paths: a.exclude_paths.clone(),
            })
            .chain(reports::artifact_specs(action))
            .collect(),
        exported_variables: action.outputs.variables.clone(),
        timeout_secs: u64::try_from(job.timeout_ms / 1000).unwrap_or(3600),
        heartbeat_ms: u64::try_from(runs.config.heartbeat.as_millis()).unwrap_or(5000),
        lease_ms: u64::try_from(runs.config.lease.as_millis()).unwrap_or(30_000),
        packages,
        deploy,
        caches: cache::lease_specs(state, &run, action),
    })
}

pub(super) async fn current_job(
    state: &AppState,
    job_id: i64,
    attempt: u32,
) -> Result<JobRow, RunsError> {
    let job = state
        .store()
        .job(job_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("job {job_id}")))?;
    if job.state != JobState::Running || job.attempt != attempt {
        return Err(RunsError::Stale {
            job: job_id,
            attempt,
        });
    }
    Ok(job)
}

/// Renews the lease; the answer says whether to cancel.
pub async fn heartbeat(
    state: &AppState,
    job_id: i64,
    attempt: u32,
) -> Result<HeartbeatResponse, RunsError> {
    let runs = state.runs();
    let now = runs.clock.now_ms();
    let expires = now + i64::try_from(runs.config.lease.as_millis()).unwrap_or(i64::MAX);
    let job = state
        .store()
        .renew_lease(job_id, attempt, expires)
        .await?
        .ok_or(RunsError::Stale {
            job: job_id,
            attempt,
        })?;
    // The agent enforces the timeout itself; this is the server's backstop.
    let overdue = job
        .started_at_ms
        .is_some_and(|s| now > s + job.timeout_ms + 60_000);
    Ok(HeartbeatResponse {
        cancel: job.cancel_requested || overdue,
        lease_expires_ms: expires,
    })
}

/// Stores log lines of the current attempt.
pub async fn append_logs(state: &AppState, job_id: i64, batch: &LogBatch) -> Result<(), RunsError> {
    current_job(state, job_id, batch.attempt).await?;
    let lines = log_cap::admit(state, job_id, batch.attempt, &batch.lines).await?;
    state.store().append_logs(job_id, &lines).await?;
    // stored first, then pushed to this process's followers; other replicas' followers
    // re-read the store when woken
    state.log_hub().publish(job_id, &lines);
    state.runs().announce();
    Ok(())
}

/// The source tar of the job's run, streamed from `git archive` (never whole in memory).
pub async fn source_tar(
    state: &AppState,
    job_id: i64,
    attempt: u32,
) -> Result<source::TarStream, RunsError> {
    let job = current_job(state, job_id, attempt).await?;
    let run = state
        .store()
        .run(job.run_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("run {}", job.run_id)))?;
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository of run {}", run.id)))?;
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    Ok(source::archive_stream(&path, &run.commit_sha).await?)
}

/// The file of an artifact produced by an earlier job of the same run.
pub async fn input_path(
    state: &AppState,
    job_id: i64,
    attempt: u32,
    name: &str,
) -> Result<std::path::PathBuf, RunsError> {
    let job = current_job(state, job_id, attempt).await?;
    if cache::index_of(name).is_some() {
        // a cache of this job's action, never another job's upload of the same name
        let run = state
            .store()
            .run(job.run_id)
            .await?
            .ok_or_else(|| RunsError::NotFound(format!("run {}", job.run_id)))?;
        let wf = parse_run_workflow(state, &run).await?;
        return wf
            .action(&job.action)
            .and_then(|a| cache::input_file(state, &run, a, name))
            .ok_or_else(|| RunsError::NotFound(format!("cache {name}")));
    }
    for other in state.store().jobs_of_run(job.run_id).await? {
        let names: Vec<String> = serde_json::from_str(&other.artifacts_json).unwrap_or_default();
        if names.iter().any(|n| n == name) {
            return Ok(artifact_path(state, job.run_id, other.id, name));
        }
    }
    Err(RunsError::NotFound(format!("artifact {name}")))
}
