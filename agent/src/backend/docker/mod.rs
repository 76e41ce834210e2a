//! The Docker backend: [`Runtime`] implements [`Backend`] by delegating every call to
//! its own methods in `pod/` (environments as pods of containers sharing an infra
//! container's network namespace) and [`crate::jobs::run_job`] (job containers). All
//! Docker logic stays in `pod/` and `jobs/`; this file only translates types.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{Backend, BackendKind, ExecStreams, Result, TarBody};
use crate::jobs::{CancellationToken, JobResult, JobSpec};
use crate::mask::LogSink;
use crate::pod::{ExecOutput, PodSpec, PodStatus, Runtime};

/// The Docker backend is [`Runtime`] itself (this name for readers looking for it).
pub type DockerBackend = Runtime;

/// Pipe size between the engine's multiplexed output and the readers.
const PIPE_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl Backend for Runtime {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    async fn create(&self, spec: &PodSpec) -> Result<PodStatus> {
        Ok(Runtime::create(self, spec).await?)
    }

    async fn start(&self, env: &str) -> Result<PodStatus> {
        Ok(Runtime::start(self, env).await?)
    }

    async fn stop(&self, env: &str) -> Result<()> {
        Ok(Runtime::stop(self, env).await?)
    }

    /// The restart by difference (`pod/restart.rs`): only changed components are recreated.
    async fn recreate(&self, spec: &PodSpec) -> Result<PodStatus> {
        let plan = Runtime::restart_plan(self, spec).await?;
        Ok(Runtime::restart_with(self, spec, &plan).await?)
    }

    async fn delete(&self, env: &str) -> Result<()> {
        Ok(Runtime::delete(self, env).await?)
    }

    async fn status(&self, env: &str) -> Result<Option<PodStatus>> {
        Ok(Runtime::status(self, env).await?)
    }

    async fn list(&self) -> Result<Vec<PodStatus>> {
        Ok(Runtime::list(self).await?)
    }

    fn exec_limits(&self) -> crate::bounded::ExecLimits {
        Runtime::exec_limits(self)
    }

    async fn exec_limited(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
    ) -> Result<ExecOutput> {
        Ok(Runtime::exec_limited(self, env, component, cmd, vars, workdir, limits).await?)
    }

    async fn exec_streams(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
    ) -> Result<ExecStreams> {
        let vars = if tty.is_some() {
            vec!["TERM=xterm-256color".to_string()]
        } else {
            Vec::new()
        };
        self.exec_streams_with(env, component, cmd, tty, vars).await
    }

    /// `vars` go into the exec's own environment (nothing else is added).
    async fn exec_streams_with(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<ExecStreams> {
        let session = Runtime::exec_attached(self, env, component, cmd, tty, vars).await?;
        Ok(streams(self, env, session, tty))
    }

    /// In the infra container (Cove's busybox), which owns the network namespace.
    async fn namespace_streams(&self, env: &str, cmd: Vec<String>) -> Result<ExecStreams> {
        let session = Runtime::exec_in_namespace(self, env, cmd).await?;
        Ok(streams(self, env, session, None))
    }

    async fn env_address(&self, env: &str) -> Result<Option<std::net::IpAddr>> {
        Ok(Runtime::env_address(self, env).await?)
    }

    async fn volume_streams(
        &self,
        env: &str,
        volume: Option<&str>,
        export: bool,
        helper_image: &str,
    ) -> Result<ExecStreams> {
        Ok(volume_streams(self, env, volume, export, helper_image).await?)
    }

    fn capacity(&self) -> (Option<u64>, Option<u64>) {
        Runtime::capacity(self)
    }

    async fn read_file(
        &self,
        env: &str,
        component: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Option<String>> {
        Ok(Runtime::read_file(self, env, component, path, max_bytes).await?)
    }

    async fn upload_tar_stream(
        &self,
        env: &str,
        component: &str,
        path: &str,
        body: TarBody,
    ) -> Result<()> {
        Ok(Runtime::upload_tar_stream(self, env, component, path, body).await?)
    }

    async fn logs(&self, env: &str, component: &str, tail: u32) -> Result<String> {
        Ok(Runtime::logs(self, env, component, tail).await?)
    }

    async fn wait_running(&self, env: &str, timeout: Duration) -> Result<PodStatus> {
        Ok(Runtime::wait_running(self, env, timeout).await?)
    }

    async fn run_job(
        &self,
        job: &JobSpec,
        sink: &mut LogSink,
        cancel: &CancellationToken,
    ) -> Result<JobResult> {
        Ok(crate::jobs::run_job(Runtime::docker(self), job, sink, cancel).await?)
    }
}

/// An attached Docker exec as [`ExecStreams`]: the multiplexed output split into two pipes,
/// the exit code read from the engine once the output ended, resizes sent to the exec.
fn streams(
    rt: &Runtime,
    env: &str,
    session: crate::pod::TtySession,
    tty: Option<(u16, u16)>,
) -> ExecStreams {
    let crate::pod::TtySession {
        exec_id,
        mut output,
        input,
    } = session;
    // split Docker's multiplexed output into two pipes
    let (out_r, out_w) = tokio::io::simplex(PIPE_BYTES);
    let (err_r, err_w) = tokio::io::simplex(PIPE_BYTES);
    let pump = tokio::spawn(async move {
        let (mut out_w, mut err_w) = (out_w, err_w);
        while let Some(Ok(chunk)) = output.next().await {
            let ok = match chunk {
                bollard::container::LogOutput::StdErr { message } => {
                    err_w.write_all(&message).await
                }
                other => out_w.write_all(&other.into_bytes()).await,
            };
            if ok.is_err() {
                break;
            }
        }
        out_w.shutdown().await.ok();
        err_w.shutdown().await.ok();
    });
    let (rt2, env_id, id) = (rt.clone(), env.to_string(), exec_id.clone());
    let exit = Box::pin(async move {
        pump.await.ok();
        // the output ended: the engine records the exit code right after
        for _ in 0..100 {
            if let Some(code) = rt2.exec_exit_code(&env_id, &id).await? {
                return Ok(Some(code));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    });
    let resize = tty.map(|_| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u16, u16)>(8);
        let (rt, env_id) = (rt.clone(), env.to_string());
        tokio::spawn(async move {
            while let Some((cols, rows)) = rx.recv().await {
                rt.resize_tty(&env_id, &exec_id, cols, rows).await.ok();
            }
        });
        tx
    });
    ExecStreams {
        stdin: input,
        stdout: Box::pin(out_r),
        stderr: tty.is_none().then(|| Box::pin(err_r) as super::BoxReader),
        exit,
        resize,
        keep: Box::new(()),
    }
}

/// [`Backend::volume_streams`] on Docker: the archive between `pod::volumes` and a pipe; the
/// exit code says whether all of it went through.
async fn volume_streams(
    rt: &Runtime,
    env: &str,
    volume: Option<&str>,
    export: bool,
    helper_image: &str,
) -> std::result::Result<ExecStreams, crate::pod::PodError> {
    let (err_r, mut err_w) = tokio::io::simplex(4096);
    let (code_tx, code_rx) = tokio::sync::oneshot::channel::<i64>();
    let exit: super::ExitFuture = Box::pin(async move { Ok(code_rx.await.ok()) });
    if export {
        let mut archive = Box::pin(rt.export_volume(env, volume, helper_image).await?);
        let (out_r, mut out_w) = tokio::io::simplex(PIPE_BYTES);
        tokio::spawn(async move {
            let mut failed = None;
            while let Some(chunk) = archive.next().await {
                match chunk {
                    Ok(bytes) => {
                        if out_w.write_all(&bytes).await.is_err() {
                            failed = Some("the reader went away".to_string());
                            break;
                        }
                    }
                    Err(e) => {
                        failed = Some(format!("reading the volume's archive failed: {e}"));
                        break;
                    }
                }
            }
            drop(archive);
            out_w.shutdown().await.ok();
            if let Some(why) = &failed {
                err_w.write_all(why.as_bytes()).await.ok();
            }
            err_w.shutdown().await.ok();
            let _ = code_tx.send(i64::from(failed.is_some()));
        });
        return Ok(ExecStreams {
            stdin: Box::pin(tokio::io::sink()),
            stdout: Box::pin(out_r),
            stderr: Some(Box::pin(err_r)),
            exit,
            resize: None,
            keep: Box::new(()),
        });
    }
    let (in_r, in_w) = tokio::io::simplex(PIPE_BYTES);
    let archive = tokio_util::io::ReaderStream::with_capacity(in_r, PIPE_BYTES);
    let (rt, env, volume, image) = (
        rt.clone(),
        env.to_string(),
        volume.map(str::to_string),
        helper_image.to_string(),
    );
    tokio::spawn(async move {
        let done = rt
            .import_volume(&env, volume.as_deref(), &image, archive)
            .await;
        if let Err(e) = &done {
            err_w.write_all(e.to_string().as_bytes()).await.ok();
        }
        err_w.shutdown().await.ok();
        let _ = code_tx.send(i64::from(done.is_err()));
    });
    Ok(ExecStreams {
        stdin: Box::pin(in_w),
        stdout: Box::pin(tokio::io::empty()),
        stderr: Some(Box::pin(err_r)),
        exit,
        resize: None,
        keep: Box::new(()),
    })
}
