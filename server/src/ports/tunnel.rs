//! `GET /api/v1/environments/{env}/ports/{port}/tunnel`: a WebSocket whose binary frames
//! carry one TCP connection to `port` in the environment (`cove env port-forward`), opened
//! with [`super::connect`]. Same callers as the terminal and SSH (the environment's creator
//! or an administrator). Bounded: [`MAX_TUNNELS_PER_USER`] open at once per user, closed
//! after [`IDLE_TIMEOUT`] without a byte either way, and within 5 s of its caller losing
//! access ([`crate::live_auth`]). An open tunnel is activity for the idle
//! stop (when it opens, every [`TOUCH_EVERY`] while it carries bytes, and when it closes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use cove_api::EnvState;

use super::ConnectError;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// Open tunnels one user may have at once (across their environments).
pub const MAX_TUNNELS_PER_USER: usize = 64;
/// A tunnel without a byte in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a busy tunnel records activity on its environment.
pub const TOUCH_EVERY: Duration = Duration::from_secs(30);
/// Largest WebSocket message accepted on a tunnel.
const MAX_FRAME: usize = 256 * 1024;

pub async fn port_tunnel(
    State(state): State<AppState>,
    Extension(env): Extension<EnvRow>,
    Extension(principal): Extension<Principal>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    crate::extract::Path((_env, port)): crate::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
    ws: crate::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !crate::envs::origin_allowed(&headers, state.public_url()) {
        return Err(ApiError::Forbidden(
            "cross-origin port tunnels are refused".into(),
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid port {port:?}: 1-65535")))?;
    if env.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}: start it first (cove env start {})",
            env.name,
            env.state.as_str(),
            env.name
        )));
    }
    let slot = state
        .tunnels()
        .acquire(principal.user.id, MAX_TUNNELS_PER_USER)
        .ok_or_else(|| {
            ApiError::TooMany(format!(
                "you have {MAX_TUNNELS_PER_USER} port tunnels open: close some first"
            ))
        })?;
    // connect before the upgrade, so a refusal is an HTTP answer the client can print
    let stream = super::connect(&state, &env.id, port)
        .await
        .map_err(|e| match e {
            ConnectError::NotRunning => ApiError::Conflict(e.to_string()),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    super::touch(&state, &env).await;
    let revoked = grant.revoked(state.clone());
    Ok(ws
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            tokio::select! {
                _ = bridge(&state, &env, socket, stream) => {}
                // the caller lost access (token revoked, session ended, role removed)
                _ = revoked => {}
            }
            super::touch(&state, &env).await;
            drop(slot);
        }))
}

/// Copies WebSocket binary frames to the stream and the stream's bytes to binary frames
/// until either side closes or the tunnel idles past [`IDLE_TIMEOUT`].
async fn bridge(
    state: &AppState,
    env: &EnvRow,
    socket: axum::extract::ws::WebSocket,
    stream: Box<dyn super::PortStream>,
) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (mut sink, mut source) = socket.split();
    let busy = Arc::new(AtomicBool::new(false));
    let (busy_in, busy_out) = (busy.clone(), busy.clone());
    let to_client = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    busy_out.store(true, Ordering::Relaxed);
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let from_client = async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) => {
                    busy_in.store(true, Ordering::Relaxed);
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let watchdog = async {
        let mut idle = Duration::ZERO;
        loop {
            tokio::time::sleep(TOUCH_EVERY).await;
            if busy.swap(false, Ordering::Relaxed) {
                idle = Duration::ZERO;
                super::touch(state, env).await;
            } else {
                idle += TOUCH_EVERY;
                if idle >= IDLE_TIMEOUT {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(to_client, from_client) } => {}
        _ = watchdog => {}
    }
}
