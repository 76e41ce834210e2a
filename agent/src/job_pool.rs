//! A small pool of ready job sandboxes per agent (issue 19): the private network, its
//! firewall rules and gateway, and a started container waiting for a script, made ahead of
//! time so that a leased job starts with uploads and an exec instead of a network create,
//! a container create and a start.
//!
//! - A sandbox is made for the agent's own settings only (its [`SandboxSettings`], the pool
//!   image): no lease, no credentials, no secrets. A lease whose image is the pool image and
//!   that needs no per-job credentials (no `packages`, no `deploy`) claims one
//!   ([`JobPool::claim`]); any other lease takes the cold path (today's create).
//! - Each sandbox is used once: a claim moves it out of the pool, the job renames the
//!   container to its own name and removes it (and the network) at the end like a created
//!   one. Secrets enter it only after the claim (exec environment, uploaded files).
//! - One background task refills the pool, one sandbox at a time, up to `size` (bounded;
//!   failures back off up to a minute). Sandboxes older than [`RECYCLE_AFTER`] are replaced,
//!   and an unclaimed container exits by itself after [`IDLE_EXIT_SECS`], so a killed agent's
//!   pool does not run forever; its network is then an orphan every agent removes at start.
//! - Pool objects carry the labels of job objects (`cove.role=job`, `cove.owner`,
//!   `cove.job=<slot>`, networks `cove.role=private-net`) plus [`LABEL_POOL`]; at start an
//!   agent removes the pool objects its previous process left ([`clean_after_crash`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use bollard::Docker;
use cove_api::JobLease;
use tokio_util::sync::CancellationToken;

use crate::jobs::{JobSpec, Script};
use crate::private_net::{JobSandbox, SandboxSettings};

/// Label on pool containers: the pool's token ([`token`] of the agent's owner name).
pub const LABEL_POOL: &str = "cove.pool";
/// An unclaimed pool container exits after this many seconds (a killed agent's pool).
pub const IDLE_EXIT_SECS: u64 = 300;
/// The agent replaces a sandbox this old (well before its container exits).
pub const RECYCLE_AFTER: Duration = Duration::from_secs(240);
/// Longest wait after a failed fill.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the pool is made of.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Ready sandboxes kept (0: no pool).
    pub size: usize,
    /// Image of the pooled containers; leases naming another image take the cold path.
    pub image: String,
    /// The agent's owner name (`cove.owner` of its job containers).
    pub owner: String,
    pub sandbox: SandboxSettings,
}

/// A sandbox claimed by one job.
#[derive(Debug)]
pub struct Claimed {
    /// The started container.
    pub container: String,
    /// Its private network, rules and gateway (`None`: private networks are off).
    pub sandbox: Option<JobSandbox>,
}

#[derive(Debug)]
struct Ready {
    claimed: Claimed,
    made: Instant,
}

/// The agent's pool; [`JobPool::shutdown`] removes what is left.
#[derive(Debug)]
pub struct JobPool {
    docker: Docker,
    config: PoolConfig,
    token: String,
    /// Distinguishes slots of this process from an earlier one's.
    epoch: u64,
    seq: AtomicU64,
    ready: Mutex<VecDeque<Ready>>,
    wake: tokio::sync::Notify,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A stable short name of `owner` for labels and slot names (FNV-1a, 48 bits in hex).
pub fn token(owner: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}

/// Slot names (the `cove.job` label and network name of pooled sandboxes) of `owner`'s pool
/// start with this.
pub fn slot_prefix(owner: &str) -> String {
    format!("pool-{}-", token(owner))
}

impl JobPool {
    /// Starts filling a pool of `config.size` sandboxes in the background.
    pub fn start(docker: Docker, config: PoolConfig) -> Arc<JobPool> {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let pool = Arc::new(JobPool {
            docker,
            token: token(&config.owner),
            config,
            epoch,
            seq: AtomicU64::new(0),
            ready: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        if pool.config.size > 0 {
            let task = tokio::spawn(pool.clone().refill());
            *pool.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        pool
    }

    /// Whether `lease` may run in a pooled sandbox: the pool image, and nothing the sandbox
    /// would have to be made for (package credentials, a deploy role).
    pub fn matches(&self, lease: &JobLease) -> bool {
        self.config.size > 0
            && lease.image == self.config.image
            && lease.packages.is_none()
            && lease.deploy.is_none()
    }

    /// Takes a ready sandbox for `lease` (never one another job had), or `None`: the lease
    /// does not match, or none is ready. Wakes the refill.
    pub fn claim(&self, lease: &JobLease) -> Option<Claimed> {
        if !self.matches(lease) || self.stop.is_cancelled() {
            return None;
        }
        let taken = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            // The oldest first; one too old is left for the refill to replace.
            let fresh = ready
                .iter()
                .position(|r| r.made.elapsed() < RECYCLE_AFTER)?;
            ready.remove(fresh)
        };
        self.wake.notify_one();
        taken.map(|r| r.claimed)
    }

    /// Sandboxes ready now.
    pub fn ready(&self) -> usize {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stops the refill (after the sandbox it is making) and removes every unclaimed one.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let left: Vec<Ready> = self
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for r in left {
            discard(&self.docker, r.claimed).await;
        }
    }

    async fn refill(self: Arc<JobPool>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let stale: Vec<Ready> = {
                let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
                let (old, keep): (Vec<Ready>, Vec<Ready>) = ready
                    .drain(..)
                    .partition(|r| r.made.elapsed() >= RECYCLE_AFTER);
                ready.extend(keep);
                old
            };
            for r in stale {
                discard(&self.docker, r.claimed).await;
            }
            if self.ready() >= self.config.size {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(RECYCLE_AFTER / 4) => {}
                }
                continue;
            }
            let slot = format!(
                "{}{:x}-{}",
                slot_prefix(&self.config.owner),
                self.epoch,
                self.seq.fetch_add(1, Ordering::Relaxed)
            );
            // Not cancelled mid-way: a half-made sandbox is finished, then removed.
            match make(&self.docker, &self.config, &self.token, &slot).await {
                Ok(claimed) => {
                    backoff = Duration::from_secs(1);
                    if self.stop.is_cancelled() {
                        discard(&self.docker, claimed).await;
                        return;
                    }
                    tracing::debug!(slot, container = %claimed.container, "job sandbox pooled");
                    self.ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back(Ready {
                            claimed,
                            made: Instant::now(),
                        });
                }
                Err(e) => {
                    tracing::warn!(slot, error = %e, retry_in_s = backoff.as_secs(), "making a pooled job sandbox failed");
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The pooled container's main process: waits until a job's bootstrap arrives
/// (`/cove/state/pwd`, uploaded right after the claim), then keeps the container alive like
/// a job container; unclaimed, it exits after [`IDLE_EXIT_SECS`].
fn waiting_script() -> String {
    format!(
        "trap 'exit 0' TERM INT; n=0; \
         while [ ! -e /cove/state/pwd ]; do n=$((n+1)); [ $n -gt {IDLE_EXIT_SECS} ] && exit 0; sleep 1 & wait $!; done; \
         while :; do sleep 3600 & wait $!; done"
    )
}

/// Makes one sandbox for slot `slot`: network, rules and gateway, then the started container.
async fn make(
    docker: &Docker,
    config: &PoolConfig,
    token: &str,
    slot: &str,
) -> Result<Claimed, String> {
    let sandbox = if config.sandbox.private_network {
        Some(crate::job_sandbox::pool_sandbox(docker, &config.sandbox, slot).await?)
    } else {
        None
    };
    let mut spec = JobSpec::new(slot, Script::Steps(Vec::new()));
    spec.image = config.image.clone();
    spec.attempt = 0;
    spec.owner = Some(config.owner.clone());
    spec.network = sandbox.as_ref().map(|s| s.network_name().to_string());
    let mut body = crate::jobs::container_body(&spec);
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_POOL.to_string(), token.to_string());
    body.entrypoint = Some(vec!["/bin/sh".into(), "-c".into(), waiting_script()]);
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(format!("cove-{slot}")),
                ..Default::default()
            }),
            body,
        )
        .await;
    let id = match created {
        Ok(c) => c.id,
        Err(e) => {
            if let Some(s) = sandbox {
                let _ = s.teardown().await;
            }
            return Err(format!("creating the container: {e}"));
        }
    };
    let claimed = Claimed {
        container: id,
        sandbox,
    };
    if let Err(e) = docker
        .start_container(&claimed.container, None::<StartContainerOptions>)
        .await
    {
        discard(docker, claimed).await;
        return Err(format!("starting the container: {e}"));
    }
    Ok(claimed)
}

/// Removes an unclaimed sandbox: its container, then its network and rules.
async fn discard(docker: &Docker, c: Claimed) {
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    match docker.remove_container(&c.container, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => {
            tracing::warn!(container = %c.container, error = %e, "removing a pooled job container failed")
        }
    }
    if let Some(s) = c.sandbox {
        if let Err(e) = s.teardown().await {
            tracing::warn!(error = %e, "removing a pooled job network failed");
        }
    }
}

/// At agent start: the pool containers, networks and firewall rules `owner`'s previous
/// process left (it was killed; a claimed container's job is reported by
/// [`crate::job_worker::recover_orphans`]). Returns how many objects were removed.
pub async fn clean_after_crash(docker: &Docker, settings: &SandboxSettings, owner: &str) -> usize {
    let mut removed = 0;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_POOL}={}", token(owner))],
    )]);
    match docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        Ok(list) => {
            for id in list.into_iter().filter_map(|c| c.id) {
                let options = bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                };
                match docker.remove_container(&id, Some(options)).await {
                    Ok(()) => removed += 1,
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {}
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "removing a pooled job container failed")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing pooled job containers failed"),
    }
    if settings.private_network {
        let prefix = slot_prefix(owner);
        match crate::private_net::cleanup_orphans(
            docker,
            &crate::job_sandbox::net_options(settings),
            |job| !job.starts_with(&prefix),
        )
        .await
        {
            Ok(nets) => removed += nets.len(),
            Err(e) => tracing::warn!(error = %e, "removing pooled job networks failed"),
        }
    }
    if removed > 0 {
        tracing::info!(
            objects = removed,
            "removed the job pool of the agent's previous process"
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_short_and_valid_in_names() {
        assert_eq!(token("agent-1"), token("agent-1"));
        assert_ne!(token("agent-1"), token("agent-2"));
        assert_eq!(token("x").len(), 12);
        let slot = format!("{}{:x}-{}", slot_prefix("agent-1"), u64::MAX, u64::MAX);
        assert!(slot.len() <= 64, "{slot}");
        assert!(slot.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
