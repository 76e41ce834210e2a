//! Reconnecting terminals: a terminal opened with `?reconnect=ID` outlives its WebSocket.
//!
//! When the socket drops without the client ending the session (a network blip, a closed
//! laptop lid, a reload), the TTY exec keeps running for a grace period
//! ([`DEFAULT_GRACE`], `Intervals::terminal_grace`) and its output goes into a ring buffer of
//! the last [`RING_BYTES`] bytes. A new socket with the same id, from the same user and for
//! the same environment, takes the session over: the output it has not seen yet (from its
//! `since` byte offset, when still in the buffer; else the whole buffer) is replayed, then
//! output streams live again. Another user's attempt is refused (403). After the grace
//! period, or at once when the client sends `{"type":"close"}` or loses access, the
//! session is ended: every process of the exec (found by a per-session marker in its
//! environment) gets SIGHUP, then SIGKILL, and the id is free again, so a later connect with
//! it starts a fresh shell.
//!
//! While a socket is attached, output is never dropped: the exec waits for the socket (as
//! without reconnection). Only a detached session overwrites its oldest bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use cove_api::agent::{EnvCommand, TermInput, TermOutput};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::terminal::{TerminalControl, CLOSE_ACCESS_WITHDRAWN};
use crate::error::ApiError;
use crate::store::now_ms;
use crate::AppState;

/// Output kept for a detached session (replayed on reattach).
pub const RING_BYTES: usize = 64 * 1024;
/// How long a detached session waits for its client by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Sessions one user may keep (attached or detached); past it the oldest detached one ends.
pub const MAX_PER_USER: usize = 16;
/// WebSocket close code for a socket whose session was taken over by a newer one.
pub const CLOSE_TAKEN_OVER: u16 = 4000;
/// The variable that marks every process of a session's exec.
const MARKER_VAR: &str = "COVE_TERMINAL_SESSION";

/// True for a reconnect id a client may choose: 16 to 64 of `A-Z a-z 0-9 - _`.
pub fn valid_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `cmd` run with the session's marker in its environment (inherited by its children).
pub fn marked_command(marker: &str, cmd: Vec<String>) -> Vec<String> {
    let mut out = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("{MARKER_VAR}={marker}; export {MARKER_VAR}; exec \"$@\""),
        "sh".to_string(),
    ];
    out.extend(cmd);
    out
}

/// A shell script that ends every process whose environment holds the marker: SIGHUP (a
/// hang-up, as when a terminal closes), then SIGKILL for what is left a second later.
fn end_script(marker: &str) -> String {
    format!(
        r#"m='{MARKER_VAR}={marker}'
marked() {{
  for p in /proc/[0-9]*; do
    if tr '\000' '\n' < "$p/environ" 2>/dev/null | grep -qxF "$m"; then printf '%s ' "${{p#/proc/}}"; fi
  done
}}
pids=$(marked)
[ -n "$pids" ] || exit 0
kill -HUP $pids 2>/dev/null
sleep 1
pids=$(marked)
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
exit 0"#
    )
}

/// The registry of reconnecting terminal sessions, by reconnect id.
#[derive(Clone)]
pub struct TerminalSessions(Arc<Registry>);

struct Registry {
    grace: Duration,
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Default for TerminalSessions {
    fn default() -> Self {
        TerminalSessions::new(DEFAULT_GRACE)
    }
}

/// One reconnecting terminal.
pub struct Session {
    id: String,
    user_id: i64,
    env_id: String,
    component: String,
    marker: String,
    input: mpsc::Sender<TermInput>,
    shared: Mutex<Shared>,
    /// Bumped when output arrives, the shell exits or another socket takes over.
    out: watch::Sender<()>,
    /// Bumped when the attached socket has sent output, or detached.
    ack: watch::Sender<()>,
    /// Cancelled when the session is ended (not when the shell exits by itself).
    ended: CancellationToken,
}

struct Shared {
    ring: VecDeque<u8>,
    /// Bytes of output ever produced (the offset just past the ring's last byte).
    total: u64,
    exit: Option<i64>,
    /// Incremented by every attach: an older socket sees it changed and leaves.
    generation: u64,
    /// The byte offset the attached socket has sent up to; `None` while detached.
    attached: Option<u64>,
    detached_at: Option<Instant>,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the TTY a new size (a reattaching client's).
    pub async fn resize(&self, cols: u16, rows: u16) {
        let _ = self.input.send(TermInput::Resize { cols, rows }).await;
    }

    /// Ends the session: its processes get a hang-up, its output stops being read.
    fn end(self: &Arc<Self>, state: &AppState) {
        if self.ended.is_cancelled() {
            return;
        }
        self.ended.cancel();
        state.envs().terminals().remove(&self.id, self);
        end_processes(state, &self.env_id, &self.component, &self.marker);
    }
}

/// Hangs up (then kills) every process of the exec started with `marker`, in the background.
pub fn end_processes(state: &AppState, env_id: &str, component: &str, marker: &str) {
    let command = vec!["/bin/sh".into(), "-c".into(), end_script(marker)];
    let (env_id, component) = (env_id.to_string(), component.to_string());
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(Some(row)) = state.store().env(&env_id).await else {
            return;
        };
        let Ok(agent) = state.envs().agent_for(&row) else {
            return;
        };
        let reply = agent
            .call(EnvCommand::Exec {
                env_id: env_id.clone(),
                component,
                command,
            })
            .await;
        if let cove_api::agent::AgentReply::Error { message } = reply {
            tracing::warn!(env = %env_id, error = %message, "ending a terminal's processes failed");
        }
    });
}

fn too_many() -> ApiError {
    ApiError::Conflict(format!(
        "at most {MAX_PER_USER} terminals may be open at once; close one first"
    ))
}

/// How a client's attachment ended.
enum Detach {
    /// The socket went away: keep the session for the grace period.
    Dropped,
    /// The client ended the session, or lost access: end it now.
    End,
    /// The shell exited, or a newer socket took the session over: nothing to do.
    Done,
}

impl TerminalSessions {
    pub fn new(grace: Duration) -> Self {
        TerminalSessions(Arc::new(Registry {
            grace,
            map: Mutex::new(HashMap::new()),
        }))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.0.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The grace period of detached sessions.
    pub fn grace(&self) -> Duration {
        self.0.grace
    }

    /// Number of sessions (attached or detached).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live session `id`, when there is one `user` may take over in `env`.
    pub fn find(&self, id: &str, user: i64, env: &str) -> Result<Option<Arc<Session>>, ApiError> {
        let Some(session) = self.map().get(id).cloned() else {
            return Ok(None);
        };
        if session.user_id != user {
            return Err(ApiError::Forbidden(
                "this terminal session belongs to another user".into(),
            ));
        }
        if session.env_id != env {
            return Err(ApiError::Conflict(
                "this reconnect id belongs to a terminal of another environment".into(),
            ));
        }
        Ok(Some(session))
    }

    /// Whether `user` may open a new session `id` now: the id is free and, at
    /// [`MAX_PER_USER`], one of their sessions is detached (it will be ended to make room).
    /// Checked before the exec is opened, so a refusal leaves nothing behind.
    pub fn check_room(&self, id: &str, user: i64) -> Result<(), ApiError> {
        let map = self.map();
        if map.contains_key(id) {
            return Err(ApiError::Conflict(
                "a terminal with this reconnect id is being opened".into(),
            ));
        }
        let mine: Vec<&Arc<Session>> = map.values().filter(|s| s.user_id == user).collect();
        if mine.len() >= MAX_PER_USER && !mine.iter().any(|s| s.lock().attached.is_none()) {
            return Err(too_many());
        }
        Ok(())
    }

    fn remove(&self, id: &str, session: &Arc<Session>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            map.remove(id);
        }
    }

    /// Registers a new session around an opened terminal (whose command came from
    /// [`marked_command`] with `marker`) and starts reading its output. Past
    /// [`MAX_PER_USER`] the user's oldest detached session is ended; when none is
    /// detached (a race past [`TerminalSessions::check_room`]) the new one is refused and
    /// its processes are ended.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        state: &AppState,
        id: &str,
        user: i64,
        env: &str,
        component: &str,
        marker: String,
        term: cove_agent::worker::Terminal,
    ) -> Result<Arc<Session>, ApiError> {
        let refused = {
            let marker = marker.clone();
            move |e: ApiError| {
                end_processes(state, env, component, &marker);
                e
            }
        };
        let cove_agent::worker::Terminal { input, output } = term;
        let session = Arc::new(Session {
            id: id.to_string(),
            user_id: user,
            env_id: env.to_string(),
            component: component.to_string(),
            marker,
            input,
            shared: Mutex::new(Shared {
                ring: VecDeque::new(),
                total: 0,
                exit: None,
                generation: 0,
                attached: None,
                detached_at: Some(Instant::now()),
            }),
            out: watch::channel(()).0,
            ack: watch::channel(()).0,
            ended: CancellationToken::new(),
        });
        let evict = {
            let mut map = self.map();
            if map.contains_key(id) {
                return Err(refused(ApiError::Conflict(
                    "a terminal with this reconnect id is being opened".into(),
                )));
            }
            let mine: Vec<&Arc<Session>> = map.values().filter(|s| s.user_id == user).collect();
            let evict = if mine.len() >= MAX_PER_USER {
                let oldest = mine
                    .iter()
                    .filter_map(|s| s.lock().detached_at.map(|at| (at, Arc::clone(s))))
                    .min_by_key(|(at, _)| *at)
                    .map(|(_, s)| s);
                match oldest {
                    Some(s) => Some(s),
                    None => return Err(refused(too_many())),
                }
            } else {
                None
            };
            map.insert(id.to_string(), session.clone());
            evict
        };
        if let Some(old) = evict {
            old.end(state);
        }
        tokio::spawn(read_output(state.clone(), session.clone(), output));
        // a socket that never arrives (the upgrade failed) leaves it detached from the start
        self.expire_after_grace(state.clone(), session.clone(), 0);
        Ok(session)
    }

    /// Ends `session` after the grace period unless a socket attached since `generation`.
    fn expire_after_grace(&self, state: AppState, session: Arc<Session>, generation: u64) {
        let grace = self.grace();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = session.ended.cancelled() => return,
            }
            let expired = {
                let s = session.lock();
                s.generation == generation && s.attached.is_none() && s.exit.is_none()
            };
            if expired {
                tracing::info!(env = %session.env_id, "detached terminal ended after its grace period");
                session.end(&state);
            }
        });
    }

    /// Serves `socket` as the session's client until it goes, then keeps the session for the
    /// grace period (or ends it, see [`Detach`]). `since` is the byte offset of the output the
    /// client has already seen; `resumed` says whether the session existed before.
    pub async fn attach(
        &self,
        state: AppState,
        session: Arc<Session>,
        socket: WebSocket,
        since: Option<u64>,
        resumed: bool,
        revoked: impl std::future::Future<Output = String> + Send + 'static,
    ) {
        let (generation, pos) = {
            let mut s = session.lock();
            s.generation += 1;
            let start = s.total - s.ring.len() as u64;
            let pos = since
                .filter(|p| (start..=s.total).contains(p))
                .unwrap_or(start);
            s.attached = Some(pos);
            s.detached_at = None;
            (s.generation, pos)
        };
        // an older socket of this session leaves
        session.out.send_modify(|_| {});
        let how = serve(&state, &session, socket, generation, pos, resumed, revoked).await;
        let mut s = session.lock();
        if s.generation == generation {
            s.attached = None;
            s.detached_at = Some(Instant::now());
        }
        drop(s);
        session.ack.send_modify(|_| {});
        match how {
            Detach::Done => {}
            Detach::End => session.end(&state),
            Detach::Dropped => self.expire_after_grace(state, session, generation),
        }
    }
}

/// Reads the exec's output into the ring; while a socket is attached, waits for it rather than
/// overwrite what it has not sent yet.
async fn read_output(
    state: AppState,
    session: Arc<Session>,
    mut output: mpsc::Receiver<TermOutput>,
) {
    loop {
        let out = tokio::select! {
            out = output.recv() => out,
            _ = session.ended.cancelled() => return,
        };
        let bytes = match out {
            Some(TermOutput::Data { bytes }) => bytes,
            Some(TermOutput::Exit { code }) => {
                finish(&state, &session, code);
                return;
            }
            None => {
                finish(&state, &session, -1);
                return;
            }
        };
        loop {
            let mut acked = session.ack.subscribe();
            {
                let mut s = session.lock();
                let room = match s.attached {
                    None => true,
                    Some(sent) => {
                        let unsent = s.total - sent;
                        unsent == 0 || unsent + bytes.len() as u64 <= RING_BYTES as u64
                    }
                };
                if room {
                    s.ring.extend(&bytes);
                    let over = s.ring.len().saturating_sub(RING_BYTES);
                    s.ring.drain(..over);
                    s.total += bytes.len() as u64;
                    break;
                }
            }
            tokio::select! {
                _ = acked.changed() => {}
                _ = session.ended.cancelled() => return,
            }
        }
        session.out.send_modify(|_| {});
    }
}

fn finish(state: &AppState, session: &Arc<Session>, code: i64) {
    session.lock().exit = Some(code);
    state.envs().terminals().remove(&session.id, session);
    session.out.send_modify(|_| {});
}

/// One socket's life with the session.
async fn serve(
    state: &AppState,
    session: &Arc<Session>,
    socket: WebSocket,
    generation: u64,
    mut pos: u64,
    resumed: bool,
    revoked: impl std::future::Future<Output = String> + Send + 'static,
) -> Detach {
    let (mut sink, mut stream) = socket.split();
    let hello = TerminalControl::Session {
        id: session.id.clone(),
        resumed,
        offset: pos,
    };
    if sink
        .send(Message::Text(
            serde_json::to_string(&hello).unwrap_or_default().into(),
        ))
        .await
        .is_err()
    {
        return Detach::Dropped;
    }
    let (withdrawn_tx, mut withdrawn) = tokio::sync::oneshot::channel::<String>();
    let mut withdrawn_tx = Some(withdrawn_tx);
    let writer_session = session.clone();
    let mut to_client = tokio::spawn(async move {
        let session = writer_session;
        loop {
            let mut changed = session.out.subscribe();
            let now = {
                let s = session.lock();
                if s.generation != generation {
                    None
                } else {
                    let start = s.total - s.ring.len() as u64;
                    pos = pos.max(start);
                    let skip = usize::try_from(pos - start).unwrap_or(usize::MAX);
                    let data: Vec<u8> = s.ring.range(skip.min(s.ring.len())..).copied().collect();
                    Some((data, s.exit))
                }
            };
            let Some((data, exit)) = now else {
                let frame = CloseFrame {
                    code: CLOSE_TAKEN_OVER,
                    reason: "the terminal was opened in another window".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return Detach::Done;
            };
            if !data.is_empty() {
                let n = data.len() as u64;
                if sink.send(Message::Binary(data.into())).await.is_err() {
                    return Detach::Dropped;
                }
                pos += n;
                {
                    let mut s = session.lock();
                    if s.generation == generation {
                        s.attached = Some(pos);
                    }
                }
                session.ack.send_modify(|_| {});
                continue;
            }
            if let Some(code) = exit {
                let text =
                    serde_json::to_string(&TerminalControl::Exit { code }).unwrap_or_default();
                let _ = sink.send(Message::Text(text.into())).await;
                let _ = sink.close().await;
                return Detach::Done;
            }
            tokio::select! {
                _ = changed.changed() => {}
                reason = &mut withdrawn => {
                    if let Ok(reason) = reason {
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
                    return Detach::End;
                }
            }
        }
    });
    let mut last_touch = now_ms();
    tokio::pin!(revoked);
    let mut ended_by_client = false;
    let writer_done = loop {
        let msg = tokio::select! {
            done = &mut to_client => break Some(done.unwrap_or(Detach::Dropped)),
            msg = stream.next() => match msg {
                Some(Ok(msg)) => msg,
                _ => break None,
            },
            reason = &mut revoked => {
                // ended (not kept for the grace period) before the client sees the reason
                session.end(state);
                let _ = withdrawn_tx.take().map(|tx| tx.send(reason));
                break None;
            }
        };
        let input = match msg {
            Message::Binary(b) => TermInput::Data { bytes: b.to_vec() },
            Message::Text(t) => match serde_json::from_str::<TerminalControl>(&t) {
                Ok(TerminalControl::Resize { cols, rows }) => TermInput::Resize { cols, rows },
                Ok(TerminalControl::Close) => {
                    // ended (and the id free) before the client sees its socket close
                    session.end(state);
                    ended_by_client = true;
                    break None;
                }
                _ => TermInput::Data {
                    bytes: t.as_bytes().to_vec(),
                },
            },
            Message::Close(_) => break None,
            _ => continue,
        };
        if session.input.send(input).await.is_err() {
            break None;
        }
        let now = now_ms();
        if now - last_touch > 5_000 {
            last_touch = now;
            let _ = state.store().touch_env(&session.env_id, now).await;
        }
    };
    if let Some(done) = writer_done {
        return done;
    }
    if withdrawn_tx.is_none() {
        // access ended: the close frame goes out within a few seconds, unless the client
        // stopped reading
        if tokio::time::timeout(Duration::from_secs(5), &mut to_client)
            .await
            .is_err()
        {
            to_client.abort();
        }
        return Detach::End;
    }
    to_client.abort();
    let writer = to_client.await.ok();
    if ended_by_client {
        return Detach::End;
    }
    match writer {
        Some(Detach::Done) => Detach::Done,
        _ => Detach::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_ids_are_bounded_and_shell_safe() {
        assert!(valid_id("0123456789abcdef"));
        assert!(valid_id("A-b_c-0123456789abcdef"));
        assert!(!valid_id("short"));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id("0123456789abcdef'; rm -rf /"));
        assert!(!valid_id("0123456789abcdef/.."));
    }

    #[test]
    fn the_marker_reaches_the_command_and_the_end_script() {
        let cmd = marked_command("m1", vec!["bash".into(), "-l".into()]);
        assert_eq!(cmd[0], "/bin/sh");
        assert!(cmd[2].contains("COVE_TERMINAL_SESSION=m1"));
        assert_eq!(&cmd[4..], ["bash", "-l"]);
        assert!(end_script("m1").contains("m='COVE_TERMINAL_SESSION=m1'"));
    }
}
