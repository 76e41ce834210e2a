//! Prebuilds (issue 19, docs/prebuilds.md): a push to a branch that prebuilds queues one
//! ([`after_push`]); one loop on the leader runs them one at a time on the agent
//! (`EnvCommand::Prebuild`: pod, clone, `build` command, snapshot images, pod removed) and
//! collects old snapshots ([`collect`]); `create` uses a succeeded prebuild of exactly the
//! branch head ([`for_create`]), else creates cold. `http` has the REST handlers.

pub mod http;

use std::sync::OnceLock;
use std::time::Duration;

use cove_api::agent::{AgentReply, EnvCommand, EnvSource, PrebuiltImage};
use cove_api::{PrebuildState, Scope};
use devfiles::{EnvironmentPlan, GroupKind};
use tokio::sync::Notify;

use crate::auth;
use crate::error::ApiError;
use crate::store::{now_secs, PushEventRow, RepoRow};
use crate::AppState;

/// The devfile's top-level attribute that marks its postStart events prebuild-safe: they run
/// in the prebuild, and a create from the prebuild skips them.
pub const POST_START_ATTRIBUTE: &str = "cove.dev/prebuild-post-start";

/// How long the clone credential of a prebuild lives.
const CLONE_TOKEN_SECS: i64 = 10 * 60;
/// The loop's pass when no push wakes it (collection, and queued rows of other replicas).
const PASS: Duration = Duration::from_secs(30);

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn wake() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// Whether the devfile text marks postStart prebuild-safe ([`POST_START_ATTRIBUTE`]).
pub fn post_start_safe(devfile: &str) -> bool {
    let Ok(Some(root)) = yamlmap::parse(devfile) else {
        return false;
    };
    root.get("attributes")
        .and_then(|a| a.get(POST_START_ATTRIBUTE))
        .and_then(|v| v.as_str())
        .is_some_and(|v| v == "true")
}

/// Whether a prebuild of `plan` does anything beyond a clone: a default `build` command or
/// prebuild-safe postStart events.
fn worth_prebuilding(plan: &EnvironmentPlan, devfile: &str) -> bool {
    plan.default_command(GroupKind::Build).is_some()
        || (!plan.events.post_start.is_empty() && post_start_safe(devfile))
}

/// The branches of `repo` that prebuild (none when prebuilds are off).
pub(super) async fn prebuild_branches(
    state: &AppState,
    repo: &RepoRow,
) -> Result<Vec<String>, ApiError> {
    let s = state.store().prebuild_settings(repo.id).await?;
    if !s.enabled {
        return Ok(Vec::new());
    }
    Ok(if s.branches.is_empty() {
        vec![repo.default_branch.clone()]
    } else {
        s.branches
    })
}

/// After a push (`forge::after_push`): queues a prebuild for each pushed branch that prebuilds
/// and whose devfile at the new commit has something to prebuild. Off the push's path (a task
/// of its own, so reading settings and devfiles never delays the push); never fails the push.
pub async fn after_push(state: &AppState, repo: &RepoRow, events: &[PushEventRow]) {
    if !state.envs().has_agent() {
        return;
    }
    let pushed: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.new_sha != ZERO_SHA)
        .filter_map(|e| {
            let branch = e.ref_name.strip_prefix("refs/heads/")?;
            Some((branch.to_string(), e.new_sha.clone()))
        })
        .collect();
    if pushed.is_empty() {
        return;
    }
    super::pool::wake(); // environments of the branch's old head leave its pool
    let (state, repo) = (state.clone(), repo.clone());
    tokio::spawn(async move {
        let branches = match prebuild_branches(&state, &repo).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading prebuild settings failed");
                return;
            }
        };
        for (branch, sha) in pushed {
            if !branches.contains(&branch) {
                continue;
            }
            if let Err(e) = queue(&state, &repo, &branch, &sha, false).await {
                tracing::warn!(error = %e, branch, "queueing a prebuild failed");
            }
        }
    });
}

/// Queues a prebuild of `sha` on `branch` when its devfile has something to prebuild (or
/// `always`). Returns the new prebuild's id.
pub(crate) async fn queue(
    state: &AppState,
    repo: &RepoRow,
    branch: &str,
    sha: &str,
    always: bool,
) -> Result<Option<i64>, ApiError> {
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let loaded =
        super::create::load_devfile(state, repo_path, sha.to_string(), None, repo.name.clone())
            .await?;
    let Ok((_, text, plan, _)) = loaded else {
        return Ok(None); // an invalid devfile: a create reports it
    };
    if !always && !worth_prebuilding(&plan, &text) {
        return Ok(None);
    }
    let id = state.store().queue_prebuild(repo.id, branch, sha).await?;
    wake().notify_one();
    Ok(Some(id))
}

/// The prebuild loop (leader only): interrupted prebuilds failed and their pods removed, then
/// queued prebuilds run one at a time; old snapshots are collected after each and every pass.
pub fn spawn(state: &AppState) {
    crate::cluster::singleton(state, "prebuilds", |state| async move {
        if let Err(e) = interrupted(&state).await {
            tracing::warn!(error = %e, "cleaning up interrupted prebuilds failed");
        }
        loop {
            loop {
                match state.store().take_queued_prebuild().await {
                    Ok(Some(row)) => {
                        if let Err(e) = run(&state, row).await {
                            tracing::warn!(error = %e, "a prebuild failed to run");
                        }
                        if let Err(e) = collect(&state).await {
                            tracing::warn!(error = %e, "collecting prebuilds failed");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading queued prebuilds failed");
                        break;
                    }
                }
            }
            if let Err(e) = collect(&state).await {
                tracing::warn!(error = %e, "collecting prebuilds failed");
            }
            let _ = tokio::time::timeout(PASS, wake().notified()).await;
        }
    });
}

fn pod_id(id: i64) -> String {
    format!("pb{id}")
}

async fn interrupted(state: &AppState) -> Result<(), ApiError> {
    let ids = state.store().fail_interrupted_prebuilds().await?;
    let agent = state.envs().agent()?;
    for id in ids {
        // removes the pod's containers, volumes and network (its images: `collect`)
        agent.call(EnvCommand::Delete { env_id: pod_id(id) }).await;
    }
    Ok(())
}

/// Runs one prebuild (taken: state running) to its end.
async fn run(state: &AppState, row: crate::store::PrebuildRow) -> Result<(), ApiError> {
    let finish = |state: PrebuildState, reason: Option<String>, images: String, log: String| {
        (state, reason, images, log)
    };
    let outcome = match prepare_and_call(state, &row).await {
        Ok(AgentReply::Prebuilt {
            images,
            log,
            error: None,
        }) => finish(
            PrebuildState::Succeeded,
            None,
            serde_json::to_string(&images).map_err(ApiError::internal)?,
            log,
        ),
        Ok(AgentReply::Prebuilt {
            log,
            error: Some(e),
            ..
        }) => finish(PrebuildState::Failed, Some(e), "[]".into(), log),
        Ok(other) => finish(
            PrebuildState::Failed,
            Some(super::reply_error(other)),
            "[]".into(),
            String::new(),
        ),
        Err(e) => finish(
            PrebuildState::Failed,
            Some(e.to_string()),
            "[]".into(),
            String::new(),
        ),
    };
    let (st, reason, images, log) = outcome;
    state
        .store()
        .finish_prebuild(row.id, st, reason.as_deref(), &images, &log)
        .await?;
    super::pool::wake();
    Ok(())
}

async fn prepare_and_call(
    state: &AppState,
    row: &crate::store::PrebuildRow,
) -> Result<AgentReply, ApiError> {
    let agent = state.envs().agent()?.clone();
    let repo = state
        .store()
        .repo_by_id(row.repo_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("repository".into()))?;
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let loaded =
        super::create::load_devfile(state, repo_path, row.sha.clone(), None, repo.name.clone())
            .await?;
    let (_, text, plan, _) = loaded.map_err(ApiError::BadRequest)?;
    // the clone's credential: the repository owner's, read-only and short-lived
    let owner = state
        .store()
        .user_by_name(&repo.owner)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("no user {} to clone as", repo.owner)))?;
    let token = auth::generate_token();
    let token_name = format!("prebuild-clone-{}", row.id);
    let created = state
        .store()
        .create_token(
            owner.id,
            &token_name,
            &auth::hash_token(&token),
            &[Scope::Read],
            Some(now_secs() + CLONE_TOKEN_SECS),
        )
        .await?;
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", owner.username));
    let source = EnvSource {
        clone_url: format!(
            "{}/git/{}/{}.git",
            state.public_url(),
            repo.owner,
            repo.name
        ),
        repo: repo.name.clone(),
        branch: row.branch.clone(),
        new_branch: None,
        auth_header: Some(format!("Authorization: Basic {basic}")),
        git_user_name: "Cove prebuild".into(),
        git_user_email: "prebuild@noreply.cove".into(),
    };
    let install = install_id(state).await?;
    let reply = agent
        .call(EnvCommand::Prebuild {
            pod_id: pod_id(row.id),
            build: plan.default_command(GroupKind::Build).map(|c| c.id.clone()),
            post_start: post_start_safe(&text),
            plan,
            source,
            sha: row.sha.clone(),
            image_repo: cove_agent::pod::prebuild::image_repo(row.id),
            labels: vec![
                (
                    cove_agent::pod::prebuild::LABEL_PREBUILD.into(),
                    row.id.to_string(),
                ),
                (
                    cove_agent::pod::prebuild::LABEL_PREBUILD_INSTALL.into(),
                    install,
                ),
            ],
        })
        .await;
    state.store().delete_token(owner.id, created.id).await.ok();
    Ok(reply)
}

async fn install_id(state: &AppState) -> Result<String, ApiError> {
    Ok(state
        .store()
        .prebuild_install_id(&super::create::random_hex(16))
        .await?)
}

/// Expires succeeded prebuilds beyond each branch's `keep` and removes every snapshot image of
/// this installation that no live prebuild owns (those of deleted repositories too). Images
/// an environment's container still uses stay until it is deleted.
pub async fn collect(state: &AppState) -> Result<(), ApiError> {
    let Ok(agent) = state.envs().agent() else {
        return Ok(());
    };
    let live = state.store().expire_old_prebuilds().await?;
    let install = install_id(state).await?;
    match agent
        .call(EnvCommand::RemovePrebuilds {
            install,
            keep: live.iter().map(i64::to_string).collect(),
        })
        .await
    {
        AgentReply::Accepted => Ok(()),
        other => Err(ApiError::internal(anyhow::anyhow!(super::reply_error(
            other
        )))),
    }
}

/// The commit at the head of `branch` in `git`, if the branch exists.
pub(super) fn branch_head(git: &git2::Repository, branch: &str) -> Option<String> {
    let commit = git
        .find_reference(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_commit()
        .ok()?;
    Some(commit.id().to_string())
}

/// What a create from a prebuild changes.
pub(crate) struct Prebuilt {
    pub id: i64,
    pub sha: String,
    /// postStart ran in the prebuild: the create skips it.
    pub skip_post_start: bool,
}

/// A create of `branch` (no `new_branch`, the usual devfile): when a succeeded prebuild of
/// exactly the branch head exists and its devfile is the one loaded, the plan's images become
/// the snapshot images and the owner's git identity is set in the containers' environment.
/// Anything else — no prebuild, one of an older commit, one still running — is a cold create.
pub(crate) async fn for_create(
    state: &AppState,
    repo: &RepoRow,
    branch: &str,
    devfile_text: &str,
    plan: &mut EnvironmentPlan,
    git_user: Option<(&str, &str)>,
) -> Result<Option<Prebuilt>, ApiError> {
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let b = branch.to_string();
    let head = tokio::task::spawn_blocking(move || -> Option<(String, String)> {
        let git = git2::Repository::open_bare(&repo_path).ok()?;
        let sha = branch_head(&git, &b)?;
        let text = super::devfile_at(&repo_path, &sha, None).ok()?.1;
        Some((sha, text))
    })
    .await
    .map_err(ApiError::internal)?;
    let Some((sha, text)) = head else {
        return Ok(None);
    };
    if text != devfile_text {
        return Ok(None); // the branch moved between reading its devfile and its head
    }
    let Some(row) = state.store().prebuild_for(repo.id, branch, &sha).await? else {
        return Ok(None);
    };
    let images: Vec<PrebuiltImage> =
        serde_json::from_str(&row.images_json).map_err(ApiError::internal)?;
    if plan
        .containers
        .iter()
        .any(|c| !images.iter().any(|i| i.component == c.name))
    {
        return Ok(None);
    }
    let main = plan.main_container().map(|c| c.name.clone());
    for c in &mut plan.containers {
        if let Some(i) = images.iter().find(|i| i.component == c.name) {
            c.image = i.image.clone();
        }
        if let Some(git_user) = git_user.filter(|_| Some(&c.name) == main.as_ref()) {
            // the clone's config names the prebuild; commits are the owner's
            for (k, v) in [
                ("GIT_AUTHOR_NAME", git_user.0),
                ("GIT_COMMITTER_NAME", git_user.0),
                ("GIT_AUTHOR_EMAIL", git_user.1),
                ("GIT_COMMITTER_EMAIL", git_user.1),
            ] {
                c.env.push(devfiles::EnvPair {
                    name: k.into(),
                    value: v.into(),
                });
            }
        }
    }
    Ok(Some(Prebuilt {
        id: row.id,
        sha,
        skip_post_start: post_start_safe(&text),
    }))
}

#[cfg(test)]
mod tests {
    use super::post_start_safe;

    #[test]
    fn only_the_top_level_attribute_set_to_true_marks_post_start_safe() {
        let marked = "schemaVersion: 2.2.0\nattributes:\n  cove.dev/prebuild-post-start: true\n";
        assert!(post_start_safe(marked));
        assert!(!post_start_safe(&marked.replace("true", "false")));
        assert!(!post_start_safe("schemaVersion: 2.2.0\n"));
        let nested = "schemaVersion: 2.2.0\nmetadata:\n  attributes:\n    cove.dev/prebuild-post-start: true\n";
        assert!(!post_start_safe(nested));
        assert!(!post_start_safe(": not yaml ["));
    }
}
