//! Commands in an environment's containers through the API server (`pods/exec` over
//! WebSocket): streams, the exit code from the status channel, and the variables and working
//! directory the exec API does not have.

use kube::api::AttachParams;

use super::{kerr, manifest::pod_name, KubernetesBackend};
use crate::backend::{ExecStreams, Result};

impl KubernetesBackend {
    /// Start `argv` in a component with the streams asked for. Without `with_stdin` the
    /// command's standard input is not attached (it reads end-of-file) and
    /// [`ExecStreams::stdin`] discards what is written.
    pub(super) async fn attach(
        &self,
        env: &str,
        component: &str,
        argv: Vec<String>,
        tty: Option<(u16, u16)>,
        with_stdin: bool,
    ) -> Result<ExecStreams> {
        self.running_pod(env, component).await?;
        self.attach_pod(env, &pod_name(env), component, argv, tty, with_stdin)
            .await
    }

    /// [`Self::attach`] in a Pod named `pod` (a job's); `what` names it in errors.
    pub(super) async fn attach_pod(
        &self,
        what: &str,
        pod: &str,
        component: &str,
        argv: Vec<String>,
        tty: Option<(u16, u16)>,
        with_stdin: bool,
    ) -> Result<ExecStreams> {
        let env = what;
        let ap = AttachParams::default()
            .container(component)
            .stdin(with_stdin)
            .stdout(true)
            .stderr(tty.is_none())
            .tty(tty.is_some())
            .max_stdout_buf_size(64 * 1024)
            .max_stderr_buf_size(64 * 1024)
            .max_stdin_buf_size(64 * 1024);
        let mut process = self
            .pods()
            .exec(pod, argv, &ap)
            .await
            .map_err(kerr(env, "exec"))?;
        let stdin: crate::backend::BoxWriter = match process.stdin() {
            Some(w) => Box::pin(w),
            None => Box::pin(tokio::io::sink()),
        };
        let missing = |what: &str| crate::backend::BackendError::Kubernetes {
            env: env.to_string(),
            action: "exec".into(),
            message: format!("the connection has no {what}"),
        };
        let stdout = process.stdout().ok_or_else(|| missing("stdout"))?;
        let stderr = process.stderr();
        let status = process
            .take_status()
            .ok_or_else(|| missing("status channel"))?;
        let resize = match (tty, process.terminal_size()) {
            (Some((cols, rows)), Some(mut sizes)) => {
                use futures_util::SinkExt;
                let (tx, mut rx) = tokio::sync::mpsc::channel::<(u16, u16)>(8);
                tx.try_send((cols, rows)).ok();
                tokio::spawn(async move {
                    while let Some((width, height)) = rx.recv().await {
                        let size = kube::api::TerminalSize {
                            width: width.max(1),
                            height: height.max(1),
                        };
                        if sizes.send(size).await.is_err() {
                            break;
                        }
                    }
                });
                Some(tx)
            }
            _ => None,
        };
        let exit = Box::pin(async move { Ok(status.await.map(|s| exit_code(&s))) });
        Ok(ExecStreams {
            stdin,
            stdout: Box::pin(stdout),
            stderr: stderr.map(|e| Box::pin(e) as crate::backend::BoxReader),
            exit,
            resize,
            keep: Box::new(process),
        })
    }

    /// A connection to `port` on the Pod's loopback through the API server
    /// (`pods/portforward`): no program in the Pod's images is needed. The stream ends when
    /// the connection closes, or with the kubelet's error on stderr (exit code 1) when the
    /// port cannot be reached.
    pub(super) async fn port_streams(&self, env: &str, port: u16) -> Result<ExecStreams> {
        use tokio::io::AsyncWriteExt;
        self.pods()
            .get_opt(&pod_name(env))
            .await
            .map_err(kerr(env, "get pod"))?
            .ok_or_else(|| crate::pod::PodError::NotFound(env.to_string()))?;
        let mut forwarder = self
            .pods()
            .portforward(&pod_name(env), &[port])
            .await
            .map_err(kerr(env, "port-forward"))?;
        let missing = |what: &str| crate::backend::BackendError::Kubernetes {
            env: env.to_string(),
            action: "port-forward".into(),
            message: format!("the connection has no {what}"),
        };
        let stream = forwarder
            .take_stream(port)
            .ok_or_else(|| missing("stream"))?;
        let error = forwarder
            .take_error(port)
            .ok_or_else(|| missing("error channel"))?;
        let (mut from_pod, to_pod) = tokio::io::split(stream);
        let (out_r, mut out_w) = tokio::io::simplex(64 * 1024);
        let (err_r, mut err_w) = tokio::io::simplex(4 * 1024);
        let (code_tx, code_rx) = tokio::sync::oneshot::channel::<i64>();
        tokio::spawn(async move {
            let code = {
                let copy = tokio::io::copy(&mut from_pod, &mut out_w);
                tokio::pin!(copy, error);
                tokio::select! {
                    _ = &mut copy => 0,
                    e = &mut error => match e {
                        Some(message) => {
                            err_w.write_all(message.as_bytes()).await.ok();
                            1
                        }
                        // the connection ended: what the Pod sent before is still copied
                        None => {
                            (&mut copy).await.ok();
                            0
                        }
                    },
                }
            };
            out_w.shutdown().await.ok();
            err_w.shutdown().await.ok();
            let _ = code_tx.send(code);
        });
        Ok(ExecStreams {
            stdin: Box::pin(to_pod),
            stdout: Box::pin(out_r),
            stderr: Some(Box::pin(err_r)),
            exit: Box::pin(async move { Ok(code_rx.await.ok()) }),
            resize: None,
            keep: Box::new(forwarder),
        })
    }

    pub(super) async fn exec_bounded(
        &self,
        env: &str,
        component: &str,
        argv: Vec<String>,
        limits: crate::bounded::ExecLimits,
        stop_on_overflow: bool,
    ) -> Result<(crate::bounded::BoundedOutput, Option<i64>)> {
        let streams = self.attach(env, component, argv, None, false).await?;
        crate::backend::collect_bounded(streams, limits, stop_on_overflow).await
    }
}

/// The exit code in an exec's final status: 0 on success, the `ExitCode` cause otherwise.
pub(super) fn exit_code(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> i64 {
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_deref()?.parse().ok())
        })
        .unwrap_or(-1)
}

/// `cmd` with `vars` set and run in `workdir` (the exec API has neither).
pub(super) fn wrap(cmd: &[&str], vars: &[(String, String)], workdir: Option<&str>) -> Vec<String> {
    let mut argv = Vec::new();
    if let Some(dir) = workdir {
        argv.extend(
            [
                "/bin/sh",
                "-c",
                "cd -- \"$1\" || exit 1; shift; exec \"$@\"",
                "sh",
                dir,
            ]
            .map(str::to_string),
        );
    }
    if !vars.is_empty() {
        argv.push("env".into());
        argv.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
    }
    argv.extend(cmd.iter().map(|s| s.to_string()));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_and_workdir_wrap_the_command() {
        assert_eq!(wrap(&["ls"], &[], None), ["ls"]);
        assert_eq!(
            wrap(
                &["ls", "-l"],
                &[("A".into(), "1".into())],
                Some("/projects")
            ),
            [
                "/bin/sh",
                "-c",
                "cd -- \"$1\" || exit 1; shift; exec \"$@\"",
                "sh",
                "/projects",
                "env",
                "A=1",
                "ls",
                "-l"
            ]
        );
    }

    #[test]
    fn exit_codes_come_from_the_status_causes() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&ok), 0);
        let failed = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(&failed), 3);
    }
}
