//! The agent's end of the link.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cove_api::agent::link::{decode_data, DataKind, LinkFrame, StreamOpen, MAX_MESSAGE_BYTES};
use cove_api::agent::{EnvReport, TermInput, TermOutput, AGENT_PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::mux::{
    forward_inbound, send_data, Inbound, Out, OutTx, StreamParts, Streams, OUT_QUEUE,
};
use super::{IDLE_LIMIT, PING_EVERY};
use crate::worker::{AgentHandle, ExecInput, ExecOutput};

/// Where to dial: the server's URL and the agent's token (never logged).
#[derive(Clone)]
pub struct LinkTarget {
    pub server: String,
    pub token: String,
}

impl std::fmt::Debug for LinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTarget")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Longest wait between two dials.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keeps a link to the server until `stop`: dials, serves `agent` over it, and dials again
/// with back-off (0.5 s doubling to 10 s; reset once a link was up) when it drops. Reports
/// made while no link is up wait in `reports` and go out on the next one. Returns `false`
/// when the server refused the token (401).
pub async fn run(
    target: LinkTarget,
    agent: AgentHandle,
    mut reports: mpsc::UnboundedReceiver<EnvReport>,
    stop: CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(500);
    loop {
        if stop.is_cancelled() {
            return true;
        }
        tracing::debug!(server = %target.server, "environment link: dialling");
        match dial(&target).await {
            Ok(ws) => {
                tracing::info!(server = %target.server, "environment link up");
                backoff = Duration::from_millis(500);
                serve(ws, &agent, &mut reports, &stop).await;
                tracing::warn!(server = %target.server, "environment link down");
            }
            Err(DialError::Refused) => {
                tracing::error!("the server refused the agent token on the environment link");
                return false;
            }
            Err(DialError::Other(e)) => {
                tracing::warn!(server = %target.server, error = %e, "environment link: dial failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return true,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum DialError {
    Refused,
    Other(String),
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

async fn dial(target: &LinkTarget) -> Result<Ws, DialError> {
    let other = |e: &dyn std::fmt::Display| DialError::Other(e.to_string());
    let client = crate::job_http::client::<Full<Bytes>>();
    let url = format!("{}/api/v1/agent/link", target.server.trim_end_matches('/'));
    let req = Request::get(&url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .header("authorization", format!("Bearer {}", target.token))
        .body(Full::new(Bytes::new()))
        .map_err(|e| other(&e))?;
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .map_err(|_| other(&"no answer within 15 s"))?
        .map_err(|e| other(&e))?;
    match resp.status() {
        StatusCode::SWITCHING_PROTOCOLS => {}
        StatusCode::UNAUTHORIZED => return Err(DialError::Refused),
        s => return Err(other(&format!("HTTP {s}"))),
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| other(&e))?;
    Ok(
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(ws_config()))
            .await,
    )
}

/// Serves one link until it drops or `stop`.
async fn serve(
    ws: Ws,
    agent: &AgentHandle,
    reports: &mut mpsc::UnboundedReceiver<EnvReport>,
    stop: &CancellationToken,
) {
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let streams = Arc::new(Streams::default());
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            let msg = tokio::select! {
                o = out_rx.recv() => match o {
                    Some(Out::Frame(f)) => match serde_json::to_string(&f) {
                        Ok(t) => Message::text(t),
                        Err(_) => continue,
                    },
                    Some(Out::Data(d)) => Message::binary(d),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Bytes::new()),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let _ = out
        .send(Out::Frame(LinkFrame::Hello {
            protocol: AGENT_PROTOCOL_VERSION,
        }))
        .await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            r = reports.recv() => {
                let Some(report) = r else { break };
                if out.send(Out::Frame(LinkFrame::Report { report })).await.is_err() {
                    break;
                }
            }
            m = tokio::time::timeout(IDLE_LIMIT, stream.next()) => {
                let msg = match m {
                    Ok(Some(Ok(msg))) => msg,
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "environment link: read failed");
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!("environment link: nothing from the server for {IDLE_LIMIT:?}");
                        break;
                    }
                };
                match msg {
                    Message::Text(t) => match serde_json::from_str::<LinkFrame>(&t) {
                        Ok(f) => on_frame(f, agent, &out, &streams).await,
                        Err(e) => tracing::warn!(error = %e, "environment link: bad frame"),
                    },
                    Message::Binary(b) => {
                        if let Some((id, DataKind::Stdin, bytes)) = decode_data(&b) {
                            if !streams.on_data(id, DataKind::Stdin, bytes) {
                                let _ = out.send(Out::Frame(LinkFrame::Close { stream: id })).await;
                            }
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    streams.close_all();
    drop(out);
    writer.abort();
}

async fn on_frame(f: LinkFrame, agent: &AgentHandle, out: &OutTx, streams: &Arc<Streams>) {
    match f {
        LinkFrame::Call { id, command } => {
            let (agent, out) = (agent.clone(), out.clone());
            tokio::spawn(async move {
                let reply = agent.call(*command).await;
                let _ = out.send(Out::Frame(LinkFrame::Reply { id, reply })).await;
            });
        }
        LinkFrame::Open { stream, open } => match streams.insert(stream, false) {
            Ok(parts) => {
                let (agent, out, streams) = (agent.clone(), out.clone(), streams.clone());
                tokio::spawn(open_stream(agent, parts, open, out, streams));
            }
            Err(error) => {
                let _ = out
                    .send(Out::Frame(LinkFrame::Opened {
                        stream,
                        error: Some(error),
                    }))
                    .await;
            }
        },
        LinkFrame::Resize { stream, cols, rows } => {
            streams.on_inbound(stream, Inbound::Resize(cols, rows))
        }
        LinkFrame::Eof { stream } => streams.on_inbound(stream, Inbound::Eof),
        LinkFrame::Credit { stream, bytes } => streams.on_credit(stream, bytes),
        LinkFrame::Close { stream } => streams.remove(stream),
        other => tracing::warn!(frame = ?other, "environment link: unexpected frame"),
    }
}

/// What the stream's command sends back, whichever kind it is.
enum Output {
    Term(mpsc::Receiver<TermOutput>),
    Exec(mpsc::Receiver<ExecOutput>),
}

async fn open_stream(
    agent: AgentHandle,
    parts: StreamParts,
    open: StreamOpen,
    out: OutTx,
    streams: Arc<Streams>,
) {
    let id = parts.id;
    let opened = match open {
        StreamOpen::Terminal {
            env_id,
            component,
            command,
            cols,
            rows,
        } => agent
            .open_terminal(&env_id, &component, command, cols, rows)
            .await
            .map(|t| (Ok(t.input), Output::Term(t.output))),
        StreamOpen::Exec {
            env_id,
            component,
            command,
            tty,
            vars,
        } => agent
            .open_exec(&env_id, &component, command, tty, vars)
            .await
            .map(|s| (Err(s.input), Output::Exec(s.output))),
        StreamOpen::NamespaceExec { env_id, command } => agent
            .open_namespace_exec(&env_id, command)
            .await
            .map(|s| (Err(s.input), Output::Exec(s.output))),
        StreamOpen::VolumeExport { env_id, volume } => agent
            .open_volume(&env_id, volume.as_deref(), true)
            .await
            .map(|s| (Err(s.input), Output::Exec(s.output))),
        StreamOpen::VolumeImport { env_id, volume } => agent
            .open_volume(&env_id, volume.as_deref(), false)
            .await
            .map(|s| (Err(s.input), Output::Exec(s.output))),
    };
    let (input, mut output) = match opened {
        Ok(x) => x,
        Err(error) => {
            streams.remove(id);
            let _ = out
                .send(Out::Frame(LinkFrame::Opened {
                    stream: id,
                    error: Some(error),
                }))
                .await;
            return;
        }
    };
    if out
        .send(Out::Frame(LinkFrame::Opened {
            stream: id,
            error: None,
        }))
        .await
        .is_err()
    {
        return;
    }
    let (credit, cancel) = (parts.credit.clone(), parts.cancel.clone());
    // the server's input → the command
    tokio::spawn(forward_inbound(parts, out.clone(), move |item| {
        let input = input.clone();
        async move {
            match (&input, item) {
                (Ok(t), Inbound::Data(_, bytes)) => t.send(TermInput::Data { bytes }).await.is_ok(),
                (Ok(t), Inbound::Resize(cols, rows)) => {
                    t.send(TermInput::Resize { cols, rows }).await.is_ok()
                }
                (Err(e), Inbound::Data(_, bytes)) => e.send(ExecInput::Data(bytes)).await.is_ok(),
                (Err(e), Inbound::Resize(cols, rows)) => {
                    e.send(ExecInput::Resize { cols, rows }).await.is_ok()
                }
                (Err(e), Inbound::Eof) => e.send(ExecInput::Eof).await.is_ok(),
                _ => true,
            }
        }
    }));
    // the command's output → the server, within its credit
    let code = loop {
        let next = match &mut output {
            Output::Term(rx) => tokio::select! {
                o = rx.recv() => o.map(|o| match o {
                    TermOutput::Data { bytes } => Ok((DataKind::Stdout, bytes)),
                    TermOutput::Exit { code } => Err(code),
                }),
                () = cancel.cancelled() => return,
            },
            Output::Exec(rx) => tokio::select! {
                o = rx.recv() => o.map(|o| match o {
                    ExecOutput::Stdout(b) => Ok((DataKind::Stdout, b)),
                    ExecOutput::Stderr(b) => Ok((DataKind::Stderr, b)),
                    ExecOutput::Exit(code) => Err(code),
                }),
                () = cancel.cancelled() => return,
            },
        };
        match next {
            Some(Ok((kind, bytes))) => {
                if !send_data(&out, &credit, &cancel, id, kind, &bytes).await {
                    return;
                }
            }
            Some(Err(code)) => break code,
            None => break -1,
        }
    };
    let _ = out
        .send(Out::Frame(LinkFrame::Exit { stream: id, code }))
        .await;
    streams.remove(id);
}
