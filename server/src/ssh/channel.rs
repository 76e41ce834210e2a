//! What an SSH connection's channels do, through the embedded agent (the server never
//! touches Docker itself):
//!
//! - a **session** channel collects its `pty-req` and `env` requests, then runs its `exec`
//!   command, `shell` or `sftp` subsystem as an attached `docker exec` in the environment's
//!   main container (the devfile's first container that mounts sources), with a TTY when a
//!   PTY was requested (`window-change` resizes it); stdout, stderr (without a TTY) and the
//!   exit status go back to the client. A stopped environment is started first, with
//!   progress on the channel's stderr.
//! - a **direct-tcpip** channel (`ssh -L`) connects to a port of the environment's network
//!   namespace: `localhost`, `127.0.0.1`, `::1` or `0.0.0.0` name the environment itself
//!   (other destinations are refused, so the server is no proxy to anywhere else); the
//!   connection goes to the namespace's address on its network, and when nothing listens
//!   there (a service on the pod's loopback only, as editors' servers listen), through
//!   `nc 127.0.0.1 PORT` run in the pod's infra container (Cove's busybox) — both in
//!   [`crate::ports::connect`], shared with port forwarding and the endpoint proxy.
//!
//! An open session is activity for the idle stop (recorded when it opens, on input, and
//! every [`TOUCH_EVERY`] while it lasts), and it ends (with the reason on stderr) once its
//! user loses access to the environment ([`crate::live_auth`]).

use std::time::Duration;

use cove_agent::worker::{ExecInput, ExecOutput};
use cove_api::EnvState;
use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tokio::io::AsyncWriteExt;

use super::server::Login;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

/// How often an open SSH session records activity.
pub const TOUCH_EVERY: Duration = Duration::from_secs(30);
/// Most `env` requests one session keeps, and the longest value.
pub const MAX_VARS: usize = 64;
pub const MAX_VAR_BYTES: usize = 4096;
/// How long a stopped environment may take to start on connect.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Where the `sftp` subsystem's server is looked for in the container (Debian's
/// openssh-sftp-server first).
pub const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/lib/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/libexec/openssh/sftp-server",
];

/// A name an `env` request may set.
pub fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name.len() <= 128
}

/// What a session channel runs.
enum Program {
    Shell,
    Exec(String),
    Sftp,
}

fn command_of(program: &Program) -> Vec<String> {
    let sh = |script: String| vec!["/bin/sh".to_string(), "-c".to_string(), script];
    match program {
        Program::Shell => sh(
            "cd \"${PROJECT_SOURCE:-${PROJECTS_ROOT:-/}}\" 2>/dev/null; \
             if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi"
                .into(),
        ),
        // like sshd: the user's command through a shell (bash when the image has it)
        Program::Exec(command) => vec![
            "/bin/sh".into(),
            "-c".into(),
            "if command -v bash >/dev/null; then exec bash -c \"$1\"; else exec sh -c \"$1\"; fi"
                .into(),
            "sh".into(),
            command.clone(),
        ],
        Program::Sftp => {
            let mut script = String::new();
            for path in SFTP_SERVERS {
                script.push_str(&format!("[ -x {path} ] && exec {path}; "));
            }
            script.push_str(
                "echo 'cove: no sftp-server in this container (install openssh-sftp-server)' >&2; exit 127",
            );
            sh(script)
        }
    }
}

/// Runs one session channel to its end.
pub(super) async fn run_session(state: AppState, login: Login, channel: Channel<Msg>) {
    let (mut read, write) = channel.split();
    let mut pty: Option<(u16, u16, String)> = None;
    let mut vars: Vec<String> = Vec::new();
    // the requests before the program: pty-req, env, then exec | shell | subsystem
    let program = loop {
        match read.wait().await {
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            }) => pty = Some((clamp(col_width), clamp(row_height), term)),
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) => {
                if valid_var_name(&variable_name)
                    && variable_value.len() <= MAX_VAR_BYTES
                    && vars.len() < MAX_VARS
                {
                    vars.push(format!("{variable_name}={variable_value}"));
                }
            }
            Some(ChannelMsg::RequestShell { .. }) => break Program::Shell,
            Some(ChannelMsg::Exec { command, .. }) => {
                break Program::Exec(String::from_utf8_lossy(&command).into_owned())
            }
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => {
                break Program::Sftp
            }
            Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    let mut stderr = write.make_writer_ext(Some(1));
    let env = match ensure_running(&state, &login.env.id, &mut stderr).await {
        Ok(env) => env,
        Err(message) => {
            let _ = stderr
                .write_all(format!("cove: {message}\r\n").as_bytes())
                .await;
            let _ = stderr.flush().await;
            let _ = write.exit_status(255).await;
            let _ = write.eof().await;
            let _ = write.close().await;
            return;
        }
    };
    let agent = match state.envs().agent_for(&env) {
        Ok(agent) => agent,
        Err(e) => {
            let _ = stderr.write_all(format!("cove: {e}\r\n").as_bytes()).await;
            let _ = write.exit_status(255).await;
            let _ = write.close().await;
            return;
        }
    };
    let component = match login.component.clone().or_else(|| main_component(&env)) {
        Some(c) => c,
        None => {
            let _ = stderr
                .write_all(b"cove: the environment has no container\r\n")
                .await;
            let _ = write.exit_status(255).await;
            let _ = write.close().await;
            return;
        }
    };
    let tty = match (&program, &pty) {
        (Program::Sftp, _) => None,
        (_, Some((cols, rows, term))) => {
            if !term.is_empty() && term.len() <= 64 {
                vars.push(format!("TERM={term}"));
            }
            Some((*cols, *rows))
        }
        (_, None) => None,
    };
    let has_tty = tty.is_some();
    let exec = match agent
        .open_exec(&env.id, &component, command_of(&program), tty, vars)
        .await
    {
        Ok(exec) => exec,
        Err(e) => {
            tracing::warn!(env = %env.id, error = %e, "SSH session could not start");
            let _ = stderr
                .write_all(b"cove: the command could not be started in the environment\r\n")
                .await;
            let _ = write.exit_status(255).await;
            let _ = write.close().await;
            return;
        }
    };
    let _ = state.store().touch_env(&env.id, now_ms()).await;
    let cove_agent::worker::ExecSession { input, mut output } = exec;
    let mut stdout = write.make_writer();
    let revoked = login.grant.clone().revoked(state.clone());
    tokio::pin!(revoked);
    let mut touch = tokio::time::interval(TOUCH_EVERY);
    touch.tick().await;
    let mut input = Some(input);
    let mut withdrawn: Option<String> = None;
    let code = loop {
        tokio::select! {
            out = output.recv() => match out {
                Some(ExecOutput::Stdout(bytes)) => {
                    if stdout.write_all(&bytes).await.is_err() { break None; }
                    let _ = stdout.flush().await;
                }
                Some(ExecOutput::Stderr(bytes)) => {
                    if stderr.write_all(&bytes).await.is_err() { break None; }
                    let _ = stderr.flush().await;
                }
                Some(ExecOutput::Exit(code)) => break Some(code),
                None => break None,
            },
            msg = read.wait(), if input.is_some() => {
                let Some(tx) = input.as_ref() else { continue };
                match msg {
                    Some(ChannelMsg::Data { data }) => {
                        if tx.send(ExecInput::Data(data.to_vec())).await.is_err() {
                            input = None;
                        }
                    }
                    Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                        let _ = tx
                            .send(ExecInput::Resize { cols: clamp(col_width), rows: clamp(row_height) })
                            .await;
                    }
                    // with a TTY, the engine ends the output when stdin closes: the client's
                    // EOF (ssh -tt with no input) must not cut the command's output short
                    Some(ChannelMsg::Eof) if has_tty => {}
                    Some(ChannelMsg::Eof) => {
                        let _ = tx.send(ExecInput::Eof).await;
                    }
                    Some(ChannelMsg::Close) | None => {
                        // the client is gone: closing stdin ends most programs
                        let _ = tx.send(ExecInput::Eof).await;
                        input = None;
                    }
                    Some(_) => {}
                }
            },
            _ = touch.tick() => {
                let _ = state.store().touch_env(&env.id, now_ms()).await;
            }
            reason = &mut revoked, if withdrawn.is_none() => {
                withdrawn = Some(reason);
                break None;
            }
        }
    };
    if let Some(reason) = withdrawn {
        let _ = stderr
            .write_all(format!("\r\ncove: session closed: {reason}\r\n").as_bytes())
            .await;
        let _ = stderr.flush().await;
    }
    let _ = state.store().touch_env(&env.id, now_ms()).await;
    drop(input);
    let _ = stdout.flush().await;
    if let Some(code) = code {
        let status = u32::try_from(code).unwrap_or(255);
        let _ = write.exit_status(status).await;
    }
    let _ = write.eof().await;
    let _ = write.close().await;
}

fn clamp(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX).max(1)
}

fn main_component(env: &EnvRow) -> Option<String> {
    let plan: devfiles::EnvironmentPlan = serde_json::from_str(&env.plan_json).ok()?;
    plan.main_container().map(|c| c.name.clone())
}

/// The environment, running: a stopped (or failed) one is started and awaited, with its
/// progress written to `progress` (the session's stderr).
async fn ensure_running(
    state: &AppState,
    env_id: &str,
    progress: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<EnvRow, String> {
    let load = || async {
        state
            .store()
            .env(env_id)
            .await
            .map_err(|_| "cannot read the environment".to_string())?
            .ok_or_else(|| "the environment was deleted".to_string())
    };
    let mut env = load().await?;
    if env.state == EnvState::Running {
        return Ok(env);
    }
    if matches!(env.state, EnvState::Stopped | EnvState::Failed) {
        let _ = progress
            .write_all(format!("cove: starting environment {} …\r\n", env.name).as_bytes())
            .await;
        let _ = progress.flush().await;
        if let Err(e) = crate::envs::start_env(
            axum::extract::State(state.clone()),
            axum::Extension(env.clone()),
        )
        .await
        {
            // someone else may have started it meanwhile: wait below either way
            tracing::debug!(env = %env.id, error = ?e, "start on SSH connect");
        }
    }
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut last = env.state;
    loop {
        env = load().await?;
        if env.state != last {
            last = env.state;
            let _ = progress
                .write_all(
                    format!(
                        "cove: environment {} is {}\r\n",
                        env.name,
                        env.state.as_str()
                    )
                    .as_bytes(),
                )
                .await;
            let _ = progress.flush().await;
        }
        match env.state {
            EnvState::Running => return Ok(env),
            EnvState::Starting | EnvState::Creating => {}
            other => {
                return Err(format!(
                    "environment {} is {}{}",
                    env.name,
                    other.as_str(),
                    env.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ))
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "environment {} did not start within 5 minutes",
                env.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a direct-tcpip destination names the environment itself.
pub fn is_environment_host(host: &str) -> bool {
    matches!(
        host.trim_start_matches('[').trim_end_matches(']'),
        "localhost" | "127.0.0.1" | "::1" | "0.0.0.0" | "::"
    )
}

/// Opens a local forwarding (`ssh -L`) channel to `host:port` in the environment.
pub(super) async fn run_direct_tcpip(
    state: AppState,
    login: Login,
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    host: String,
    port: u32,
) {
    let refuse = |why: &str| ChannelOpenFailure::Other {
        code: 2, // SSH_OPEN_CONNECT_FAILED
        reason: why.to_string(),
    };
    if !is_environment_host(&host) {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        return;
    }
    let Ok(port) = u16::try_from(port) else {
        reply.reject(refuse("invalid port")).await;
        return;
    };
    match crate::ports::connect(&state, &login.env.id, port).await {
        Ok(mut stream) => {
            reply.accept().await;
            crate::ports::touch(&state, &login.env).await;
            let mut channel = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut channel, &mut stream).await;
            crate::ports::touch(&state, &login.env).await;
        }
        Err(e) => reply.reject(refuse(&e.to_string())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert!(valid_var_name("LANG"));
        assert!(valid_var_name("LC_ALL"));
        assert!(valid_var_name("_x1"));
        assert!(!valid_var_name(""));
        assert!(!valid_var_name("1A"));
        assert!(!valid_var_name("A=B"));
        assert!(!valid_var_name("A B"));
    }

    #[test]
    fn only_the_environment_is_a_forwarding_destination() {
        for h in ["localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"] {
            assert!(is_environment_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "example.org",
            "169.254.169.254",
            "",
            "localhost.evil",
        ] {
            assert!(!is_environment_host(h), "{h}");
        }
    }
}
