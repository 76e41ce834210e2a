//! The agent link (issue 20): a standalone agent dials OUT to the server over one WebSocket
//! (`GET /api/v1/agent/link`, its agent token) and serves the server's environment commands,
//! reports and byte streams on its own engine — the same [`crate::worker::AgentHandle`] the
//! server's embedded agent is, carried over the network. Frames: [`cove_api::agent::link`].
//!
//! `mux` (streams and credit) is shared with the server's end (`server/src/agents/link/`);
//! `client` is the agent's end: dial, serve, reconnect with back-off.

mod client;
pub mod mux;

pub use client::{run, LinkTarget};

use std::time::Duration;

/// Each end pings this often.
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// A link with nothing received for this long is dead (a ping is answered within it).
pub const IDLE_LIMIT: Duration = Duration::from_secs(20);
