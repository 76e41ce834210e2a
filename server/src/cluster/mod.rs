//! Several `cove-server` replicas on one PostgreSQL database and one shared data directory
//! (issue 20 part 3, docs/replicas.md).
//!
//! - **Leadership** ([`leader`]): one replica at a time holds a PostgreSQL advisory lock on a
//!   dedicated session; it alone runs the singleton work started through [`singleton`] (the
//!   push consumer, the scheduler of SCHEDULE triggers, the lease reaper and approval gates,
//!   retention, notification delivery, the devfile watcher and idle reaper of environments).
//!   A replica that loses its session (process killed, connection lost) loses the lock with
//!   it; the others try every [`leader::CAMPAIGN_EVERY`] and one takes over. With SQLite
//!   there is one process and it is always the leader.
//! - **Wake-ups** ([`bus`]): what one replica stores and another waits for (a job became ready,
//!   log lines arrived, a push was stored, a notification was queued) is announced with
//!   PostgreSQL NOTIFY; every replica LISTENs and wakes its own waiters. The periodic polls
//!   stay as the safety net.
//! - **Repository locks** ([`lock_repo`]): pushes, merges, edits, mirror fetches and deletion
//!   of one repository are serialized across replicas by a session-level advisory lock, on top
//!   of the in-process lock.
//!
//! Work that is safe on every replica stays on every replica: HTTP, git, agents' leases (a
//! conditional update on (state, attempt)), log ingestion, SSH, terminals.

pub mod bus;
pub mod leader;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

use crate::store::{cluster::RepoLockGuard, StoreError};
use crate::AppState;

/// What a wake-up between replicas is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wake {
    /// A job may be ready, or a job's state or logs moved (lease pollers, log followers,
    /// SSE snapshots).
    Runs,
    /// A push event was stored (the leader's push consumer).
    Push,
    /// A notification delivery was queued (the leader's delivery worker).
    Notify,
}

impl Wake {
    pub fn as_str(self) -> &'static str {
        match self {
            Wake::Runs => "runs",
            Wake::Push => "push",
            Wake::Notify => "notify",
        }
    }

    pub fn parse(text: &str) -> Option<Wake> {
        match text {
            "runs" => Some(Wake::Runs),
            "push" => Some(Wake::Push),
            "notify" => Some(Wake::Notify),
            _ => None,
        }
    }
}

/// Sends wake-ups to the other replicas (a no-op with one process).
#[derive(Clone, Default)]
pub struct Forward(Option<mpsc::UnboundedSender<Wake>>);

impl Forward {
    pub fn send(&self, wake: Wake) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(wake);
        }
    }
}

/// This replica's view of the cluster.
pub struct Cluster {
    /// Random per process: a replica skips its own wake-ups.
    replica: u64,
    replicated: bool,
    leader: watch::Sender<bool>,
    forward: Forward,
    /// The outbound wake-ups, taken by [`bus::spawn`].
    outbound: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Wake>>>,
    /// Woken when another replica stored a push event.
    pub(crate) pushed: Notify,
}

impl Cluster {
    /// `replicated`: the store is PostgreSQL, so other replicas may share it.
    pub fn new(replicated: bool) -> Cluster {
        let (forward, outbound) = if replicated {
            let (tx, rx) = mpsc::unbounded_channel();
            (Forward(Some(tx)), Some(rx))
        } else {
            (Forward(None), None)
        };
        Cluster {
            replica: rand::random(),
            replicated,
            // One process on SQLite leads from the start; on PostgreSQL the lock decides.
            leader: watch::channel(!replicated).0,
            forward,
            outbound: std::sync::Mutex::new(outbound),
            pushed: Notify::new(),
        }
    }

    /// Whether other replicas may share the store (PostgreSQL).
    pub fn replicated(&self) -> bool {
        self.replicated
    }

    /// Whether this replica runs the singleton work now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Leadership changes.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.send_replace(leader);
    }

    /// The sender of wake-ups to other replicas.
    pub fn forward(&self) -> Forward {
        self.forward.clone()
    }

    /// Tells the other replicas about `wake`.
    pub fn announce(&self, wake: Wake) {
        self.forward.send(wake);
    }
}

/// Runs `task` while this replica is the leader: started when it becomes leader, dropped
/// (cancelled at its next await) when it stops being leader, started again when it leads
/// again. Each singleton's work must also be idempotent against a double run at a handover
/// (the old leader's last pass and the new one's first): every one of them claims its rows
/// with conditional updates or unique keys.
pub fn singleton<F, Fut>(state: &AppState, name: &'static str, task: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let state = state.clone();
    tokio::spawn(async move {
        let mut leader = state.cluster().watch();
        loop {
            if leader.wait_for(|l| *l).await.is_err() {
                return;
            }
            if state.cluster().replicated() {
                tracing::info!(task = name, "leader: starting");
            }
            let run = task(state.clone());
            tokio::select! {
                () = run => return,
                lost = leader.wait_for(|l| !*l) => {
                    if lost.is_err() {
                        return;
                    }
                    tracing::warn!(task = name, "no longer the leader: stopped");
                }
            }
        }
    });
}

/// A repository's lock, held in this process and across replicas until dropped.
pub struct RepoGuard {
    _across: Option<RepoLockGuard>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// Waits for repository `repo_id`'s lock: the in-process one first (so waiters in one
/// process hold no database session), then the replicas' one (PostgreSQL).
pub async fn lock_repo(state: &AppState, repo_id: i64) -> Result<RepoGuard, StoreError> {
    let local: Arc<tokio::sync::Mutex<()>> = state.repo_lock(repo_id);
    let local = local.lock_owned().await;
    let across = state.store().lock_repo_across(repo_id).await?;
    Ok(RepoGuard {
        _across: across,
        _local: local,
    })
}
