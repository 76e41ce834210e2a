//! The lifecycle of one environment on this agent: create (pod, sources,
//! postStart), stop (preStop, then containers), start, restart from the
//! devfile inside the workspace, and reading that devfile to notice changes.
//! The server owns the state machine; these are the steps it asks for.

use std::collections::BTreeMap;

use devfiles::{EnvironmentPlan, LoadOptions, PlanOptions, Resolver};
use serde::{Deserialize, Serialize};

use cove_api::agent::EnvDotfiles;

use crate::backend::{Backend, BackendError};
use crate::commands::{run_event, CommandRun};
use crate::dotfiles::DotfilesRun;
use crate::pod::{PodError, PodSpec, PodStatus, RestartPlan, Runtime};
use crate::sources::{SourceError, SourceSpec};

/// A step of `create`/`restart`, for progress reporting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Progress {
    CreatingContainers,
    Cloning { repo: String },
    Dotfiles,
    PostStart { command: String },
    Running,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Sources(#[from] SourceError),
    #[error("{0}")]
    Devfile(String),
}

/// What `create` and `restart` did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub status: PodStatus,
    /// postStart runs (failures are reported, the environment stays up).
    pub post_start: Vec<CommandRun>,
    /// Whether the sources were cloned now (false: already in the volume).
    pub cloned: bool,
    /// The owner's dotfiles, when asked for (a failure is here, never an error).
    #[serde(skip)]
    pub dotfiles: Option<DotfilesRun>,
    /// The devfile's git projects, cloned beside the sources (a failure is
    /// here, never an error).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<crate::sources::ProjectClone>,
}

/// Create the pod, clone the sources into the main container, install the owner's
/// dotfiles (a failure is reported in [`Started::dotfiles`], never an error) and run the
/// postStart events once. A failure before postStart removes what was made
/// (nothing half-launched is left behind).
pub async fn create(
    rt: &dyn Backend,
    spec: &PodSpec,
    source: Option<&SourceSpec>,
    dotfiles: Option<&EnvDotfiles>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Started, EnvError> {
    progress(Progress::CreatingContainers);
    // the sources are cloned on the agent's host while the containers are being made, and
    // unpacked into the main container once it runs
    let target = match (source, spec.plan.main_container()) {
        (Some(src), Some(main)) => main.source_mapping.as_ref().map(|root| (src, main, root)),
        _ => None,
    };
    if let Some((src, _, _)) = target {
        progress(Progress::Cloning {
            repo: src.repo.clone(),
        });
    }
    let prepare = async {
        match target {
            Some((src, _, _)) => Some(crate::sources::prepare(src).await),
            None => None,
        }
    };
    let (status, prepared) = tokio::join!(rt.create(spec), prepare);
    let status = status?;
    let cloned = match (target, prepared) {
        (Some((src, main, root)), Some(Ok(prepared))) => {
            let (env, target) = (&spec.env_id, (main.name.as_str(), root.as_str()));
            crate::sources::upload_prepared(rt, env, target, src, &prepared, status.sources_empty)
                .await
                .map_err(EnvError::from)
        }
        (_, Some(Err(e))) => Err(EnvError::from(e)),
        _ => Ok(false),
    };
    let cloned = match cloned {
        Ok(c) => c,
        Err(e) => {
            rt.delete(&spec.env_id).await.ok();
            return Err(e);
        }
    };
    let projects = clone_projects(rt, spec, progress).await;
    let mut installed = None;
    if let (Some(d), Some(main)) = (dotfiles, spec.plan.main_container()) {
        progress(Progress::Dotfiles);
        installed = Some(crate::dotfiles::install(rt, &spec.env_id, &main.name, d).await);
    }
    let mut post_start = Vec::new();
    for id in &spec.plan.events.post_start {
        progress(Progress::PostStart {
            command: id.clone(),
        });
        post_start.extend(run_event(rt, &spec.env_id, &spec.plan, std::slice::from_ref(id)).await?);
    }
    progress(Progress::Running);
    Ok(Started {
        status,
        post_start,
        cloned,
        dotfiles: installed,
        projects,
    })
}

/// Clone the plan's git projects (`projects` and `dependentProjects`) into
/// the projects root of the main container, in order; one that is already
/// there (Cove's own repository, or a restart) is left alone.
pub async fn clone_projects(
    rt: &dyn Backend,
    spec: &PodSpec,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Vec<crate::sources::ProjectClone> {
    let Some(main) = spec.plan.main_container() else {
        return Vec::new();
    };
    let Some(root) = &main.source_mapping else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for p in spec.plan.projects.iter().filter(|p| p.zip.is_none()) {
        progress(Progress::Cloning {
            repo: p.name.clone(),
        });
        done.push(crate::sources::clone_project(rt, &spec.env_id, &main.name, root, p).await);
    }
    done
}

/// Run preStop events, then stop the containers.
pub async fn stop(
    rt: &dyn Backend,
    env: &str,
    plan: &EnvironmentPlan,
) -> Result<Vec<CommandRun>, EnvError> {
    let runs = if plan.events.pre_stop.is_empty() {
        Vec::new()
    } else {
        run_event(rt, env, plan, &plan.events.pre_stop)
            .await
            .unwrap_or_default()
    };
    rt.stop(env).await?;
    Ok(runs)
}

/// Restart with a new plan: only the components whose containers differ from the new plan
/// are recreated (the infra container, and with it the network namespace, and every other
/// container keep running; [`Runtime::restart_plan`]); everything is recreated when the
/// infra container itself changes. Volumes and `/projects` are kept. The old plan's preStop
/// events run first when a container is about to go. The caller validates the new devfile
/// first (see [`plan_from_workspace`]), so an invalid devfile never reaches this point.
pub async fn restart(
    rt: &dyn Backend,
    old: &EnvironmentPlan,
    spec: &PodSpec,
) -> Result<PodStatus, EnvError> {
    // Through the trait: the Docker backend's `recreate` is the restart by difference
    // ([`restart_planned`] does the same on a `Runtime` and says what it did).
    if rt.status(&spec.env_id).await?.is_some_and(|s| s.running())
        && !old.events.pre_stop.is_empty()
    {
        run_event(rt, &spec.env_id, old, &old.events.pre_stop)
            .await
            .ok();
    }
    Ok(rt.recreate(spec).await?)
}

/// [`restart`], also returning what it did (for the environment's log).
pub async fn restart_planned(
    rt: &Runtime,
    old: &EnvironmentPlan,
    spec: &PodSpec,
) -> Result<(PodStatus, RestartPlan), EnvError> {
    let plan = rt.restart_plan(spec).await?;
    if plan.running && plan.changes_anything() && !old.events.pre_stop.is_empty() {
        run_event(rt, &spec.env_id, old, &old.events.pre_stop)
            .await
            .ok();
    }
    let status = rt.restart_with(spec, &plan).await?;
    Ok((status, plan))
}

/// Largest workspace file (a devfile or one of its parents) the agent reads: 1 MiB.
pub const MAX_WORKSPACE_FILE_BYTES: usize = 1 << 20;

/// Read a file from the main container; `None` when it does not exist; an error when
/// it is larger than [`MAX_WORKSPACE_FILE_BYTES`] or does not end (`/dev/zero`).
pub async fn read_file(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    path: &str,
) -> Result<Option<String>, BackendError> {
    rt.read_file(env, component, path, MAX_WORKSPACE_FILE_BYTES)
        .await
}

/// Parents of a workspace devfile, fetched ahead of resolution: files of
/// the workspace, and the `parent.id` parent the server fetched.
struct Prefetched(
    BTreeMap<String, String>,
    Option<Result<(String, String), String>>,
);

impl Resolver for Prefetched {
    fn read_registry(
        &self,
        _registry_url: Option<&str>,
        _id: &str,
        _version: Option<&str>,
    ) -> Result<(String, String), String> {
        self.1.clone().unwrap_or_else(|| {
            Err("only the devfile's own parent is read from a devfile registry; commit this parent into the repository and use `parent.uri`".into())
        })
    }

    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String> {
        let path = join(from_file, uri);
        self.0
            .get(&path)
            .map(|t| (path.clone(), t.clone()))
            .ok_or_else(|| format!("{path} does not exist in the workspace"))
    }
}

fn join(from_file: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let dir = from_file.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
    format!("{dir}/{uri}")
}

/// Load and plan the devfile at `path` inside the workspace (the way a user
/// tries a change before pushing it). Errors come back as
/// `path:line:col: error: …` lines and change nothing.
pub async fn plan_from_workspace(
    rt: &dyn Backend,
    env: &str,
    component: &str,
    path: &str,
    repo: &str,
    registry_parent: Option<Result<(String, String), String>>,
) -> Result<(EnvironmentPlan, String), EnvError> {
    let text = read_file(rt, env, component, path).await?.ok_or_else(|| {
        EnvError::Devfile(format!(
            "{path}:1:1: error: the devfile does not exist in the workspace"
        ))
    })?;
    // follow parent.uri references inside the workspace (a few levels)
    let mut files = BTreeMap::new();
    let mut pending = vec![(path.to_string(), text.clone())];
    while let Some((file, body)) = pending.pop() {
        if files.len() > 8 {
            break;
        }
        if let Some(uri) = parent_uri(&body) {
            let p = join(&file, &uri);
            if !files.contains_key(&p) {
                if let Some(t) = read_file(rt, env, component, &p).await? {
                    files.insert(p.clone(), t.clone());
                    pending.push((p, t));
                }
            }
        }
    }
    // a user's file: parsed on a blocking thread, within the parser's own bounds
    let (file, body, repo) = (path.to_string(), text.clone(), repo.to_string());
    let plan = tokio::task::spawn_blocking(move || {
        let resolver = Prefetched(files, registry_parent);
        devfiles::load_str(&file, &body, &resolver, &LoadOptions::default())
            .map(|loaded| loaded.plan(&PlanOptions { repo: Some(repo) }).0)
            .map_err(|r| EnvError::Devfile(r.to_string()))
    })
    .await
    .map_err(|e| {
        EnvError::Devfile(format!(
            "{path}:1:1: error: the devfile could not be read ({e})"
        ))
    })??;
    Ok((plan, text))
}

/// `parent.uri` of a devfile text, read with the bounded parser (no alias
/// expansion beyond its budget).
fn parent_uri(text: &str) -> Option<String> {
    let root = yamlmap::parse(text).ok()??;
    root.get("parent")?.get("uri")?.as_str().map(str::to_string)
}
