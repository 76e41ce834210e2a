//! What the job runner needs from the engine a job's container runs on: unpack a tar into
//! it, start it, run a command with its output streamed and its exit code, read a path
//! back out as a tar. The step and phase semantics, masking, cancel and timeout live in the
//! runner (`jobs/mod.rs`) once; [`DockerJob`] is the Docker engine's side (Docker's archive
//! and exec APIs), `backend/kubernetes/jobs.rs` the Kubernetes one (`pods/exec` with `tar`).

use std::future::Future;
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    DownloadFromContainerOptions, StartContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{file_chunks, JobError, Tar};
use crate::mask::LogStream;

/// A command's output as it is written: which stream, and the bytes.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<(LogStream, Bytes), JobError>> + Send>>;
/// A command's exit code, asked for once its output ended.
pub type ExitCode = Pin<Box<dyn Future<Output = Result<i64, JobError>> + Send>>;

/// A started command.
pub struct Running {
    pub output: OutputStream,
    pub exit: ExitCode,
    /// Whatever must live as long as the command is read (the engine's connection).
    pub keep: Box<dyn std::any::Any + Send>,
}

/// What [`JobEngine::download`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Downloaded {
    /// The tar of the path, this many bytes.
    Done(u64),
    NotFound,
    /// More than the budget; what was written is incomplete.
    TooLarge,
}

/// One job's container on its engine.
#[async_trait::async_trait]
pub trait JobEngine: Send + Sync {
    /// Unpack `tar` at `path` (a directory that exists) of the container's filesystem.
    async fn upload(&self, path: &str, tar: Tar) -> Result<(), JobError>;
    /// Start the container once the uploads are in (nothing where it runs already).
    async fn start(&self) -> Result<(), JobError>;
    /// Whether the job's secret variables are in the container's own environment already
    /// (a Kubernetes Secret referenced by the Pod), so the first command is not given them.
    fn secrets_in_container(&self) -> bool;
    /// Start `cmd` in `workdir` with `env` (`NAME=VALUE`) added to the container's.
    async fn exec(
        &self,
        cmd: Vec<String>,
        env: Vec<String>,
        workdir: String,
    ) -> Result<Running, JobError>;
    /// Run a helper command to its end and return its standard output.
    async fn capture(&self, cmd: &[&str]) -> Result<Vec<u8>, JobError>;
    /// Write `path` as a tar (entries named from its last component on) to `into`, at most
    /// `max` bytes.
    async fn download(
        &self,
        path: &str,
        into: &mut (dyn AsyncWrite + Unpin + Send),
        max: u64,
    ) -> Result<Downloaded, JobError>;
}

/// A job container on Docker.
pub struct DockerJob<'a> {
    pub docker: &'a Docker,
    pub job_id: &'a str,
    pub container: &'a str,
    /// Claimed from the job pool: started already.
    pub pooled: bool,
}

impl DockerJob<'_> {
    fn err(&self, action: &str) -> impl FnOnce(DockerError) -> JobError {
        let job = self.job_id.to_string();
        let action = action.to_string();
        move |source| JobError::Docker {
            job,
            action,
            source,
        }
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> JobError {
        let job = self.job_id.to_string();
        move |source| JobError::Io { job, source }
    }
}

#[async_trait::async_trait]
impl JobEngine for DockerJob<'_> {
    async fn upload(&self, path: &str, tar: Tar) -> Result<(), JobError> {
        let body = match tar {
            Tar::Bytes(bytes) => bollard::body_full(bytes.into()),
            Tar::File(file) => {
                let file = tokio::fs::File::open(&file).await.map_err(self.io())?;
                bollard::body_try_stream(file_chunks(file))
            }
        };
        self.docker
            .upload_to_container(
                self.container,
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(self.err(&format!("upload to {path}")))
    }

    async fn start(&self) -> Result<(), JobError> {
        if self.pooled {
            return Ok(());
        }
        self.docker
            .start_container(self.container, None::<StartContainerOptions>)
            .await
            .map_err(self.err("start container"))
    }

    fn secrets_in_container(&self) -> bool {
        false
    }

    async fn exec(
        &self,
        cmd: Vec<String>,
        env: Vec<String>,
        workdir: String,
    ) -> Result<Running, JobError> {
        let exec = self
            .docker
            .create_exec(
                self.container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    env: Some(env),
                    working_dir: Some(workdir),
                    ..Default::default()
                },
            )
            .await
            .map_err(self.err("create exec"))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(self.err("start exec"))?;
        let StartExecResults::Attached { output, .. } = started else {
            return Ok(Running {
                output: Box::pin(futures_util::stream::empty()),
                exit: Box::pin(async { Ok(-1) }),
                keep: Box::new(()),
            });
        };
        let job = self.job_id.to_string();
        let output = output.map(move |chunk| match chunk {
            Ok(LogOutput::StdErr { message }) => Ok((LogStream::Stderr, message)),
            Ok(other) => Ok((LogStream::Stdout, other.into_bytes())),
            Err(source) => Err(JobError::Docker {
                job: job.clone(),
                action: "read exec output".into(),
                source,
            }),
        });
        let (docker, id, err) = (self.docker.clone(), exec.id, self.err("inspect exec"));
        let exit = Box::pin(async move {
            Ok(docker
                .inspect_exec(&id)
                .await
                .map_err(err)?
                .exit_code
                .unwrap_or(-1))
        });
        Ok(Running {
            output: Box::pin(output),
            exit,
            keep: Box::new(()),
        })
    }

    async fn capture(&self, cmd: &[&str]) -> Result<Vec<u8>, JobError> {
        let exec = self
            .docker
            .create_exec(
                self.container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .map_err(self.err("create exec"))?;
        let mut stdout = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(self.err("start exec"))?
        {
            while let Some(chunk) = output.next().await {
                if let LogOutput::StdOut { message } =
                    chunk.map_err(self.err("read exec output"))?
                {
                    stdout.extend_from_slice(&message);
                }
            }
        }
        Ok(stdout)
    }

    async fn download(
        &self,
        path: &str,
        into: &mut (dyn AsyncWrite + Unpin + Send),
        max: u64,
    ) -> Result<Downloaded, JobError> {
        let mut stream = self.docker.download_from_container(
            self.container,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(Downloaded::NotFound),
                Err(e) => return Err(self.err(&format!("download {path}"))(e)),
            };
            total += chunk.len() as u64;
            if total > max {
                return Ok(Downloaded::TooLarge);
            }
            into.write_all(&chunk).await.map_err(self.io())?;
        }
        into.flush().await.map_err(self.io())?;
        Ok(Downloaded::Done(total))
    }
}
