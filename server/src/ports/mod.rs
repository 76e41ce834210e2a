//! Ports of environments reached through the server (issue 18): one function that opens a
//! byte stream to `ENV:PORT` ([`connect`]), used by SSH's `direct-tcpip` channels
//! (`crate::ssh`), the `…/ports/{port}/tunnel` WebSocket of `cove env port-forward`
//! ([`tunnel`]) and the reverse proxy of public devfile endpoints at `/env/{env}/{endpoint}/…`
//! ([`proxy`]). See docs/ports.md.

pub mod pool;
pub mod proxy;
pub mod tunnel;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cove_agent::worker::{ExecInput, ExecOutput};
use cove_api::EnvState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::store::EnvRow;
use crate::AppState;

/// How long a connection to a port may take to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream to a port inside an environment's network namespace.
pub trait PortStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PortStream for T {}

/// Why a port could not be reached (said to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    NotRunning,
    NoAgent,
    NoAddress,
    NothingListens(u16),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NotRunning => write!(f, "the environment is not running"),
            ConnectError::NoAgent => write!(f, "no agent is connected"),
            ConnectError::NoAddress => write!(f, "the environment has no address"),
            ConnectError::NothingListens(port) => {
                write!(f, "nothing answers on port {port} in the environment")
            }
        }
    }
}

/// Opens a byte stream to `port` in environment `env_id`'s network namespace: a TCP
/// connection from the server's host to the pod's infra container's address, or — when that
/// address refuses (a service bound to the pod's loopback only) — `nc 127.0.0.1 PORT` run
/// in the infra container through the embedded agent, bridged to an in-memory stream.
pub async fn connect(
    state: &AppState,
    env_id: &str,
    port: u16,
) -> Result<Box<dyn PortStream>, ConnectError> {
    let env = match state.store().env(env_id).await {
        Ok(Some(env)) if env.state == EnvState::Running => env,
        _ => return Err(ConnectError::NotRunning),
    };
    let agent = state
        .envs()
        .agent_for(&env)
        .map_err(|_| ConnectError::NoAgent)?;
    if agent.is_remote() {
        // a standalone agent's engine is elsewhere: the relay in the environment, over the link
        return relay(&agent, env_id, port).await;
    }
    let address = match agent.env_address(env_id).await {
        Ok(Some(ip)) => ip,
        _ => return Err(ConnectError::NoAddress),
    };
    let connect = tokio::net::TcpStream::connect((address, port));
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            relay(&agent, env_id, port).await
        }
        _ => Err(ConnectError::NothingListens(port)),
    }
}

/// `nc 127.0.0.1 PORT` in the environment's infra container, bridged to an in-memory stream.
async fn relay(
    agent: &crate::envs::EnvAgent,
    env_id: &str,
    port: u16,
) -> Result<Box<dyn PortStream>, ConnectError> {
    let relay = agent
        .open_namespace_exec(
            env_id,
            vec!["nc".into(), "127.0.0.1".into(), port.to_string()],
        )
        .await
        .map_err(|_| ConnectError::NothingListens(port))?;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(relay_stream(theirs, relay));
    Ok(Box::new(ours))
}

/// Bridges one end of an in-memory stream and a relay command's stdin/stdout: bytes read
/// become its stdin (EOF closes it), its stdout is written back; the stream ends when the
/// command exits.
async fn relay_stream(stream: tokio::io::DuplexStream, relay: cove_agent::worker::ExecSession) {
    let cove_agent::worker::ExecSession { input, mut output } = relay;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let to_relay = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = input.send(ExecInput::Eof).await;
                    break;
                }
                Ok(n) => {
                    if input
                        .send(ExecInput::Data(buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // keep the sender until the command is done, so stdin is not torn down early
        input
    };
    let from_relay = async move {
        while let Some(o) = output.recv().await {
            match o {
                ExecOutput::Stdout(bytes) => {
                    if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                        break;
                    }
                }
                ExecOutput::Stderr(_) => {}
                ExecOutput::Exit(_) => break,
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::pin!(to_relay);
    tokio::pin!(from_relay);
    tokio::select! {
        _ = &mut from_relay => {}
        input = &mut to_relay => {
            // the client's EOF: the command's answer still comes back
            from_relay.await;
            drop(input);
        }
    }
}

/// Records activity on the environment (idle stop), ignoring store errors.
pub async fn touch(state: &AppState, env: &EnvRow) {
    let _ = state
        .store()
        .touch_env(&env.id, crate::store::now_ms())
        .await;
}

/// Open tunnels per user, for the per-user bound.
#[derive(Default, Clone)]
pub struct Tunnels(Arc<Mutex<HashMap<i64, usize>>>);

/// A slot of [`Tunnels`], released when dropped.
pub struct TunnelSlot {
    tunnels: Tunnels,
    user: i64,
}

impl Tunnels {
    /// Takes a slot for `user`, or `None` when they already have `max` open.
    pub fn acquire(&self, user: i64, max: usize) -> Option<TunnelSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(user).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(TunnelSlot {
            tunnels: self.clone(),
            user,
        })
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        let mut open = self.tunnels.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_slots_are_bounded_per_user_and_released() {
        let t = Tunnels::default();
        let a = t.acquire(1, 2).unwrap();
        let _b = t.acquire(1, 2).unwrap();
        assert!(t.acquire(1, 2).is_none());
        assert!(
            t.acquire(2, 2).is_some(),
            "another user has their own slots"
        );
        drop(a);
        assert!(t.acquire(1, 2).is_some());
    }
}
