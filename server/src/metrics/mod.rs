//! Operational metrics in the Prometheus text format (prometheus-client), served at `/metrics`.
//!
//! Two kinds of series:
//! - **events**, counted where they happen through one-line hooks: HTTP requests by matched
//!   route and status with latency ([`http::track`], a middleware over every route), environment
//!   operation durations (create/start/restart, from the request to the state the agent reports),
//!   lease expiries, git pushes (bytes and duration);
//! - **state**, read from the store at scrape time ([`Metrics::encode`]): environments, runs and
//!   jobs by state, the job queue depth, agents. Reading the store keeps the numbers true across
//!   restarts and replicas and keeps the state machines free of gauge bookkeeping.
//!
//! Who may read it: [`http`] (an admin's token on the main listener, or the separate
//! `metrics_listen` address without credentials). See docs/server.md "Metrics and health".

pub mod http;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cove_api::{EnvState, JobState, RunState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::store::{Store, StoreError};

/// Agents count as active when seen within this many seconds (they poll for leases).
pub const AGENT_ACTIVE_SECS: i64 = 60;
/// Most environment operations timed at once; beyond it the oldest are forgotten.
const MAX_PENDING_ENV_OPS: usize = 4096;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvOpLabels {
    op: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    kind: String,
}

/// An environment operation whose duration is measured until the agent reports its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvOp {
    Create,
    Start,
    Restart,
}

impl EnvOp {
    fn as_str(self) -> &'static str {
        match self {
            EnvOp::Create => "create",
            EnvOp::Start => "start",
            EnvOp::Restart => "restart",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn env_op_histogram() -> Histogram {
    // 50 ms … ~27 min (image pulls, clones, postStart).
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The server's metrics; one per server, shared by all handlers.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_seconds: HistogramFamily<RouteLabels>,
    env_op_seconds: HistogramFamily<EnvOpLabels>,
    pending_env_ops: Mutex<HashMap<String, (EnvOp, Instant)>>,
    lease_expiries: Counter,
    pushes: Family<ResultLabels, Counter>,
    push_bytes: Histogram,
    push_seconds: Histogram,
    log_lines_dropped: Counter,
    retention_deleted_runs: Counter,
    notification_attempts: Family<ResultLabels, Counter>,
    environments: Family<StateLabels, Gauge>,
    runs: Family<StateLabels, Gauge>,
    jobs: Family<StateLabels, Gauge>,
    queue_depth: Gauge,
    agents: Family<AgentLabels, Gauge>,
    /// 1 while this replica leads (`crate::cluster`).
    leader: Gauge,
    /// One scrape refreshes and encodes at a time.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cove");
        let m = Metrics {
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            env_op_seconds: Family::new_with_constructor(env_op_histogram as fn() -> Histogram),
            pending_env_ops: Mutex::new(HashMap::new()),
            lease_expiries: Counter::default(),
            pushes: Family::default(),
            push_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 12)),
            push_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            log_lines_dropped: Counter::default(),
            retention_deleted_runs: Counter::default(),
            notification_attempts: Family::default(),
            environments: Family::default(),
            runs: Family::default(),
            jobs: Family::default(),
            queue_depth: Gauge::default(),
            agents: Family::default(),
            leader: Gauge::default(),
            scrape: tokio::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, matched route and status",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency until the response head, by method and matched route",
            Unit::Seconds,
            m.http_seconds.clone(),
        );
        registry.register_with_unit(
            "environment_operation_duration",
            "Environment create/start/restart: from the request to the state the agent reports",
            Unit::Seconds,
            m.env_op_seconds.clone(),
        );
        registry.register(
            "lease_expiries",
            "Job leases that expired because the agent stopped heartbeating",
            m.lease_expiries.clone(),
        );
        registry.register(
            "git_pushes",
            "git pushes received, by result (ok, refused, deadline)",
            m.pushes.clone(),
        );
        registry.register_with_unit(
            "git_push_size",
            "Bytes of a push's request body (after gzip decoding)",
            Unit::Bytes,
            m.push_bytes.clone(),
        );
        registry.register_with_unit(
            "git_push_duration",
            "Time a push held its repository's lock (receive-pack and bookkeeping)",
            Unit::Seconds,
            m.push_seconds.clone(),
        );
        registry.register(
            "job_log_lines_dropped",
            "Job log lines dropped past the per-job log cap",
            m.log_lines_dropped.clone(),
        );
        registry.register(
            "retention_deleted_runs",
            "Runs deleted (with their logs and artifacts) by the retention policy",
            m.retention_deleted_runs.clone(),
        );
        registry.register(
            "notification_attempts",
            "Notification delivery attempts, by result (delivered, retry, failed: the last attempt failed)",
            m.notification_attempts.clone(),
        );
        registry.register(
            "environments",
            "Environments by state (read from the store at scrape time)",
            m.environments.clone(),
        );
        registry.register(
            "runs",
            "Workflow runs by state (read from the store at scrape time)",
            m.runs.clone(),
        );
        registry.register(
            "jobs",
            "Jobs by state (read from the store at scrape time)",
            m.jobs.clone(),
        );
        registry.register(
            "job_queue_depth",
            "Jobs waiting (pending: for dependencies, their turn or an agent)",
            m.queue_depth.clone(),
        );
        registry.register(
            "agents",
            "Agents: registered (not revoked), active (seen in the last minute), embedded (0/1)",
            m.agents.clone(),
        );
        registry.register(
            "replica_leader",
            "1 while this replica is the leader that runs the singleton work (schedules, reapers, retention, notification delivery); always 1 with SQLite",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Whether this replica leads now (`crate::cluster::leader`).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Counts one answered HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An environment operation was requested; its duration runs until [`Self::env_reported`].
    pub fn env_op_begun(&self, env_id: &str, op: EnvOp) {
        let mut pending = lock(&self.pending_env_ops);
        if pending.len() >= MAX_PENDING_ENV_OPS {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(id, _)| id.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(env_id.to_string(), (op, Instant::now()));
    }

    /// The agent reported `new` for an environment: a pending operation ends at Running or Failed.
    pub fn env_reported(&self, env_id: &str, new: EnvState) {
        let result = match new {
            EnvState::Running => "running",
            EnvState::Failed => "failed",
            EnvState::Deleting => {
                lock(&self.pending_env_ops).remove(env_id);
                return;
            }
            _ => return,
        };
        let Some((op, at)) = lock(&self.pending_env_ops).remove(env_id) else {
            return;
        };
        self.env_op_seconds
            .get_or_create(&EnvOpLabels {
                op: op.as_str().to_string(),
                result: result.to_string(),
            })
            .observe(at.elapsed().as_secs_f64());
    }

    /// A job lease expired (agent lost).
    pub fn lease_expired(&self) {
        self.lease_expiries.inc();
    }

    /// A push finished: `bytes` of request body (None when it failed before the end), `held`
    /// the time it held the repository lock, `result` ok / refused / deadline.
    pub fn push_finished(&self, bytes: Option<u64>, held: Duration, result: &str) {
        self.pushes
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        if let Some(bytes) = bytes {
            self.push_bytes.observe(bytes as f64);
        }
        self.push_seconds.observe(held.as_secs_f64());
    }

    /// Log lines dropped past a job's log cap.
    pub fn log_lines_dropped(&self, lines: u64) {
        self.log_lines_dropped.inc_by(lines);
    }

    /// Runs deleted by the retention policy.
    pub fn retention_deleted(&self, runs: u64) {
        self.retention_deleted_runs.inc_by(runs);
    }

    /// A notification delivery attempt ended: delivered, retry or failed.
    pub fn notification_attempt(&self, result: &str) {
        self.notification_attempts
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Reads the state series from the store and encodes everything in the text format.
    pub async fn encode(&self, store: &Store, embedded_agent: bool) -> Result<String, StoreError> {
        let _one = self.scrape.lock().await;
        let now = crate::store::now_secs();
        let counts = store.state_counts(now - AGENT_ACTIVE_SECS).await?;
        fill(
            &self.environments,
            ENV_STATES.iter().map(|s| s.as_str()),
            &counts.environments,
        );
        fill(
            &self.runs,
            RunState::ALL.iter().map(|s| s.as_str()),
            &counts.runs,
        );
        fill(
            &self.jobs,
            JobState::ALL.iter().map(|s| s.as_str()),
            &counts.jobs,
        );
        let pending = counts
            .jobs
            .iter()
            .find(|(s, _)| s == JobState::Pending.as_str())
            .map_or(0, |(_, n)| *n);
        self.queue_depth.set(pending);
        for (kind, n) in [
            ("registered", counts.agents_registered),
            ("active", counts.agents_active),
            ("embedded", i64::from(embedded_agent)),
        ] {
            self.agents
                .get_or_create(&AgentLabels {
                    kind: kind.to_string(),
                })
                .set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| StoreError::Corrupt(format!("encoding metrics: {e}")))?;
        Ok(out)
    }
}

const ENV_STATES: [EnvState; 7] = [
    EnvState::Creating,
    EnvState::Starting,
    EnvState::Running,
    EnvState::Stopping,
    EnvState::Stopped,
    EnvState::Failed,
    EnvState::Deleting,
];

/// Sets every known state (0 when absent) and any other state the store holds.
fn fill<'a>(
    family: &Family<StateLabels, Gauge>,
    known: impl Iterator<Item = &'a str>,
    counts: &[(String, i64)],
) {
    family.clear();
    for state in known {
        family
            .get_or_create(&StateLabels {
                state: state.to_string(),
            })
            .set(0);
    }
    for (state, n) in counts {
        family
            .get_or_create(&StateLabels {
                state: state.clone(),
            })
            .set(*n);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
