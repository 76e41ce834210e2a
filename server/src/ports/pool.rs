//! Idle HTTP/1 connections to environments' editors, kept a moment for the next request
//! (crate::ports::proxy, the editor route only). code-server listens on the pod's loopback,
//! so each new connection is a `nc` relay started with `docker exec` in the infra container —
//! far slower than a request — and the workbench loads many assets. Only GET/HEAD requests
//! (no body, so one can be sent again on a fresh connection) take a connection from here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::client::conn::http1::SendRequest;

/// How long an idle connection is kept: below Node's 5 s keep-alive timeout, so the service
/// does not close it while it is being taken.
pub const IDLE: Duration = Duration::from_secs(3);
/// Idle connections kept per environment and port.
pub const PER_TARGET: usize = 8;
/// Targets remembered at most (beyond, empty entries are dropped).
const TARGETS: usize = 256;

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

type Key = (String, u16);

static POOL: LazyLock<Mutex<HashMap<Key, Vec<Idle>>>> = LazyLock::new(Default::default);

fn fresh(i: &Idle) -> bool {
    !i.sender.is_closed() && i.since.elapsed() < IDLE
}

/// An idle connection to `port` in `env` that can take a request now.
pub fn take(env: &str, port: u16) -> Option<SendRequest<Body>> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let key = (env.to_string(), port);
    let list = pool.get_mut(&key)?;
    list.retain(fresh);
    let found = list
        .iter()
        .position(|i| i.sender.is_ready())
        .map(|pos| list.swap_remove(pos).sender);
    if list.is_empty() {
        pool.remove(&key);
    }
    found
}

/// Keeps a connection whose response head has arrived (it becomes ready again once that
/// response's body has been read).
pub fn give_back(env: &str, port: u16, sender: SendRequest<Body>) {
    if sender.is_closed() {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() >= TARGETS {
        pool.retain(|_, list| {
            list.retain(fresh);
            !list.is_empty()
        });
    }
    let list = pool.entry((env.to_string(), port)).or_default();
    list.retain(fresh);
    if list.len() < PER_TARGET {
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
    }
}
