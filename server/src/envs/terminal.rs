//! Interactive terminals over WebSocket.

use axum::extract::State;

use crate::extract::Query;
use axum::response::Response;
use axum::Extension;
use cove_api::EnvState;
use serde::Deserialize;

use super::terminal_sessions::{marked_command, valid_id};
use super::*;
use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
    /// A command to run instead of a login shell (JSON array of strings).
    #[serde(default)]
    pub cmd: Option<String>,
    /// A reconnecting session's id, chosen by the client (16–64 of `A-Z a-z 0-9 - _`): the
    /// session outlives a dropped socket for a grace period and a new socket with the same
    /// id takes it over (docs/ui.md "Reconnecting terminals").
    #[serde(default)]
    pub reconnect: Option<String>,
    /// With `reconnect`: the byte offset of the output the client has already shown; the
    /// replay starts there when the server still has it.
    #[serde(default)]
    pub since: Option<u64>,
}

/// Control messages on a terminal WebSocket (text frames); binary frames are
/// the terminal's bytes in both directions.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalControl {
    /// Client → server: the terminal's new size.
    Resize { cols: u16, rows: u16 },
    /// Server → client: the command ended.
    Exit { code: i64 },
    /// Server → client, first frame of a reconnecting terminal: whether the session existed
    /// before (`resumed`) and the byte offset of the output that follows.
    Session {
        id: String,
        resumed: bool,
        offset: u64,
    },
    /// Client → server: end a reconnecting session now (not kept for the grace period).
    Close,
}

/// True when a browser's `Origin` is this server (or absent, for non-browser clients).
pub fn origin_allowed(headers: &axum::http::HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let strip = |u: &str| {
        u.split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            .unwrap_or_default()
    };
    let o = strip(origin);
    !o.is_empty() && (o == host || o == strip(public_url))
}

/// `GET /api/v1/environments/{env}/terminal` (WebSocket): an interactive
/// terminal in the main container (or `component`), starting in
/// PROJECT_SOURCE. A foreign `Origin` is refused. The socket is closed (1008, with the
/// reason) once the caller's authorization no longer holds ([`crate::live_auth`]).
pub async fn terminal(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Extension(principal): Extension<crate::auth::Principal>,
    Query(q): Query<TerminalQuery>,
    headers: axum::http::HeaderMap,
    ws: crate::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !origin_allowed(&headers, state.public_url()) {
        return Err(ApiError::Forbidden(
            "cross-origin terminal connections are refused".into(),
        ));
    }
    if row.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; start it first",
            row.name,
            row.state.as_str()
        )));
    }
    let plan = plan_of(&row)?;
    let component = match q.component {
        Some(c) if plan.container(&c).is_some() => c,
        Some(c) => return Err(ApiError::NotFound(format!("component {c}"))),
        None => main_component(&plan)?,
    };
    let cmd: Vec<String> = match &q.cmd {
        Some(json) => serde_json::from_str(json).map_err(|_| ApiError::BadRequest("cmd must be a JSON array of strings".into()))?,
        None => vec![
            "/bin/sh".into(),
            "-c".into(),
            "cd \"${PROJECT_SOURCE:-${PROJECTS_ROOT:-/}}\" 2>/dev/null; if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi".into(),
        ],
    };
    let agent = state.envs().agent_for(&row)?;
    let (cols, rows) = (q.cols.unwrap_or(80), q.rows.unwrap_or(24));
    let revoked = grant.revoked(state.clone());
    if let Some(id) = &q.reconnect {
        if !valid_id(id) {
            return Err(ApiError::BadRequest(
                "reconnect must be 16 to 64 characters of A-Z a-z 0-9 - _".into(),
            ));
        }
        let sessions = state.envs().terminals().clone();
        let user = principal.user.id;
        let (session, resumed) = match sessions.find(id, user, &row.id)? {
            Some(session) => {
                if q.cols.is_some() || q.rows.is_some() {
                    session.resize(cols, rows).await;
                }
                (session, true)
            }
            None => {
                sessions.check_room(id, user)?;
                let marker = hex::encode(rand::random::<[u8; 16]>());
                let term = agent
                    .open_terminal(
                        &row.id,
                        &component,
                        marked_command(&marker, cmd),
                        cols,
                        rows,
                    )
                    .await
                    .map_err(ApiError::Conflict)?;
                let session =
                    sessions.start(&state, id, user, &row.id, &component, marker, term)?;
                (session, false)
            }
        };
        state.store().touch_env(&row.id, now_ms()).await?;
        let since = q.since;
        return Ok(ws.on_upgrade(move |socket| async move {
            sessions
                .attach(state, session, socket, since, resumed, revoked)
                .await
        }));
    }
    let term = agent
        .open_terminal(&row.id, &component, cmd, cols, rows)
        .await
        .map_err(ApiError::Conflict)?;
    state.store().touch_env(&row.id, now_ms()).await?;
    let env_id = row.id.clone();
    Ok(ws.on_upgrade(move |socket| pump_terminal(state, env_id, socket, term, revoked)))
}

/// WebSocket close code for a terminal whose caller lost access (policy violation).
pub const CLOSE_ACCESS_WITHDRAWN: u16 = 1008;

pub(super) async fn pump_terminal(
    state: AppState,
    env_id: String,
    socket: axum::extract::ws::WebSocket,
    term: cove_agent::worker::Terminal,
    revoked: impl std::future::Future<Output = String> + Send + 'static,
) {
    use axum::extract::ws::{CloseFrame, Message};
    use cove_api::agent::{TermInput, TermOutput};
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let cove_agent::worker::Terminal { input, mut output } = term;
    let (withdrawn_tx, mut withdrawn) = tokio::sync::oneshot::channel::<String>();
    let mut withdrawn_tx = Some(withdrawn_tx);
    let to_client = tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                out = output.recv() => match out {
                    Some(out) => out,
                    None => return,
                },
                reason = &mut withdrawn => {
                    if let Ok(reason) = reason {
                        // a close reason has at most 123 bytes
                        let mut end = reason.len().min(123);
                        while !reason.is_char_boundary(end) {
                            end -= 1;
                        }
                        let frame = CloseFrame {
                            code: CLOSE_ACCESS_WITHDRAWN,
                            reason: reason[..end].into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        let _ = sink.close().await;
                    }
                    return;
                }
            };
            let msg = match out {
                TermOutput::Data { bytes } => Message::Binary(bytes.into()),
                TermOutput::Exit { code } => {
                    let text =
                        serde_json::to_string(&TerminalControl::Exit { code }).unwrap_or_default();
                    let _ = sink.send(Message::Text(text.into())).await;
                    let _ = sink.close().await;
                    return;
                }
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut last_touch = now_ms();
    let revoked = revoked;
    tokio::pin!(revoked);
    loop {
        let msg = tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(msg)) => msg,
                _ => break,
            },
            reason = &mut revoked => {
                let _ = withdrawn_tx.take().map(|tx| tx.send(reason));
                break;
            }
        };
        let input_msg = match msg {
            Message::Binary(b) => TermInput::Data { bytes: b.to_vec() },
            Message::Text(t) => match serde_json::from_str::<TerminalControl>(&t) {
                Ok(TerminalControl::Resize { cols, rows }) => TermInput::Resize { cols, rows },
                _ => TermInput::Data {
                    bytes: t.as_bytes().to_vec(),
                },
            },
            Message::Close(_) => break,
            _ => continue,
        };
        if input.send(input_msg).await.is_err() {
            break;
        }
        // terminal input is activity (for the idle stop); record it at most every few seconds
        let now = now_ms();
        if now - last_touch > 5_000 {
            last_touch = now;
            let _ = state.store().touch_env(&env_id, now).await;
        }
    }
    drop(input);
    if withdrawn_tx.is_none() {
        // access ended: the close frame goes out within a few seconds, unless the client
        // stopped reading (the sender is then stuck), in which case the socket is dropped
        let mut to_client = to_client;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut to_client)
            .await
            .is_err()
        {
            to_client.abort();
        }
    } else {
        let _ = to_client.await;
    }
}
