//! Runs made: by a push (the durable push queue and its consumer), by hand, as a rollback.

use std::time::Duration;

use cove_api::{JobState, PushEvent, RunState};
use workflows::Workflow;

use crate::git::{self, GitError};
use crate::parse_budget;
use crate::store::{self, JobRow, RepoRow, RunRow, WorkflowErrorRow};
use crate::AppState;

use super::*;

/// Stores a new run of `workflow` and its jobs, and wakes pollers.
#[allow(clippy::too_many_arguments)]
pub async fn create_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    file: &str,
    text: &str,
    implicit_branch: Option<&str>,
    branch: &str,
    commit: &str,
    trigger: &str,
    actor: Option<&str>,
) -> Result<RunRow, RunsError> {
    let source = RunSource {
        file,
        text,
        implicit_branch,
        branch,
        commit,
        trigger,
        actor,
        rollback_of: None,
    };
    insert_run(state, repo, workflow, &source, None, None, None)
        .await?
        .ok_or_else(|| RunsError::Conflict("the run already exists".into()))
}

/// Where a new run comes from.
pub(super) struct RunSource<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) implicit_branch: Option<&'a str>,
    pub(super) branch: &'a str,
    pub(super) commit: &'a str,
    pub(super) trigger: &'a str,
    /// Who started it (the pusher, the person who started it by hand); `None`: no person.
    pub(super) actor: Option<&'a str>,
    /// The run a rollback run deploys again.
    pub(super) rollback_of: Option<i64>,
}

/// A rollback run (`deploy::rollback`): `workflow` (the actions to run again) at `old`'s
/// commit, started by `actor`.
pub(crate) async fn create_rollback_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    old: &RunRow,
    actor: &str,
) -> Result<RunRow, RunsError> {
    let source = RunSource {
        file: &old.workflow_file,
        text: &old.workflow_text,
        implicit_branch: old.implicit_branch.as_deref(),
        branch: &old.branch,
        commit: &old.commit_sha,
        trigger: "rollback",
        actor: Some(actor),
        rollback_of: Some(old.id),
    };
    insert_run(state, repo, workflow, &source, None, None, None)
        .await?
        .ok_or_else(|| RunsError::Conflict("the run already exists".into()))
}

/// Stores a new run (of push event `push_event`, or of pull request event `pr` = (pull
/// request number, `pr_events` id), when given) and wakes pollers. `None` when that event
/// already has a run of this workflow file (the event is processed again).
pub(super) async fn insert_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    source: &RunSource<'_>,
    push_event: Option<i64>,
    claim: Option<&store::ScheduleClaim>,
    pr: Option<(i64, i64)>,
) -> Result<Option<RunRow>, RunsError> {
    let RunSource {
        file,
        text,
        implicit_branch,
        branch,
        commit,
        trigger,
        actor,
        rollback_of,
    } = *source;
    let plan = workflows::RunPlan::new(workflow)
        .map_err(|e| RunsError::BadRequest(format!("{file}: {e}")))?;
    let runs = state.runs();
    let now = runs.clock.now_ms();
    let mut run = RunRow {
        id: store::next_id(),
        repo_id: repo.id,
        workflow: workflow.name.clone(),
        workflow_file: file.to_string(),
        workflow_text: text.to_string(),
        implicit_branch: implicit_branch.map(str::to_string),
        run_mode: schedule::mode_name(workflow.run_mode).to_string(),
        branch: branch.to_string(),
        commit_sha: commit.to_string(),
        trigger_kind: trigger.to_string(),
        state: RunState::Queued,
        created_at_ms: now,
        finished_at_ms: None,
        number: 0,
        pr_number: pr.map(|(number, _)| number),
    };
    let jobs: Vec<JobRow> = workflow
        .actions
        .iter()
        .enumerate()
        .map(|(idx, action)| JobRow {
            id: store::next_id(),
            run_id: run.id,
            idx: idx as i64,
            action: action.id.clone(),
            depends_on: plan
                .dependencies(&action.id)
                .into_iter()
                .map(str::to_string)
                .collect(),
            state: JobState::Pending,
            attempt: 0,
            max_attempts: if action.environment.is_none() {
                1 + runs.config.retry_on_agent_lost.min(10)
            } else {
                1
            },
            lease_expires_ms: None,
            cancel_requested: false,
            timeout_ms: match (&action.gate, action.timeout_minutes) {
                (_, Some(minutes)) => i64::from(minutes) * 60_000,
                (Some(_), None) => {
                    i64::try_from(runs.config.approval_timeout.as_millis()).unwrap_or(i64::MAX)
                }
                (None, None) => 60 * 60_000,
            },
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            variables_json: "{}".into(),
            artifacts_json: "[]".into(),
            on_failure: match &action.batch {
                Some(b) if b.ignore_failure => store::JobFailure::Ignore,
                _ if workflow.fast_fail => store::JobFailure::FailFast,
                _ => store::JobFailure::Fail,
            },
            labels: workflows::fleet::action_labels(workflow, action),
        })
        .collect();
    // Deploy actions (deploy/): refused ones fail once stored, those that need approvals wait
    // at a gate like approval actions.
    let deploys = crate::deploy::plan(state, repo, workflow, branch, actor).await?;
    let deploy_gated = |id: &str| {
        deploys
            .iter()
            .any(|d| d.action == id && d.refused.is_none() && d.approvals > 0)
    };
    // Approval gates are never leased: they wait for people (runs/approval.rs).
    let gates: Vec<i64> = workflow
        .actions
        .iter()
        .zip(&jobs)
        .filter(|(action, _)| action.gate.is_some() || deploy_gated(&action.id))
        .map(|(_, job)| job.id)
        .collect();
    let stored = match pr {
        Some((pr_number, pr_event)) => {
            state
                .store()
                .create_pr_run(&run, &jobs, &gates, pr_number, pr_event)
                .await?
        }
        None => {
            state
                .store()
                .create_numbered_run(&run, &jobs, &gates, push_event, claim)
                .await?
        }
    };
    let Some(number) = stored else {
        tracing::info!(event = push_event, workflow = %run.workflow, "push event (or schedule slot) already has this run");
        return Ok(None);
    };
    run.number = number;
    tracing::info!(run = run.id, number, workflow = %run.workflow, branch, commit, trigger, "run created");
    let refused = crate::deploy::record(state, &run, &jobs, &deploys, actor, rollback_of).await?;
    if !gates.is_empty() || refused {
        // A gate without dependencies opens at once.
        settle_run(state, run.id).await?;
    }
    runs.wake();
    Ok(Some(run))
}

/// Handles one push event: every matching workflow at the new commit becomes a run; invalid
/// workflow files become workflow errors.
pub async fn on_push(state: &AppState, event: &PushEvent) -> Result<Vec<RunRow>, RunsError> {
    let Some(branch) = event.ref_name.strip_prefix("refs/heads/") else {
        return Ok(Vec::new());
    };
    let Some((owner, name)) = event.repo.split_once('/') else {
        return Ok(Vec::new());
    };
    let Some(repo) = state.store().repo(owner, name).await? else {
        return Ok(Vec::new());
    };
    if event.new_sha.bytes().all(|b| b == b'0') {
        // Branch deleted: so are its schedules.
        schedules::update_branch(state, &repo, branch, &[]).await?;
        return Ok(Vec::new());
    }
    let path = git::repo_path(state.data_dir(), owner, name);
    let (commit, files) = source::workflow_files(path.clone(), event.new_sha.clone()).await?;
    let changed =
        source::changed_files(path.clone(), event.old_sha.clone(), event.new_sha.clone()).await?;
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut created = Vec::new();
    let record_error = |file: &str, message: String| WorkflowErrorRow {
        id: store::next_id(),
        repo_id: repo.id,
        file: file.to_string(),
        branch: branch.to_string(),
        commit_sha: commit.clone(),
        message,
        created_at_ms: store::now_ms(),
    };
    let mut scheduled = Vec::new();
    for (file, text) in &files.workflows {
        let at = source::At {
            repo_path: path.clone(),
            commit: commit.clone(),
        };
        match parse_budget::workflow(file, text, at).await {
            Ok((wf, _)) => {
                if let Some(row) =
                    schedules::schedule_of(&wf, file, branch, state.runs().clock.now_ms())
                {
                    scheduled.push(row);
                }
                if wf.matches_push(branch, &changed) {
                    let source = RunSource {
                        file,
                        text,
                        implicit_branch: None,
                        branch,
                        commit: &commit,
                        trigger: "push",
                        actor: event.pusher.as_deref(),
                        rollback_of: None,
                    };
                    created.extend(
                        insert_run(state, &repo, &wf, &source, Some(event.id), None, None).await?,
                    );
                }
            }
            Err(diags) => {
                let message = diags
                    .iter()
                    .filter(|d| d.is_error())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                tracing::warn!(file = %file, commit = %commit, "invalid workflow file");
                state
                    .store()
                    .insert_workflow_error(&record_error(file, message))
                    .await?;
            }
        }
    }
    schedules::update_branch(state, &repo, branch, &scheduled).await?;
    let has_workflows =
        !files.workflows.is_empty() || files.too_large.iter().any(|(f, _)| f.contains('/'));
    for (file, size) in &files.too_large {
        if file.contains('/') || !has_workflows {
            let message = format!(
                "{file}:1:1: error: the file is {size} bytes; Cove reads workflow files of at most {} bytes",
                source::MAX_WORKFLOW_BYTES
            );
            state
                .store()
                .insert_workflow_error(&record_error(file, message))
                .await?;
        }
    }
    if !has_workflows {
        if let Some((file, text)) = &files.buildspec {
            let at = source::At {
                repo_path: path.clone(),
                commit: commit.clone(),
            };
            match parse_budget::implicit_buildspec(file, text, &repo.default_branch, at).await {
                Ok((wf, _)) => {
                    if wf.matches_push(branch, &changed) {
                        let source = RunSource {
                            file,
                            text,
                            implicit_branch: Some(&repo.default_branch),
                            branch,
                            commit: &commit,
                            trigger: "push",
                            actor: event.pusher.as_deref(),
                            rollback_of: None,
                        };
                        created.extend(
                            insert_run(state, &repo, &wf, &source, Some(event.id), None, None)
                                .await?,
                        );
                    }
                }
                Err(diags) => {
                    let message = diags
                        .iter()
                        .filter(|d| d.is_error())
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n");
                    state
                        .store()
                        .insert_workflow_error(&record_error(file, message))
                        .await?;
                }
            }
        }
    }
    Ok(created)
}

/// A manual run of the workflow named `workflow` (or at that file path) on `branch`.
pub async fn start_manual(
    state: &AppState,
    repo: &RepoRow,
    workflow: &str,
    branch: &str,
    actor: Option<&str>,
) -> Result<RunRow, RunsError> {
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (commit, files) = source::workflow_files(path.clone(), format!("refs/heads/{branch}"))
        .await
        .map_err(|e| match e {
            GitError::NotFound(_) => RunsError::NotFound(format!("branch {branch}")),
            other => other.into(),
        })?;
    let at = source::At {
        repo_path: path,
        commit: commit.clone(),
    };
    for (file, text) in &files.workflows {
        if let Ok((wf, _)) = parse_budget::workflow(file, text, at.clone()).await {
            if wf.name == workflow || file == workflow {
                return create_run(
                    state, repo, &wf, file, text, None, branch, &commit, "manual", actor,
                )
                .await;
            }
        }
    }
    if files.workflows.is_empty() {
        if let Some((file, text)) = &files.buildspec {
            if let Ok((wf, _)) =
                parse_budget::implicit_buildspec(file, text, &repo.default_branch, at.clone()).await
            {
                if wf.name == workflow || file == workflow {
                    return create_run(
                        state,
                        repo,
                        &wf,
                        file,
                        text,
                        Some(&repo.default_branch),
                        branch,
                        &commit,
                        "manual",
                        actor,
                    )
                    .await;
                }
            }
        }
    }
    Err(RunsError::NotFound(format!(
        "valid workflow `{workflow}` on branch {branch}"
    )))
}

/// How often stored push events are looked at without a push (a missed wake-up, a failed
/// pass).
pub(super) const PUSH_CURSOR_INTERVAL: Duration = Duration::from_secs(30);

/// Creates the runs of every stored push event that has none yet, oldest first, and moves
/// the cursor past each (`push_events.runs_pending`). Idempotent: a run is stored at most
/// once per event and workflow file, so an event processed again (the server died before its
/// cursor moved) creates nothing twice. A store failure stops the pass and leaves the event
/// pending (the next pass retries it); any other failure (an unreadable commit) is logged and
/// the event is done. Returns the runs created.
pub async fn process_pending_pushes(state: &AppState) -> Result<usize, RunsError> {
    let _one_pass = state.runs().push_cursor.lock().await;
    let mut created = 0;
    loop {
        let events = state.store().pending_push_events(100).await?;
        if events.is_empty() {
            return Ok(created);
        }
        for event in &events {
            match on_push(state, event).await {
                Ok(runs) => created += runs.len(),
                Err(RunsError::Store(e)) => return Err(RunsError::Store(e)),
                Err(e) => {
                    tracing::error!(repo = %event.repo, ref_name = %event.ref_name, error = %e, "creating runs for a push failed");
                }
            }
            state.store().push_event_done(event.id).await?;
        }
    }
}

/// Creates runs from stored push events: at start-up, whenever the push bus says a push was
/// stored (or that this subscriber lagged), when another replica stored one, and every 30 s;
/// on the leader only (`crate::cluster`; the unique key of (event, workflow file) keeps a
/// handover from creating a run twice). Errors are logged, never fatal.
pub fn spawn_push_consumer(state: AppState) {
    crate::cluster::singleton(&state, "push consumer", consume_pushes);
}

pub(super) async fn consume_pushes(state: AppState) {
    let mut rx = state.subscribe();
    let mut tick = tokio::time::interval(PUSH_CURSOR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_in = Duration::ZERO;
    loop {
        let failed = match process_pending_pushes(&state).await {
            Ok(_) => {
                retry_in = Duration::ZERO;
                false
            }
            Err(e) => {
                // 1 s, doubling up to the periodic pass.
                retry_in = (retry_in * 2).clamp(Duration::from_secs(1), PUSH_CURSOR_INTERVAL);
                tracing::error!(error = %e, retry_in_s = retry_in.as_secs(), "creating runs from stored push events failed; retrying");
                true
            }
        };
        tokio::select! {
            () = tokio::time::sleep(retry_in), if failed => {}
            () = state.cluster().pushed.notified() => {}
            got = rx.recv() => match got {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Every stored event is read from the store: drain the bus.
                    while !matches!(
                        rx.try_recv(),
                        Err(tokio::sync::broadcast::error::TryRecvError::Empty
                            | tokio::sync::broadcast::error::TryRecvError::Closed)
                    ) {}
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------
