//! How the server talks to an agent: [`AgentHandle`] — commands with replies,
//! terminals, attached execs, volume streams — and an attached command's
//! streams as an [`ExecSession`].

use super::*;

/// How the server talks to an agent.
#[derive(Clone)]
pub struct AgentHandle {
    pub(super) tx: mpsc::Sender<Job>,
    pub(super) backend: Arc<dyn Backend>,
    /// The image of infra containers, also the never-started helper of volume copies.
    pub(super) infra_image: Arc<str>,
    /// Warm pod shells (Docker, `warm_shells` > 0).
    pub(super) shells: Option<Arc<Shells>>,
}

/// The two ends of an interactive terminal.
pub struct Terminal {
    pub input: mpsc::Sender<TermInput>,
    pub output: mpsc::Receiver<TermOutput>,
}

impl AgentHandle {
    /// The engine's CPUs (millicores) and memory (bytes): the default maximum
    /// of a container's limits.
    pub fn capacity(&self) -> (Option<u64>, Option<u64>) {
        self.backend.capacity()
    }

    /// Which engine this agent drives.
    pub fn backend_kind(&self) -> crate::backend::BackendKind {
        self.backend.kind()
    }

    /// At the agent's end: its ready warm pod shells are removed (environments stay).
    pub async fn shutdown(&self) {
        if let Some(shells) = &self.shells {
            shells.shutdown().await;
        }
    }

    /// Send a command and wait for its direct reply.
    pub async fn call(&self, cmd: EnvCommand) -> AgentReply {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((cmd, tx)).await.is_err() {
            return AgentReply::Error {
                message: "the agent is not running".into(),
            };
        }
        rx.await.unwrap_or(AgentReply::Error {
            message: "the agent stopped before answering".into(),
        })
    }

    /// Open an interactive terminal (an exec with a TTY, `TERM=xterm-256color`) running
    /// `cmd` in `component`. Output ends with [`TermOutput::Exit`].
    pub async fn open_terminal(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<Terminal, String> {
        let streams = self
            .backend
            .exec_streams(env, component, cmd, Some((cols, rows)))
            .await
            .map_err(|e| e.to_string())?;
        let (in_tx, mut in_rx) = mpsc::channel::<TermInput>(64);
        let (out_tx, out_rx) = mpsc::channel::<TermOutput>(64);
        let ExecStreams {
            mut stdin,
            mut stdout,
            stderr: _,
            exit,
            resize,
            keep,
        } = streams;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Some(msg) = in_rx.recv().await {
                match msg {
                    TermInput::Data { bytes } => {
                        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                            break;
                        }
                    }
                    TermInput::Resize { cols, rows } => {
                        if let Some(r) = &resize {
                            r.send((cols, rows)).await.ok();
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let _keep = keep;
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let bytes = buf[..n].to_vec();
                        if out_tx.send(TermOutput::Data { bytes }).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let code = exit.await.ok().flatten().unwrap_or(-1);
            let _ = out_tx.send(TermOutput::Exit { code }).await;
        });
        Ok(Terminal {
            input: in_tx,
            output: out_rx,
        })
    }
}

/// Input to an attached exec ([`AgentHandle::open_exec`]).
#[derive(Debug)]
pub enum ExecInput {
    Data(Vec<u8>),
    /// Close the command's stdin.
    Eof,
    /// New TTY size (ignored without a TTY).
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// Output of an attached exec; ends with [`ExecOutput::Exit`].
#[derive(Debug)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i64),
}

/// The two ends of an attached exec.
pub struct ExecSession {
    pub input: mpsc::Sender<ExecInput>,
    pub output: mpsc::Receiver<ExecOutput>,
}

impl AgentHandle {
    /// Start `cmd` in `component` with stdin, stdout and stderr attached, with a TTY of
    /// (cols, rows) or without one, `vars` (`NAME=value`) added to its environment. Used by
    /// the SSH server's session channels; the output is streamed, never collected.
    pub async fn open_exec(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<ExecSession, String> {
        let streams = self
            .backend
            .exec_streams_with(env, component, cmd, tty, vars)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pump_exec(streams))
    }

    /// Runs `cmd` without a TTY in the environment's network namespace (Docker: its infra
    /// container, Cove's busybox; Kubernetes: the Pod's first container), stdin/stdout/stderr
    /// attached: e.g. `nc 127.0.0.1 PORT` to reach a service that listens on the pod's
    /// loopback only.
    pub async fn open_namespace_exec(
        &self,
        env: &str,
        cmd: Vec<String>,
    ) -> Result<ExecSession, String> {
        // the server's port relay (`nc 127.0.0.1 PORT`) is the backend's port connection
        // (Docker: that very command in the infra container; Kubernetes: pods/portforward)
        let streams = match relay_port(&cmd) {
            Some(port) => self.backend.connect_port(env, port).await,
            None => self.backend.namespace_streams(env, cmd).await,
        }
        .map_err(|e| e.to_string())?;
        Ok(pump_exec(streams))
    }

    /// One of the environment's volumes (`None`: the sources) as a tar archive out
    /// (`export`: on stdout) or in (from stdin): [`crate::backend::Backend::volume_streams`],
    /// for `cove env move`.
    pub async fn open_volume(
        &self,
        env: &str,
        volume: Option<&str>,
        export: bool,
    ) -> Result<ExecSession, String> {
        let streams = self
            .backend
            .volume_streams(env, volume, export, &self.infra_image)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pump_exec(streams))
    }

    /// The address of the environment's network namespace as this host reaches it (for
    /// forwarded TCP connections); `None` when it is not running or the backend has none.
    pub async fn env_address(&self, env: &str) -> Result<Option<std::net::IpAddr>, String> {
        self.backend
            .env_address(env)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The port of the server's relay command, `nc 127.0.0.1 PORT` (server/src/ports).
fn relay_port(cmd: &[String]) -> Option<u16> {
    match cmd {
        [nc, host, port] if nc == "nc" && host == "127.0.0.1" => {
            port.parse().ok().filter(|p| *p > 0)
        }
        _ => None,
    }
}

/// An attached command's streams as an [`ExecSession`]: input written to its stdin (EOF
/// shuts it down), stdout and stderr read concurrently, then its exit code.
fn pump_exec(streams: ExecStreams) -> ExecSession {
    let (in_tx, mut in_rx) = mpsc::channel::<ExecInput>(64);
    let (out_tx, out_rx) = mpsc::channel::<ExecOutput>(64);
    let ExecStreams {
        mut stdin,
        stdout,
        stderr,
        exit,
        resize,
        keep,
    } = streams;
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(msg) = in_rx.recv().await {
            match msg {
                ExecInput::Data(bytes) => {
                    if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                }
                ExecInput::Eof => {
                    let _ = stdin.shutdown().await;
                }
                ExecInput::Resize { cols, rows } => {
                    if let Some(r) = &resize {
                        r.send((cols, rows)).await.ok();
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        let _keep = keep;
        let out = forward(stdout, out_tx.clone(), ExecOutput::Stdout);
        let err = async {
            match stderr {
                Some(e) => forward(e, out_tx.clone(), ExecOutput::Stderr).await,
                None => true,
            }
        };
        tokio::pin!(out, err);
        let (mut out_done, mut err_done) = (false, false);
        while !(out_done && err_done) {
            // the reader went away: stop at once (dropping the streams detaches)
            tokio::select! {
                ok = &mut out, if !out_done => if ok { out_done = true } else { return },
                ok = &mut err, if !err_done => if ok { err_done = true } else { return },
            }
        }
        let code = exit.await.ok().flatten().unwrap_or(-1);
        let _ = out_tx.send(ExecOutput::Exit(code)).await;
    });
    ExecSession {
        input: in_tx,
        output: out_rx,
    }
}

/// Reads `from` to its end into `to` as `wrap(bytes)`; `false` when `to` is gone.
async fn forward(
    mut from: crate::backend::BoxReader,
    to: mpsc::Sender<ExecOutput>,
    wrap: fn(Vec<u8>) -> ExecOutput,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if to.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::relay_port;

    #[test]
    fn only_the_servers_relay_command_is_a_port_connection() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(relay_port(&v(&["nc", "127.0.0.1", "8080"])), Some(8080));
        assert_eq!(relay_port(&v(&["nc", "127.0.0.1", "0"])), None);
        assert_eq!(relay_port(&v(&["nc", "10.0.0.1", "80"])), None);
        assert_eq!(relay_port(&v(&["nc", "127.0.0.1", "80", "-v"])), None);
        assert_eq!(relay_port(&v(&["sh", "-c", "nc 127.0.0.1 80"])), None);
    }
}
