//! Server-sent events for the web UI: a stream of snapshots that are sent whenever they change.
//! The owners of each concern (runs, environments) decide what a snapshot is; this module only
//! knows how to watch and send it.
//!
//! Every stream ends within [`crate::live_auth::RECHECK`] (plus a store round trip) once its
//! caller's authorization no longer holds — token revoked, logged out, session expired,
//! removed from the repository: a last `error` event says why.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::live_auth::{self, Grant};
use crate::AppState;

/// Longest wait between two loads when nothing woke the watcher.
pub const POLL: Duration = Duration::from_secs(1);

/// A stream of SSE events, ready to be answered. It ends when the server shuts down, and
/// with an `error` event naming the reason when `grant` no longer holds.
pub fn response(
    state: &AppState,
    grant: Grant,
    stream: BoxStream<'static, Result<Event, Infallible>>,
) -> Response {
    let stream = live_auth::until_revoked(stream, grant.revoked(state.clone()), |reason| {
        Ok(Event::default().event("error").data(reason))
    })
    .take_until(state.closing().clone().cancelled_owned());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Tell reverse proxies not to buffer the stream.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

enum Phase {
    Watching,
    Ending,
    Done,
}

/// Sends `load()`'s snapshot as event `name` now and whenever it changes (checked when the
/// workflow engine reports progress, at least every [`POLL`]). When a snapshot says it is
/// final (`true`), it is sent, followed by an `end` event, and the stream ends. A failing load
/// sends an `error` event with the message and ends the stream; so does the end of `grant`.
pub fn snapshots<F, Fut>(state: AppState, grant: Grant, name: &'static str, load: F) -> Response
where
    F: Fn(AppState) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(serde_json::Value, bool), ApiError>> + Send + 'static,
{
    struct Watch<F> {
        state: AppState,
        load: F,
        last: Option<String>,
        phase: Phase,
    }
    let closing = state.clone();
    let start = Watch {
        state,
        load,
        last: None,
        phase: Phase::Watching,
    };
    let stream = futures_util::stream::unfold(start, move |mut w| async move {
        match w.phase {
            Phase::Done => return None,
            Phase::Ending => {
                w.phase = Phase::Done;
                return Some((Ok(Event::default().event("end").data("{}")), w));
            }
            Phase::Watching => {}
        }
        loop {
            let progress = w.state.clone();
            let notified = progress.runs().progress().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match (w.load)(w.state.clone()).await {
                Ok((value, done)) => {
                    let text = value.to_string();
                    let changed = w.last.as_deref() != Some(text.as_str());
                    if done {
                        w.phase = Phase::Ending;
                    }
                    if changed {
                        w.last = Some(text.clone());
                        return Some((Ok(Event::default().event(name).data(text)), w));
                    }
                    if done {
                        w.phase = Phase::Done;
                        return Some((Ok(Event::default().event("end").data("{}")), w));
                    }
                }
                Err(err) => {
                    w.phase = Phase::Done;
                    return Some((Ok(Event::default().event("error").data(err.to_string())), w));
                }
            }
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    });
    response(&closing, grant, stream.boxed())
}
