//! `cove env move` (issue 20): a stopped environment to another agent. An environment's
//! volumes live on its agent, so it stays there across stop/start; moving it is this explicit
//! command (docs/agents.md "Moving an environment").
//!
//! 1. The request names the agent, or labels that placement (`agents::env_placement`) turns
//!    into one; never the agent it is on. Refused at once (nothing changes): not stopped, no
//!    such agent or it may not serve the repository, either agent unreachable, a plan built on
//!    a prebuild's snapshot images (they exist on the first agent only).
//! 2. The environment goes `stopped` → `starting` ("moving to B") and the rest runs in the
//!    background: each persistent volume (`/projects` first, then the devfile's persistent
//!    volumes; `ephemeral` ones start empty anyway) streams as a tar archive out of the old
//!    agent and into the new one (`StreamOpen::VolumeExport`/`VolumeImport`, through the
//!    server with the link's credit; no devfile command runs).
//! 3. The environment is placed on the new agent and created there from its plan without a
//!    clone (`EnvCommand::Create` with no source: the volumes are there), which starts it
//!    (postStart runs, as on any start).
//! 4. Running there: the old agent deletes its copy. A failure at any step before that puts
//!    everything back — the new agent deletes what it got, the environment is placed on the
//!    old agent again and is `stopped` with the reason — so a failed move loses nothing.
//!
//! Reports of an agent about an environment placed elsewhere are ignored
//! (`state::apply_report_of`), so neither agent's clean-up moves the environment's state.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_agent::worker::{ExecInput, ExecOutput};
use cove_api::agent::{AgentReply, EnvCommand};
use cove_api::{EnvState, Environment, MoveEnvironmentRequest};
use devfiles::EnvironmentPlan;

use super::*;
use crate::agents::env_placement::{self, Placed};
use crate::agents::link::EnvAgent;
use crate::agents::placement::JobNeeds;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Json;
use crate::store::EnvRow;
use crate::AppState;

/// Longest wait for a chunk of a volume's archive, or for an agent to confirm it.
const STALL: Duration = Duration::from_secs(120);
/// Longest wait for the environment to run on the new agent.
const START_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// At most this much of an agent's stderr goes into a reason.
const MAX_REASON: usize = 2048;

/// `POST /api/v1/environments/{env}/move`
pub async fn move_env(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(row): Extension<EnvRow>,
    Json(req): Json<MoveEnvironmentRequest>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    if row.state != EnvState::Stopped {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; stop it before moving it (`cove env move` stops it for you)",
            row.name,
            row.state.as_str()
        )));
    }
    let plan = plan_of(&row)?;
    if let Some(c) = plan
        .containers
        .iter()
        .find(|c| c.image.starts_with(cove_agent::pod::prebuild::IMAGE_PREFIX))
    {
        return Err(ApiError::Conflict(format!(
            "environment {} was started from a prebuild: the image of {} ({}) exists on its agent only; delete it and create it on the other agent instead",
            row.name, c.name, c.image
        )));
    }
    let placed = choose(&state, &row, &req).await?;
    let source = state.envs().agent_for(&row)?;
    let target = match placed.agent_id {
        None => EnvAgent::Embedded(Box::new(state.envs().agent()?.clone())),
        Some(id) => EnvAgent::Remote(state.envs().links().get(id).ok_or_else(|| {
            ApiError::Conflict(format!("agent {}'s link went down; try again", placed.name))
        })?),
    };
    let from = agent_name(&row);
    let reason = format!("moving from {from} to {}", placed.name);
    if !state
        .store()
        .transition_env(
            &row.id,
            &[EnvState::Stopped],
            EnvState::Starting,
            Some(&reason),
        )
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "environment {} changed state meanwhile; look at it again",
            row.name
        )));
    }
    state
        .store()
        .add_env_event(
            &row.id,
            "move",
            &format!(
                "{reason}, asked by {}: {}",
                principal.user.username, placed.why
            ),
        )
        .await?;
    let editor = state.store().env_editor(&row.id).await?;
    let job = Move {
        state: state.clone(),
        row: row.clone(),
        plan,
        editor,
        source,
        target,
        from,
        placed,
        by: principal.user.username.clone(),
    };
    tokio::spawn(job.run());
    let row = state
        .store()
        .env(&row.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("environment".into()))?;
    Ok((StatusCode::ACCEPTED, Json(env_dto(&state, &row).await?)))
}

/// The agent the request asks for, not the one the environment is on.
async fn choose(
    state: &AppState,
    row: &EnvRow,
    req: &MoveEnvironmentRequest,
) -> Result<Placed, ApiError> {
    let repo = state
        .store()
        .repo_by_id(row.repo_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("repository".into()))?;
    let full = format!("{}/{}", repo.owner, repo.name);
    crate::agents::placement::validate_labels(&req.labels).map_err(ApiError::BadRequest)?;
    let candidates: Vec<_> = env_placement::candidates(state)
        .await?
        .into_iter()
        .filter(|c| c.candidate.id != row.agent_id)
        .collect();
    match (&req.agent, req.labels.is_empty()) {
        (Some(_), false) | (None, true) => Err(ApiError::BadRequest(
            "say where to: an agent (`agent`, `cove env move --agent NAME`) or labels (`labels`, `--pool NAME`/`--label K=V`), not both".into(),
        )),
        (Some(name), true) => {
            if *name == agent_name(row) {
                return Err(ApiError::Conflict(format!(
                    "environment {} is on agent {name} already",
                    row.name
                )));
            }
            let c = candidates
                .iter()
                .find(|c| c.candidate.name == *name)
                .ok_or_else(|| ApiError::Conflict(format!("no agent named {name} may take environments (`cove agent list`)")))?;
            let empty = Default::default();
            if let Err(crate::agents::placement::Mismatch::Pool(pool)) =
                c.candidate.check(JobNeeds {
                    repo_id: repo.id,
                    owner: &repo.owner,
                    labels: &empty,
                })
            {
                return Err(ApiError::Conflict(format!(
                    "agent {name} may not run environments of {full}: its pool {pool} does not serve it"
                )));
            }
            if !c.linked {
                return Err(ApiError::Conflict(format!(
                    "agent {name} is not linked (running without environments, or unreachable)"
                )));
            }
            if !c.has_room() {
                return Err(ApiError::Conflict(format!(
                    "no room on agent {name}: it runs {} of {} environments (max_environments)",
                    c.active,
                    c.max_active.unwrap_or(usize::MAX)
                )));
            }
            Ok(Placed {
                agent_id: c.candidate.id,
                name: name.clone(),
                why: format!("agent {name} named by the caller"),
            })
        }
        (None, false) => env_placement::place(
            &candidates,
            &full,
            JobNeeds {
                repo_id: repo.id,
                owner: &repo.owner,
                labels: &req.labels,
            },
        )
        .map_err(|why| ApiError::Conflict(format!("{why} (other than the environment's own agent)"))),
    }
}

/// The name of the agent `row` is placed on (what its placement starts with).
fn agent_name(row: &EnvRow) -> String {
    match (&row.placement, row.agent_id) {
        (Some(p), _) if p.contains(':') => p.split(':').next().unwrap_or_default().to_string(),
        (_, None) => crate::agents::eligibility::embedded_candidate().name,
        (_, Some(id)) => format!("#{id}"),
    }
}

struct Move {
    state: AppState,
    row: EnvRow,
    plan: EnvironmentPlan,
    editor: cove_api::Editor,
    source: EnvAgent,
    target: EnvAgent,
    from: String,
    placed: Placed,
    by: String,
}

impl Move {
    async fn run(self) {
        let id = self.row.id.clone();
        if let Err(e) = self.run_inner().await {
            tracing::error!(env = %id, error = %e, "moving an environment failed in the store");
        }
    }

    async fn event(&self, kind: &str, text: &str) -> Result<(), ApiError> {
        Ok(self
            .state
            .store()
            .add_env_event(&self.row.id, kind, text)
            .await?)
    }

    async fn run_inner(&self) -> Result<(), ApiError> {
        let started = Instant::now();
        let env = self.row.id.as_str();
        // 1. the volumes
        let volumes: Vec<Option<&str>> = std::iter::once(None)
            .chain(
                self.plan
                    .volumes
                    .iter()
                    .filter(|v| v.persistent)
                    .map(|v| Some(v.name.as_str())),
            )
            .collect();
        let mut bytes = 0u64;
        for v in &volumes {
            match copy_volume(&self.source, &self.target, env, *v).await {
                Ok(n) => bytes += n,
                Err(why) => {
                    let what = v.map_or("/projects".to_string(), |v| format!("volume {v}"));
                    return self
                        .undo(EnvState::Starting, &format!("copying {what} failed: {why}"))
                        .await;
                }
            }
        }
        self.event(
            "move",
            &format!(
                "copied {} volume(s), {:.1} MiB, from {} to {} in {:.1} s; starting on {}",
                volumes.len(),
                bytes as f64 / (1024.0 * 1024.0),
                self.from,
                self.placed.name,
                started.elapsed().as_secs_f64(),
                self.placed.name
            ),
        )
        .await?;
        // deleted (or otherwise acted on) during the copy: the new agent's copy goes, the
        // old one is the deletion's business
        match self.state.store().env(env).await? {
            Some(now) if now.state == EnvState::Starting && now.agent_id == self.row.agent_id => {}
            None => return self.deleted_meanwhile().await,
            Some(now) if now.state == EnvState::Deleting => return self.deleted_meanwhile().await,
            // e.g. its agent became unreachable: the old copy stays as it is, the new goes
            Some(now) => {
                let _ = self
                    .target
                    .call(EnvCommand::Delete {
                        env_id: env.to_string(),
                    })
                    .await;
                return self
                    .event(
                        "move",
                        &format!(
                            "the move to {} was abandoned: the environment became {}; it stays on {}",
                            self.placed.name,
                            now.state.as_str(),
                            self.from
                        ),
                    )
                    .await;
            }
        }
        // 2. placed on the new agent, created there from the copied volumes
        self.state
            .store()
            .set_env_agent(
                env,
                self.placed.agent_id,
                &format!(
                    "{}: moved from {} by {}; {}",
                    self.placed.name, self.from, self.by, self.placed.why
                ),
            )
            .await?;
        let reply = self
            .target
            .call(EnvCommand::Create {
                env_id: env.to_string(),
                plan: self.plan.clone(),
                source: None,
                dotfiles: None,
                editor: self.editor,
            })
            .await;
        if !matches!(reply, AgentReply::Accepted) {
            return self
                .undo(
                    EnvState::Starting,
                    &format!(
                        "{} did not start it: {}",
                        self.placed.name,
                        reply_error(reply)
                    ),
                )
                .await;
        }
        // 3. running there: the old copy goes
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let now = self.state.store().env(env).await?;
            let Some(now) = now.filter(|n| n.state != EnvState::Deleting) else {
                return self.deleted_meanwhile().await;
            };
            match now.state {
                EnvState::Running => break,
                EnvState::Starting if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                EnvState::Starting | EnvState::Failed => {
                    let why = now
                        .reason
                        .unwrap_or_else(|| "it did not start in time".into());
                    return self
                        .undo(
                            now.state,
                            &format!("it did not start on {}: {why}", self.placed.name),
                        )
                        .await;
                }
                // stopped, deleted, unreachable meanwhile: someone else acts on it now; the
                // old copy stays until it is running on the new agent
                other => {
                    self.event(
                        "move",
                        &format!(
                            "the environment became {} before it ran on {}; its copy on {} was kept",
                            other.as_str(),
                            self.placed.name,
                            self.from
                        ),
                    )
                    .await?;
                    return Ok(());
                }
            }
        }
        let cleanup = self
            .source
            .call(EnvCommand::Delete {
                env_id: env.to_string(),
            })
            .await;
        let note = match cleanup {
            AgentReply::Accepted => String::new(),
            other => format!(
                " (removing the old copy on {} failed: {}; `cove agent` orphans)",
                self.from,
                reply_error(other)
            ),
        };
        self.event(
            "move",
            &format!(
                "moved from {} to {} in {:.1} s{note}",
                self.from,
                self.placed.name,
                started.elapsed().as_secs_f64()
            ),
        )
        .await
    }

    /// The environment was deleted (or is being deleted) during the move, on whichever agent
    /// it was placed on then: both copies go, and its row once both agents are done (the
    /// report of the agent it is no longer placed on would not count).
    async fn deleted_meanwhile(&self) -> Result<(), ApiError> {
        let env = self.row.id.as_str();
        for agent in [&self.target, &self.source] {
            let _ = agent
                .call(EnvCommand::Delete {
                    env_id: env.to_string(),
                })
                .await;
        }
        // the agents' deletes are accepted and run in the background: give them time, then
        // drop the row if it is still being deleted
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.state.store().env(env).await? {
                None => return Ok(()),
                Some(r) if r.state != EnvState::Deleting => break,
                Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        self.state.store().delete_env_if_deleting(env).await?;
        Ok(())
    }

    /// Puts everything back: the new agent's copy deleted, the environment on the old agent,
    /// stopped, with the reason.
    async fn undo(&self, now: EnvState, why: &str) -> Result<(), ApiError> {
        let env = self.row.id.as_str();
        let removed = self
            .target
            .call(EnvCommand::Delete {
                env_id: env.to_string(),
            })
            .await;
        self.state
            .store()
            .set_env_agent(
                env,
                self.row.agent_id,
                self.row.placement.as_deref().unwrap_or_default(),
            )
            .await?;
        let reason = format!(
            "the move to {} failed and the environment stayed on {}: {why}",
            self.placed.name, self.from
        );
        self.state
            .store()
            .transition_env(
                env,
                &[now, EnvState::Starting, EnvState::Failed],
                EnvState::Stopped,
                Some(&reason),
            )
            .await?;
        let leftover = match removed {
            AgentReply::Accepted => String::new(),
            other => format!(
                " (removing what {} got failed: {})",
                self.placed.name,
                reply_error(other)
            ),
        };
        self.event("error", &format!("{reason}{leftover}")).await
    }
}

/// One volume's archive from `source` into `target`; the bytes copied.
async fn copy_volume(
    source: &EnvAgent,
    target: &EnvAgent,
    env: &str,
    volume: Option<&str>,
) -> Result<u64, String> {
    let mut out = source.open_volume(env, volume, true).await?;
    let mut into = target.open_volume(env, volume, false).await?;
    let mut bytes = 0u64;
    let mut errors = String::new();
    let code = loop {
        let next = tokio::time::timeout(STALL, out.output.recv())
            .await
            .map_err(|_| format!("no data from the old agent for {} s", STALL.as_secs()))?;
        match next {
            Some(ExecOutput::Stdout(chunk)) => {
                bytes += chunk.len() as u64;
                tokio::time::timeout(STALL, into.input.send(ExecInput::Data(chunk)))
                    .await
                    .map_err(|_| format!("the new agent took no data for {} s", STALL.as_secs()))?
                    .map_err(|_| finish_text(&mut into, "the new agent stopped reading"))?;
            }
            Some(ExecOutput::Stderr(text)) => push_bounded(&mut errors, &text),
            Some(ExecOutput::Exit(code)) => break code,
            None => return Err("the old agent's stream ended without an exit code".into()),
        }
    };
    if code != 0 {
        return Err(format!("the old agent: {}", nonempty(errors)));
    }
    let _ = into.input.send(ExecInput::Eof).await;
    let mut errors = String::new();
    loop {
        match tokio::time::timeout(STALL, into.output.recv()).await {
            Err(_) => {
                return Err(format!(
                    "the new agent did not confirm within {} s",
                    STALL.as_secs()
                ))
            }
            Ok(Some(ExecOutput::Stderr(text))) => push_bounded(&mut errors, &text),
            Ok(Some(ExecOutput::Stdout(_))) => {}
            Ok(Some(ExecOutput::Exit(0))) => return Ok(bytes),
            Ok(Some(ExecOutput::Exit(_))) => {
                return Err(format!("the new agent: {}", nonempty(errors)))
            }
            Ok(None) => return Err("the new agent's stream ended without an exit code".into()),
        }
    }
}

/// What the import said before it went away (best effort), for the reason.
fn finish_text(into: &mut cove_agent::worker::ExecSession, what: &str) -> String {
    let mut errors = String::new();
    while let Ok(o) = into.output.try_recv() {
        if let ExecOutput::Stderr(text) = o {
            push_bounded(&mut errors, &text);
        }
    }
    if errors.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {errors}")
    }
}

fn push_bounded(into: &mut String, bytes: &[u8]) {
    let room = MAX_REASON.saturating_sub(into.len());
    let text = String::from_utf8_lossy(bytes);
    into.extend(text.chars().take(room));
}

fn nonempty(s: String) -> String {
    if s.trim().is_empty() {
        "failed without saying why".into()
    } else {
        s.trim().to_string()
    }
}
