//! Approval gates (`aws/approval@v1`): the gate's job is never leased. When its dependencies
//! succeeded it either opens — `waiting_approval`, no agent, no container — or, when its
//! `Condition` is false, passes by itself with the reason recorded. People approve or reject
//! with a comment (`POST /api/v1/runs/{run}/actions/{action}/approve|reject`); every decision
//! is committed in the store before the answer. Enough distinct approvals succeed the gate; a
//! rejection fails it (its dependents are skipped, the run fails); a gate still waiting at its
//! expiry ends `timed_out`. The pure rules (who may decide, tallies, conditions) are in
//! [`workflows::approval`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::State;
use axum::Extension;
use cove_api::{Approval, ApprovalDecision, ApprovalRequest, JobState, Role, Run};
use workflows::approval::{may_decide, tally, Decision, Gate, Tally};

use super::{parse_run_workflow, settle_run, source, RunsError};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{self, DecisionRow, JobRow, RepoRow, RunRow};
use crate::AppState;

/// How long a gate waits when neither its action (`Timeout`) nor the server
/// (`[jobs] approval_timeout_secs`) says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest comment kept with a decision.
pub const MAX_COMMENT_BYTES: usize = 4096;

/// Opens (or passes) the run's pending gates whose dependencies all succeeded. True when a
/// gate changed (the caller looks at the run again).
pub(super) async fn open_ready_gates(
    state: &AppState,
    run_id: i64,
    jobs: &[JobRow],
) -> Result<bool, RunsError> {
    let succeeded: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| j.state == JobState::Succeeded)
        .map(|j| j.action.as_str())
        .collect();
    let ready: Vec<&JobRow> = jobs
        .iter()
        .filter(|j| {
            j.state == JobState::Pending
                && j.depends_on.iter().all(|d| succeeded.contains(d.as_str()))
        })
        .collect();
    if ready.is_empty() {
        return Ok(false);
    }
    let gates: BTreeSet<i64> = state
        .store()
        .gates_of_run(run_id)
        .await?
        .into_iter()
        .map(|g| g.job_id)
        .collect();
    let ready: Vec<&JobRow> = ready
        .into_iter()
        .filter(|j| gates.contains(&j.id))
        .collect();
    if ready.is_empty() {
        return Ok(false);
    }
    // only the run's fixed fields are read below (commit, branch, workflow, repository)
    let (run, wf) = super::run_and_workflow(state, run_id).await?;
    let now = state.runs().clock.now_ms();
    let mut changed = false;
    for job in ready {
        let action = wf.action(&job.action);
        // A deploy action's gate: the approvers of its environment (deploy/).
        let deploy_gate = crate::deploy::gate_of_job(state, job.id).await?;
        if deploy_gate.is_none() && action.is_none_or(|a| a.gate.is_none()) {
            // Its environment was deleted or stopped requiring approvals before the gate
            // opened: nothing could approve it under a rule (deploy::end_waiting_gates).
            let why = "deploy ended: its deployment environment was deleted or stopped requiring approvals before this action's approval opened; retry the run";
            changed |= state
                .store()
                .end_job(
                    job.id,
                    JobState::Pending,
                    None,
                    JobState::Failed,
                    Some(why),
                    None,
                    now,
                )
                .await?;
            continue;
        }
        let gate = deploy_gate
            .clone()
            .or_else(|| action.and_then(|a| a.gate.clone()))
            .unwrap_or_default();
        let mut note = None;
        if let (Some(cond), Some(action)) = (&gate.condition, action) {
            let mut ctx = workflows::Context::for_action(action, workflows::Target::Value);
            ctx.commit_id = run.commit_sha.clone();
            ctx.branch_name = run.branch.clone();
            for other in jobs.iter().filter(|j| j.state == JobState::Succeeded) {
                let vars: BTreeMap<String, String> =
                    serde_json::from_str(&other.variables_json).unwrap_or_default();
                ctx.outputs.insert(other.action.clone(), vars);
            }
            let changed_files = if cond.files_changed.is_empty() {
                Vec::new()
            } else {
                changed_files(state, &run).await?
            };
            let files: Vec<&str> = changed_files.iter().map(String::as_str).collect();
            let eval = cond.evaluate(|r| workflows::interpolate(r, &ctx).ok(), &files);
            if !eval.pause {
                if state.store().pass_gate(job.id, now, &eval.reason).await? {
                    tracing::info!(run = run_id, action = %job.action, reason = %eval.reason, "approval gate passed by itself");
                    changed = true;
                }
                continue;
            }
            note = Some(eval.reason);
        }
        let expires = now.saturating_add(job.timeout_ms);
        if state
            .store()
            .open_gate(job.id, now, expires, note.as_deref())
            .await?
        {
            tracing::info!(run = run_id, action = %job.action, "waiting for approval");
            crate::notify::approval_needed(state, &run, job, &gate).await;
            changed = true;
        }
    }
    Ok(changed)
}

/// The files the run's push changed (a run without a push event: its commit against its
/// first parent).
async fn changed_files(state: &AppState, run: &RunRow) -> Result<Vec<String>, RunsError> {
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository of run {}", run.id)))?;
    let path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (old, new) = match state.store().push_shas_of_run(run.id).await? {
        Some(shas) => shas,
        None => (format!("{}^", run.commit_sha), run.commit_sha.clone()),
    };
    Ok(source::changed_files(path, old, new).await?)
}

/// Ends gates whose time ran out, and opens gates left pending (the server stopped between a
/// dependency's end and the gate's opening). Run by the reaper loop.
pub async fn tick(state: &AppState) -> Result<(), RunsError> {
    let now = state.runs().clock.now_ms();
    for gate in state.store().expired_gates(now).await? {
        let minutes = gate
            .opened_at_ms
            .zip(gate.expires_at_ms)
            .map_or(0, |(o, e)| (e - o) / 60_000);
        let why = format!("the approval timed out: no decision within {minutes} minute(s)");
        if state
            .store()
            .end_job(
                gate.job_id,
                JobState::WaitingApproval,
                None,
                JobState::TimedOut,
                Some(&why),
                None,
                now,
            )
            .await?
        {
            tracing::warn!(run = gate.run_id, job = gate.job_id, "approval timed out");
            settle_run(state, gate.run_id).await?;
        }
    }
    for run_id in state.store().runs_with_pending_gates().await? {
        let jobs = state.store().jobs_of_run(run_id).await?;
        if open_ready_gates(state, run_id, &jobs).await? {
            settle_run(state, run_id).await?;
        }
    }
    Ok(())
}

/// Records `principal`'s decision on gate `action` of `run` and applies it.
pub async fn decide(
    state: &AppState,
    repo: &RepoRow,
    run: &RunRow,
    action: &str,
    principal: &Principal,
    decision: Decision,
    comment: &str,
) -> Result<(), RunsError> {
    if comment.len() > MAX_COMMENT_BYTES {
        return Err(RunsError::BadRequest(format!(
            "the comment is {} bytes; at most {MAX_COMMENT_BYTES}",
            comment.len()
        )));
    }
    let job = state
        .store()
        .jobs_of_run(run.id)
        .await?
        .into_iter()
        .find(|j| j.action == action)
        .ok_or_else(|| RunsError::NotFound(format!("action {action} of run {}", run.id)))?;
    let is_gate = state
        .store()
        .gates_of_run(run.id)
        .await?
        .iter()
        .any(|g| g.job_id == job.id);
    if !is_gate {
        return Err(RunsError::Conflict(format!(
            "action {action} is not an approval gate"
        )));
    }
    let wf = parse_run_workflow(state, run).await?;
    // A deploy action's gate: the approvers of its environment; approved, the action runs.
    let deploy_gate = crate::deploy::gate_of_job(state, job.id).await?;
    if deploy_gate.is_none() && wf.action(action).is_none_or(|a| a.gate.is_none()) {
        // A deploy action whose environment was deleted (or lost its approvals) while it
        // waited: approving it would neither deploy under a rule nor be an approval action.
        return Err(RunsError::Conflict(format!(
            "action {action} waits for a deployment environment's approval, and that environment \
             no longer exists or no longer requires approvals; retry the run"
        )));
    }
    let approved_state = if deploy_gate.is_some() {
        JobState::Pending
    } else {
        JobState::Succeeded
    };
    let gate: Gate = deploy_gate
        .or_else(|| wf.action(action).and_then(|a| a.gate.clone()))
        .unwrap_or_default();
    // Owners: the repository's owner, members with the owner role, administrators.
    let owner = principal.user.is_admin
        || principal.user.id == repo.owner_id
        || state
            .store()
            .member_role(repo.id, principal.user.id)
            .await?
            == Some(Role::Owner);
    if !may_decide(&gate, &principal.user.username, owner) {
        let who = if gate.approvers.is_empty() {
            format!("the owners of {}/{}", repo.owner, repo.name)
        } else {
            gate.approvers.join(", ")
        };
        return Err(RunsError::Forbidden(format!(
            "only {who} may approve or reject action {action}"
        )));
    }
    if job.state != JobState::WaitingApproval {
        return Err(RunsError::Conflict(format!(
            "action {action} is {}, not waiting for approval",
            job.state.as_str()
        )));
    }
    let now = state.runs().clock.now_ms();
    let row = DecisionRow {
        id: store::next_id(),
        job_id: job.id,
        round: 0,
        user_id: principal.user.id,
        user_name: principal.user.username.clone(),
        decision: match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
        .to_string(),
        comment: comment.to_string(),
        created_at_ms: now,
    };
    let required = gate.approvals_required;
    let end = state
        .store()
        .decide_gate(&row, |so_far| {
            let decisions = so_far.iter().map(|d| {
                let kind = if d.decision == "reject" {
                    Decision::Reject
                } else {
                    Decision::Approve
                };
                (d.user_name.as_str(), kind)
            });
            match tally(required, decisions) {
                Tally::Approved => Some((approved_state, None)),
                Tally::Rejected { by } => {
                    let why = so_far
                        .iter()
                        .find(|d| d.user_name == by && d.decision == "reject")
                        .map(|d| d.comment.as_str())
                        .unwrap_or_default();
                    Some((JobState::Failed, Some(format!("rejected by {by}: {why}"))))
                }
                Tally::Waiting { .. } => None,
            }
        })
        .await?;
    let Some(end) = end else {
        return Err(RunsError::Conflict(format!(
            "action {action} is no longer waiting for approval"
        )));
    };
    tracing::info!(run = run.id, action, user = %principal.user.username, decision = %row.decision, "approval decision recorded");
    crate::notify::approval_decided(state, repo, run, &row).await;
    if end.is_some() {
        settle_run(state, run.id).await?;
    } else {
        state.runs().wake();
    }
    Ok(())
}

/// The approval part of each gate job of a run, by job id (empty for runs without gates; the
/// workflow is parsed only for runs that have some).
pub async fn approvals_of_run(
    state: &AppState,
    run: &RunRow,
    jobs: &[JobRow],
) -> Result<BTreeMap<i64, Approval>, RunsError> {
    let gates = state.store().gates_of_run(run.id).await?;
    if gates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let wf = parse_run_workflow(state, run).await.ok();
    let decisions = state.store().decisions_of_run(run.id).await?;
    let mut out = BTreeMap::new();
    for g in gates {
        let Some(job) = jobs.iter().find(|j| j.id == g.job_id) else {
            continue;
        };
        let gate = match crate::deploy::gate_of_job(state, job.id).await? {
            Some(g) => g,
            None => wf
                .as_ref()
                .and_then(|w| w.action(&job.action))
                .and_then(|a| a.gate.clone())
                .unwrap_or_default(),
        };
        let mine: Vec<&DecisionRow> = decisions.iter().filter(|d| d.job_id == g.job_id).collect();
        let approvals = mine
            .iter()
            .filter(|d| d.round == g.round && d.decision == "approve")
            .map(|d| d.user_name.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        out.insert(
            g.job_id,
            Approval {
                approvers: gate.approvers.clone(),
                approvals_required: gate.approvals_required,
                approvals: u32::try_from(approvals).unwrap_or(u32::MAX),
                condition: g.condition_note.clone(),
                expires_at_ms: (job.state == JobState::WaitingApproval)
                    .then_some(g.expires_at_ms)
                    .flatten(),
                decisions: mine
                    .iter()
                    .map(|d| ApprovalDecision {
                        user: d.user_name.clone(),
                        decision: d.decision.clone(),
                        comment: d.comment.clone(),
                        at_ms: d.created_at_ms,
                        round: d.round,
                    })
                    .collect(),
            },
        );
    }
    Ok(out)
}

async fn decide_http(
    state: &AppState,
    repo: &RepoRow,
    principal: &Principal,
    params: &BTreeMap<String, String>,
    req: &ApprovalRequest,
    decision: Decision,
) -> Result<Json<Run>, ApiError> {
    let run = super::http::load_run(state, repo, params).await?;
    let action = params
        .get("action")
        .ok_or_else(|| ApiError::BadRequest("missing path parameter action".into()))?;
    decide(state, repo, &run, action, principal, decision, &req.comment).await?;
    let run = super::http::load_run(state, repo, params).await?;
    Ok(Json(super::http::run_dto(state, repo, run).await?))
}

/// `POST /api/v1/runs/{run}/actions/{action}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<ApprovalRequest>,
) -> Result<Json<Run>, ApiError> {
    decide_http(&state, &repo, &principal, &params, &req, Decision::Approve).await
}

/// `POST /api/v1/runs/{run}/actions/{action}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<ApprovalRequest>,
) -> Result<Json<Run>, ApiError> {
    decide_http(&state, &repo, &principal, &params, &req, Decision::Reject).await
}
