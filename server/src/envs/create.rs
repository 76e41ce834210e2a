//! `POST /api/v1/repos/{owner}/{name}/environments`: validate, plan, store, send `Create`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::extract::Json;
use base64::Engine;
use cove_api::agent::{AgentReply, EnvCommand, EnvSource};
use cove_api::{CreateEnvironmentRequest, EnvState, Scope};
use devfiles::{EnvironmentPlan, LoadOptions, PlanOptions};

use super::*;
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::store::{now_ms, now_secs, EnvRow, RepoRow, UserRow};
use crate::AppState;

pub(super) fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

/// A restart's plan keeps the limits the running one has where the devfile sets none: a
/// container keeps its own (the size chosen at create), a new container gets the main
/// container's. Without this a restart dropped the size's CPU and memory limits.
pub(super) fn keep_limits(plan: &mut EnvironmentPlan, old: &EnvironmentPlan) {
    let main = old.main_container();
    for c in &mut plan.containers {
        let before = old.containers.iter().find(|o| o.name == c.name).or(main);
        if let Some(before) = before {
            if c.cpu_limit_millis.is_none() {
                c.cpu_limit_millis = before.cpu_limit_millis;
            }
            if c.memory_limit_bytes.is_none() {
                c.memory_limit_bytes = before.memory_limit_bytes;
            }
        }
    }
}

/// The devfile attribute naming the agent pool an environment runs in (the label `pool=…`;
/// the create request's labels win; docs/agents.md "Environments on agents").
pub const POOL_ATTRIBUTE: &str = "cove.dev/pool";

/// (devfile path in the repository, its text, the plan, its [`POOL_ATTRIBUTE`])
pub(super) type LoadedDevfile = (Option<String>, String, EnvironmentPlan, Option<String>);

/// Reads, validates and plans the devfile of `rev` in the bare repository at `repo_path`
/// (`requested` path, else the usual names, else Cove's default), off the async workers with
/// the parse budget. The inner `Err` is the `FILE:LINE:COL` text of an invalid devfile.
pub(super) async fn load_devfile(
    state: &AppState,
    repo_path: std::path::PathBuf,
    rev: String,
    requested: Option<String>,
    repo_name: String,
) -> Result<Result<LoadedDevfile, String>, ApiError> {
    let label = requested.clone().unwrap_or_else(|| "devfile.yaml".into());
    // a `parent.id` parent comes from a registry: fetched here, on the async side
    let found = {
        let (repo_path, rev, requested) = (repo_path.clone(), rev.clone(), requested.clone());
        tokio::task::spawn_blocking(move || devfile_at(&repo_path, &rev, requested.as_deref()))
            .await
            .map_err(ApiError::internal)??
    };
    let registry = super::registry::prefetch(&found.1, &state.limits().environments).await;
    crate::parse_budget::off_thread(
        &label,
        move || -> Result<Result<LoadedDevfile, String>, ApiError> {
            let (path, text) = found;
            let display = path.clone().unwrap_or_else(|| "<default devfile>".into());
            let resolver = GitResolver {
                repo: repo_path.clone(),
                rev: rev.clone(),
                registry,
            };
            Ok(
                devfiles::load_str(&display, &text, &resolver, &LoadOptions::default())
                    .map(|l| {
                        let pool = l
                            .devfile
                            .attributes
                            .get(POOL_ATTRIBUTE)
                            .and_then(|v| v.as_str())
                            .map(str::to_string);
                        (
                            path,
                            text,
                            l.plan(&PlanOptions {
                                repo: Some(repo_name),
                            })
                            .0,
                            pool,
                        )
                    })
                    .map_err(|r| r.to_string()),
            )
        },
    )
    .await
    .unwrap_or_else(|budget| Ok(Err(budget.to_string())))
}

/// `POST /api/v1/repos/{owner}/{name}/environments`
pub async fn create_env(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(repo): Extension<RepoRow>,
    Json(req): Json<CreateEnvironmentRequest>,
) -> Result<Response, ApiError> {
    create(&state, &principal, &repo, req).await
}

/// Creates an environment owned by `principal` in `repo` as `req` asks: the one code path of
/// `POST …/environments` and of "Open in environment" on a pull request
/// (`crate::forge::open_env`). A success is 201 with the [`cove_api::Environment`]; an
/// invalid devfile is the 422 of [`invalid_devfile`]. From a prebuild with a warm pool, the
/// environment is claimed from the pool instead (`super::pool`).
pub(crate) async fn create(
    state: &AppState,
    principal: &Principal,
    repo: &RepoRow,
    req: CreateEnvironmentRequest,
) -> Result<Response, ApiError> {
    create_as(state, Creator::User(principal), repo, req).await
}

/// Who an environment is created for.
pub(crate) enum Creator<'a> {
    /// A user's create: theirs, with their dotfiles and editor; claimed from a warm pool when
    /// one has an environment of the same prebuild ready.
    User(&'a Principal),
    /// Into the warm pool of `prebuild` (`super::pool`), owned by the repository's `owner`
    /// until claimed: no dotfiles, the terminal editor, no idle timeout, no git identity in
    /// its environment (the claim writes the claimer's into the clone's config).
    Pool { owner: &'a UserRow, prebuild: i64 },
}

impl Creator<'_> {
    fn user(&self) -> &UserRow {
        match self {
            Creator::User(p) => &p.user,
            Creator::Pool { owner, .. } => owner,
        }
    }
}

pub(crate) async fn create_as(
    state: &AppState,
    creator: Creator<'_>,
    repo: &RepoRow,
    req: CreateEnvironmentRequest,
) -> Result<Response, ApiError> {
    let user = creator.user();
    let base = req
        .from
        .clone()
        .or_else(|| req.branch.clone())
        .unwrap_or_else(|| repo.default_branch.clone());
    for b in [Some(&base), req.new_branch.as_ref()].into_iter().flatten() {
        if b.is_empty()
            || b.starts_with('-')
            || b.contains("..")
            || b.contains(char::is_whitespace)
            || b.contains(['~', '^', ':', '\\', '?', '*', '['])
        {
            return Err(ApiError::BadRequest(format!("invalid branch name {b:?}")));
        }
    }
    let branch = req.new_branch.clone().unwrap_or_else(|| base.clone());
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    check_branches(
        repo_path.clone(),
        base.clone(),
        req.new_branch.clone(),
        repo.default_branch.clone(),
    )
    .await?;
    let loaded = load_devfile(
        state,
        repo_path.clone(),
        base.clone(),
        req.devfile_path.clone(),
        repo.name.clone(),
    )
    .await?;
    let (devfile_path, devfile_text, plan, devfile_pool) = match loaded {
        Ok(x) => x,
        Err(message) => return Ok(invalid_devfile(message)),
    };
    // where it runs: decided before anything is written, so that "no agent matches" leaves
    // nothing behind; the request's labels, else the devfile's pool attribute
    let mut labels = req.labels.clone();
    if let Some(pool) = devfile_pool.filter(|_| !labels.contains_key(workflows::fleet::POOL_LABEL))
    {
        labels.insert(workflows::fleet::POOL_LABEL.to_string(), pool);
    }
    crate::agents::placement::validate_labels(&labels).map_err(ApiError::BadRequest)?;
    let placed = crate::agents::env_placement::place(
        &crate::agents::env_placement::candidates(state).await?,
        &format!("{}/{}", repo.owner, repo.name),
        crate::agents::placement::JobNeeds {
            repo_id: repo.id,
            owner: &repo.owner,
            labels: &labels,
        },
    )
    .map_err(|why| {
        // labels no agent matches, or no room: 409; no labels and no agent at all (no
        // embedded agent, none linked): the service's (503)
        if labels.is_empty() && !why.starts_with("no room") {
            ApiError::Unavailable(why)
        } else {
            ApiError::Conflict(why)
        }
    })?;
    let agent = match placed.agent_id {
        None => EnvAgent::Embedded(Box::new(state.envs().agent()?.clone())),
        Some(id) => EnvAgent::Remote(state.envs().links().get(id).ok_or_else(|| {
            ApiError::Conflict(format!("agent {}'s link went down; try again", placed.name))
        })?),
    };
    let upstream = super::outdated::blob_id(&devfile_text);
    let mut plan = plan;
    let (memory, cpu) = match req.size.as_deref().unwrap_or("medium") {
        "small" => (2u64 << 30, 1000u64),
        "medium" => (4 << 30, 2000),
        "large" => (8 << 30, 4000),
        other => {
            return Err(ApiError::BadRequest(format!(
                "size {other:?}: use small, medium or large"
            )))
        }
    };
    // the size's defaults, within the server's maximum (a size is the server's own choice
    // and is trimmed; a devfile asking for more than the maximum is refused)
    let (max_cpu, max_mem) = state.envs().max_limits(&state.limits().environments);
    let memory = max_mem.map_or(memory, |m| memory.min(m));
    let cpu = max_cpu.map_or(cpu, |m| cpu.min(m));
    for c in &mut plan.containers {
        c.memory_limit_bytes.get_or_insert(memory);
        c.cpu_limit_millis.get_or_insert(cpu);
    }
    if let Some(why) = cove_agent::pod::over_limit(&plan, max_cpu, max_mem) {
        return Ok(invalid_devfile(format!(
            "{}:1:1: error: {why}\n  help: ask for less, or have an administrator raise `[environments] max_cpus`/`max_memory`",
            devfile_path.as_deref().unwrap_or("<default devfile>")
        )));
    }
    if plan.containers.is_empty() {
        return Ok(invalid_devfile(format!(
            "{}:1:1: error: the devfile has no container component to run",
            devfile_path.unwrap_or_default()
        )));
    }
    // a succeeded prebuild of exactly the branch head: start from its snapshots (prebuild/)
    let prebuilt = if req.new_branch.is_none() && req.devfile_path.is_none() {
        let email = format!("{}@users.noreply.cove", user.username);
        let git_user = match creator {
            Creator::User(_) => Some((user.username.as_str(), email.as_str())),
            Creator::Pool { .. } => None,
        };
        super::prebuild::for_create(state, repo, &base, &devfile_text, &mut plan, git_user).await?
    } else {
        None
    };
    let pooled = match creator {
        Creator::Pool { prebuild, .. } => {
            if prebuilt.as_ref().map(|p| p.id) != Some(prebuild) {
                return Err(ApiError::Conflict(format!(
                    "prebuild {prebuild} is no longer the branch head's"
                )));
            }
            Some(prebuild)
        }
        Creator::User(_) => None,
    };
    let name = match &req.name {
        Some(n) if devfiles::is_identifier(n) && n.len() <= 63 => n.clone(),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "environment name {n:?}: use lower-case letters, digits and '-'"
            )))
        }
        None => format!(
            "{}-{}",
            if devfiles::is_identifier(&repo.name.to_lowercase()) {
                repo.name.to_lowercase()
            } else {
                "env".into()
            },
            random_hex(4)
        ),
    };
    // the editor: the request's, else the caller's setting (docs/vscode.md)
    let editor = match (&creator, req.editor) {
        (Creator::Pool { .. }, _) => cove_api::Editor::Terminal,
        (Creator::User(_), Some(e)) => e,
        (Creator::User(_), None) => state.store().user_editor(user.id).await?,
    };
    let idle_timeout_secs = req.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS) as i64;
    // a warm pool's environment of the same prebuild, when this create asks nothing the pool's
    // do not have (default labels and size, the terminal editor, no dotfiles)
    if let (Creator::User(_), Some(p)) = (&creator, &prebuilt) {
        let plain = req.labels.is_empty()
            && req.size.as_deref().is_none_or(|s| s == "medium")
            && editor == cove_api::Editor::Terminal
            && state.store().user_dotfiles(user.id).await?.is_none();
        if plain {
            if let Some(row) =
                super::pool::claim(state, user, repo, p.id, &name, idle_timeout_secs).await?
            {
                return Ok((StatusCode::CREATED, Json(env_dto(state, &row).await?)).into_response());
            }
        }
    }
    // a warm pod shell of this plan's shape on that agent (pod/shells.rs): its id becomes the
    // environment's, and the agent finds network, sources volume and infra container ready
    let shell = match agent
        .call(EnvCommand::ClaimShell { plan: plan.clone() })
        .await
    {
        AgentReply::Shell { env_id: Some(id) }
            if valid_shell_id(&id) && state.store().env(&id).await?.is_none() =>
        {
            Some(id)
        }
        _ => None,
    };
    let row = EnvRow {
        id: shell
            .clone()
            .unwrap_or_else(|| format!("e{}", random_hex(11))),
        name,
        repo_id: repo.id,
        owner_id: user.id,
        branch: branch.clone(),
        devfile_path,
        state: EnvState::Creating,
        reason: None,
        plan_json: serde_json::to_string(&plan).map_err(ApiError::internal)?,
        devfile_text: Some(devfile_text),
        restart_required: false,
        devfile_changes: None,
        endpoints_json: "[]".into(),
        idle_timeout_secs,
        last_activity_ms: now_ms(),
        created_at: now_secs(),
        agent_id: placed.agent_id,
        placement: Some(format!("{}: {}", placed.name, placed.why)),
        pooled,
    };
    if let Err(e) = state.store().create_env(&row).await {
        if shell.is_some() {
            // the shell is nobody's now: the agent removes it
            agent
                .call(EnvCommand::Delete {
                    env_id: row.id.clone(),
                })
                .await;
        }
        return Err(e.into());
    }
    state
        .store()
        .set_env_devfile_upstream(&row.id, Some(&upstream))
        .await?;
    state.store().set_env_editor(&row.id, editor).await?;
    if let Some(p) = &prebuilt {
        state
            .store()
            .set_env_prebuild(&row.id, p.id, &p.sha)
            .await?;
    }
    state
        .store()
        .add_env_event(&row.id, "state", "creating")
        .await?;
    if shell.is_some() {
        state
            .store()
            .add_env_event(
                &row.id,
                "shell",
                "a warm pod shell: network, sources volume and infra container made ahead of time",
            )
            .await?;
    }
    // a short-lived, read-only credential for the clone; removed once the environment is up
    let token = auth::generate_token();
    state
        .store()
        .create_token(
            user.id,
            &clone_token_name(&row.id),
            &auth::hash_token(&token),
            &[Scope::Read],
            Some(now_secs() + CLONE_TOKEN_SECS),
        )
        .await?;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", user.username));
    let auth_header = format!("Authorization: Basic {basic}");
    // the owner's dotfiles: a setting that cannot be used is a warning, never a failure
    let found = match creator {
        Creator::User(principal) => {
            crate::dotfiles::for_create(state, principal, &auth_header).await
        }
        Creator::Pool { .. } => Ok(None),
    };
    let dotfiles = match found {
        Ok(d) => d,
        Err(why) => {
            state
                .store()
                .add_env_event(
                    &row.id,
                    "dotfiles",
                    &format!("warning: dotfiles not installed: {why}"),
                )
                .await?;
            None
        }
    };
    let source = EnvSource {
        clone_url: format!(
            "{}/git/{}/{}.git",
            state.public_url(),
            repo.owner,
            repo.name
        ),
        repo: repo.name.clone(),
        branch: base,
        new_branch: req.new_branch.clone(),
        auth_header: Some(auth_header),
        git_user_name: user.username.clone(),
        git_user_email: format!("{}@users.noreply.cove", user.username),
    };
    state
        .metrics()
        .env_op_begun(&row.id, crate::metrics::EnvOp::Create);
    // from a prebuild the sources are in the snapshot (no clone), and postStart already ran
    // when the devfile marks it prebuild-safe
    let source = match &prebuilt {
        Some(p) => {
            if p.skip_post_start {
                plan.events.post_start.clear();
            }
            None
        }
        None => Some(source),
    };
    match agent
        .call(EnvCommand::Create {
            env_id: row.id.clone(),
            plan,
            source,
            dotfiles,
            editor,
        })
        .await
    {
        AgentReply::Accepted => {}
        other => {
            let message = reply_error(other);
            state
                .store()
                .transition_env(
                    &row.id,
                    &[EnvState::Creating],
                    EnvState::Failed,
                    Some(&message),
                )
                .await?;
            state.metrics().env_reported(&row.id, EnvState::Failed);
        }
    }
    let row = state
        .store()
        .env(&row.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("environment".into()))?;
    Ok((StatusCode::CREATED, Json(env_dto(state, &row).await?)).into_response())
}

/// An id an agent may hand out for a shell: the server's own format (`e` and 22 hex digits).
fn valid_shell_id(id: &str) -> bool {
    id.len() == 23
        && id.starts_with('e')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Refuses, before anything is created, a base branch that does not exist (404) and a
/// `new_branch` that already exists (409). An empty repository (no branch at all) may
/// still start its default branch.
async fn check_branches(
    repo_path: std::path::PathBuf,
    base: String,
    new_branch: Option<String>,
    default_branch: String,
) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path).map_err(ApiError::internal)?;
        let exists = |b: &str| repo.find_reference(&format!("refs/heads/{b}")).is_ok();
        let empty = repo
            .references_glob("refs/heads/*")
            .map_err(ApiError::internal)?
            .next()
            .is_none();
        let startable = exists(&base) || (empty && base == default_branch);
        if !startable {
            return Err(ApiError::NotFound(format!("branch {base}")));
        }
        if let Some(nb) = new_branch.as_deref().filter(|nb| exists(nb)) {
            return Err(ApiError::Conflict(format!(
                "branch {nb} already exists; use branch to work on it, or choose another new_branch"
            )));
        }
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?
}
