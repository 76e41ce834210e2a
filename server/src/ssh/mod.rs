//! SSH into environments (issue 18): users' public keys (`keys`, `http`), and an SSH server
//! inside cove-server (russh) whose user name selects the environment (`server`), with
//! session channels (exec, shell with a PTY, `sftp`, environment variables) and local port
//! forwarding run through the embedded agent (`channel`). See docs/ssh.md.

mod channel;
pub mod http;
pub mod keys;
pub mod server;
pub mod ws;

pub use server::{load_or_create_host_key, russh_config, serve_stream, serve_tcp, SshService};
