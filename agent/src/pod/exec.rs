//! Running commands in a pod's containers, reading and writing files, logs.

use bollard::errors::Error as DockerError;
use bollard::models::ExecConfig;
use bollard::query_parameters::{InspectContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;

use super::*;

impl Runtime {
    pub(super) async fn component_id(&self, env: &str, component: &str) -> Result<String> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        list.iter()
            .find(|c| {
                role_of(c) == "component"
                    && c.labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_COMPONENT))
                        .map(String::as_str)
                        == Some(component)
            })
            .and_then(|c| c.id.clone())
            .ok_or_else(|| PodError::NoComponent {
                env: env.to_string(),
                component: component.to_string(),
            })
    }

    /// Run a command to completion in a component and collect its output,
    /// within the runtime's [`ExecLimits`](crate::bounded::ExecLimits): output
    /// past the budget is counted and dropped (a note says how much), and a
    /// command still running at the timeout is abandoned with exit code 124.
    pub async fn exec(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
    ) -> Result<ExecOutput> {
        self.exec_limited(env, component, cmd, vars, workdir, self.exec_limits)
            .await
    }

    /// [`Runtime::exec`] within `limits` (at most the runtime's own timeout).
    pub async fn exec_limited(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
    ) -> Result<ExecOutput> {
        let limits = crate::bounded::ExecLimits {
            output_bytes: limits.output_bytes.min(self.exec_limits.output_bytes),
            timeout: limits.timeout.min(self.exec_limits.timeout),
        };
        let (out, exit_code) = self
            .exec_bounded(env, component, cmd, vars, workdir, limits, false)
            .await?;
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

    /// Read a file of at most `max_bytes` from a component (`cat`). `Ok(None)`
    /// when it cannot be read; an error when it is larger, endless (a device) or
    /// takes longer than [`FILE_READ_TIMEOUT`](crate::bounded::FILE_READ_TIMEOUT).
    /// Reading stops at the first byte past the limit.
    pub async fn read_file(
        &self,
        env: &str,
        component: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Option<String>> {
        let limits = crate::bounded::ExecLimits {
            output_bytes: max_bytes,
            timeout: crate::bounded::FILE_READ_TIMEOUT.min(self.exec_limits.timeout),
        };
        let (out, exit_code) = self
            .exec_bounded(
                env,
                component,
                &["cat", "--", path],
                &[],
                None,
                limits,
                true,
            )
            .await?;
        if out.dropped() > 0 {
            return Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!("{path} is larger than {max_bytes} bytes"),
            });
        }
        match exit_code {
            None => Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!(
                    "reading {path} did not finish within {} s",
                    limits.timeout.as_secs()
                ),
            }),
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.into_stdout()).into_owned(),
            )),
            Some(_) => Ok(None),
        }
    }

    /// Runs `cmd`, keeping at most `limits.output_bytes`. Returns the output and
    /// the exit code (`None` when the timeout struck first). With `stop_on_overflow`
    /// reading stops at the first dropped byte.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exec_bounded(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
        stop_on_overflow: bool,
    ) -> Result<(crate::bounded::BoundedOutput, Option<i64>)> {
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let id = self.component_id(env, component).await?;
        let exec = self
            .docker
            .create_exec(
                &id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    env: Some(vars.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    working_dir: workdir.map(str::to_string),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create exec"))?;
        let mut out = crate::bounded::BoundedOutput::new(limits.output_bytes);
        let mut finished = true;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(Self::err(env, "start exec"))?
        {
            loop {
                let chunk = match tokio::time::timeout_at(deadline, output.next()).await {
                    Err(_) => {
                        finished = false;
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(chunk)) => chunk.map_err(Self::err(env, "read exec output"))?,
                };
                match chunk {
                    bollard::container::LogOutput::StdErr { message } => out.push(true, &message),
                    other => out.push(false, &other.into_bytes()),
                }
                if stop_on_overflow && out.dropped() > 0 {
                    finished = false;
                    break;
                }
            }
            // dropping the stream closes the attach connection: a command that
            // keeps writing gets a broken pipe
        }
        if !finished {
            return Ok((out, None));
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(Self::err(env, "inspect exec"))?;
        Ok((out, Some(inspect.exit_code.unwrap_or(-1))))
    }

    /// Start an interactive command with a TTY in a component. Returns the
    /// exec id (for [`Runtime::resize_tty`] and [`Runtime::exec_exit_code`]),
    /// the output stream and the input writer.
    pub async fn exec_tty(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<TtySession> {
        self.exec_attached(
            env,
            component,
            cmd,
            Some((cols, rows)),
            vec!["TERM=xterm-256color".into()],
        )
        .await
    }

    /// Start a command in a component with stdin, stdout and stderr attached: with a TTY of
    /// `tty` = (cols, rows) (output is one stream), or without (stdout and stderr apart, as
    /// [`bollard::container::LogOutput::StdOut`] / `StdErr`). `vars` are `NAME=value`
    /// additions to the container's environment. Shutting the input down closes the
    /// command's stdin. Nothing bounds its output: the caller streams it.
    pub async fn exec_attached(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<TtySession> {
        let id = self.component_id(env, component).await?;
        self.exec_attached_in(env, &id, cmd, tty, vars).await
    }

    /// Start a command in a component and leave it running (nothing attached, no limits):
    /// the editor's server (crate::editor). It ends with the container.
    pub async fn exec_detached(&self, env: &str, component: &str, cmd: Vec<String>) -> Result<()> {
        let id = self.component_id(env, component).await?;
        let exec = self
            .docker
            .create_exec(
                &id,
                ExecConfig {
                    attach_stdin: Some(false),
                    attach_stdout: Some(false),
                    attach_stderr: Some(false),
                    tty: Some(false),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create exec"))?;
        self.docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: true,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(Self::err(env, "start exec"))?;
        Ok(())
    }

    /// [`Runtime::exec_attached`] without a TTY in the environment's infra container (Cove's
    /// busybox image), which owns the pod's network namespace: what runs there reaches every
    /// component's loopback services (e.g. `nc 127.0.0.1 PORT`).
    pub async fn exec_in_namespace(&self, env: &str, cmd: Vec<String>) -> Result<TtySession> {
        self.exec_attached_in(env, &infra_name(env), cmd, None, Vec::new())
            .await
    }

    pub(super) async fn exec_attached_in(
        &self,
        env: &str,
        id: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<TtySession> {
        let exec = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty.is_some()),
                    cmd: Some(cmd),
                    env: Some(vars),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create terminal"))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty: tty.is_some(),
                    output_capacity: None,
                }),
            )
            .await
            .map_err(Self::err(env, "start terminal"))?;
        let bollard::exec::StartExecResults::Attached { output, input } = started else {
            return Err(PodError::NotFound(env.to_string()));
        };
        let session = TtySession {
            exec_id: exec.id,
            output,
            input,
        };
        if let Some((cols, rows)) = tty {
            self.resize_tty(env, &session.exec_id, cols, rows)
                .await
                .ok();
        }
        Ok(session)
    }

    /// The address of an environment's network namespace (its infra container) on its
    /// network, as the engine's host reaches it; `None` when it has none (not running).
    pub async fn env_address(&self, env: &str) -> Result<Option<std::net::IpAddr>> {
        let inspect = match self
            .docker
            .inspect_container(&infra_name(env), None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(Self::err(env, "inspect infra container")(e)),
        };
        let networks = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        // the environment's own network first (`cove-<env>--net`), else any
        let mut names: Vec<&String> = networks.keys().collect();
        names.sort_by_key(|n| !n.starts_with(&format!("cove-{env}")));
        Ok(names
            .into_iter()
            .filter_map(|n| networks.get(n)?.ip_address.clone())
            .find_map(|ip| ip.parse().ok()))
    }

    pub async fn resize_tty(&self, env: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
        self.docker
            .resize_exec(
                exec_id,
                bollard::query_parameters::ResizeExecOptions {
                    h: rows.max(1) as i32,
                    w: cols.max(1) as i32,
                },
            )
            .await
            .map_err(Self::err(env, "resize terminal"))
    }

    /// Exit code of a finished exec (`None` while it runs).
    pub async fn exec_exit_code(&self, env: &str, exec_id: &str) -> Result<Option<i64>> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(Self::err(env, "inspect exec"))?;
        Ok(if inspect.running == Some(true) {
            None
        } else {
            inspect.exit_code
        })
    }

    /// The last `tail` lines a component wrote to stdout and stderr.
    pub async fn logs(&self, env: &str, component: &str, tail: u32) -> Result<String> {
        let id = self.component_id(env, component).await?;
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        // keep the last `output_bytes` (the end of a log is what matters), for at most the
        // exec timeout
        let cap = self.exec_limits.output_bytes;
        let deadline = tokio::time::Instant::now() + self.exec_limits.timeout;
        let mut stream = self.docker.logs(&id, Some(options));
        let mut tail = crate::bounded::LogTail::new(cap);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
            let chunk = chunk.map_err(Self::err(env, "read logs"))?;
            tail.push(&chunk.into_bytes());
        }
        Ok(tail.into_text())
    }

    /// Write a tar archive into a component's filesystem at `path`.
    pub async fn upload_tar(
        &self,
        env: &str,
        component: &str,
        path: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) });
        self.upload_tar_stream(env, component, path, body).await
    }

    /// Write a tar archive, streamed in chunks, into a component's filesystem
    /// at `path`.
    pub async fn upload_tar_stream(
        &self,
        env: &str,
        component: &str,
        path: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        let id = self.component_id(env, component).await?;
        self.docker
            .upload_to_container(
                &id,
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                bollard::body_try_stream(body),
            )
            .await
            .map_err(Self::err(env, "upload files"))
    }
}
