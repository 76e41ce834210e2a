//! `GET /api/v1/environments/{env}/ssh`: the SSH protocol over an authenticated WebSocket
//! (binary frames carry the byte stream both ways), bridged in-process to the SSH server.
//! `cove env ssh --stdio` uses it as OpenSSH's `ProxyCommand`, so SSH works wherever the
//! HTTP API does. The SSH login inside still needs a registered key of a user who may open
//! the environment; the route itself admits the same callers as the terminal.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// Largest WebSocket message accepted on the bridge.
const MAX_FRAME: usize = 256 * 1024;

pub async fn ssh_websocket(
    State(state): State<AppState>,
    Extension(_row): Extension<EnvRow>,
    Extension(client): Extension<crate::auth::ClientAddr>,
    headers: axum::http::HeaderMap,
    ws: crate::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !crate::envs::origin_allowed(&headers, state.public_url()) {
        return Err(ApiError::Forbidden(
            "cross-origin SSH connections are refused".into(),
        ));
    }
    if state.ssh().is_none() {
        return Err(ApiError::Unavailable(
            "SSH is not enabled on this server: set [ssh] listen in its configuration".into(),
        ));
    }
    // the client's address, for the audit record of the SSH login inside (port unknown)
    let peer = Some(std::net::SocketAddr::new(client.0, 0));
    Ok(ws
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| bridge(state, socket, peer)))
}

async fn bridge(
    state: AppState,
    socket: axum::extract::ws::WebSocket,
    peer: Option<std::net::SocketAddr>,
) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(super::serve_stream(state, theirs, peer));
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut stream) = socket.split();
    let to_client = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
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
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(to_client, from_client);
}
