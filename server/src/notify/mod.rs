//! Notifications (docs/notifications.md): per repository targets — Slack-compatible incoming
//! webhooks (`{"text": …}` with a link into the web UI), generic webhooks (a JSON body
//! signed with HMAC-SHA256) and email (a list of addresses, through `[notify.smtp]`) — email
//! to one user (the approvers, a reviewer, an environment's owner: [`emit_to`]), and a durable
//! outbox the [`worker`] delivers from.
//!
//! Any module reports an event with [`emit`]: it is written to the store (`notify_deliveries`,
//! once per subscribed target; an event's `key` makes a repeated emit a no-op) before `emit`
//! returns, and sent by the background worker with retries and exponential back-off. Pending
//! deliveries survive a restart. Where a webhook may connect is checked by [`ssrf`] at
//! creation and again at every attempt.
//!
//! The hooks below ([`run_finished`], [`approval_needed`], [`approval_decided`],
//! [`env_stopped_idle`]) are the one-line calls the engine makes; pull-request events plug in
//! the same way: the forge builds an [`Event`] with [`EventKind::PrOpened`],
//! [`EventKind::ReviewRequested`] or [`EventKind::PrMerged`], a key that is unique per
//! occurrence (e.g. `pr_opened:{pr_id}`) and a link (`/repos/{owner}/{name}/…`), and calls
//! `notify::emit(state, repo_id, event)` after its change is committed.

pub mod config;
pub mod email;
pub mod http;
pub mod ssrf;
pub mod users;
pub mod worker;

use std::collections::BTreeSet;

use cove_api::{JobState, Role, RunState};
use serde_json::json;

use crate::store::{self, DecisionRow, DeliveryRow, EnvRow, JobRow, RepoRow, RunRow};
use crate::AppState;

pub use config::{NotifyFileConfig, NotifySettings};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    RunSucceeded,
    RunFailed,
    ApprovalNeeded,
    ApprovalDecided,
    PrOpened,
    ReviewRequested,
    PrMerged,
    EnvStoppedIdle,
    /// `@user` in an issue or its comments (issue 16).
    IssueMentioned,
    /// A user was made an assignee of an issue (issue 16).
    IssueAssigned,
    /// `POST …/targets/{id}/test`: sent to one target whatever it subscribes to.
    Ping,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunSucceeded => "run_succeeded",
            EventKind::RunFailed => "run_failed",
            EventKind::ApprovalNeeded => "approval_needed",
            EventKind::ApprovalDecided => "approval_decided",
            EventKind::PrOpened => "pr_opened",
            EventKind::ReviewRequested => "review_requested",
            EventKind::PrMerged => "pr_merged",
            EventKind::EnvStoppedIdle => "env_stopped_idle",
            EventKind::IssueMentioned => "issue_mentioned",
            EventKind::IssueAssigned => "issue_assigned",
            EventKind::Ping => "ping",
        }
    }
}

/// One event of a repository.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// Unique per occurrence: emitting the same key again enqueues nothing.
    pub key: String,
    /// One line for people ("admin/app: workflow build succeeded on main").
    pub text: String,
    /// The web UI page, as its hash route (`/runs/123`); made absolute with the public URL.
    pub link: Option<String>,
    /// Event-specific fields of the webhook body.
    pub data: serde_json::Value,
}

/// Longest one line of text put in a notification.
const MAX_TEXT: usize = 1000;

/// Wakes the worker and holds the settings.
pub struct Notifier {
    settings: NotifySettings,
    wake: tokio::sync::Notify,
    /// Wake-ups for the other replicas (`crate::cluster`); unset with one process.
    replicas: std::sync::OnceLock<crate::cluster::Forward>,
}

impl Notifier {
    pub fn new(settings: NotifySettings) -> Notifier {
        Notifier {
            settings,
            wake: tokio::sync::Notify::new(),
            replicas: std::sync::OnceLock::new(),
        }
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// A delivery is due: the worker looks now.
    pub fn wake(&self) {
        self.wake.notify_one();
        if let Some(forward) = self.replicas.get() {
            forward.send(crate::cluster::Wake::Notify);
        }
    }

    /// Wakes this process's worker only (another replica queued a delivery).
    pub fn wake_local(&self) {
        self.wake.notify_one();
    }

    /// Sends this process's wake-ups to the other replicas too.
    pub fn forward_wakes(&self, forward: crate::cluster::Forward) {
        let _ = self.replicas.set(forward);
    }
}

/// Enqueues `event` for every target of the repository that subscribes to it, in one
/// transaction, then wakes the worker. Never fails its caller: a store error is logged (the
/// state change that caused the event is already committed).
pub async fn emit(state: &AppState, repo_id: i64, event: Event) {
    if let Err(e) = enqueue(state, repo_id, &event, None).await {
        tracing::error!(repo = repo_id, event = event.kind.as_str(), error = %e, "cannot enqueue a notification");
    }
}

/// [`emit`], and the same event by email to each of `users` (user names) who has an email
/// address and may read the repository — through the same outbox, retried and logged per
/// user. Nothing is mailed when no SMTP server is configured. Never fails its caller.
pub async fn emit_to(state: &AppState, repo_id: i64, event: Event, users: &[String]) {
    emit(state, repo_id, event.clone()).await;
    if let Err(e) = enqueue_users(state, repo_id, &event, users).await {
        tracing::error!(repo = repo_id, event = event.kind.as_str(), error = %e, "cannot enqueue an email notification");
    }
}

/// The absolute link of an event.
fn event_url(state: &AppState, event: &Event) -> Option<String> {
    event
        .link
        .as_ref()
        .map(|l| format!("{}/#{l}", state.public_url()))
}

/// An event's text, at most `MAX_TEXT` bytes.
fn bounded_text(event: &Event) -> String {
    let mut text = event.text.clone();
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// One delivery row, pending and due now.
fn pending_row(
    target_id: Option<i64>,
    user_id: Option<i64>,
    event: &Event,
    id: i64,
    body: String,
    now: i64,
) -> DeliveryRow {
    DeliveryRow {
        id,
        target_id,
        user_id,
        event: event.kind.as_str().to_string(),
        event_key: event.key.clone(),
        body,
        status: "pending".into(),
        attempts: 0,
        next_attempt_ms: now,
        response_code: None,
        error: None,
        duration_ms: None,
        created_at_ms: now,
        finished_at_ms: None,
    }
}

/// Enqueues `event` by email to each named user with an address who may read the repository.
async fn enqueue_users(
    state: &AppState,
    repo_id: i64,
    event: &Event,
    users: &[String],
) -> Result<Vec<DeliveryRow>, crate::error::ApiError> {
    if state.notifier().settings().smtp.is_none() || users.is_empty() {
        return Ok(Vec::new());
    }
    let Some(repo) = state.store().repo_by_id(repo_id).await? else {
        return Ok(Vec::new());
    };
    let now = store::now_ms();
    let mail = email::render(
        event.kind.as_str(),
        &bounded_text(event),
        event_url(state, event).as_deref(),
    );
    let body = serde_json::to_string(&mail).unwrap_or_default();
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for name in users {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let Some(user) = state.store().user_by_name(name).await? else {
            continue;
        };
        if user.email.is_none()
            || crate::auth::role_of_user(state.store(), &user, &repo)
                .await?
                .is_none()
        {
            continue;
        }
        rows.push(pending_row(
            None,
            Some(user.id),
            event,
            store::next_id(),
            body.clone(),
            now,
        ));
    }
    if rows.is_empty() {
        return Ok(rows);
    }
    if state.store().enqueue_deliveries(&rows).await? > 0 {
        state.notifier().wake();
    }
    Ok(rows)
}

/// Enqueues `event` (for one target only when `only` is set); returns the new deliveries.
pub(crate) async fn enqueue(
    state: &AppState,
    repo_id: i64,
    event: &Event,
    only: Option<i64>,
) -> Result<Vec<DeliveryRow>, store::StoreError> {
    let targets: Vec<_> = state
        .store()
        .notify_targets(repo_id)
        .await?
        .into_iter()
        .filter(|t| match only {
            Some(id) => t.id == id,
            None => subscribed(&t.events, event.kind),
        })
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let repo_name = match state.store().repo_by_id(repo_id).await? {
        Some(r) => format!("{}/{}", r.owner, r.name),
        None => return Ok(Vec::new()),
    };
    let now = store::now_ms();
    let url = event_url(state, event);
    let text = bounded_text(event);
    let rows: Vec<DeliveryRow> = targets
        .iter()
        .map(|t| {
            let id = store::next_id();
            let body = if t.kind == "email" {
                let mail = email::render(event.kind.as_str(), &text, url.as_deref());
                serde_json::to_value(&mail).unwrap_or_default()
            } else if t.kind == "slack" {
                json!({ "text": slack_text(&text, url.as_deref()) })
            } else {
                json!({
                    "event": event.kind.as_str(),
                    "delivery": id.to_string(),
                    "repository": repo_name,
                    "text": text,
                    "url": url,
                    "at_ms": now,
                    "data": event.data,
                })
            };
            pending_row(Some(t.id), None, event, id, body.to_string(), now)
        })
        .collect();
    let added = state.store().enqueue_deliveries(&rows).await?;
    if added > 0 {
        state.notifier().wake();
    }
    Ok(rows)
}

/// A target with these `events` takes `kind` (none listed: every event).
fn subscribed(events: &[String], kind: EventKind) -> bool {
    events.is_empty() || events.iter().any(|e| e == kind.as_str())
}

/// Whether any of the repository's targets takes `kind` (an event nobody takes is not
/// composed: most repositories notify nobody of most runs).
async fn any_target_takes(
    state: &AppState,
    repo_id: i64,
    kind: EventKind,
) -> Result<bool, store::StoreError> {
    Ok(state
        .store()
        .notify_targets(repo_id)
        .await?
        .iter()
        .any(|t| subscribed(&t.events, kind)))
}

/// Slack's mrkdwn: `&`, `<`, `>` escaped, the link as `<url|label>`.
fn slack_text(text: &str, url: Option<&str>) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    match url {
        Some(url) => format!("{escaped} <{url}|Open in Cove>"),
        None => escaped,
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A run reached `derived` (called by `runs::state::settle_run` each time it stores a run's
/// state): succeeded and failed runs notify, once per ending (a retried run that ends again
/// notifies again).
pub async fn run_finished(state: &AppState, run_id: i64, derived: RunState, jobs: &[JobRow]) {
    let kind = match derived {
        RunState::Succeeded => EventKind::RunSucceeded,
        RunState::Failed => EventKind::RunFailed,
        _ => return,
    };
    // the run's fixed fields (repository, workflow, branch, commit), kept by its lease
    let run = match state.runs().fixed_run(run_id) {
        Some(run) => run,
        None => match state.store().run(run_id).await {
            Ok(Some(run)) => std::sync::Arc::new(run),
            Ok(None) => return,
            Err(e) => {
                tracing::error!(run = run_id, error = %e, "cannot read the run for its notification");
                return;
            }
        },
    };
    match any_target_takes(state, run.repo_id, kind).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(run = run_id, error = %e, "cannot read the notification targets");
            return;
        }
    }
    let last_end = jobs
        .iter()
        .filter_map(|j| j.finished_at_ms)
        .max()
        .unwrap_or(0);
    let failed: Vec<&str> = jobs
        .iter()
        .filter(|j| {
            j.state.is_terminal() && !matches!(j.state, JobState::Succeeded | JobState::Skipped)
        })
        .map(|j| j.action.as_str())
        .collect();
    let verb = if kind == EventKind::RunSucceeded {
        "succeeded".to_string()
    } else if failed.is_empty() {
        "failed".to_string()
    } else {
        format!("failed ({})", failed.join(", "))
    };
    let event = Event {
        kind,
        key: format!("{}:{run_id}:{last_end}", kind.as_str()),
        text: format!(
            "{}: workflow {} {verb} on {} ({})",
            repo_label(state, run.repo_id).await,
            run.workflow,
            run.branch,
            short(&run.commit_sha)
        ),
        link: Some(format!("/runs/{run_id}")),
        data: json!({
            "run": run_id.to_string(),
            "workflow": run.workflow,
            "branch": run.branch,
            "commit": run.commit_sha,
            "state": derived.as_str(),
            "failed_actions": failed,
        }),
    };
    emit(state, run.repo_id, event).await;
}

async fn repo_label(state: &AppState, repo_id: i64) -> String {
    match state.store().repo_by_id(repo_id).await {
        Ok(Some(r)) => format!("{}/{}", r.owner, r.name),
        _ => format!("repository {repo_id}"),
    }
}

/// Who may approve a gate: its `Approvers`, else the repository's owners.
async fn approvers_of(state: &AppState, repo: &RepoRow, listed: &[String]) -> Vec<String> {
    if !listed.is_empty() {
        return listed.to_vec();
    }
    let mut owners: BTreeSet<String> = BTreeSet::new();
    owners.insert(repo.owner.clone());
    if let Ok(members) = state.store().list_members(repo.id).await {
        owners.extend(
            members
                .into_iter()
                .filter(|(_, role)| *role == Role::Owner)
                .map(|(name, _)| name),
        );
    }
    owners.into_iter().collect()
}

/// Gate `job` of `run` opened and waits for a decision (called by `runs::approval`): the
/// repository's targets, and each approver by email.
pub async fn approval_needed(
    state: &AppState,
    run: &RunRow,
    job: &JobRow,
    gate: &workflows::approval::Gate,
) {
    let Ok(Some(repo)) = state.store().repo_by_id(run.repo_id).await else {
        return;
    };
    let round = state
        .store()
        .gates_of_run(run.id)
        .await
        .ok()
        .and_then(|g| g.into_iter().find(|g| g.job_id == job.id))
        .map_or(0, |g| g.round);
    let approvers = approvers_of(state, &repo, &gate.approvers).await;
    let event = Event {
        kind: EventKind::ApprovalNeeded,
        key: format!("approval_needed:{}:{round}", job.id),
        text: format!(
            "{}/{}: action {} of workflow {} on {} waits for approval ({} needed) — may approve: {}",
            repo.owner,
            repo.name,
            job.action,
            run.workflow,
            run.branch,
            gate.approvals_required,
            approvers.join(", ")
        ),
        link: Some(format!("/runs/{}", run.id)),
        data: json!({
            "run": run.id.to_string(),
            "workflow": run.workflow,
            "branch": run.branch,
            "commit": run.commit_sha,
            "action": job.action,
            "approvers": approvers,
            "approvals_required": gate.approvals_required,
        }),
    };
    emit_to(state, run.repo_id, event, &approvers).await;
}

/// A decision was recorded on gate `action` (called by `runs::approval::decide`).
pub async fn approval_decided(state: &AppState, repo: &RepoRow, run: &RunRow, d: &DecisionRow) {
    let action = state
        .store()
        .job(d.job_id)
        .await
        .ok()
        .flatten()
        .map(|j| j.action)
        .unwrap_or_default();
    let verb = if d.decision == "reject" {
        "rejected"
    } else {
        "approved"
    };
    let event = Event {
        kind: EventKind::ApprovalDecided,
        key: format!("approval_decided:{}", d.id),
        text: format!(
            "{}/{}: {} {verb} action {action} of workflow {} on {}{}",
            repo.owner,
            repo.name,
            d.user_name,
            run.workflow,
            run.branch,
            if d.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", d.comment)
            }
        ),
        link: Some(format!("/runs/{}", run.id)),
        data: json!({
            "run": run.id.to_string(),
            "workflow": run.workflow,
            "action": action,
            "user": d.user_name,
            "decision": d.decision,
            "comment": d.comment,
        }),
    };
    emit(state, repo.id, event).await;
}

/// The idle reaper stopped `env` (called by `envs::reaper`): the repository's targets, and
/// the environment's owner by email.
pub async fn env_stopped_idle(state: &AppState, env: &EnvRow) {
    let owner = state
        .store()
        .user_by_id(env.owner_id)
        .await
        .ok()
        .flatten()
        .map(|u| u.username)
        .unwrap_or_default();
    let event = Event {
        kind: EventKind::EnvStoppedIdle,
        key: format!("env_stopped_idle:{}:{}", env.id, env.last_activity_ms),
        text: format!(
            "{}: environment {} of {owner} on {} was stopped after {} s without activity",
            repo_label(state, env.repo_id).await,
            env.name,
            env.branch,
            env.idle_timeout_secs
        ),
        link: Some(format!("/envs/{}", env.id)),
        data: json!({
            "environment": env.id,
            "name": env.name,
            "owner": owner,
            "branch": env.branch,
            "idle_timeout_secs": env.idle_timeout_secs,
        }),
    };
    let to: Vec<String> = (!owner.is_empty())
        .then(|| owner.clone())
        .into_iter()
        .collect();
    emit_to(state, env.repo_id, event, &to).await;
}
