//! `GET /api/v1/agent/link` (an agent's own token): one standalone agent's link. The agent
//! says `Hello` first; the link is then registered (replacing an older one of the same agent),
//! the agent's environments are reconciled from its report, and frames are served until the
//! socket drops or goes quiet; then its environments show `agent_unreachable`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use cove_agent::link::mux::{Out, OUT_QUEUE};
use cove_agent::link::{IDLE_LIMIT, PING_EVERY};
use cove_api::agent::link::{decode_data, DataKind, LinkFrame, MAX_MESSAGE_BYTES};
use cove_api::agent::{EnvReport, AGENT_PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::LinkHandle;
use crate::auth::AgentPrincipal;
use crate::error::ApiError;
use crate::AppState;

/// How long the agent has to say `Hello`.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// How often a link re-checks that its agent is not revoked.
const RECHECK_EVERY: Duration = Duration::from_secs(15);

/// `GET /api/v1/agent/link`
pub async fn agent_link(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    ws: crate::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    Ok(ws
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(state, agent, socket)))
}

fn text(frame: &LinkFrame) -> Option<Message> {
    serde_json::to_string(frame)
        .ok()
        .map(|t| Message::Text(t.into()))
}

async fn run(state: AppState, agent: AgentPrincipal, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    // the agent speaks first
    let hello = tokio::time::timeout(HELLO_WITHIN, stream.next()).await;
    let protocol = match hello {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<LinkFrame>(&t) {
            Ok(LinkFrame::Hello { protocol }) => protocol,
            _ => 0,
        },
        _ => 0,
    };
    if protocol != AGENT_PROTOCOL_VERSION {
        tracing::warn!(agent = %agent.name, protocol, "agent link refused: no Hello with this server's protocol version");
        let _ = sink.close().await;
        return;
    }
    let (out, mut out_rx) = mpsc::channel::<Out>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            let msg = tokio::select! {
                o = out_rx.recv() => match o {
                    Some(Out::Frame(f)) => match text(&f) { Some(m) => m, None => continue },
                    Some(Out::Data(d)) => Message::Binary(d.into()),
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let links = state.envs().links();
    let generation = links.next_generation();
    let link = LinkHandle::new(agent.id, agent.name.clone(), generation, out.clone());
    links.insert(link.clone());
    tracing::info!(agent = %agent.name, "agent link up");
    {
        let (state, link) = (state.clone(), link.clone());
        tokio::spawn(async move {
            if let Err(e) = super::reconcile_agent(&state, &link).await {
                tracing::warn!(agent = %link.name(), error = %e, "reconciling the agent's environments failed");
            }
        });
    }
    // reports are applied in order, off the reading loop
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<EnvReport>();
    {
        let (state, id) = (state.clone(), agent.id);
        tokio::spawn(async move {
            while let Some(r) = reports_rx.recv().await {
                if let Err(e) = crate::envs::apply_report_of(&state, Some(id), r).await {
                    tracing::error!(error = %e, "applying an agent report failed");
                }
            }
        });
    }
    let streams = link.inner.streams.clone();
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    loop {
        tokio::select! {
            () = link.inner.closed.cancelled() => break,
            _ = recheck.tick() => {
                match state.store().agent(agent.id).await {
                    Ok(Some(row)) if row.revoked_at.is_none() => {}
                    Ok(_) => {
                        tracing::warn!(agent = %agent.name, "agent revoked: its link is closed");
                        break;
                    }
                    Err(_) => {}
                }
            }
            m = tokio::time::timeout(IDLE_LIMIT, stream.next()) => {
                let msg = match m {
                    Ok(Some(Ok(msg))) => msg,
                    Ok(_) => break,
                    Err(_) => {
                        tracing::warn!(agent = %agent.name, "agent link: nothing received for {IDLE_LIMIT:?}");
                        break;
                    }
                };
                match msg {
                    Message::Text(t) => match serde_json::from_str::<LinkFrame>(&t) {
                        Ok(f) => on_frame(&link, &streams, f, &reports_tx, &out).await,
                        Err(e) => tracing::warn!(agent = %agent.name, error = %e, "agent link: bad frame"),
                    },
                    Message::Binary(b) => match decode_data(&b) {
                        Some((id, kind @ (DataKind::Stdout | DataKind::Stderr), bytes)) => {
                            if !streams.on_data(id, kind, bytes) {
                                let _ = out.send(Out::Frame(LinkFrame::Close { stream: id })).await;
                            }
                        }
                        _ => tracing::warn!(agent = %agent.name, "agent link: bad data message"),
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    link.close();
    drop(out);
    writer.abort();
    if links.remove_if(agent.id, generation) {
        tracing::warn!(agent = %agent.name, "agent link down");
        if let Err(e) = super::mark_unreachable(&state, agent.id, &agent.name).await {
            tracing::error!(agent = %agent.name, error = %e, "marking the agent's environments unreachable failed");
        }
    }
}

async fn on_frame(
    link: &LinkHandle,
    streams: &Arc<cove_agent::link::mux::Streams>,
    f: LinkFrame,
    reports: &mpsc::UnboundedSender<EnvReport>,
    out: &cove_agent::link::mux::OutTx,
) {
    use cove_agent::link::mux::Inbound;
    match f {
        LinkFrame::Reply { id, reply } => link.on_reply(id, reply),
        LinkFrame::Report { report } => {
            let _ = reports.send(report);
        }
        LinkFrame::Opened { stream, error } => streams.on_opened(stream, error),
        LinkFrame::Exit { stream, code } => streams.on_inbound(stream, Inbound::Exit(code)),
        LinkFrame::Credit { stream, bytes } => streams.on_credit(stream, bytes),
        LinkFrame::Close { stream } => streams.remove(stream),
        other => {
            tracing::warn!(agent = %link.name(), frame = ?other, "agent link: unexpected frame");
            let _ = out;
        }
    }
}
