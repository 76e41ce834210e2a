//! Deployments (issue 21, docs/deployments.md): per-repository deployment environments with
//! administrator-set AWS account connections, protection rules and environment-scoped
//! variables and secrets (`http.rs`, pure rules in `rules.rs`), and what they do to runs:
//!
//! - [`plan`] (run creation): every action whose `Environment` names a deployment
//!   environment — or that names `Connections` at all — is a deploy action. It is refused,
//!   before anything runs or any credential exists, when the environment does not exist, the
//!   branch is not allowed, the person who started the run may not deploy, or a connection or
//!   role is not one the administrator set; a refused action fails with the reason. With
//!   required approvals it becomes an approval gate (the gate machinery of `runs/approval.rs`,
//!   approvers from the environment's rule; approved, it is leased like any job).
//! - [`for_lease`] (lease): the same checks again with the rule as it is now, then the
//!   environment's variables and opened secrets for the job.
//! - [`rollback`]: a new run of an earlier run's workflow at its commit with only that
//!   environment's deploy actions and what they depend on, under the same protections.

pub mod http;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};

use cove_api::{DeployProtection, JobState, Role};
use workflows::{Action, Workflow};

use crate::runs::RunsError;
use crate::store::{self, DeployEnvRow, JobRow, NewDeployment, RepoRow, RunRow};
use crate::AppState;

/// What run creation decided for one deploy action.
#[derive(Debug, Clone)]
pub struct DeployCheck {
    pub action: String,
    /// The environment (`None`: it does not exist; then `refused` says so).
    pub env_id: Option<i64>,
    pub refused: Option<String>,
    /// Approvals needed before it starts (0: none); such an action is an approval gate.
    pub approvals: u32,
}

/// Who a person is to a repository: name, role, administrator.
type Actor<'a> = (&'a str, Option<Role>, bool);

async fn actor_of<'a>(
    state: &AppState,
    repo: &RepoRow,
    user: Option<&'a str>,
) -> Result<Option<Actor<'a>>, RunsError> {
    let Some(name) = user else {
        return Ok(None);
    };
    let Some(row) = state.store().user_by_name(name).await? else {
        return Ok(None);
    };
    let role = crate::auth::role_of_user(state.store(), &row, repo)
        .await
        .map_err(|e| RunsError::BadRequest(e.to_string()))?;
    Ok(Some((name, role, row.is_admin && !row.disabled)))
}

fn protection(env: &DeployEnvRow) -> DeployProtection {
    // A stored rule that cannot be read protects as much as possible: nobody may deploy.
    serde_json::from_str(&env.protection).unwrap_or_else(|_| DeployProtection {
        deployers: vec![String::new()],
        branches: vec![String::new()],
        ..Default::default()
    })
}

/// Why `action`'s connections are refused in `env`, if they are.
async fn connection_refusal(
    state: &AppState,
    env: &DeployEnvRow,
    action: &Action,
) -> Result<Option<String>, RunsError> {
    let Some(wanted) = action.environment.as_ref() else {
        return Ok(None);
    };
    if wanted.connections.is_empty() {
        return Ok(None);
    }
    let stored = state.store().deploy_connections(env.id).await?;
    for c in &wanted.connections {
        let Some(conn) = stored.iter().find(|s| s.name == c.name) else {
            return Ok(Some(format!(
                "environment `{}` has no account connection `{}` (an administrator adds it: cove deploy env connect)",
                env.name, c.name
            )));
        };
        let roles: Vec<String> = serde_json::from_str(&conn.roles).unwrap_or_default();
        if !roles.iter().any(|r| r == &c.role) {
            return Ok(Some(format!(
                "role `{}` is not one the administrator allowed for connection `{}` of environment `{}`",
                c.role, c.name, env.name
            )));
        }
    }
    if wanted.connections.len() > 1 {
        return Ok(Some(format!(
            "action {} names {} connections; Cove gives one role per action (split it into one action per account)",
            action.id,
            wanted.connections.len()
        )));
    }
    Ok(None)
}

/// The checks of one action: `None` when it is not a deploy action.
async fn check_action(
    state: &AppState,
    repo: &RepoRow,
    action: &Action,
    branch: &str,
    actor: Option<Actor<'_>>,
) -> Result<Option<(Option<DeployEnvRow>, Option<String>, u32)>, RunsError> {
    let Some(wanted) = action.environment.as_ref() else {
        return Ok(None);
    };
    let Some(env) = state.store().deploy_env(repo.id, &wanted.name).await? else {
        if wanted.connections.is_empty() {
            // Only a package-configuration selector (docs/private-subnet.md).
            return Ok(None);
        }
        return Ok(Some((
            None,
            Some(format!(
                "deployment environment `{}` does not exist in {}/{} (cove deploy env create)",
                wanted.name, repo.owner, repo.name
            )),
            0,
        )));
    };
    let p = protection(&env);
    let mut refused = rules::refusal(&env.name, &p, branch, actor);
    if refused.is_none() {
        refused = connection_refusal(state, &env, action).await?;
    }
    Ok(Some((Some(env), refused, p.required_approvals)))
}

/// Run creation: the deploy actions of `workflow` and what happens to each, for a run on
/// `branch` started by `actor` (a user name; `None`: no person, e.g. a schedule).
pub async fn plan(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    branch: &str,
    actor: Option<&str>,
) -> Result<Vec<DeployCheck>, RunsError> {
    let mut out = Vec::new();
    if workflow.actions.iter().all(|a| a.environment.is_none()) {
        return Ok(out);
    }
    let who = actor_of(state, repo, actor).await?;
    for action in &workflow.actions {
        if let Some((env, refused, approvals)) =
            check_action(state, repo, action, branch, who).await?
        {
            out.push(DeployCheck {
                action: action.id.clone(),
                env_id: env.map(|e| e.id),
                refused,
                approvals,
            });
        }
    }
    Ok(out)
}

/// After the run and its jobs are stored: records its deployments and fails refused deploy
/// actions with their reason (a system log line says it too). True when a job was failed.
pub async fn record(
    state: &AppState,
    run: &RunRow,
    jobs: &[JobRow],
    checks: &[DeployCheck],
    actor: Option<&str>,
    rollback_of: Option<i64>,
) -> Result<bool, RunsError> {
    let now = state.runs().clock().now_ms();
    let rows: Vec<NewDeployment> = checks
        .iter()
        .filter_map(|c| {
            let job = jobs.iter().find(|j| j.action == c.action)?;
            Some(NewDeployment {
                id: store::next_id(),
                env_id: c.env_id?,
                run_id: run.id,
                job_id: job.id,
                action: c.action.clone(),
                actor: actor.map(str::to_string),
                refused: c.refused.clone(),
                rollback_of,
                created_at_ms: now,
            })
        })
        .collect();
    state.store().record_deployments(&rows).await?;
    let mut failed = false;
    for c in checks {
        let (Some(why), Some(job)) = (&c.refused, jobs.iter().find(|j| j.action == c.action))
        else {
            continue;
        };
        let message = format!("deploy refused: {why}");
        tracing::info!(run = run.id, action = %c.action, reason = %why, "deploy action refused");
        state
            .store()
            .append_logs(
                job.id,
                &[cove_api::JobLogLine {
                    seq: 0,
                    stream: cove_api::LogStreamKind::System,
                    ts: u64::try_from(now).unwrap_or(0),
                    text: format!("[cove] {message}"),
                }],
            )
            .await?;
        failed |= state
            .store()
            .end_job(
                job.id,
                JobState::Pending,
                None,
                JobState::Failed,
                Some(&message),
                None,
                now,
            )
            .await?;
    }
    Ok(failed)
}

/// The approval rule of a deploy action's gate: the environment's approvers and count.
/// `None` when the job is not a deploy action that needs approvals.
pub async fn gate_of_job(
    state: &AppState,
    job_id: i64,
) -> Result<Option<workflows::approval::Gate>, RunsError> {
    let Some(d) = state.store().deployment_of_job(job_id).await? else {
        return Ok(None);
    };
    let Some(env) = state.store().deploy_envs_by_id(d.env_id).await? else {
        return Ok(None);
    };
    let p = protection(&env);
    Ok(
        (p.required_approvals > 0).then(|| workflows::approval::Gate {
            approvals_required: p.required_approvals,
            approvers: p.approvers.clone(),
            condition: None,
        }),
    )
}

/// The deploy actions waiting for the approvals of an environment that was just deleted or
/// stopped requiring approvals (`jobs`: job and run ids, read before the change) cannot be
/// decided under its rule any more: each fails at once with `why` (also a `[cove]` line in its
/// log) instead of waiting for its gate's expiry, and its run settles (dependents skipped).
pub async fn end_waiting_gates(
    state: &AppState,
    jobs: &[(i64, i64)],
    why: &str,
) -> Result<(), RunsError> {
    let now = state.runs().clock().now_ms();
    for &(job_id, run_id) in jobs {
        if !state
            .store()
            .end_job(
                job_id,
                JobState::WaitingApproval,
                None,
                JobState::Failed,
                Some(why),
                None,
                now,
            )
            .await?
        {
            continue; // decided or expired meanwhile
        }
        tracing::info!(run = run_id, job = job_id, reason = %why, "waiting deploy action ended");
        state
            .store()
            .append_logs(
                job_id,
                &[cove_api::JobLogLine {
                    seq: 0,
                    stream: cove_api::LogStreamKind::System,
                    ts: u64::try_from(now).unwrap_or(0),
                    text: format!("[cove] {why}"),
                }],
            )
            .await?;
        crate::runs::settle_run(state, run_id).await?;
    }
    Ok(())
}

/// What a leased deploy action gets: the environment's variables (plain) and secrets
/// (opened; masked by the agent).
#[derive(Debug, Default)]
pub struct LeaseDeploy {
    pub env: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
    pub environment: Option<String>,
    /// The role the agent assumes for the job (an action with a connection).
    pub role: Option<cove_api::JobDeploy>,
}

/// At lease: the run-creation checks again with the environment as it is now (it may have
/// been deleted or tightened while the run waited), approvals recorded when required, then
/// the environment's variables and secrets. `Ok(None)`: not a deploy action.
pub async fn for_lease(
    state: &AppState,
    run: &RunRow,
    job: &JobRow,
    action: &Action,
) -> Result<Option<LeaseDeploy>, RunsError> {
    // Deployments are recorded only for actions with an `Environment` (`plan`, `record`).
    if action.environment.is_none() {
        return Ok(None);
    }
    let Some(d) = state.store().deployment_of_job(job.id).await? else {
        if action
            .environment
            .as_ref()
            .is_some_and(|e| !e.connections.is_empty())
        {
            // Connections with no recorded deployment: never credentials.
            return Err(RunsError::BadRequest(format!(
                "deploy refused: action {} names account connections but no deployment environment was checked for it",
                action.id
            )));
        }
        return Ok(None);
    };
    let refuse = |why: String| RunsError::BadRequest(format!("deploy refused: {why}"));
    if let Some(why) = &d.refused {
        return Err(refuse(why.clone()));
    }
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository {}", run.repo_id)))?;
    let who = actor_of(state, &repo, d.actor.as_deref()).await?;
    let Some((env, refused, approvals)) =
        check_action(state, &repo, action, &run.branch, who).await?
    else {
        return Err(refuse(format!(
            "deployment environment `{}` no longer exists",
            d.env_name
        )));
    };
    let Some(env) = env.filter(|e| e.id == d.env_id) else {
        return Err(refuse(format!(
            "deployment environment `{}` no longer exists",
            d.env_name
        )));
    };
    if let Some(why) = refused {
        return Err(refuse(why));
    }
    if approvals > 0 {
        let gate = gate_of_job(state, job.id).await?.unwrap_or_default();
        let approved: BTreeSet<String> = state
            .store()
            .approvers_of_job(job.id)
            .await?
            .into_iter()
            .filter(|u| gate.approvers.is_empty() || gate.approvers.contains(u))
            .collect();
        if (approved.len() as u32) < approvals {
            return Err(refuse(format!(
                "environment `{}` requires {approvals} approval(s) and this action has {}",
                env.name,
                approved.len()
            )));
        }
    }
    let mut out = LeaseDeploy {
        environment: Some(env.name.clone()),
        role: job_role(state, &repo, run, job, action, &env).await?,
        ..Default::default()
    };
    for v in state.store().deploy_variables(env.id).await? {
        if v.secret {
            let value = state.runs().key().open(
                repo.id,
                &http::sealed_name(&env.name, &v.name),
                &v.value,
            )?;
            out.secrets.push((v.name, value));
        } else {
            out.env.push((v.name, v.value));
        }
    }
    Ok(Some(out))
}

/// The role of an action's (single, checked) connection, as the agent assumes it.
async fn job_role(
    state: &AppState,
    repo: &RepoRow,
    run: &RunRow,
    job: &JobRow,
    action: &Action,
    env: &DeployEnvRow,
) -> Result<Option<cove_api::JobDeploy>, RunsError> {
    let Some(c) = action
        .environment
        .as_ref()
        .and_then(|e| e.connections.first())
    else {
        return Ok(None);
    };
    let stored = state.store().deploy_connections(env.id).await?;
    let conn = stored.iter().find(|s| s.name == c.name).ok_or_else(|| {
        RunsError::BadRequest(format!("deploy refused: connection `{}` is gone", c.name))
    })?;
    let sts_endpoint = match &conn.endpoints {
        None => None,
        Some(p) => Some(
            state
                .runs()
                .config()
                .packages
                .endpoints
                .get(p)
                .ok_or_else(|| {
                    RunsError::BadRequest(format!(
                        "deploy refused: connection `{}` names endpoint profile `{p}`, which the server's configuration no longer has",
                        c.name
                    ))
                })?
                .sts
                .clone(),
        ),
    }
    .flatten();
    let full = format!("{}/{}", repo.owner, repo.name);
    Ok(Some(cove_api::JobDeploy {
        environment: env.name.clone(),
        connection: conn.name.clone(),
        account_id: conn.account_id.clone(),
        region: conn.region.clone(),
        role_arn: c.role.clone(),
        session_name: rules::session_name(&full, run.number, &job.action),
        duration_secs: rules::session_secs(u64::try_from(job.timeout_ms / 1000).unwrap_or(3600)),
        tags: vec![
            ("repository".into(), rules::tag_value(&full)),
            ("branch".into(), rules::tag_value(&run.branch)),
            ("environment".into(), rules::tag_value(&env.name)),
        ],
        sts_endpoint,
    }))
}

/// The actions of `workflow` that deploy into `env` and every action they depend on
/// (transitively).
fn rollback_actions(workflow: &Workflow, env: &str) -> BTreeSet<String> {
    let plan = match workflows::RunPlan::new(workflow) {
        Ok(p) => p,
        Err(_) => return BTreeSet::new(),
    };
    let mut keep: BTreeSet<String> = workflow
        .actions
        .iter()
        .filter(|a| a.environment.as_ref().is_some_and(|e| e.name == env))
        .map(|a| a.id.clone())
        .collect();
    let mut todo: Vec<String> = keep.iter().cloned().collect();
    while let Some(a) = todo.pop() {
        for dep in plan.dependencies(&a) {
            if keep.insert(dep.to_string()) {
                todo.push(dep.to_string());
            }
        }
    }
    keep
}

/// `cove deploy rollback ENV --to N`: run `N`'s deploy actions into `env` again (with what
/// they depend on) at `N`'s commit, as a new run started by `actor`. `N` must have deployed
/// into `env` successfully.
pub async fn rollback(
    state: &AppState,
    repo: &RepoRow,
    env: &DeployEnvRow,
    run_number: i64,
    actor: &str,
) -> Result<RunRow, RunsError> {
    let old = state
        .store()
        .run_by_number(repo.id, run_number)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("run #{run_number}")))?;
    let deployed = state
        .store()
        .deployments_of_run(old.id)
        .await?
        .into_iter()
        .any(|d| d.env_id == env.id && d.refused.is_none() && d.job_state == "succeeded");
    if !deployed {
        return Err(RunsError::Conflict(format!(
            "run #{run_number} did not deploy to environment `{}` successfully; roll back only to a successful deployment",
            env.name
        )));
    }
    let mut workflow = (*crate::runs::parse_run_workflow(state, &old).await?).clone();
    let keep = rollback_actions(&workflow, &env.name);
    workflow.actions.retain(|a| keep.contains(&a.id));
    if workflow.actions.is_empty() {
        return Err(RunsError::Conflict(format!(
            "run #{run_number}'s workflow has no action for environment `{}`",
            env.name
        )));
    }
    crate::runs::create_rollback_run(state, repo, &workflow, &old, actor).await
}

/// The deploy actions of a run by job id, as the run's DTO shows them next to each action
/// (`Job.deployment`): environment, state, the refusal or failure, and for a deploy waiting
/// for approvals how many more it needs and from whom (`approvals`: the run's gates, from
/// `runs::approval::approvals_of_run`).
pub async fn of_run(
    state: &AppState,
    run_id: i64,
    approvals: &BTreeMap<i64, cove_api::Approval>,
) -> Result<BTreeMap<i64, cove_api::JobDeployment>, RunsError> {
    Ok(state
        .store()
        .deployments_of_run(run_id)
        .await?
        .iter()
        .map(|d| {
            let dto = http::deployment_dto(d);
            let waiting = (dto.state == JobState::WaitingApproval.as_str())
                .then(|| approvals.get(&d.job_id).map(waiting_text))
                .flatten();
            (
                d.job_id,
                cove_api::JobDeployment {
                    environment: dto.environment,
                    state: dto.state,
                    reason: dto.reason,
                    waiting,
                },
            )
        })
        .collect())
}

/// `waiting for 1 approval(s) from olga, piet` (approvers not named: the repository's owners).
pub fn waiting_text(a: &cove_api::Approval) -> String {
    let missing = a.approvals_required.saturating_sub(a.approvals).max(1);
    let who = if a.approvers.is_empty() {
        "the repository's owners".to_string()
    } else {
        a.approvers.join(", ")
    };
    format!("waiting for {missing} approval(s) from {who}")
}
