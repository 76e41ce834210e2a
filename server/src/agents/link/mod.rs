//! The server's end of agent links (issue 20): standalone agents dial in over one WebSocket
//! each (`GET /api/v1/agent/link`, `socket`), and environments on them are driven through a
//! [`LinkHandle`] — the same calls and streams the embedded agent answers in process. The
//! envs code sees one API, [`EnvAgent`]. Frames: `cove_api::agent::link`; streams and credit:
//! `cove_agent::link::mux` (shared with the agent's end).
//!
//! `registry` is in this file ([`Links`]: agent id → its live link); `socket` runs one link;
//! `reconcile` marks an agent's environments `agent_unreachable` when its link drops and
//! reconciles them from its report when it is back.

mod reconcile;
mod socket;

pub use reconcile::{mark_one_unreachable, mark_unreachable, reconcile_agent};
pub use socket::agent_link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cove_agent::link::mux::{
    forward_inbound, send_data, Inbound, Out, OutTx, StreamParts, Streams,
};
use cove_agent::worker::{AgentHandle, ExecInput, ExecOutput, ExecSession, Terminal};
use cove_api::agent::link::{DataKind, LinkFrame, StreamOpen};
use cove_api::agent::{AgentReply, EnvCommand, TermInput, TermOutput};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long the agent may take to start a stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The live links, by agent id.
#[derive(Default)]
pub struct Links {
    map: Mutex<HashMap<i64, LinkHandle>>,
    generation: AtomicU64,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, LinkHandle>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The live link of agent `id`.
    pub fn get(&self, id: i64) -> Option<LinkHandle> {
        self.lock().get(&id).cloned()
    }

    /// Ids of the agents linked now.
    pub fn linked(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `link` the agent's link; an older one is closed.
    fn insert(&self, link: LinkHandle) {
        if let Some(old) = self.lock().insert(link.inner.agent_id, link) {
            old.close();
        }
    }

    /// Forgets agent `id`'s link if it is still `generation`; `true` when it was.
    fn remove_if(&self, id: i64, generation: u64) -> bool {
        let mut map = self.lock();
        if map
            .get(&id)
            .is_some_and(|l| l.inner.generation == generation)
        {
            map.remove(&id);
            true
        } else {
            false
        }
    }
}

struct Inner {
    agent_id: i64,
    name: String,
    generation: u64,
    out: OutTx,
    calls: Mutex<HashMap<u64, oneshot::Sender<AgentReply>>>,
    streams: Arc<Streams>,
    next: AtomicU64,
    closed: CancellationToken,
}

/// One agent's link: calls and streams to it.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<Inner>,
}

impl LinkHandle {
    fn new(agent_id: i64, name: String, generation: u64, out: OutTx) -> Self {
        LinkHandle {
            inner: Arc::new(Inner {
                agent_id,
                name,
                generation,
                out,
                calls: Mutex::default(),
                streams: Arc::default(),
                next: AtomicU64::new(1),
                closed: CancellationToken::new(),
            }),
        }
    }

    pub fn agent_id(&self) -> i64 {
        self.inner.agent_id
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<AgentReply>>> {
        match self.inner.calls.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Ends the link: pending calls fail, streams end.
    fn close(&self) {
        self.inner.closed.cancel();
        self.inner.streams.close_all();
        self.calls().clear();
    }

    fn gone(&self) -> String {
        format!(
            "agent {}'s link went down; the environment comes back when the agent reconnects",
            self.inner.name
        )
    }

    fn on_reply(&self, id: u64, reply: AgentReply) {
        if let Some(tx) = self.calls().remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// Sends a command and waits for the agent's answer (or the link's end).
    pub async fn call(&self, command: EnvCommand) -> AgentReply {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.calls().insert(id, tx);
        let sent = self
            .inner
            .out
            .send(Out::Frame(LinkFrame::Call {
                id,
                command: Box::new(command),
            }))
            .await;
        if sent.is_err() || self.inner.closed.is_cancelled() {
            self.calls().remove(&id);
            return AgentReply::Error {
                message: self.gone(),
            };
        }
        tokio::select! {
            r = rx => r.unwrap_or_else(|_| AgentReply::Error { message: self.gone() }),
            () = self.inner.closed.cancelled() => AgentReply::Error { message: self.gone() },
        }
    }

    async fn open(&self, open: StreamOpen) -> Result<StreamParts, String> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut parts = self.inner.streams.insert(id, true)?;
        let opened = parts.opened.take();
        let sent = self
            .inner
            .out
            .send(Out::Frame(LinkFrame::Open { stream: id, open }))
            .await;
        if sent.is_err() {
            self.inner.streams.remove(id);
            return Err(self.gone());
        }
        let answer = match opened {
            Some(rx) => tokio::time::timeout(OPEN_TIMEOUT, rx).await,
            None => Ok(Ok(Some("no answer".into()))),
        };
        match answer {
            Ok(Ok(None)) => Ok(parts),
            Ok(Ok(Some(error))) => {
                self.inner.streams.remove(id);
                Err(error)
            }
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => {
                self.inner.streams.remove(id);
                let _ = self
                    .inner
                    .out
                    .send(Out::Frame(LinkFrame::Close { stream: id }))
                    .await;
                Err(format!(
                    "agent {} did not start the command within {OPEN_TIMEOUT:?}",
                    self.inner.name
                ))
            }
        }
    }

    /// Sends what the caller writes to the stream (within its credit); `Eof` when the caller
    /// is done writing.
    fn pump_input<T: Send + 'static>(
        &self,
        parts: &StreamParts,
        mut rx: mpsc::Receiver<T>,
        split: fn(T) -> InputItem,
    ) {
        let (out, credit, cancel, id) = (
            self.inner.out.clone(),
            parts.credit.clone(),
            parts.cancel.clone(),
            parts.id,
        );
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    i = rx.recv() => i,
                    () = cancel.cancelled() => return,
                };
                let Some(item) = item else {
                    // the caller is done writing: stdin ends, the output goes on
                    let _ = out.send(Out::Frame(LinkFrame::Eof { stream: id })).await;
                    return;
                };
                let ok = match split(item) {
                    InputItem::Data(bytes) => {
                        send_data(&out, &credit, &cancel, id, DataKind::Stdin, &bytes).await
                    }
                    InputItem::Resize(cols, rows) => out
                        .send(Out::Frame(LinkFrame::Resize {
                            stream: id,
                            cols,
                            rows,
                        }))
                        .await
                        .is_ok(),
                    InputItem::Eof => out
                        .send(Out::Frame(LinkFrame::Eof { stream: id }))
                        .await
                        .is_ok(),
                };
                if !ok {
                    return;
                }
            }
        });
    }

    /// An interactive terminal on the agent (as [`AgentHandle::open_terminal`]).
    pub async fn open_terminal(
        &self,
        env_id: &str,
        component: &str,
        command: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<Terminal, String> {
        let parts = self
            .open(StreamOpen::Terminal {
                env_id: env_id.into(),
                component: component.into(),
                command,
                cols,
                rows,
            })
            .await?;
        let (in_tx, in_rx) = mpsc::channel::<TermInput>(64);
        let (out_tx, out_rx) = mpsc::channel::<TermOutput>(64);
        self.pump_input(&parts, in_rx, |i| match i {
            TermInput::Data { bytes } => InputItem::Data(bytes),
            TermInput::Resize { cols, rows } => InputItem::Resize(cols, rows),
        });
        self.pump_output(parts, move |item| {
            let out_tx = out_tx.clone();
            async move {
                match item {
                    Inbound::Data(_, bytes) => {
                        out_tx.send(TermOutput::Data { bytes }).await.is_ok()
                    }
                    Inbound::Exit(code) => out_tx.send(TermOutput::Exit { code }).await.is_ok(),
                    _ => true,
                }
            }
        });
        Ok(Terminal {
            input: in_tx,
            output: out_rx,
        })
    }

    /// An attached exec on the agent (as [`AgentHandle::open_exec`]).
    pub async fn open_exec(
        &self,
        env_id: &str,
        component: &str,
        command: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<ExecSession, String> {
        let parts = self
            .open(StreamOpen::Exec {
                env_id: env_id.into(),
                component: component.into(),
                command,
                tty,
                vars,
            })
            .await?;
        Ok(self.exec_session(parts))
    }

    /// A command in the environment's network namespace (as
    /// [`AgentHandle::open_namespace_exec`]).
    pub async fn open_namespace_exec(
        &self,
        env_id: &str,
        command: Vec<String>,
    ) -> Result<ExecSession, String> {
        let parts = self
            .open(StreamOpen::NamespaceExec {
                env_id: env_id.into(),
                command,
            })
            .await?;
        Ok(self.exec_session(parts))
    }

    /// A volume's archive out of or into the agent (as [`AgentHandle::open_volume`]).
    pub async fn open_volume(
        &self,
        env_id: &str,
        volume: Option<&str>,
        export: bool,
    ) -> Result<ExecSession, String> {
        let (env_id, volume) = (env_id.to_string(), volume.map(str::to_string));
        let parts = self
            .open(if export {
                StreamOpen::VolumeExport { env_id, volume }
            } else {
                StreamOpen::VolumeImport { env_id, volume }
            })
            .await?;
        Ok(self.exec_session(parts))
    }

    fn exec_session(&self, parts: StreamParts) -> ExecSession {
        let (in_tx, in_rx) = mpsc::channel::<ExecInput>(64);
        let (out_tx, out_rx) = mpsc::channel::<ExecOutput>(64);
        self.pump_input(&parts, in_rx, |i| match i {
            ExecInput::Data(bytes) => InputItem::Data(bytes),
            ExecInput::Eof => InputItem::Eof,
            ExecInput::Resize { cols, rows } => InputItem::Resize(cols, rows),
        });
        self.pump_output(parts, move |item| {
            let out_tx = out_tx.clone();
            async move {
                match item {
                    Inbound::Data(DataKind::Stderr, b) => {
                        out_tx.send(ExecOutput::Stderr(b)).await.is_ok()
                    }
                    Inbound::Data(_, b) => out_tx.send(ExecOutput::Stdout(b)).await.is_ok(),
                    Inbound::Exit(code) => out_tx.send(ExecOutput::Exit(code)).await.is_ok(),
                    _ => true,
                }
            }
        });
        ExecSession {
            input: in_tx,
            output: out_rx,
        }
    }

    fn pump_output<F, Fut>(&self, parts: StreamParts, deliver: F)
    where
        F: FnMut(Inbound) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let (out, streams, id) = (self.inner.out.clone(), self.inner.streams.clone(), parts.id);
        tokio::spawn(async move {
            forward_inbound(parts, out, deliver).await;
            streams.remove(id);
        });
    }
}

/// `pump_input`'s view of one input item.
enum InputItem {
    Data(Vec<u8>),
    Resize(u16, u16),
    Eof,
}

/// The agent an environment runs on, whichever kind: the one API the envs code calls.
#[derive(Clone)]
pub enum EnvAgent {
    /// The server's embedded agent, in process.
    Embedded(Box<AgentHandle>),
    /// A standalone agent over its link.
    Remote(LinkHandle),
}

impl EnvAgent {
    pub async fn call(&self, command: EnvCommand) -> AgentReply {
        match self {
            EnvAgent::Embedded(a) => a.call(command).await,
            EnvAgent::Remote(l) => l.call(command).await,
        }
    }

    pub async fn open_terminal(
        &self,
        env_id: &str,
        component: &str,
        command: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<Terminal, String> {
        match self {
            EnvAgent::Embedded(a) => {
                a.open_terminal(env_id, component, command, cols, rows)
                    .await
            }
            EnvAgent::Remote(l) => {
                l.open_terminal(env_id, component, command, cols, rows)
                    .await
            }
        }
    }

    pub async fn open_exec(
        &self,
        env_id: &str,
        component: &str,
        command: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<ExecSession, String> {
        match self {
            EnvAgent::Embedded(a) => a.open_exec(env_id, component, command, tty, vars).await,
            EnvAgent::Remote(l) => l.open_exec(env_id, component, command, tty, vars).await,
        }
    }

    pub async fn open_namespace_exec(
        &self,
        env_id: &str,
        command: Vec<String>,
    ) -> Result<ExecSession, String> {
        match self {
            EnvAgent::Embedded(a) => a.open_namespace_exec(env_id, command).await,
            EnvAgent::Remote(l) => l.open_namespace_exec(env_id, command).await,
        }
    }

    /// A volume's archive out of (`export`) or into the agent: `cove env move`
    /// (`crate::envs::relocate`).
    pub async fn open_volume(
        &self,
        env_id: &str,
        volume: Option<&str>,
        export: bool,
    ) -> Result<ExecSession, String> {
        match self {
            EnvAgent::Embedded(a) => a.open_volume(env_id, volume, export).await,
            EnvAgent::Remote(l) => l.open_volume(env_id, volume, export).await,
        }
    }

    /// The environment's address as the server's host reaches it; `None` on a standalone
    /// agent (its engine is elsewhere: ports go through a relay in the environment).
    pub async fn env_address(&self, env_id: &str) -> Result<Option<std::net::IpAddr>, String> {
        match self {
            EnvAgent::Embedded(a) => a.env_address(env_id).await,
            EnvAgent::Remote(_) => Ok(None),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, EnvAgent::Remote(_))
    }
}
