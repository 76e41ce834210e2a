//! Warm pools of prebuilt environments (issue 19, docs/prebuilds.md "Warm pool"): per
//! repository (`warm` in its prebuild settings), that many environments of each prebuilding
//! branch's current prebuild are created and started ahead of time, and `cove env create` of
//! that commit claims one instead of creating (Coder's prebuilt workspaces).
//!
//! A pooled environment is an ordinary environment row with `pooled = Some(prebuild)`, owned
//! by the repository's owner, without idle timeout, invisible to every user (lists, routes,
//! SSH) until claimed. A claim takes it out of the pool in one conditional update (two
//! creates never get the same one), gives it the caller's name, owner and idle timeout, and
//! writes the caller's git identity into the clone's config.
//!
//! One loop on the leader keeps the pools: it deletes pooled environments that are no longer
//! of their branch's current prebuild (a push moved the branch on, the prebuild expired, the
//! settings changed) or that are not creating or running (failed, or caught mid-create by a
//! stopped server: their containers, volumes and network go with them), and creates the
//! missing ones one at a time per prebuild.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cove_api::agent::{AgentReply, EnvCommand};
use cove_api::{CreateEnvironmentRequest, EnvState};
use tokio::sync::Notify;

use super::{plan_of, reply_error};
use crate::error::ApiError;
use crate::store::{EnvRow, RepoRow, UserRow};
use crate::AppState;

/// Most environments a repository keeps warm per branch.
pub const MAX_WARM: u32 = 5;
/// The loop's pass when nothing wakes it; shorter while a pool is still filling.
const PASS: Duration = Duration::from_secs(15);
const FILLING_PASS: Duration = Duration::from_millis(500);
/// A prebuild whose pooled environment failed is not refilled for this long.
const BACKOFF: Duration = Duration::from_secs(60);

fn waker() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// Has the pool loop look again now (a prebuild finished, a claim, the settings changed).
pub fn wake() {
    waker().notify_one();
}

/// Prebuilds not refilled until the instant (a pooled environment failed, or a claim could
/// not set the git identity in one).
fn backoff() -> &'static Mutex<HashMap<i64, Instant>> {
    static B: OnceLock<Mutex<HashMap<i64, Instant>>> = OnceLock::new();
    B.get_or_init(Default::default)
}

fn back_off(prebuild: i64) {
    if let Ok(mut b) = backoff().lock() {
        b.insert(prebuild, Instant::now() + BACKOFF);
    }
}

fn backed_off(prebuild: i64) -> bool {
    backoff()
        .lock()
        .map(|b| {
            b.get(&prebuild)
                .is_some_and(|until| Instant::now() < *until)
        })
        .unwrap_or(false)
}

/// The pool loop (leader only).
pub fn spawn(state: &AppState) {
    crate::cluster::singleton(state, "warm pool", |state| async move {
        loop {
            let filling = match pass(&state).await {
                Ok(filling) => filling,
                Err(e) => {
                    tracing::warn!(error = %e, "warm pool pass failed");
                    false
                }
            };
            let wait = if filling { FILLING_PASS } else { PASS };
            let _ = tokio::time::timeout(wait, waker().notified()).await;
        }
    });
}

/// The succeeded prebuild of the head of `branch` of `repo`, if any.
async fn current_prebuild(
    state: &AppState,
    repo: &RepoRow,
    branch: &str,
) -> Result<Option<i64>, ApiError> {
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let b = branch.to_string();
    let head = tokio::task::spawn_blocking(move || {
        super::prebuild::branch_head(&git2::Repository::open_bare(&repo_path).ok()?, &b)
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(sha) = head else {
        return Ok(None);
    };
    Ok(state
        .store()
        .prebuild_for(repo.id, branch, &sha)
        .await?
        .map(|p| p.id))
}

/// One pass over every pool; true while some pool is still filling.
async fn pass(state: &AppState) -> Result<bool, ApiError> {
    if !state.envs().has_agent() {
        return Ok(false);
    }
    // what each pool should hold: prebuild -> (repository, how many)
    let mut wanted: HashMap<i64, (RepoRow, usize)> = HashMap::new();
    for (repo_id, warm) in state.store().warm_pool_repos().await? {
        let Some(repo) = state.store().repo_by_id(repo_id).await? else {
            continue;
        };
        for branch in super::prebuild::prebuild_branches(state, &repo).await? {
            if let Some(id) = current_prebuild(state, &repo, &branch).await? {
                wanted.insert(id, (repo.clone(), warm.min(MAX_WARM) as usize));
            }
        }
    }
    let pooled = state.store().pooled_envs().await?;
    let mut live: HashMap<i64, (usize, usize)> = HashMap::new(); // (creating, running)
    let mut surplus: HashSet<&str> = HashSet::new();
    for e in &pooled {
        let Some(prebuild) = e.pooled else { continue };
        let alive = matches!(e.state, EnvState::Creating | EnvState::Running);
        match wanted.get(&prebuild) {
            Some((_, n)) if alive => {
                let l = live.entry(prebuild).or_default();
                if l.0 + l.1 >= *n {
                    surplus.insert(&e.id); // the setting went down
                    continue;
                }
                if e.state == EnvState::Creating {
                    l.0 += 1;
                } else {
                    l.1 += 1;
                }
            }
            _ => {
                // a failed one (not one a stopped server caught mid-create): not refilled
                // for a while, so that a pool that cannot start does not spin
                if e.state == EnvState::Failed
                    && e.reason.as_deref() != Some(super::INTERRUPTED_CREATE)
                {
                    back_off(prebuild);
                }
                surplus.insert(&e.id);
            }
        }
    }
    for e in pooled.iter().filter(|e| surplus.contains(e.id.as_str())) {
        if e.state != EnvState::Deleting {
            discard(state, e).await;
        }
    }
    let mut filling = false;
    for (prebuild, (repo, n)) in &wanted {
        let (creating, running) = live.get(prebuild).copied().unwrap_or_default();
        if creating + running >= *n {
            continue;
        }
        filling = true;
        if creating > 0 || backed_off(*prebuild) {
            continue; // one at a time per prebuild
        }
        if let Err(e) = create_pooled(state, repo, *prebuild).await {
            tracing::warn!(repo = %repo.name, prebuild, error = %e, "creating a pooled environment failed");
            back_off(*prebuild);
        }
    }
    Ok(filling)
}

/// Deletes a pooled environment (containers, volumes, network; the row once the agent
/// reports it gone).
async fn discard(state: &AppState, e: &EnvRow) {
    let Ok(agent) = state.envs().agent_for(e) else {
        return; // its agent is away: the next pass tries again
    };
    // only while still pooled: a create may have claimed it since the pass read it
    match state.store().begin_discard_pooled_env(&e.id, e.state).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(env = %e.id, error = %err, "discarding a pooled environment failed");
            return;
        }
    }
    match agent
        .call(EnvCommand::Delete {
            env_id: e.id.clone(),
        })
        .await
    {
        AgentReply::Accepted => {}
        other => {
            let message = reply_error(other);
            tracing::warn!(env = %e.id, error = %message, "discarding a pooled environment failed");
            let _ = state
                .store()
                .transition_env(
                    &e.id,
                    &[EnvState::Deleting],
                    EnvState::Failed,
                    Some(&message),
                )
                .await;
        }
    }
}

/// Creates one environment of `prebuild` into the pool of `repo`, as the repository's owner.
async fn create_pooled(state: &AppState, repo: &RepoRow, prebuild: i64) -> Result<(), ApiError> {
    let owner = state
        .store()
        .user_by_name(&repo.owner)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("no user {} to own the pool", repo.owner)))?;
    let req = CreateEnvironmentRequest {
        name: Some(format!("pool-{}", super::create::random_hex(12))),
        idle_timeout_secs: Some(0),
        ..Default::default()
    };
    let response = super::create::create_as(
        state,
        super::create::Creator::Pool {
            owner: &owner,
            prebuild,
        },
        repo,
        req,
    )
    .await?;
    if response.status() != axum::http::StatusCode::CREATED {
        return Err(ApiError::Conflict(format!(
            "the create answered {}",
            response.status()
        )));
    }
    Ok(())
}

/// Claims a running environment of `prebuild` in `repo`'s pool for `user` as `name` with
/// `idle_timeout_secs`: `None` when the pool has none ready (the caller creates as usual).
pub(super) async fn claim(
    state: &AppState,
    user: &UserRow,
    repo: &RepoRow,
    prebuild: i64,
    name: &str,
    idle_timeout_secs: i64,
) -> Result<Option<EnvRow>, ApiError> {
    if backed_off(prebuild) {
        return Ok(None);
    }
    let candidates: Vec<EnvRow> = state
        .store()
        .pooled_envs()
        .await?
        .into_iter()
        .filter(|e| {
            e.pooled == Some(prebuild) && e.repo_id == repo.id && e.state == EnvState::Running
        })
        .collect();
    for e in candidates {
        if !state
            .store()
            .claim_pooled_env(&e.id, prebuild, user.id, name, idle_timeout_secs)
            .await?
        {
            continue; // another create took it
        }
        wake(); // refill
        match set_identity(state, &e, repo, user).await {
            Ok(()) => {
                state
                    .store()
                    .add_env_event(&e.id, "state", "claimed from the warm pool")
                    .await?;
                return Ok(state.store().env(&e.id).await?);
            }
            Err(why) => {
                // this pool's environments cannot take an identity: the one claimed goes back
                // to the pool failed (the next pass deletes it), the pool is not used or
                // refilled for a while, and the caller creates as usual
                tracing::warn!(env = %e.id, error = %why, "claiming a pooled environment failed");
                back_off(prebuild);
                state
                    .store()
                    .unclaim_failed_env(&e.id, prebuild, &e.name, &why)
                    .await?;
                wake();
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// Writes `user`'s git identity into the clone's config (the prebuild's clone names "Cove
/// prebuild"), through the agent (the container needs no git).
async fn set_identity(
    state: &AppState,
    e: &EnvRow,
    repo: &RepoRow,
    user: &UserRow,
) -> Result<(), String> {
    let plan = plan_of(e).map_err(|e| e.to_string())?;
    let main = plan
        .main_container()
        .ok_or("the environment has no container")?;
    let root = main.source_mapping.as_deref().unwrap_or("/projects");
    let dir = format!("{}/{}", root.trim_end_matches('/'), repo.name);
    let agent = state.envs().agent_for(e).map_err(|e| e.to_string())?;
    match agent
        .call(EnvCommand::SetGitIdentity {
            env_id: e.id.clone(),
            component: main.name.clone(),
            repo_dir: dir,
            name: user.username.clone(),
            email: format!("{}@users.noreply.cove", user.username),
        })
        .await
    {
        AgentReply::Accepted => {}
        other => {
            return Err(format!(
                "setting the git identity failed: {}",
                reply_error(other)
            ))
        }
    }
    Ok(())
}
