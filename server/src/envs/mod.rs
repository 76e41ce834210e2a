//! Dev environments: the REST handlers, the state machine the server keeps
//! in the store, and the loops that watch environments (agent reports,
//! devfile changes, idle stop, reconciliation at start-up).
//!
//! The server never touches Docker: it sends [`EnvCommand`]s to an agent
//! (the embedded one by default) and applies the [`EnvReport`]s it gets back.

//!
//! Layout: `access` (who may act on an environment), `create` (the create handler), `http`
//! (the other REST handlers and the DTO), `state` (transitions, agent reports,
//! reconciliation), `watcher` (devfile changes), `reaper` (idle stop), `terminal` (WebSocket
//! terminals), `terminal_sessions` (reconnecting terminals), `devfile` (reading devfiles from the repository), `outdated` (the branch's
//! devfile moved on; `update`), `relocate` (`cove env move`: to another agent, volumes copied), `prebuild` (prebuilds), `pool` (warm pools of
//! prebuilt environments, claimed on create).

pub mod access;
mod create;
mod devfile;
mod http;
mod outdated;
mod pool;
pub mod prebuild;
mod reaper;
mod registry;
mod relocate;
mod state;
mod terminal;
pub mod terminal_sessions;
mod watcher;

pub use access::EnvAccess;
pub use create::*;
use devfile::*;
pub use http::*;
pub(crate) use outdated::is_outdated;
pub use outdated::update_env;
pub use reaper::*;
pub use relocate::move_env;
pub use state::*;
pub use terminal::*;
pub use watcher::*;

use std::time::Duration;

pub use crate::agents::link::EnvAgent;
use cove_agent::worker::AgentHandle;
use cove_api::agent::{AgentReply, EnvReport};
use devfiles::EnvironmentPlan;
use tokio::sync::{mpsc, Mutex};

use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

/// Default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30 * 60;
/// How long the clone credential handed to the agent lives.
pub(super) const CLONE_TOKEN_SECS: i64 = 10 * 60;

const NO_EMBEDDED_AGENT: &str =
    "no agent is connected: start cove-server where a Docker engine answers (DOCKER_HOST)";

/// The server's side of environments.
pub struct Envs {
    /// The embedded agent (environments with no `agent_id`).
    agent: Option<AgentHandle>,
    /// Standalone agents' links (environments placed on them).
    links: crate::agents::link::Links,
    /// Environments found on the engine with no row in the store.
    orphans: Mutex<Vec<String>>,
    /// Environments whose devfile check is under way (the watcher skips them).
    watching: watcher::InFlight,
    /// Reconnecting terminals (`?reconnect=ID`), kept across dropped sockets.
    terminals: terminal_sessions::TerminalSessions,
}

impl Envs {
    pub fn new(agent: Option<AgentHandle>) -> Self {
        Envs {
            agent,
            links: crate::agents::link::Links::default(),
            orphans: Mutex::new(Vec::new()),
            watching: watcher::InFlight::default(),
            terminals: terminal_sessions::TerminalSessions::default(),
        }
    }

    /// With `grace` as the grace period of detached reconnecting terminals.
    pub fn with_terminal_grace(mut self, grace: Duration) -> Self {
        self.terminals = terminal_sessions::TerminalSessions::new(grace);
        self
    }

    /// Reconnecting terminals.
    pub fn terminals(&self) -> &terminal_sessions::TerminalSessions {
        &self.terminals
    }

    fn agent(&self) -> Result<&AgentHandle, ApiError> {
        self.agent
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable(NO_EMBEDDED_AGENT.into()))
    }

    /// The embedded agent, when the server has one.
    pub fn agent_handle(&self) -> Option<&AgentHandle> {
        self.agent.as_ref()
    }

    /// Standalone agents' links.
    pub fn links(&self) -> &crate::agents::link::Links {
        &self.links
    }

    /// The agent environment `row` runs on: the embedded one, or a standalone agent over its
    /// link (503 while that link is down: the environment is `agent_unreachable`).
    pub fn agent_for(&self, row: &EnvRow) -> Result<EnvAgent, ApiError> {
        if let Some(agent) = self.agent_by(row.agent_id) {
            return Ok(agent);
        }
        Err(match row.agent_id {
            None => ApiError::Unavailable(NO_EMBEDDED_AGENT.into()),
            Some(_) => ApiError::Unavailable(format!(
                "environment {} runs on {}, whose agent is unreachable now (its link is down); it comes back when the agent reconnects",
                row.name,
                row.placement
                    .as_deref()
                    .and_then(|p| p.split(':').next())
                    .unwrap_or("a standalone agent")
            )),
        })
    }

    /// The agent `agent_id` names (`None`: the embedded one), if it is reachable now.
    fn agent_by(&self, agent_id: Option<i64>) -> Option<EnvAgent> {
        match agent_id {
            None => self.agent.clone().map(|a| EnvAgent::Embedded(Box::new(a))),
            Some(id) => self.links.get(id).map(EnvAgent::Remote),
        }
    }

    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }

    /// The largest CPU (millicores) and memory (bytes) limit of one container: the
    /// `[environments]` maximums, else the agent's engine capacity.
    pub fn max_limits(
        &self,
        cfg: &crate::config::EnvironmentsConfig,
    ) -> (Option<u64>, Option<u64>) {
        let (cpu, mem) = self
            .agent
            .as_ref()
            .map(AgentHandle::capacity)
            .unwrap_or_default();
        (cfg.max_cpu_millis.or(cpu), cfg.max_memory_bytes.or(mem))
    }
}

pub(super) fn plan_of(row: &EnvRow) -> Result<EnvironmentPlan, ApiError> {
    serde_json::from_str(&row.plan_json).map_err(ApiError::internal)
}

pub(super) fn main_component(plan: &EnvironmentPlan) -> Result<String, ApiError> {
    plan.main_container()
        .map(|c| c.name.clone())
        .ok_or_else(|| ApiError::Conflict("the environment has no container".into()))
}

pub(super) fn clone_token_name(env_id: &str) -> String {
    format!("env-clone-{env_id}")
}

/// The message of an agent's error reply (for callers outside `envs`).
pub(crate) fn reply_error_text(reply: AgentReply) -> String {
    reply_error(reply)
}

pub(super) fn reply_error(reply: AgentReply) -> String {
    match reply {
        AgentReply::Error { message } => message,
        other => format!("unexpected agent reply {other:?}"),
    }
}

/// Intervals of the background loops.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    pub devfile_check: Duration,
    pub idle_check: Duration,
    /// How long a reconnecting terminal outlives its dropped WebSocket.
    pub terminal_grace: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            devfile_check: Duration::from_secs(2),
            idle_check: Duration::from_secs(30),
            terminal_grace: terminal_sessions::DEFAULT_GRACE,
        }
    }
}

/// Longest the start-up reconciliation may take before serving begins anyway.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reconcile with the engine (before the server takes requests, so that nothing created
/// by this process is mistaken for a leftover), then start the loops: agent reports,
/// devfile watcher, idle reaper.
pub async fn spawn_background(
    state: AppState,
    mut reports: mpsc::UnboundedReceiver<EnvReport>,
    intervals: Intervals,
) {
    match tokio::time::timeout(RECONCILE_TIMEOUT, reconcile(&state)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "reconciliation failed"),
        Err(_) => tracing::error!("reconciliation did not finish within 60 s"),
    }
    prebuild::spawn(&state);
    pool::spawn(&state);
    let s = state.clone();
    tokio::spawn(async move {
        while let Some(r) = reports.recv().await {
            if let Err(e) = apply_report_of(&s, None, r).await {
                tracing::error!(error = %e, "applying an agent report failed");
            }
        }
    });
    // two loops, so that a slow pass of one never delays the other; each pass works
    // per environment (see check_devfiles and reap_idle); on the leader only
    // (`crate::cluster`)
    crate::cluster::singleton(&state, "devfile watcher", move |s| async move {
        let mut devfile = tokio::time::interval(intervals.devfile_check);
        devfile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            devfile.tick().await;
            if let Err(e) = check_devfiles(&s).await {
                tracing::warn!(error = %e, "devfile check failed");
            }
        }
    });
    crate::cluster::singleton(&state, "idle reaper", move |state| async move {
        let mut idle = tokio::time::interval(intervals.idle_check);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            idle.tick().await;
            if let Err(e) = reap_idle(&state, now_ms()).await {
                tracing::warn!(error = %e, "idle check failed");
            }
        }
    });
}
