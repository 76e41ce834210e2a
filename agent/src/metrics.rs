//! The standalone agent's own metrics (prometheus-client, text format): jobs started, finished
//! by outcome with their durations, jobs running, gateway egress denials. Served on
//! `metrics_listen` of `agent.yaml` (off by default) at `GET /metrics`, with `GET /healthz`;
//! no credentials, so bind it to a loopback or private address (docs/private-subnet.md).
//!
//! The counters are process-wide ([`global`]) so the places that count need no extra plumbing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use cove_api::JobOutcome;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

type Durations = Family<OutcomeLabels, Histogram, fn() -> Histogram>;

fn job_histogram() -> Histogram {
    // 0.1 s … ~55 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// The agent's metrics.
pub struct AgentMetrics {
    registry: Registry,
    started: Counter,
    finished: Family<OutcomeLabels, Counter>,
    durations: Durations,
    running: Gauge,
    gateway_denials: Counter,
}

/// The process-wide metrics.
pub fn global() -> &'static AgentMetrics {
    static METRICS: OnceLock<AgentMetrics> = OnceLock::new();
    METRICS.get_or_init(AgentMetrics::new)
}

fn outcome_str(outcome: JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Succeeded => "succeeded",
        JobOutcome::Failed => "failed",
        JobOutcome::Cancelled => "cancelled",
        JobOutcome::TimedOut => "timed_out",
        JobOutcome::Error => "error",
    }
}

impl AgentMetrics {
    fn new() -> AgentMetrics {
        let mut registry = Registry::with_prefix("cove_agent");
        let m = AgentMetrics {
            registry: Registry::default(),
            started: Counter::default(),
            finished: Family::default(),
            durations: Family::new_with_constructor(job_histogram as fn() -> Histogram),
            running: Gauge::default(),
            gateway_denials: Counter::default(),
        };
        registry.register("jobs_started", "Jobs leased and started", m.started.clone());
        registry.register(
            "jobs_finished",
            "Jobs finished and reported, by outcome",
            m.finished.clone(),
        );
        registry.register_with_unit(
            "job_duration",
            "Job duration from lease to report, by outcome",
            Unit::Seconds,
            m.durations.clone(),
        );
        registry.register("jobs_running", "Jobs running now", m.running.clone());
        registry.register(
            "gateway_denials",
            "Requests the job gateway refused (destination not on the allow-list)",
            m.gateway_denials.clone(),
        );
        AgentMetrics { registry, ..m }
    }

    /// A leased job starts.
    pub fn job_started(&self) {
        self.started.inc();
        self.running.inc();
    }

    /// A job ended with `outcome` after `elapsed` (`None`: its attempt went stale, no report).
    pub fn job_ended(&self, outcome: Option<JobOutcome>, elapsed: Duration) {
        self.running.dec();
        let label = OutcomeLabels {
            outcome: outcome.map_or("stale", outcome_str).to_string(),
        };
        self.finished.get_or_create(&label).inc();
        self.durations
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// The gateway refused a destination.
    pub fn gateway_denied(&self) {
        self.gateway_denials.inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

async fn answer(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            global().encode(),
        ),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, stop: CancellationToken) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer): (_, SocketAddr) = match accepted {
                    Ok(x) => x,
                    Err(error) => {
                        tracing::warn!(%error, "metrics accept failed");
                        continue;
                    }
                };
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(|req| async move {
                        Ok::<_, Infallible>(answer(req).await)
                    });
                    if let Err(error) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(%peer, %error, "metrics connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
