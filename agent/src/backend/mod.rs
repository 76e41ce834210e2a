//! Where environments and jobs run: one trait, [`Backend`], with two implementations —
//! [`crate::pod::Runtime`] (Docker: `docker/` implements the trait by delegating to `pod/`
//! and [`crate::jobs::run_job`]) and [`kubernetes::KubernetesBackend`] (an environment is one
//! Pod in one namespace, through the API server only).
//!
//! The trait is **object-safe** (`#[async_trait]`, so `&dyn Backend` / `Arc<dyn Backend>`
//! work): an agent picks its backend from its configuration at start, and the code above it
//! (environment lifecycle, commands, the worker) does not become generic over it. Every
//! method takes the environment id; a backend keeps whatever it needs to start a stopped
//! environment again itself (Docker: the stopped containers; Kubernetes: the Pod manifest in
//! a labelled Secret), so `start` needs no plan.
//!
//! Errors are [`BackendError`]: a [`PodError`] for what both backends share (bad id, not
//! found, no such component, over the limits, too large), the engine's own failure otherwise.

pub mod docker;
pub mod kubernetes;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::jobs::{CancellationToken, JobError, JobResult, JobSpec};
use crate::mask::LogSink;
use crate::pod::{ExecOutput, PodError, PodSpec, PodStatus};

/// Which engine a backend drives; the agent reports it as its `backend` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Docker,
    Kubernetes,
}

impl BackendKind {
    /// `docker` or `kubernetes`.
    pub fn label(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Job(#[from] JobError),
    /// A call to the Kubernetes API server failed (the message never holds a credential:
    /// kube's errors carry the status the server sent, not the request).
    #[error("kubernetes {action} for environment `{env}` failed: {message}")]
    Kubernetes {
        env: String,
        action: String,
        message: String,
    },
    /// The environment's Pod did not come up: the reasons its containers wait or ended with.
    #[error("environment `{env}` did not start: {reason}")]
    NotStarted { env: String, reason: String },
    #[error("the {backend} backend does not run {what} yet")]
    Unsupported {
        backend: &'static str,
        what: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, BackendError>;

pub type BoxReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;
pub type BoxWriter = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
/// A tar archive as a stream of chunks (what `sources` and `dotfiles` produce).
pub type TarBody =
    Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>>;
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<Option<i64>>> + Send>>;

/// A running command with its streams: what terminals, `cove env exec` and SSH channels use.
///
/// Read `stdout` and `stderr` concurrently (an engine may block one behind the other), then
/// await `exit`. Shutting `stdin` down closes the command's standard input. Dropping the
/// value detaches from the command.
pub struct ExecStreams {
    pub stdin: BoxWriter,
    pub stdout: BoxReader,
    /// `None` with a TTY: everything comes on `stdout`.
    pub stderr: Option<BoxReader>,
    /// The exit code once the command ended (`None`: the engine did not say).
    pub exit: ExitFuture,
    /// New terminal sizes (cols, rows), with a TTY only.
    pub resize: Option<tokio::sync::mpsc::Sender<(u16, u16)>>,
    /// Whatever must live as long as the streams (the engine's connection).
    pub keep: Box<dyn std::any::Any + Send>,
}

/// Everything an environment or a job needs from the engine under it.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Create and start the environment's pod from its plan; on failure nothing this call
    /// created is left (volumes that existed are kept).
    async fn create(&self, spec: &PodSpec) -> Result<PodStatus>;
    /// Start a stopped environment again (its volumes and `/projects` as they were).
    async fn start(&self, env: &str) -> Result<PodStatus>;
    /// Stop every container; volumes and `/projects` stay.
    async fn stop(&self, env: &str) -> Result<()>;
    /// Replace the containers with a new plan's, keeping volumes and `/projects`.
    async fn recreate(&self, spec: &PodSpec) -> Result<PodStatus>;
    /// Remove everything of the environment: containers, volumes, network, service.
    async fn delete(&self, env: &str) -> Result<()>;
    /// The engine's view of an environment; `None` when it has nothing of it.
    async fn status(&self, env: &str) -> Result<Option<PodStatus>>;
    /// Every environment this backend has (for reconciliation).
    async fn list(&self) -> Result<Vec<PodStatus>>;

    /// The bounds of [`Backend::exec`].
    fn exec_limits(&self) -> crate::bounded::ExecLimits;

    /// Run a command to completion in a component, within `limits` (at most the backend's
    /// own, [`crate::bounded::ExecLimits`]): output past the budget dropped with a note, exit
    /// code 124 at the timeout.
    #[allow(clippy::too_many_arguments)]
    async fn exec_limited(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
    ) -> Result<ExecOutput>;
    /// [`Backend::exec_limited`] within the backend's own bounds.
    async fn exec(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
    ) -> Result<ExecOutput> {
        self.exec_limited(env, component, cmd, vars, workdir, self.exec_limits())
            .await
    }
    /// Start a command with its streams attached; with a TTY of `tty` = (cols, rows) or
    /// without. Nothing bounds its output: the caller streams it.
    async fn exec_streams(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
    ) -> Result<ExecStreams>;
    /// [`Backend::exec_streams`] with `vars` (`NAME=value`) added to the command's
    /// environment. The default runs `env VARS… CMD` for engines whose exec has no
    /// environment of its own.
    async fn exec_streams_with(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<ExecStreams> {
        if vars.is_empty() {
            return self.exec_streams(env, component, cmd, tty).await;
        }
        let mut argv = vec!["env".to_string()];
        argv.extend(vars);
        argv.extend(cmd);
        self.exec_streams(env, component, argv, tty).await
    }
    /// A command without a TTY in the environment's network namespace rather than in one
    /// named component (e.g. `nc 127.0.0.1 PORT` to reach a service that listens on the
    /// environment's loopback only). Docker: the infra container (Cove's busybox);
    /// Kubernetes: the Pod's first container (every container of a Pod shares its loopback).
    async fn namespace_streams(&self, env: &str, cmd: Vec<String>) -> Result<ExecStreams> {
        let _ = (env, cmd);
        Err(BackendError::Unsupported {
            backend: self.kind().label(),
            what: "commands in the environment's network namespace",
        })
    }
    /// A byte stream to `port` on the environment's own loopback (port tunnels, SSH
    /// `direct-tcpip`): what is written to `stdin` goes to the connection, `stdout` reads
    /// from it, `exit` resolves once it closed. The default relays through `nc 127.0.0.1
    /// PORT` in [`Backend::namespace_streams`] (Docker: the infra container's busybox).
    async fn connect_port(&self, env: &str, port: u16) -> Result<ExecStreams> {
        let cmd = ["nc", "127.0.0.1", &port.to_string()].map(str::to_string);
        self.namespace_streams(env, cmd.to_vec()).await
    }
    /// The address of the environment's network namespace as this host reaches it; `None`
    /// when it has none this host can dial (then ports go through [`Backend::namespace_streams`]).
    /// One of the environment's volumes (`None`: the sources, `/projects`) as a tar archive:
    /// `export` — the archive on stdout; else the volume made anew from the archive on
    /// stdin. Exit 0 when it all went through, else 1 with the reason on stderr. The
    /// environment is stopped meanwhile (`cove env move`); nothing of it runs.
    async fn volume_streams(
        &self,
        env: &str,
        volume: Option<&str>,
        export: bool,
        helper_image: &str,
    ) -> Result<ExecStreams> {
        let _ = (env, volume, export, helper_image);
        Err(BackendError::Unsupported {
            backend: self.kind().label(),
            what: "environment moves (copying volumes between agents)",
        })
    }

    async fn env_address(&self, env: &str) -> Result<Option<std::net::IpAddr>> {
        let _ = env;
        Ok(None)
    }
    /// The engine's CPUs (millicores) and memory (bytes), the default maximum of a
    /// container's limits; `(None, None)` when the backend does not know them.
    fn capacity(&self) -> (Option<u64>, Option<u64>) {
        (None, None)
    }
    /// Read a file of at most `max_bytes`; `Ok(None)` when it cannot be read.
    async fn read_file(
        &self,
        env: &str,
        component: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Option<String>>;
    /// Unpack a tar archive, streamed in chunks, into a component's filesystem at `path`.
    async fn upload_tar_stream(
        &self,
        env: &str,
        component: &str,
        path: &str,
        body: TarBody,
    ) -> Result<()>;
    /// [`Backend::upload_tar_stream`] of an archive in memory.
    async fn upload_tar(&self, env: &str, component: &str, path: &str, tar: Vec<u8>) -> Result<()> {
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) });
        self.upload_tar_stream(env, component, path, Box::pin(body))
            .await
    }
    /// The last `tail` lines a component wrote (bounded like an exec's output).
    async fn logs(&self, env: &str, component: &str, tail: u32) -> Result<String>;

    /// Wait until every container runs, or `timeout` (then the status as it is).
    async fn wait_running(&self, env: &str, timeout: Duration) -> Result<PodStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .status(env)
                .await?
                .ok_or_else(|| PodError::NotFound(env.to_string()))?;
            if status.running() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run one workflow action's job container to its end (see [`crate::jobs::run_job`]).
    async fn run_job(
        &self,
        job: &JobSpec,
        sink: &mut LogSink,
        cancel: &CancellationToken,
    ) -> Result<JobResult>;
}

/// Collect an [`ExecStreams`]' output within `limits`: the bounded output and the exit
/// code (`None` when the timeout struck first or, with `stop_on_overflow`, at the first
/// dropped byte). Shared by backends whose engine gives streams rather than a finished
/// exec.
pub async fn collect_bounded(
    mut streams: ExecStreams,
    limits: crate::bounded::ExecLimits,
    stop_on_overflow: bool,
) -> Result<(crate::bounded::BoundedOutput, Option<i64>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + limits.timeout;
    streams.stdin.shutdown().await.ok();
    let mut out = crate::bounded::BoundedOutput::new(limits.output_bytes);
    let mut stderr = streams.stderr.take();
    let (mut out_open, mut err_open) = (true, stderr.is_some());
    let mut a = vec![0u8; 16 * 1024];
    let mut b = vec![0u8; 16 * 1024];
    while out_open || err_open {
        let step = async {
            tokio::select! {
                r = streams.stdout.read(&mut a), if out_open => (false, r),
                r = async { stderr.as_mut().expect("open").read(&mut b).await }, if err_open => (true, r),
            }
        };
        match tokio::time::timeout_at(deadline, step).await {
            Err(_) => return Ok((out, None)),
            Ok((is_err, Ok(0) | Err(_))) => {
                if is_err {
                    err_open = false
                } else {
                    out_open = false
                }
            }
            Ok((true, Ok(n))) => out.push(true, &b[..n]),
            Ok((false, Ok(n))) => out.push(false, &a[..n]),
        }
        if stop_on_overflow && out.dropped() > 0 {
            return Ok((out, None));
        }
    }
    match tokio::time::timeout_at(deadline, streams.exit).await {
        Err(_) => Ok((out, None)),
        Ok(code) => Ok((out, Some(code?.unwrap_or(-1)))),
    }
}

/// [`collect_bounded`] as an [`ExecOutput`]: a timeout note and exit code 124 when the
/// command did not finish in time.
pub async fn collect_output(
    streams: ExecStreams,
    limits: crate::bounded::ExecLimits,
) -> Result<ExecOutput> {
    let (out, exit_code) = collect_bounded(streams, limits, false).await?;
    let (stdout, mut stderr) = out.finish();
    if exit_code.is_none() {
        stderr.push_str(&crate::bounded::timeout_note(limits.timeout));
    }
    Ok(ExecOutput {
        exit_code: exit_code.unwrap_or(crate::bounded::TIMED_OUT_EXIT_CODE),
        stdout,
        stderr,
    })
}
