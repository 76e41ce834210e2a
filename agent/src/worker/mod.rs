//! The agent side of the agent protocol: carries out [`EnvCommand`]s on the agent's
//! [`Backend`] (Docker or Kubernetes) and sends [`EnvReport`]s. The embedded agent runs this
//! in the server's process, a standalone `cove-agent` behind its link; long operations run in
//! the background, one at a time per environment. Terminals and attached execs are the
//! backend's [`crate::backend::ExecStreams`]. What only the Docker engine has — VS Code's
//! volume, prebuild snapshots, the restart by difference's summary — is used when the agent
//! runs on Docker ([`spawn`]); on another backend ([`spawn_backend`]) those report that they
//! are not available there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cove_api::agent::{
    AgentReply, EnvCommand, EnvDotfiles, EnvReport, EnvSource, PodReport, PublishedPort, TermInput,
    TermOutput,
};
use cove_api::{Editor, EnvState, ExecResult};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, ExecStreams};
use crate::environment::{self, Progress};
use crate::pod::shells::Shells;
use crate::pod::{PodSpec, PodStatus, Runtime};

mod handle;

pub use handle::{AgentHandle, ExecInput, ExecOutput, ExecSession, Terminal};

type Job = (EnvCommand, oneshot::Sender<AgentReply>);

/// Settings of the agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub infra_image: String,
    pub publish_address: String,
    pub pids_limit: i64,
    pub default_memory_bytes: Option<u64>,
    /// Largest CPU limit of a container, in millicores (`None`: the
    /// engine's CPUs); a devfile asking for more is refused.
    pub max_cpu_millis: Option<u64>,
    /// Largest memory limit of a container, in bytes (`None`: the engine's
    /// memory); a devfile asking for more is refused.
    pub max_memory_bytes: Option<u64>,
    /// Ready pod shells kept per recently created shape (`crate::pod::shells`; 0: none;
    /// Docker only).
    pub warm_shells: usize,
    /// Who makes the warm shells (the embedded agent: its data directory); an agent started
    /// again with the same owner removes its previous process's shells at once.
    pub shell_owner: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let d = PodSpec::new("x", Default::default());
        AgentConfig {
            infra_image: d.infra_image,
            publish_address: d.publish_address,
            pids_limit: d.pids_limit,
            default_memory_bytes: Some(4 * 1024 * 1024 * 1024),
            max_cpu_millis: None,
            max_memory_bytes: None,
            warm_shells: 0,
            shell_owner: String::new(),
        }
    }
}

/// Start an agent on the Docker engine `rt` (networks a killed agent left are cleaned up
/// first). Returns its handle and the stream of reports.
pub fn spawn(
    rt: Runtime,
    config: AgentConfig,
) -> (AgentHandle, mpsc::UnboundedReceiver<EnvReport>) {
    // what a killed agent left: networks of environments without containers, stale rules
    let (docker, network) = (rt.docker().clone(), rt.network().clone());
    tokio::spawn(async move {
        let helper_age = std::time::Duration::from_secs(60);
        if let Err(error) =
            crate::private_net::remove_stale_helpers(&docker, helper_age, |_| true).await
        {
            tracing::warn!(%error, "removing stale firewall helpers failed");
        }
        if let Err(error) = crate::env_net::cleanup_orphans(&docker, &network).await {
            tracing::warn!(%error, "cleaning up environment networks failed");
        }
    });
    let shells = (config.warm_shells > 0)
        .then(|| Shells::start(rt.clone(), config.warm_shells, &config.shell_owner));
    start(Arc::new(rt.clone()), Some(rt), shells, config)
}

/// Start an agent on any backend (e.g. [`crate::backend::kubernetes::KubernetesBackend`]).
/// Docker-only features (VS Code's volume, prebuilds) report that they are not available;
/// use [`spawn`] for the Docker engine.
pub fn spawn_backend(
    backend: Arc<dyn Backend>,
    config: AgentConfig,
) -> (AgentHandle, mpsc::UnboundedReceiver<EnvReport>) {
    start(backend, None, None, config)
}

fn start(
    backend: Arc<dyn Backend>,
    docker: Option<Runtime>,
    shells: Option<Arc<Shells>>,
    config: AgentConfig,
) -> (AgentHandle, mpsc::UnboundedReceiver<EnvReport>) {
    let (tx, mut rx) = mpsc::channel::<Job>(64);
    let (reports, reports_rx) = mpsc::unbounded_channel();
    let infra_image: Arc<str> = config.infra_image.as_str().into();
    let worker = Worker {
        backend: backend.clone(),
        docker,
        shells: shells.clone(),
        config,
        reports,
        locks: Arc::default(),
    };
    tokio::spawn(async move {
        while let Some((cmd, reply)) = rx.recv().await {
            let w = worker.clone();
            tokio::spawn(async move {
                let answer = w.handle(cmd).await;
                let _ = reply.send(answer);
            });
        }
    });
    (
        AgentHandle {
            tx,
            backend,
            infra_image,
            shells,
        },
        reports_rx,
    )
}

#[derive(Clone)]
struct Worker {
    backend: Arc<dyn Backend>,
    /// The same engine as `backend` when it is Docker (for what only Docker has).
    docker: Option<Runtime>,
    shells: Option<Arc<Shells>>,
    config: AgentConfig,
    reports: mpsc::UnboundedSender<EnvReport>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

fn ports(status: &PodStatus) -> Vec<PublishedPort> {
    status
        .endpoints
        .iter()
        .map(|e| PublishedPort {
            port: e.port,
            host_ip: e.host_ip.clone(),
            host_port: e.host_port,
        })
        .collect()
}

impl Worker {
    fn lock(&self, env: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        locks.entry(env.to_string()).or_default().clone()
    }

    fn spec(&self, env: &str, plan: devfiles::EnvironmentPlan) -> PodSpec {
        PodSpec {
            env_id: env.to_string(),
            plan,
            infra_image: self.config.infra_image.clone(),
            publish_address: self.config.publish_address.clone(),
            pids_limit: self.config.pids_limit,
            default_memory_bytes: self.config.default_memory_bytes,
            max_cpu_millis: self.config.max_cpu_millis,
            max_memory_bytes: self.config.max_memory_bytes,
            editor_volume: None,
        }
    }

    /// [`Worker::spec`] with the editor's volume when `editor` is `vscode` (crate::editor).
    async fn spec_for(
        &self,
        env: &str,
        plan: devfiles::EnvironmentPlan,
        editor: Editor,
    ) -> Result<PodSpec, crate::pod::PodError> {
        let mut spec = self.spec(env, plan);
        if let Some(rt) = &self.docker {
            crate::editor::prepare(rt, &mut spec, editor).await?;
        }
        Ok(spec)
    }

    /// Starts the editor's server once the containers run; a failure is an event of the
    /// environment, never a failure of it.
    async fn start_editor(&self, spec: &PodSpec, editor: Editor) {
        let Some(rt) = &self.docker else {
            if editor == Editor::Vscode {
                self.report(EnvReport::Progress {
                    env_id: spec.env_id.clone(),
                    step: format!(
                        "VS Code in the browser is not available on the {} backend yet; use the terminal or SSH",
                        self.backend.kind().label()
                    ),
                });
            }
            return;
        };
        if let Err(e) = crate::editor::start(rt, spec, editor).await {
            self.report(EnvReport::Progress {
                env_id: spec.env_id.clone(),
                step: format!("VS Code did not start: {e}"),
            });
        }
    }

    fn report(&self, r: EnvReport) {
        let _ = self.reports.send(r);
    }

    fn state(
        &self,
        env: &str,
        state: EnvState,
        reason: Option<String>,
        endpoints: Vec<PublishedPort>,
    ) {
        self.report(EnvReport::State {
            env_id: env.to_string(),
            state,
            reason,
            endpoints,
        });
    }

    async fn handle(&self, cmd: EnvCommand) -> AgentReply {
        match cmd {
            EnvCommand::Create {
                env_id,
                plan,
                source,
                dotfiles,
                editor,
            } => self.background(env_id.clone(), move |w| async move {
                w.create(&env_id, plan, source, dotfiles, editor).await
            }),
            EnvCommand::Start {
                env_id,
                plan,
                editor,
            } => {
                self.background(env_id.clone(), move |w| async move {
                    match w.backend.start(&env_id).await {
                        Ok(st) => {
                            w.start_editor(&w.spec(&env_id, plan), editor).await;
                            w.state(&env_id, EnvState::Running, None, ports(&st))
                        }
                        Err(e) => {
                            // containers gone (e.g. removed by hand): build them again from the plan
                            let recreated = async {
                                let spec = w.spec_for(&env_id, plan, editor).await?;
                                let st = w.backend.recreate(&spec).await?;
                                w.start_editor(&spec, editor).await;
                                Ok::<_, crate::backend::BackendError>(st)
                            }
                            .await;
                            match recreated {
                                Ok(st) => w.state(&env_id, EnvState::Running, None, ports(&st)),
                                Err(e2) => w.state(
                                    &env_id,
                                    EnvState::Failed,
                                    Some(format!("{e}; {e2}")),
                                    vec![],
                                ),
                            }
                        }
                    }
                })
            }
            EnvCommand::Stop { env_id, plan } => {
                self.background(env_id.clone(), move |w| async move {
                    match environment::stop(&*w.backend, &env_id, &plan).await {
                        Ok(runs) => {
                            for r in runs {
                                w.report(EnvReport::CommandOutput {
                                    env_id: env_id.clone(),
                                    event: "preStop".into(),
                                    command: r.id,
                                    exit_code: r.exit_code,
                                    output: r.output,
                                });
                            }
                            w.state(&env_id, EnvState::Stopped, None, vec![]);
                        }
                        Err(e) => w.state(&env_id, EnvState::Failed, Some(e.to_string()), vec![]),
                    }
                })
            }
            EnvCommand::Restart {
                env_id,
                old_plan,
                plan,
                editor,
            } => self.background(env_id.clone(), move |w| async move {
                let restarted = match w.spec_for(&env_id, plan, editor).await {
                    Ok(spec) => match &w.docker {
                        Some(rt) => environment::restart_planned(rt, &old_plan, &spec)
                            .await
                            .map(|(st, done)| (st, spec, done.summary())),
                        None => environment::restart(&*w.backend, &old_plan, &spec)
                            .await
                            .map(|st| (st, spec, "the pod was replaced; volumes kept".to_string())),
                    },
                    Err(e) => Err(e.into()),
                };
                match restarted {
                    Ok((st, spec, summary)) => {
                        w.report(EnvReport::Progress {
                            env_id: env_id.clone(),
                            step: format!("restart: {summary}"),
                        });
                        w.start_editor(&spec, editor).await;
                        w.state(&env_id, EnvState::Running, None, ports(&st))
                    }
                    Err(e) => w.state(
                        &env_id,
                        EnvState::Failed,
                        Some(format!(
                            "restart failed (volumes and /projects are kept): {e}"
                        )),
                        vec![],
                    ),
                }
            }),
            EnvCommand::Delete { env_id } => self.background(env_id.clone(), move |w| async move {
                match w.backend.delete(&env_id).await {
                    Ok(()) => w.state(&env_id, EnvState::Deleting, Some("deleted".into()), vec![]),
                    Err(e) => w.state(
                        &env_id,
                        EnvState::Failed,
                        Some(format!("delete failed: {e}")),
                        vec![],
                    ),
                }
            }),
            EnvCommand::PlanWorkspace {
                env_id,
                component,
                path,
                repo,
                registry_parent,
            } => {
                match environment::plan_from_workspace(
                    &*self.backend,
                    &env_id,
                    &component,
                    &path,
                    &repo,
                    registry_parent,
                )
                .await
                {
                    Ok((plan, devfile)) => AgentReply::Plan {
                        plan: Box::new(plan),
                        devfile,
                    },
                    Err(e) => AgentReply::Error {
                        message: e.to_string(),
                    },
                }
            }
            EnvCommand::ReadFile {
                env_id,
                component,
                path,
            } => match environment::read_file(&*self.backend, &env_id, &component, &path).await {
                Ok(content) => AgentReply::File { content },
                Err(e) => AgentReply::Error {
                    message: e.to_string(),
                },
            },
            EnvCommand::SetGitIdentity {
                env_id,
                component,
                repo_dir,
                name,
                email,
            } => match crate::sources::set_git_identity(
                &*self.backend,
                &env_id,
                &component,
                &repo_dir,
                (&name, &email),
            )
            .await
            {
                Ok(()) => AgentReply::Accepted,
                Err(message) => AgentReply::Error { message },
            },
            EnvCommand::Exec {
                env_id,
                component,
                command,
            } => {
                let argv: Vec<&str> = command.iter().map(String::as_str).collect();
                match self
                    .backend
                    .exec(&env_id, &component, &argv, &[], None)
                    .await
                {
                    Ok(o) => AgentReply::Exec {
                        result: ExecResult {
                            exit_code: o.exit_code,
                            stdout: o.stdout,
                            stderr: o.stderr,
                        },
                    },
                    Err(e) => AgentReply::Error {
                        message: e.to_string(),
                    },
                }
            }
            EnvCommand::Logs {
                env_id,
                component,
                tail,
            } => match self.backend.logs(&env_id, &component, tail).await {
                Ok(text) => AgentReply::Logs { text },
                Err(e) => AgentReply::Error {
                    message: e.to_string(),
                },
            },
            EnvCommand::Prebuild {
                pod_id,
                plan,
                source,
                build,
                post_start,
                sha,
                image_repo,
                labels,
            } => {
                let Some(rt) = &self.docker else {
                    return AgentReply::Prebuilt {
                        images: Vec::new(),
                        log: String::new(),
                        error: Some(format!(
                            "the {} backend does not run prebuilds yet",
                            self.backend.kind().label()
                        )),
                    };
                };
                let req = crate::prebuild::Request {
                    spec: self.spec(&pod_id, plan),
                    source: &source,
                    build: build.as_deref(),
                    post_start,
                    sha: &sha,
                    image_repo: &image_repo,
                    labels: &labels,
                };
                let (result, log) = crate::prebuild::run(rt, req).await;
                match result {
                    Ok(images) => AgentReply::Prebuilt {
                        images,
                        log,
                        error: None,
                    },
                    Err(e) => AgentReply::Prebuilt {
                        images: Vec::new(),
                        log,
                        error: Some(e),
                    },
                }
            }
            EnvCommand::RemovePrebuilds { install, keep } => {
                let Some(rt) = &self.docker else {
                    // no snapshot images on another backend: nothing to remove
                    return AgentReply::Accepted;
                };
                match rt.remove_prebuilds(&install, &keep).await {
                    Ok(_) => AgentReply::Accepted,
                    Err(e) => AgentReply::Error {
                        message: e.to_string(),
                    },
                }
            }
            EnvCommand::ClaimShell { plan } => AgentReply::Shell {
                env_id: self
                    .shells
                    .as_ref()
                    .and_then(|s| s.claim(&self.spec("eshell", plan))),
            },
            // ready shells are the agent's, not environments
            EnvCommand::List => match self.backend.list().await {
                Ok(pods) => AgentReply::Pods {
                    pods: pods
                        .iter()
                        .filter(|p| !self.shells.as_ref().is_some_and(|s| s.is_ready(&p.env_id)))
                        .map(|p| PodReport {
                            env_id: p.env_id.clone(),
                            running: p.running(),
                            components: p.containers.iter().map(|c| c.component.clone()).collect(),
                            endpoints: ports(p),
                        })
                        .collect(),
                },
                Err(e) => AgentReply::Error {
                    message: e.to_string(),
                },
            },
        }
    }

    /// Run `op` after any earlier operation on the same environment.
    fn background<F, Fut>(&self, env: String, op: F) -> AgentReply
    where
        F: FnOnce(Worker) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let w = self.clone();
        let lock = self.lock(&env);
        tokio::spawn(async move {
            let _guard = lock.lock().await;
            op(w).await;
        });
        AgentReply::Accepted
    }

    async fn create(
        &self,
        env: &str,
        plan: devfiles::EnvironmentPlan,
        source: Option<EnvSource>,
        dotfiles: Option<EnvDotfiles>,
        editor: Editor,
    ) {
        // warm shells are made after this create, not during it
        let _creating = self.shells.as_ref().map(|s| s.creating());
        let spec = match self.spec_for(env, plan, editor).await {
            Ok(spec) => spec,
            Err(e) => return self.state(env, EnvState::Failed, Some(e.to_string()), vec![]),
        };

        let reports = self.reports.clone();
        let id = env.to_string();
        let mut progress = move |p: Progress| {
            let step = match p {
                Progress::CreatingContainers => "creating containers".to_string(),
                Progress::Cloning { repo } => format!("cloning {repo}"),
                Progress::Dotfiles => "installing dotfiles".to_string(),
                Progress::PostStart { command } => format!("postStart: {command}"),
                Progress::Running => "running".to_string(),
            };
            let _ = reports.send(EnvReport::Progress {
                env_id: id.clone(),
                step,
            });
        };
        match environment::create(
            &*self.backend,
            &spec,
            source.as_ref(),
            dotfiles.as_ref(),
            &mut progress,
        )
        .await
        {
            Ok(started) => {
                if let Some(d) = started.dotfiles {
                    self.report(EnvReport::CommandOutput {
                        env_id: env.to_string(),
                        event: "dotfiles".into(),
                        command: d.step,
                        exit_code: d.exit_code,
                        output: d.output,
                    });
                }
                for p in started.projects {
                    let failed = p.outcome == "failed";
                    self.report(EnvReport::CommandOutput {
                        env_id: env.to_string(),
                        event: "project".into(),
                        command: format!("clone {} into {}", p.name, p.path),
                        exit_code: i64::from(failed),
                        output: if p.detail.is_empty() {
                            p.outcome
                        } else {
                            format!("{}: {}", p.outcome, p.detail)
                        },
                    });
                }
                for r in started.post_start {
                    self.report(EnvReport::CommandOutput {
                        env_id: env.to_string(),
                        event: "postStart".into(),
                        command: r.id,
                        exit_code: r.exit_code,
                        output: r.output,
                    });
                }
                self.start_editor(&spec, editor).await;
                self.state(env, EnvState::Running, None, ports(&started.status));
            }
            Err(e) => self.state(env, EnvState::Failed, Some(e.to_string()), vec![]),
        }
    }
}
