//! Workflow jobs as Pods: one Pod per job attempt (`restartPolicy: Never`, the job's image
//! running a keep-alive), fenced by a NetworkPolicy that denies all ingress and every egress
//! but the job's gateway (`JobSpec::gateway`, an `ipBlock` of its address /32 and its port),
//! its secret variables in a Secret the Pod reads with `envFrom`. Sources, input artifacts
//! and the step runner go in with `tar -x` by exec, every command runs by exec with the
//! runner of `jobs/` (the same step and phase semantics, masking, cancel and timeout as on
//! Docker), artifacts and caches come back with `tar -c` by exec.
//!
//! Order: the policy and the Secret exist before the Pod (so it never runs unfenced or
//! without its variables), both then owned by the Pod (the cluster's garbage collector
//! removes them with it if the agent dies). At the end the Pod is deleted and waited for
//! (its processes are gone), then the Secret and the policy — whatever happened, also when
//! the job's future is dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tokio::io::AsyncWriteExt;

use super::job_manifest::DELETE_GRACE_SECS;
pub use super::job_manifest::{
    job_key, job_object_name, job_pod, job_policy, job_secret, job_selector, ANNOTATION_JOB_ID,
    CONTAINER, LABEL_ATTEMPT, LABEL_JOB, LABEL_OWNER,
};
use super::manifest::{LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY};
use super::{is_status, KubernetesBackend, FATAL_WAITING};
use crate::backend::{BackendError, Result};
use crate::jobs::engine::{Downloaded, JobEngine, Running};
use crate::jobs::{CancellationToken, JobError, JobResult, JobSpec, JobStatus, JobTimings, Tar};
use crate::mask::{LogSink, LogStream};

/// Exit status of the download script when the path does not exist.
const NOT_FOUND_EXIT: i64 = 44;
/// How long the end of a job waits for its Pod to be gone.
const GONE_TIMEOUT: Duration = Duration::from_secs(90);
/// A job Pod's grace period when it is deleted (its commands were stopped already).
/// Largest output of a helper command (a signal, the exported-variable dump).
const CAPTURE_BYTES: usize = 16 << 20;
/// Bounds of a helper command's run.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(120);

/// Deletes a job's objects when dropped before [`Cleanup::run`] (the job's future dropped).
struct Cleanup {
    backend: Option<KubernetesBackend>,
    name: String,
    job_id: String,
}

impl Cleanup {
    async fn run(mut self) -> std::result::Result<(), JobError> {
        let backend = self.backend.take().expect("armed");
        backend.delete_job_objects(&self.job_id, &self.name).await
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(backend) = self.backend.take() {
            let (name, job) = (self.name.clone(), self.job_id.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(error) = backend.delete_job_objects(&job, &name).await {
                        tracing::warn!(%job, %error, "removing a job's Pod failed");
                    }
                });
            }
        }
    }
}

fn jerr(job: &str, action: &str) -> impl FnOnce(kube::Error) -> JobError {
    let (job, action) = (job.to_string(), action.to_string());
    move |e| JobError::Kubernetes {
        job,
        action,
        message: match &e {
            kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
            other => other.to_string(),
        },
    }
}

fn berr(job: &str, action: &str) -> impl FnOnce(BackendError) -> JobError {
    let (job, action) = (job.to_string(), action.to_string());
    move |e| match e {
        BackendError::Job(e) => e,
        other => JobError::Kubernetes {
            job,
            action,
            message: other.to_string(),
        },
    }
}

/// How the wait for the job's container ended.
enum Up {
    Running,
    Cancelled,
    TimedOut,
}

impl KubernetesBackend {
    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Run one job attempt as a Pod (see the module's notes).
    pub(super) async fn run_job_pod(
        &self,
        job: &JobSpec,
        sink: &mut LogSink,
        cancel: &CancellationToken,
    ) -> std::result::Result<JobResult, JobError> {
        let began = Instant::now();
        let deadline = tokio::time::Instant::now() + job.timeout;
        crate::jobs::validate(job)?;
        let source = crate::jobs::fetch_source(job).await?;
        let id = job.job_id.as_str();
        let name = job_object_name(job);
        // a previous run of this attempt (an agent that died) leaves nothing in the way
        self.delete_job_objects(id, &name).await?;
        let cleanup = Cleanup {
            backend: Some(self.clone()),
            name: name.clone(),
            job_id: id.to_string(),
        };
        let created = Instant::now();
        let up = self.create_job_objects(job, cancel, deadline).await;
        let outcome = match up {
            Ok(Up::Running) => {
                tracing::info!(job = %id, attempt = job.attempt, pod = %name, image = %job.image, "job Pod running");
                let engine = PodJob {
                    backend: self,
                    pod: &name,
                    job_id: id,
                };
                let probe_at = job
                    .gateway
                    .map(|g| g.ip())
                    .or(self.config.job_gateway_address);
                match check_fence(&engine, probe_at).await {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let (outcome, first) =
                            crate::jobs::run_in(&engine, job, sink, cancel, source, deadline).await;
                        outcome.map(|mut r| {
                            r.timings.start_latency = first.map(|t| t - created);
                            r
                        })
                    }
                }
            }
            Ok(stopped) => {
                let (status, why) = match stopped {
                    Up::Cancelled => (JobStatus::Cancelled, "cancelled"),
                    _ => (JobStatus::TimedOut, "timed out"),
                };
                let secrets = std::sync::Arc::new(crate::mask::MaskSet::new(
                    job.secrets.iter().map(|(_, v)| v.as_bytes()),
                ));
                let mut out = crate::mask::MaskedOutput::new(sink, &secrets);
                out.system(&format!("[cove] job {why} before its Pod ran"))
                    .await;
                Ok(JobResult {
                    status,
                    commands: Vec::new(),
                    phases: Vec::new(),
                    variables: BTreeMap::new(),
                    artifacts: Vec::new(),
                    error: None,
                    retry: false,
                    timings: JobTimings::default(),
                })
            }
            Err(e) => Err(e),
        };
        let removed = cleanup.run().await;
        let mut result = outcome?;
        removed?;
        result.timings.total = began.elapsed();
        tracing::info!(job = %id, attempt = job.attempt, status = ?result.status, millis = result.timings.total.as_millis() as u64, "job finished");
        Ok(result)
    }

    /// The policy, the Secret, the Pod (in that order), the first two then owned by the
    /// Pod; waits until the job's container runs.
    async fn create_job_objects(
        &self,
        job: &JobSpec,
        cancel: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Up, JobError> {
        let id = job.job_id.as_str();
        let pp = PostParams::default();
        self.policies()
            .create(&pp, &job_policy(job))
            .await
            .map_err(jerr(id, "create network policy"))?;
        let with_secret = !job.secrets.is_empty();
        if with_secret {
            self.secrets()
                .create(&pp, &job_secret(job))
                .await
                .map_err(jerr(id, "create secret"))?;
        }
        let pod = self
            .pods()
            .create(&pp, &job_pod(job, &self.config, with_secret))
            .await
            .map_err(jerr(id, "create pod"))?;
        let name = job_object_name(job);
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.clone(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        };
        let patch = Patch::Merge(serde_json::json!({
            "metadata": { "ownerReferences": [owner] }
        }));
        let pa = PatchParams::default();
        self.policies()
            .patch(&name, &pa, &patch)
            .await
            .map_err(jerr(id, "own network policy"))?;
        if with_secret {
            self.secrets()
                .patch(&name, &pa, &patch)
                .await
                .map_err(jerr(id, "own secret"))?;
        }
        self.wait_job_running(job, &name, cancel, deadline).await
    }

    async fn wait_job_running(
        &self,
        job: &JobSpec,
        name: &str,
        cancel: &CancellationToken,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Up, JobError> {
        let id = job.job_id.as_str();
        let ready = Duration::from_secs(self.config.ready_timeout_secs);
        let ready_by = tokio::time::Instant::now() + ready;
        let not_started = |reason: String| JobError::Kubernetes {
            job: id.to_string(),
            action: "start pod".into(),
            message: reason,
        };
        loop {
            let pod = self
                .pods()
                .get_opt(name)
                .await
                .map_err(jerr(id, "get pod"))?
                .ok_or_else(|| not_started("the Pod is gone".into()))?;
            let status = pod.status.as_ref();
            let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
            let state = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == CONTAINER))
                .and_then(|c| c.state.as_ref());
            if state.is_some_and(|s| s.running.is_some()) {
                return Ok(Up::Running);
            }
            if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
                let reason = w.reason.clone().unwrap_or_default();
                if FATAL_WAITING.contains(&reason.as_str()) {
                    return Err(not_started(format!(
                        "{reason}: {}",
                        w.message.clone().unwrap_or_default()
                    )));
                }
            }
            if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                return Err(not_started(format!(
                    "the container ended with {} ({})",
                    t.exit_code,
                    t.reason.clone().unwrap_or_default()
                )));
            }
            if matches!(phase, "Failed" | "Succeeded") {
                return Err(not_started(format!("the Pod is {phase}")));
            }
            if tokio::time::Instant::now() >= ready_by {
                return Err(not_started(format!(
                    "not running after {} s (phase {phase})",
                    ready.as_secs()
                )));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Up::Cancelled),
                _ = tokio::time::sleep_until(deadline) => return Ok(Up::TimedOut),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Delete a job attempt's Pod and wait until it is gone, then its Secret and policy
    /// (absent objects are fine). A Pod still there after the wait keeps its policy (the
    /// garbage collector removes that with the Pod).
    async fn delete_job_objects(&self, job: &str, name: &str) -> std::result::Result<(), JobError> {
        let dp = DeleteParams {
            grace_period_seconds: Some(DELETE_GRACE_SECS),
            ..Default::default()
        };
        let gone = |r: std::result::Result<_, kube::Error>| match r {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e),
        };
        gone(self.pods().delete(name, &dp).await.map(|_| ())).map_err(jerr(job, "delete pod"))?;
        let until = tokio::time::Instant::now() + GONE_TIMEOUT;
        while self
            .pods()
            .get_opt(name)
            .await
            .map_err(jerr(job, "get pod"))?
            .is_some()
        {
            if tokio::time::Instant::now() >= until {
                return Err(JobError::Kubernetes {
                    job: job.to_string(),
                    action: "delete pod".into(),
                    message: format!("still there after {} s", GONE_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let dp = DeleteParams::default();
        gone(self.secrets().delete(name, &dp).await.map(|_| ()))
            .map_err(jerr(job, "delete secret"))?;
        gone(self.policies().delete(name, &dp).await.map(|_| ()))
            .map_err(jerr(job, "delete network policy"))?;
        Ok(())
    }

    /// Remove every job object labelled with `owner` (at an agent's start: no job of the
    /// process that died can still be driven). Returns the Pods' names.
    pub async fn remove_owned_job_pods(&self, owner: &str) -> Result<Vec<String>> {
        let lp = ListParams::default().labels(&format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLE}=job,{LABEL_OWNER}={owner}"
        ));
        let pods = self
            .pods()
            .list(&lp)
            .await
            .map_err(super::kerr("*", "list job pods"))?;
        let mut removed = Vec::new();
        for p in pods.items {
            let name = p.metadata.name.unwrap_or_default();
            self.delete_job_objects("*", &name)
                .await
                .map_err(BackendError::Job)?;
            removed.push(name);
        }
        Ok(removed)
    }
}

/// The probe of [`check_fence`]: `$1`, `$2` = address and port of a listener that answers
/// `FENCE_OPEN`; prints `fenced` once it cannot be reached, `no-tool` when the image has no
/// way to try, `open` when it stayed reachable.
const FENCE_PROBE: &str = r#"unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
probe() {
  if command -v curl >/dev/null 2>&1; then curl -s -m 2 --noproxy '*' "http://$1:$2/" 2>/dev/null; return; fi
  if command -v wget >/dev/null 2>&1; then wget -q -T 2 -O - "http://$1:$2/" 2>/dev/null; return; fi
  if command -v nc >/dev/null 2>&1; then nc -w 2 "$1" "$2" </dev/null 2>/dev/null; return; fi
  echo no-tool
}
i=0
while [ $i -lt 40 ]; do
  r=$(probe "$1" "$2")
  case "$r" in
    no-tool) echo no-tool; exit 0 ;;
    *cove-fence-open*) ;;
    *) echo fenced; exit 0 ;;
  esac
  i=$((i + 1))
  sleep 0.5
done
echo open
"#;
const FENCE_OPEN: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\ncove-fence-open";

/// The NetworkPolicy reaches a new Pod's rules within the controller's sync (about a second
/// with kube-router): before the first command, wait until the Pod can no longer reach a
/// listener the agent opens beside the gateway (same address, a port the policy does not
/// allow). A policy that is not enforced fails the job (fail closed); an image without
/// `curl`, `wget` or `nc` cannot probe, which is logged, and the job runs after a pause of
/// two seconds. `at`: the gateway's address, else `KubernetesConfig::job_gateway_address`
/// (a job without a gateway may reach nothing at all); with neither there is nothing to probe
/// with: the pause of two seconds, logged.
async fn check_fence(
    engine: &PodJob<'_>,
    at: Option<std::net::IpAddr>,
) -> std::result::Result<(), JobError> {
    let Some(ip) = at else {
        tracing::warn!(job = %engine.job_id, "no address of the agent's to probe the job's egress fence with (kubernetes.job_gateway_address)");
        tokio::time::sleep(Duration::from_secs(2)).await;
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .map_err(|source| JobError::Io {
            job: engine.job_id.to_string(),
            source,
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                conn.write_all(FENCE_OPEN).await.ok();
                conn.shutdown().await.ok();
            });
        }
    });
    let ip = ip.to_string();
    let port = port.to_string();
    let said = engine
        .capture(&["/bin/sh", "-c", FENCE_PROBE, "sh", &ip, &port])
        .await;
    server.abort();
    let said = String::from_utf8_lossy(&said?).trim().to_string();
    match said.as_str() {
        "fenced" => Ok(()),
        "no-tool" => {
            tracing::warn!(job = %engine.job_id, "the job's image has no curl, wget or nc: its egress fence was not checked");
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        }
        other => Err(JobError::Kubernetes {
            job: engine.job_id.to_string(),
            action: "fence egress".into(),
            message: format!(
                "the job's Pod still reaches {ip}:{port} past its NetworkPolicy ({other}): \
                 does the cluster enforce NetworkPolicies?"
            ),
        }),
    }
}

/// A job's Pod as the runner's engine.
struct PodJob<'a> {
    backend: &'a KubernetesBackend,
    pod: &'a str,
    job_id: &'a str,
}

impl PodJob<'_> {
    async fn attach(
        &self,
        argv: Vec<String>,
    ) -> std::result::Result<crate::backend::ExecStreams, JobError> {
        self.backend
            .attach_pod(self.pod, self.pod, CONTAINER, argv, None, false)
            .await
            .map_err(berr(self.job_id, "exec"))
    }
}

fn reader_stream(
    r: crate::backend::BoxReader,
    which: LogStream,
    job: String,
) -> impl futures_util::Stream<Item = std::result::Result<(LogStream, bytes::Bytes), JobError>> {
    tokio_util::io::ReaderStream::new(r).map(move |chunk| {
        chunk.map(|b| (which, b)).map_err(|e| JobError::Kubernetes {
            job: job.clone(),
            action: "read exec output".into(),
            message: e.to_string(),
        })
    })
}

#[async_trait::async_trait]
impl JobEngine for PodJob<'_> {
    async fn upload(&self, path: &str, tar: Tar) -> std::result::Result<(), JobError> {
        let body: crate::backend::TarBody = match tar {
            Tar::Bytes(b) => Box::pin(futures_util::stream::once(async move {
                Ok(bytes::Bytes::from(b))
            })),
            Tar::File(f) => {
                let file = tokio::fs::File::open(&f)
                    .await
                    .map_err(|source| JobError::Io {
                        job: self.job_id.to_string(),
                        source,
                    })?;
                Box::pin(crate::jobs::file_chunks(file))
            }
        };
        self.backend
            .untar(self.pod, self.pod, CONTAINER, path, body)
            .await
            .map_err(berr(self.job_id, &format!("upload to {path}")))
    }

    async fn start(&self) -> std::result::Result<(), JobError> {
        Ok(())
    }

    fn secrets_in_container(&self) -> bool {
        true
    }

    async fn exec(
        &self,
        cmd: Vec<String>,
        env: Vec<String>,
        workdir: String,
    ) -> std::result::Result<Running, JobError> {
        // the exec API has neither a working directory nor variables
        let mut argv: Vec<String> = [
            "/bin/sh",
            "-c",
            "cd -- \"$1\" 2>/dev/null; shift; exec \"$@\"",
            "sh",
        ]
        .map(str::to_string)
        .to_vec();
        argv.push(workdir);
        if !env.is_empty() {
            argv.push("env".into());
            argv.extend(env);
        }
        argv.extend(cmd);
        let mut streams = self.attach(argv).await?;
        let job = self.job_id.to_string();
        let stdout = std::mem::replace(&mut streams.stdout, Box::pin(tokio::io::empty()));
        let out = reader_stream(stdout, LogStream::Stdout, job.clone());
        let output: crate::jobs::engine::OutputStream = match streams.stderr.take() {
            Some(e) => Box::pin(futures_util::stream::select(
                out,
                reader_stream(e, LogStream::Stderr, job.clone()),
            )),
            None => Box::pin(out),
        };
        let exit = streams.exit;
        let exit = Box::pin(async move {
            exit.await
                .map(|c| c.unwrap_or(-1))
                .map_err(berr(&job, "exec status"))
        });
        Ok(Running {
            output,
            exit,
            keep: streams.keep,
        })
    }

    async fn capture(&self, cmd: &[&str]) -> std::result::Result<Vec<u8>, JobError> {
        let streams = self
            .attach(cmd.iter().map(|s| s.to_string()).collect())
            .await?;
        let limits = crate::bounded::ExecLimits {
            output_bytes: CAPTURE_BYTES,
            timeout: CAPTURE_TIMEOUT,
        };
        let (out, _) = crate::backend::collect_bounded(streams, limits, false)
            .await
            .map_err(berr(self.job_id, "exec"))?;
        Ok(out.into_stdout())
    }

    async fn download(
        &self,
        path: &str,
        into: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        max: u64,
    ) -> std::result::Result<Downloaded, JobError> {
        use tokio::io::AsyncReadExt;
        let script = format!(
            "[ -e \"$1\" ] || exit {NOT_FOUND_EXIT}; cd \"$(dirname -- \"$1\")\" && exec tar -c -f - -- \"$(basename -- \"$1\")\""
        );
        let argv = ["/bin/sh", "-c", &script, "sh", path]
            .map(str::to_string)
            .to_vec();
        let mut streams = self.attach(argv).await?;
        let job = self.job_id;
        let io = |source| JobError::Io {
            job: job.to_string(),
            source,
        };
        let mut stderr = streams.stderr.take();
        let drain = async move {
            let mut text = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = e.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if text.len() < 8192 {
                        text.extend_from_slice(&buf[..n]);
                    }
                }
            }
            text
        };
        let copy = async {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = streams.stdout.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok::<_, JobError>(Some(total));
                }
                total += n as u64;
                if total > max {
                    return Ok(None);
                }
                into.write_all(&buf[..n]).await.map_err(io)?;
            }
        };
        let (copied, err_text) = tokio::join!(copy, drain);
        let Some(total) = copied? else {
            return Ok(Downloaded::TooLarge);
        };
        into.flush().await.map_err(io)?;
        let code = streams
            .exit
            .await
            .map_err(berr(job, "exec status"))?
            .unwrap_or(-1);
        match code {
            0 => Ok(Downloaded::Done(total)),
            NOT_FOUND_EXIT => Ok(Downloaded::NotFound),
            c => Err(JobError::Kubernetes {
                job: job.to_string(),
                action: format!("read {path}"),
                message: format!(
                    "tar exited with {c}: {}",
                    String::from_utf8_lossy(&err_text).trim()
                ),
            }),
        }
    }
}
