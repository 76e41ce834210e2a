//! Warm pod shells (issue 19, docs/prebuilds.md "Warm pod shells"): the part of an
//! environment's pod that does not depend on its devfile's components — its own network, its
//! sources volume and its started infra container (which holds the network namespace and
//! publishes the endpoints) — made ahead of time, so that a cold create only creates and
//! starts the components.
//!
//! - A shell is made for a *shape*: the infra container's whole create body (image, hostname,
//!   published ports, network mode, limits), digested as [`Shells::key`]. The agent keeps
//!   `size` ready shells for each of the [`MAX_SHAPES`] shapes it was last asked for within
//!   [`DEMAND_TTL`]; a shape nobody asked for since is not refilled.
//! - A shell is made under a fresh environment id, with every object named and labelled as
//!   that environment's (`cove.env=<id>`): the server's create asks for one
//!   (`EnvCommand::ClaimShell`) and, when it gets an id, gives the new environment that id.
//!   The create then finds its network, sources volume and infra container in place
//!   ([`super::Runtime::create`] keeps an infra container whose `cove.spec` digests equal the
//!   new one's and that runs). Each shell is handed out once: a claim takes it out of the pool.
//! - A ready shell has a marker volume ([`marker_volume`], `cove.role=shell`); the create
//!   removes it. A shell whose marker is older than [`MAX_AGE`] belongs to nobody (its agent
//!   was killed): any agent with shells removes it when it starts and every minute after. An
//!   agent replaces its own ready shells after [`RECYCLE_AFTER`], well before that, and removes
//!   them on shutdown ([`Shells::shutdown`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};

use super::{infra_body, labels, PodSpec, Result, Runtime, LABEL_ENV, LABEL_ROLE, LABEL_SPEC};

/// `cove.role` of a ready shell's marker volume.
pub const ROLE_SHELL: &str = "shell";
/// On a marker volume: the token of the agent that made the shell ([`crate::job_pool::token`]
/// of its owner name; the embedded agent's is its data directory), so that an agent that
/// starts again removes its previous process's shells at once.
pub const LABEL_SHELL_OWNER: &str = "cove.shell.owner";
/// Shapes kept warm at once (the most recently asked for).
pub const MAX_SHAPES: usize = 2;
/// A shape not asked for in this long is no longer refilled.
pub const DEMAND_TTL: Duration = Duration::from_secs(30 * 60);
/// An agent replaces a ready shell this old.
pub const RECYCLE_AFTER: Duration = Duration::from_secs(5 * 60);
/// A ready shell this old is an orphan (its agent is gone): any agent removes it.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Refills wait for creates under way on the agent at most this long.
const DEFER_MAX: Duration = Duration::from_secs(10);
/// Longest wait after a failed make.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Id of the placeholder environment a shape's key is computed for.
const KEY_ENV: &str = "eshellkey";

/// The marker volume of a ready shell.
pub fn marker_volume(env: &str) -> String {
    format!("cove-{env}--shell")
}

/// A fresh environment id, in the server's format (`e` and 22 hex digits).
pub fn new_env_id() -> String {
    let mut b = [0u8; 11];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // never on a working system; ids must still differ
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&n.to_le_bytes()[..11]);
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("e{hex}")
}

#[derive(Debug)]
struct Shape {
    key: String,
    template: PodSpec,
    asked: Instant,
}

#[derive(Debug)]
struct Ready {
    key: String,
    env: String,
    made: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// Most recently asked first.
    shapes: Vec<Shape>,
    ready: Vec<Ready>,
    /// Shells being made, by key.
    making: HashMap<String, usize>,
    /// After a failed make: no new ones until then (doubling up to [`BACKOFF_MAX`]).
    paused_until: Option<Instant>,
    last_claim: Option<Instant>,
    backoff: Duration,
    closed: bool,
}

/// The agent's warm shells; [`Shells::shutdown`] removes what is left.
pub struct Shells {
    rt: Runtime,
    size: usize,
    /// [`LABEL_SHELL_OWNER`] of this agent's shells.
    owner: String,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    /// Environments being created on this agent ([`Shells::creating`]).
    creating: AtomicUsize,
}

/// Held while an environment is being created: refills wait ([`Shells::creating`]).
pub struct Creating(Arc<Shells>);

impl Drop for Creating {
    fn drop(&mut self) {
        self.0.creating.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

impl Shells {
    /// Keeps `size` ready shells per recent shape on `rt` (refilled in the background);
    /// first removes the shells of this agent's previous process (`owner`, any age) and
    /// orphaned ones (older than [`MAX_AGE`]).
    pub fn start(rt: Runtime, size: usize, owner: &str) -> Arc<Shells> {
        let shells = Arc::new(Shells {
            rt,
            size,
            owner: crate::job_pool::token(owner),
            inner: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            creating: AtomicUsize::new(0),
        });
        tokio::spawn(shells.clone().keep());
        shells
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The shape of `spec`'s infra container: equal keys, interchangeable shells.
    pub fn key(&self, spec: &PodSpec) -> String {
        let mut s = spec.clone();
        s.env_id = KEY_ENV.into();
        let network = self
            .rt
            .network()
            .settings
            .isolate
            .then(|| KEY_ENV.to_string());
        let body = infra_body(&s, network.as_deref());
        body.labels
            .and_then(|mut l| l.remove(LABEL_SPEC))
            .unwrap_or_default()
    }

    /// A ready shell of `spec`'s shape, out of the pool for good (`None`: none ready). Either
    /// way the shape is asked for: the pool makes one for the next create.
    pub fn claim(&self, spec: &PodSpec) -> Option<String> {
        let key = self.key(spec);
        let claimed = {
            let mut inner = self.inner();
            if inner.closed {
                return None;
            }
            inner.shapes.retain(|s| s.key != key);
            let mut template = spec.clone();
            template.editor_volume = None;
            inner.shapes.insert(
                0,
                Shape {
                    key: key.clone(),
                    template,
                    asked: Instant::now(),
                },
            );
            inner.shapes.truncate(MAX_SHAPES);
            inner.last_claim = Some(Instant::now());
            let fresh = inner
                .ready
                .iter()
                .position(|r| r.key == key && r.made.elapsed() < RECYCLE_AFTER);
            fresh.map(|i| inner.ready.remove(i).env)
        };
        self.wake.notify_one();
        claimed
    }

    /// Marks an environment create under way until the guard is dropped: shells are made
    /// after it (the create is what a person waits on).
    pub fn creating(self: &Arc<Self>) -> Creating {
        self.creating.fetch_add(1, Ordering::SeqCst);
        Creating(self.clone())
    }

    /// Whether `env` is a ready shell of this agent (not an environment yet).
    pub fn is_ready(&self, env: &str) -> bool {
        self.inner().ready.iter().any(|r| r.env == env)
    }

    /// Stops refilling and removes the ready shells.
    pub async fn shutdown(&self) {
        let ready = {
            let mut inner = self.inner();
            inner.closed = true;
            std::mem::take(&mut inner.ready)
        };
        self.wake.notify_one();
        for r in ready {
            self.discard(&r.env).await;
        }
        // shells being made remove themselves once made (the pool is closed): wait for them
        while self.inner().making.values().any(|n| *n > 0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn discard(&self, env: &str) {
        if let Err(error) = self.rt.delete(env).await {
            tracing::warn!(env, %error, "removing a warm pod shell failed");
        }
    }

    /// The background task: orphans removed, stale shells replaced, shapes refilled.
    async fn keep(self: Arc<Shells>) {
        let mut last_sweep: Option<Instant> = None;
        let mut deferred: Option<Instant> = None;
        loop {
            if self.inner().closed {
                return;
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                // at start, this agent's previous process's shells too (whatever their age)
                let mine = last_sweep.is_none().then_some(self.owner.as_str());
                last_sweep = Some(Instant::now());
                match remove_stale(&self.rt, MAX_AGE, mine, |_| true).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "orphaned warm pod shells removed"),
                    Err(error) => tracing::warn!(%error, "listing warm pod shells failed"),
                }
            }
            // stale ready shells and shapes nobody asks for any more
            let stale: Vec<String> = {
                let mut inner = self.inner();
                inner.shapes.retain(|s| s.asked.elapsed() < DEMAND_TTL);
                let wanted: Vec<String> = inner.shapes.iter().map(|s| s.key.clone()).collect();
                let (keep, stale): (Vec<Ready>, Vec<Ready>) = std::mem::take(&mut inner.ready)
                    .into_iter()
                    .partition(|r| r.made.elapsed() < RECYCLE_AFTER && wanted.contains(&r.key));
                inner.ready = keep;
                stale.into_iter().map(|r| r.env).collect()
            };
            for env in stale {
                self.discard(&env).await;
            }
            // not while environments are being created here: a create waits on the same engine
            // (at most DEFER_MAX, so that a busy agent still refills)
            // (a claim is followed by its create within a few milliseconds)
            let just_claimed = self
                .inner()
                .last_claim
                .is_some_and(|t| t.elapsed() < Duration::from_millis(300));
            if (just_claimed || self.creating.load(Ordering::SeqCst) > 0)
                && deferred.get_or_insert_with(Instant::now).elapsed() < DEFER_MAX
            {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            deferred = None;
            // every shell the recent shapes lack, made concurrently (at most `size` per shape)
            let wanted: Vec<(String, PodSpec)> = {
                let mut inner = self.inner();
                if inner.paused_until.is_some_and(|t| Instant::now() < t) {
                    Vec::new()
                } else {
                    let mut picks = Vec::new();
                    for s in &inner.shapes {
                        let have = inner.ready.iter().filter(|r| r.key == s.key).count()
                            + inner.making.get(&s.key).copied().unwrap_or(0);
                        for _ in have..self.size {
                            picks.push((s.key.clone(), s.template.clone()));
                        }
                    }
                    for (key, _) in &picks {
                        *inner.making.entry(key.clone()).or_default() += 1;
                    }
                    picks
                }
            };
            for (key, mut spec) in wanted {
                spec.env_id = new_env_id();
                tokio::spawn(self.clone().make(key, spec));
            }
            let pause = self
                .inner()
                .paused_until
                .map(|t| t.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(pause.unwrap_or(Duration::from_secs(30)).max(Duration::from_millis(10))) => {}
            }
        }
    }

    /// Makes one shell of `key` and puts it in the pool (or removes it again).
    async fn make(self: Arc<Shells>, key: String, spec: PodSpec) {
        let made = self.rt.make_shell(&spec, &self.owner).await;
        let keep_it = {
            let mut inner = self.inner();
            match &made {
                Ok(()) => {
                    inner.backoff = Duration::ZERO;
                    inner.paused_until = None;
                }
                Err(_) => {
                    inner.backoff = (inner.backoff * 2).clamp(Duration::from_secs(1), BACKOFF_MAX);
                    inner.paused_until = Some(Instant::now() + inner.backoff);
                }
            }
            if made.is_ok() && !inner.closed {
                inner.ready.push(Ready {
                    key: key.clone(),
                    env: spec.env_id.clone(),
                    made: Instant::now(),
                });
                true
            } else {
                false
            }
        };
        if let Err(error) = &made {
            tracing::warn!(env = %spec.env_id, %error, "making a warm pod shell failed");
        }
        if !keep_it {
            self.discard(&spec.env_id).await;
        }
        // counted as being made until it is in the pool or gone (shutdown waits for that)
        if let Some(n) = self.inner().making.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        self.wake.notify_one();
    }
}

impl Runtime {
    /// Makes the shell of `spec`: the marker volume that says it is unclaimed (and whose),
    /// then its sources volume, its network and its infra container, started.
    pub async fn make_shell(&self, spec: &PodSpec, owner: &str) -> Result<()> {
        let env = spec.env_id.as_str();
        // the marker first: a shell cut short (a killed agent) is found by it too
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(marker_volume(env)),
                labels: Some({
                    let mut l = labels(env, ROLE_SHELL, None);
                    l.insert(LABEL_SHELL_OWNER.into(), owner.to_string());
                    l
                }),
                ..Default::default()
            })
            .await
            .map_err(Self::err(env, "create the shell's marker volume"))?;
        let mut created = Vec::new();
        let sources = super::sources_volume(env);
        let (volume, network) = tokio::join!(
            self.ensure_volume(env, &sources, "sources", None, false, &mut created),
            crate::env_net::ensure(&self.docker, env, &self.network)
        );
        volume?;
        let network = network?;
        let body = infra_body(spec, network.as_deref());
        let id = self
            .docker
            .create_container(
                Some(bollard::query_parameters::CreateContainerOptions {
                    name: Some(super::infra_name(env)),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(Self::err(env, "create infra container"))?
            .id;
        self.docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(Self::err(env, "start infra container"))?;
        Ok(())
    }

    /// Takes `env`'s shell, if it has one: removes its marker (a create does this first).
    /// Whether there was one (then its sources volume is empty: nothing wrote to it).
    pub(super) async fn take_shell(&self, env: &str) -> bool {
        self.docker
            .remove_volume(
                &marker_volume(env),
                Some(RemoveVolumeOptions { force: true }),
            )
            .await
            .is_ok()
    }
}

/// Removes every ready shell on the engine whose marker is at least `min_age` old (an agent
/// that is gone) among those `consider` accepts (tests limit it to their own). Returns how many.
pub async fn remove_orphans_where(
    rt: &Runtime,
    min_age: Duration,
    consider: impl Fn(&str) -> bool,
) -> Result<usize> {
    remove_stale(rt, min_age, None, consider).await
}

/// [`remove_orphans_where`], and also the shells of owner token `mine` whatever their age.
async fn remove_stale(
    rt: &Runtime,
    min_age: Duration,
    mine: Option<&str>,
    consider: impl Fn(&str) -> bool,
) -> Result<usize> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_ROLE}={ROLE_SHELL}")],
    )]);
    let list = rt
        .docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(Runtime::err("*", "list warm pod shells"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut removed = 0;
    for v in list.volumes.into_iter().flatten() {
        let Some(env) = v.labels.get(LABEL_ENV).cloned() else {
            continue;
        };
        if !consider(&env) {
            continue;
        }
        let made = v
            .created_at
            .as_deref()
            .and_then(crate::job_sandbox::rfc3339_secs)
            .unwrap_or(now);
        let own = mine.is_some() && v.labels.get(LABEL_SHELL_OWNER).map(String::as_str) == mine;
        if !own && now.saturating_sub(made) < min_age.as_secs() {
            continue;
        }
        if let Err(error) = rt.delete(&env).await {
            tracing::warn!(env, %error, "removing an orphaned warm pod shell failed");
            continue;
        }
        removed += 1;
    }
    Ok(removed)
}
