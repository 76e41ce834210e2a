//! The HTTP side of operations: the request-metrics middleware, `GET /metrics`, and the probes
//! `GET /healthz` and `GET /readyz`.
//!
//! Who may call them:
//! - `/healthz` and `/readyz` answer anyone: they say only "ok" or which dependency is missing
//!   (no names, versions or counts), which load balancers and systemd/Kubernetes probes need
//!   without a credential.
//! - `/metrics` on the main listener needs an administrator's token (any scope), like the other
//!   admin routes: the series name routes, states and volumes, which are not public.
//! - `metrics_listen` (config; off by default) opens a second listener that serves only
//!   `/metrics`, `/healthz` and `/readyz`, without credentials, for a scraper on a private
//!   address. Binding it to a public address exposes the metrics: that is the operator's choice.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

/// Content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Route label of requests no route matched (the web UI's files and 404s).
const UNMATCHED: &str = "unmatched";

/// Middleware: counts every request by method, matched route (the path template, never the raw
/// URL, so ids do not explode the series) and status, with its latency.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = match *request.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::HEAD
        | Method::OPTIONS => request.method().as_str().to_string(),
        _ => "other".to_string(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics()
        .encode(state.store(), state.envs().has_agent())
        .await?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}

/// `GET /healthz`: the process is alive and serving HTTP.
pub async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /readyz`: 200 when the store answers and at least one agent is reachable (the embedded
/// agent connected to its Docker engine, or a registered agent seen in the last minute); 503
/// with the missing part otherwise.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = tokio::time::timeout(std::time::Duration::from_secs(5), state.store().ping())
        .await
        .is_ok_and(|r| r.is_ok());
    if !store_ok {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store unreachable\n",
        )
            .into_response();
    }
    if state.envs().has_agent() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let since = crate::store::now_secs() - super::AGENT_ACTIVE_SECS;
    match state.store().active_agents(since).await {
        Ok(n) if n > 0 => (StatusCode::OK, "ready\n").into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no agent reachable\n",
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: store unreachable\n",
        )
            .into_response(),
    }
}

/// The router of the separate metrics listener (`metrics_listen`): no credentials.
pub fn listener_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}
