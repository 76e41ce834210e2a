//! The Kubernetes backend: an environment is one Pod in one namespace (see [`manifest`]),
//! driven through the API server only — the agent needs no node access and no
//! cluster-scoped rights (deploy/kubernetes/ has the Role it needs).
//!
//! Lifecycle: create = claims (kept if they exist), the Service, a Secret holding the Pod
//! manifest, then the Pod, and wait until every container has started; stop = delete the
//! Pod (claims, Service and Secret stay); start = create the Pod again from the Secret;
//! recreate = a new manifest, Pod replaced, claims kept; delete = Pod, Service, Secret and
//! claims by label, waiting until they are gone. exec/logs go through the API server
//! (`pods/exec` over WebSocket, `pods/log`), with the exit code from the exec's status
//! channel. Workflow jobs run as Pods fenced by a NetworkPolicy ([`jobs`]).

mod exec;
mod job_manifest;
pub mod jobs;
pub mod manifest;
mod status;
mod volumes;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Backend, BackendError, BackendKind, ExecStreams, Result, TarBody};
use crate::jobs::{CancellationToken, JobResult, JobSpec};
use crate::mask::LogSink;
use crate::pod::{ExecOutput, PodError, PodSpec, PodStatus};
use exec::wrap;
use manifest::{
    env_selector, plan_secret_name, pod_name, service_name, LABEL_ENV, LABEL_MANAGED_BY,
    LABEL_ROLE, MANAGED_BY,
};
use status::{started, status_of, Started};

/// Key of the Pod manifest (JSON) in an environment's plan Secret.
const POD_KEY: &str = "pod.json";

/// How long deletions are waited for (a Pod's grace period plus the kubelet's work).
const GONE_TIMEOUT: Duration = Duration::from_secs(90);

/// `kubernetes:` of the agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The one namespace the agent works in (its Role's).
    pub namespace: String,
    /// StorageClass of the claims; `None`: the cluster's default.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// `IfNotPresent` (default), `Never` (images imported into the node's runtime) or
    /// `Always`.
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: String,
    /// Size of `/projects` and of devfile volumes without a size.
    #[serde(default = "default_volume_size")]
    pub volume_size: String,
    /// How long create/start wait for every container to start.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_secs: u64,
    /// Where workflow jobs' gateways listen: an address of the agent's that job Pods reach
    /// (the node's for an agent beside the cluster, the agent Pod's in it); the job worker's
    /// `KubernetesJobs::gateway_address`.
    #[serde(default)]
    pub job_gateway_address: Option<std::net::IpAddr>,
}

fn default_pull_policy() -> String {
    "IfNotPresent".into()
}

fn default_volume_size() -> String {
    "1Gi".into()
}

fn default_ready_timeout() -> u64 {
    180
}

impl KubernetesConfig {
    pub fn new(namespace: impl Into<String>) -> Self {
        KubernetesConfig {
            namespace: namespace.into(),
            storage_class: None,
            image_pull_policy: default_pull_policy(),
            volume_size: default_volume_size(),
            ready_timeout_secs: default_ready_timeout(),
            job_gateway_address: None,
        }
    }
}

/// Environments as Pods in one namespace.
#[derive(Clone)]
pub struct KubernetesBackend {
    client: kube::Client,
    config: KubernetesConfig,
    exec_limits: crate::bounded::ExecLimits,
}

/// Waiting reasons that will not resolve by themselves.
pub(super) const FATAL_WAITING: &[&str] = &[
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub(super) fn kerr(env: &str, action: &str) -> impl FnOnce(kube::Error) -> BackendError {
    let (env, action) = (env.to_string(), action.to_string());
    move |e| BackendError::Kubernetes {
        env,
        action,
        message: match &e {
            kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
            other => other.to_string(),
        },
    }
}

pub(super) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubernetesBackend {
    /// A client from `KUBECONFIG` / `~/.kube/config`, or the Pod's ServiceAccount when the
    /// agent runs in the cluster.
    pub async fn connect(config: KubernetesConfig) -> Result<Self> {
        let client = kube::Client::try_default()
            .await
            .map_err(kerr("*", "connect"))?;
        Ok(Self::with_client(client, config))
    }

    pub fn with_client(client: kube::Client, config: KubernetesConfig) -> Self {
        KubernetesBackend {
            client,
            config,
            exec_limits: crate::bounded::ExecLimits::from_env(),
        }
    }

    /// The same backend with other bounds for [`Backend::exec`].
    pub fn with_exec_limits(mut self, limits: crate::bounded::ExecLimits) -> Self {
        self.exec_limits = limits;
        self
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn check(&self, spec: &PodSpec) -> Result<()> {
        if !crate::pod::valid_env_id(&spec.env_id) {
            return Err(PodError::BadId(spec.env_id.clone()).into());
        }
        let max = (spec.max_cpu_millis, spec.max_memory_bytes);
        if let Some(what) = crate::pod::over_limit(&spec.plan, max.0, max.1) {
            return Err(PodError::OverLimit {
                env: spec.env_id.clone(),
                what,
            }
            .into());
        }
        Ok(())
    }

    /// Claims, Service and plan Secret of `spec` (claims that exist are kept, the Service
    /// and Secret replaced). Returns the names of the claims this call created.
    async fn apply_objects(&self, spec: &PodSpec, m: &manifest::Manifests) -> Result<Vec<String>> {
        let env = spec.env_id.as_str();
        let pp = PostParams::default();
        let mut created = Vec::new();
        for c in &m.claims {
            let name = c.metadata.name.clone().unwrap_or_default();
            match self.claims().create(&pp, c).await {
                Ok(_) => created.push(name),
                Err(e) if is_status(&e, 409) => {}
                Err(e) => return Err(kerr(env, &format!("create claim `{name}`"))(e)),
            }
        }
        // the Service (if any) as the plan says
        let svc_name = service_name(env);
        self.delete_named(&self.services(), env, &svc_name, None)
            .await?;
        if let Some(svc) = &m.service {
            self.services()
                .create(&pp, svc)
                .await
                .map_err(kerr(env, "create service"))?;
        }
        let secret = Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(plan_secret_name(env)),
                labels: Some(manifest::labels(env, "plan")),
                ..Default::default()
            },
            string_data: Some(
                [(
                    POD_KEY.to_string(),
                    serde_json::to_string(&m.pod).unwrap_or_default(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        self.delete_named(&self.secrets(), env, &plan_secret_name(env), None)
            .await?;
        self.secrets()
            .create(&pp, &secret)
            .await
            .map_err(kerr(env, "create plan secret"))?;
        Ok(created)
    }

    /// Delete one object; absent is fine.
    async fn delete_named<K>(
        &self,
        api: &Api<K>,
        env: &str,
        name: &str,
        grace: Option<u32>,
    ) -> Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let dp = DeleteParams {
            grace_period_seconds: grace,
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(kerr(env, &format!("delete `{name}`"))(e)),
        }
    }

    /// Delete the environment's Pod and wait until it is gone (so its name is free and its
    /// claims are released).
    async fn delete_pod(&self, env: &str, grace: u32) -> Result<()> {
        self.delete_and_wait_gone(&self.pods(), env, &pod_name(env), Some(grace), "delete pod")
            .await
    }

    /// [`Self::delete_named`], then wait up to [`GONE_TIMEOUT`] until the object is gone;
    /// `action` names the step in the error.
    pub(super) async fn delete_and_wait_gone<K>(
        &self,
        api: &Api<K>,
        env: &str,
        name: &str,
        grace: Option<u32>,
        action: &str,
    ) -> Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        self.delete_named(api, env, name, grace).await?;
        let deadline = tokio::time::Instant::now() + GONE_TIMEOUT;
        while api
            .get_opt(name)
            .await
            .map_err(kerr(env, &format!("get `{name}`")))?
            .is_some()
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Kubernetes {
                    env: env.to_string(),
                    action: action.into(),
                    message: format!("`{name}` still there after {} s", GONE_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// The stored Pod manifest of a (possibly stopped) environment.
    async fn stored_pod(&self, env: &str) -> Result<Option<Pod>> {
        let Some(secret) = self
            .secrets()
            .get_opt(&plan_secret_name(env))
            .await
            .map_err(kerr(env, "get plan secret"))?
        else {
            return Ok(None);
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(POD_KEY))
            .map(|b| b.0.clone())
            .unwrap_or_default();
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BackendError::Kubernetes {
                env: env.to_string(),
                action: "read plan secret".into(),
                message: e.to_string(),
            })
    }

    /// Create the Pod and wait until every container has started once (or a reason that
    /// will not pass, or the timeout). On failure the Pod is removed again.
    async fn run_pod(&self, env: &str, pod: &Pod) -> Result<PodStatus> {
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .map_err(kerr(env, "create pod"))?;
        if let Err(e) = self.wait_started(env).await {
            self.delete_pod(env, 0).await.ok();
            return Err(e);
        }
        self.status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()).into())
    }

    async fn wait_started(&self, env: &str) -> Result<()> {
        self.wait_pod_started(env, &pod_name(env)).await
    }

    /// Waits up to `ready_timeout_secs` until Pod `name` of `env` runs.
    pub(super) async fn wait_pod_started(&self, env: &str, name: &str) -> Result<()> {
        let timeout = Duration::from_secs(self.config.ready_timeout_secs);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pod = self
                .pods()
                .get_opt(name)
                .await
                .map_err(kerr(env, "get pod"))?
                .ok_or_else(|| PodError::NotFound(env.to_string()))?;
            match started(&pod) {
                Started::Yes => return Ok(()),
                Started::Never(reason) => {
                    return Err(BackendError::NotStarted {
                        env: env.to_string(),
                        reason,
                    })
                }
                Started::NotYet(reason) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(BackendError::NotStarted {
                            env: env.to_string(),
                            reason: format!("not running after {} s: {reason}", timeout.as_secs()),
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Unpack a tar archive, streamed in chunks, at `path` of `component` in Pod `pod`
    /// (`tar -x` by exec); `what` names the environment or job in errors.
    pub(super) async fn untar(
        &self,
        what: &str,
        pod: &str,
        component: &str,
        path: &str,
        mut body: TarBody,
    ) -> Result<()> {
        let env = what;
        let argv = ["tar", "-x", "-f", "-", "-C", path]
            .map(str::to_string)
            .to_vec();
        let mut streams = self
            .attach_pod(env, pod, component, argv, None, true)
            .await?;
        let mut stdin = std::mem::replace(&mut streams.stdin, Box::pin(tokio::io::sink()));
        // write while the output is read (a full pipe would stall both sides)
        let writer = async move {
            use futures_util::StreamExt;
            while let Some(chunk) = body.next().await {
                stdin.write_all(&chunk?).await?;
            }
            stdin.shutdown().await
        };
        let limits = crate::bounded::ExecLimits {
            output_bytes: 64 * 1024,
            timeout: self.exec_limits.timeout,
        };
        let (written, collected) =
            tokio::join!(writer, super::collect_bounded(streams, limits, false));
        let (out, code) = collected?;
        let (_, stderr) = out.finish();
        match (written, code) {
            (Ok(()), Some(0)) => Ok(()),
            (w, code) => Err(BackendError::Kubernetes {
                env: env.to_string(),
                action: format!("upload files to {path}"),
                message: format!(
                    "tar exited with {} {}{}",
                    code.map(|c| c.to_string())
                        .unwrap_or_else(|| "no code".into()),
                    stderr.trim(),
                    w.err().map(|e| format!(" ({e})")).unwrap_or_default()
                ),
            }),
        }
    }

    /// The running Pod, checked to have `component`.
    async fn running_pod(&self, env: &str, component: &str) -> Result<Pod> {
        let pod = self
            .pods()
            .get_opt(&pod_name(env))
            .await
            .map_err(kerr(env, "get pod"))?
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        let has = pod
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == component));
        if !has {
            return Err(PodError::NoComponent {
                env: env.to_string(),
                component: component.to_string(),
            }
            .into());
        }
        Ok(pod)
    }
}

#[async_trait::async_trait]
impl Backend for KubernetesBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kubernetes
    }

    async fn create(&self, spec: &PodSpec) -> Result<PodStatus> {
        self.check(spec)?;
        let env = spec.env_id.as_str();
        let m = manifest::build(
            spec,
            &self.config,
            (spec.max_cpu_millis, spec.max_memory_bytes),
        );
        let created = self.apply_objects(spec, &m).await;
        let result = match created {
            Ok(claims) => match self.run_pod(env, &m.pod).await {
                Ok(st) => return Ok(st),
                Err(e) => (claims, e),
            },
            Err(e) => (Vec::new(), e),
        };
        // nothing half-made is left: the objects of this call (claims that existed stay)
        let (claims, error) = result;
        self.delete_named(&self.services(), env, &service_name(env), None)
            .await
            .ok();
        self.delete_named(&self.secrets(), env, &plan_secret_name(env), None)
            .await
            .ok();
        for c in claims {
            self.delete_named(&self.claims(), env, &c, None).await.ok();
        }
        Err(error)
    }

    async fn start(&self, env: &str) -> Result<PodStatus> {
        let pod = self
            .stored_pod(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        if let Some(current) = self
            .pods()
            .get_opt(&pod_name(env))
            .await
            .map_err(kerr(env, "get pod"))?
        {
            if current.metadata.deletion_timestamp.is_none() {
                // already there: wait as a fresh start would
                self.wait_started(env).await?;
                return self
                    .status(env)
                    .await?
                    .ok_or_else(|| PodError::NotFound(env.to_string()).into());
            }
            self.delete_pod(env, manifest::STOP_GRACE_SECS as u32)
                .await?;
        }
        self.run_pod(env, &pod).await
    }

    async fn stop(&self, env: &str) -> Result<()> {
        if self.stored_pod(env).await?.is_none()
            && self
                .pods()
                .get_opt(&pod_name(env))
                .await
                .map_err(kerr(env, "get pod"))?
                .is_none()
        {
            return Err(PodError::NotFound(env.to_string()).into());
        }
        self.delete_pod(env, manifest::STOP_GRACE_SECS as u32).await
    }

    async fn recreate(&self, spec: &PodSpec) -> Result<PodStatus> {
        self.check(spec)?;
        let env = spec.env_id.as_str();
        let m = manifest::build(
            spec,
            &self.config,
            (spec.max_cpu_millis, spec.max_memory_bytes),
        );
        self.delete_pod(env, manifest::STOP_GRACE_SECS as u32)
            .await?;
        self.apply_objects(spec, &m).await?;
        self.run_pod(env, &m.pod).await
    }

    async fn delete(&self, env: &str) -> Result<()> {
        self.delete_pod(env, 1).await?;
        self.delete_helpers(env).await?;
        self.delete_named(&self.services(), env, &service_name(env), None)
            .await?;
        self.delete_named(&self.secrets(), env, &plan_secret_name(env), None)
            .await?;
        let lp = ListParams::default().labels(&env_selector(env));
        let claims = self
            .claims()
            .list(&lp)
            .await
            .map_err(kerr(env, "list claims"))?;
        for c in claims.items {
            let name = c.metadata.name.unwrap_or_default();
            self.delete_named(&self.claims(), env, &name, None).await?;
        }
        // claims go once their protection finalizer sees no Pod: wait, so a delete that
        // returned left nothing behind
        let deadline = tokio::time::Instant::now() + GONE_TIMEOUT;
        loop {
            let left = self
                .claims()
                .list(&lp)
                .await
                .map_err(kerr(env, "list claims"))?;
            if left.items.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Kubernetes {
                    env: env.to_string(),
                    action: "delete claims".into(),
                    message: format!(
                        "{} claim(s) still there after {} s",
                        left.items.len(),
                        GONE_TIMEOUT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn status(&self, env: &str) -> Result<Option<PodStatus>> {
        let pod = self
            .pods()
            .get_opt(&pod_name(env))
            .await
            .map_err(kerr(env, "get pod"))?;
        let stored = self.stored_pod(env).await?;
        if pod.is_none() && stored.is_none() {
            return Ok(None);
        }
        let svc = self
            .services()
            .get_opt(&service_name(env))
            .await
            .map_err(kerr(env, "get service"))?;
        Ok(Some(status_of(
            env,
            pod.as_ref(),
            stored.as_ref(),
            svc.as_ref(),
        )))
    }

    async fn list(&self) -> Result<Vec<PodStatus>> {
        let lp = ListParams::default().labels(&format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLE}=plan"
        ));
        let secrets = self
            .secrets()
            .list(&lp)
            .await
            .map_err(kerr("*", "list environments"))?;
        let mut out = Vec::new();
        for s in secrets.items {
            let Some(env) = s.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ENV)) else {
                continue;
            };
            if let Some(st) = self.status(env).await? {
                out.push(st);
            }
        }
        Ok(out)
    }

    fn exec_limits(&self) -> crate::bounded::ExecLimits {
        self.exec_limits
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
        let limits = crate::bounded::ExecLimits {
            output_bytes: limits.output_bytes.min(self.exec_limits.output_bytes),
            timeout: limits.timeout.min(self.exec_limits.timeout),
        };
        let streams = self
            .attach(env, component, wrap(cmd, vars, workdir), None, false)
            .await?;
        super::collect_output(streams, limits).await
    }

    async fn exec_streams(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
    ) -> Result<ExecStreams> {
        let argv = if tty.is_some() {
            let mut a = vec!["env".to_string(), "TERM=xterm-256color".to_string()];
            a.extend(cmd);
            a
        } else {
            cmd
        };
        self.attach(env, component, argv, tty, true).await
    }

    /// Through the API server's `pods/portforward` (no `nc` needed in the Pod).
    async fn connect_port(&self, env: &str, port: u16) -> Result<ExecStreams> {
        self.port_streams(env, port).await
    }

    /// In the Pod's first container: every container of a Pod shares its network namespace
    /// (so the command must be in that container's image, e.g. `nc` for a port relay).
    async fn volume_streams(
        &self,
        env: &str,
        volume: Option<&str>,
        export: bool,
        helper_image: &str,
    ) -> Result<ExecStreams> {
        self.move_volume(env, volume, export, helper_image).await
    }

    async fn namespace_streams(&self, env: &str, cmd: Vec<String>) -> Result<ExecStreams> {
        let pod = self
            .pods()
            .get_opt(&pod_name(env))
            .await
            .map_err(kerr(env, "get pod"))?
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        let first = pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .map(|c| c.name)
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        self.attach(env, &first, cmd, None, true).await
    }

    async fn read_file(
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
        let argv = vec!["cat".to_string(), "--".to_string(), path.to_string()];
        let (out, code) = self
            .exec_bounded(env, component, argv, limits, true)
            .await?;
        if out.dropped() > 0 {
            return Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!("{path} is larger than {max_bytes} bytes"),
            }
            .into());
        }
        match code {
            None => Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!(
                    "reading {path} did not finish within {} s",
                    limits.timeout.as_secs()
                ),
            }
            .into()),
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.into_stdout()).into_owned(),
            )),
            Some(_) => Ok(None),
        }
    }

    async fn upload_tar_stream(
        &self,
        env: &str,
        component: &str,
        path: &str,
        body: TarBody,
    ) -> Result<()> {
        self.running_pod(env, component).await?;
        self.untar(env, &pod_name(env), component, path, body).await
    }

    async fn logs(&self, env: &str, component: &str, tail: u32) -> Result<String> {
        use futures_util::AsyncReadExt;
        self.running_pod(env, component).await?;
        let lp = LogParams {
            container: Some(component.to_string()),
            tail_lines: Some(i64::from(tail)),
            ..Default::default()
        };
        let mut stream = self
            .pods()
            .log_stream(&pod_name(env), &lp)
            .await
            .map_err(kerr(env, "read logs"))?;
        // keep the end, at most the exec output budget, for at most the exec timeout
        let cap = self.exec_limits.output_bytes;
        let deadline = tokio::time::Instant::now() + self.exec_limits.timeout;
        let mut tail = crate::bounded::LogTail::new(cap);
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        Ok(tail.into_text())
    }

    /// One Pod per job attempt, fenced by a NetworkPolicy (see [`jobs`]).
    async fn run_job(
        &self,
        job: &JobSpec,
        sink: &mut LogSink,
        cancel: &CancellationToken,
    ) -> Result<JobResult> {
        Ok(self.run_job_pod(job, sink, cancel).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_with_defaults() {
        let c: KubernetesConfig = serde_yaml::from_str("namespace: cove\n").unwrap();
        assert_eq!(c.image_pull_policy, "IfNotPresent");
        assert_eq!(c.volume_size, "1Gi");
        assert!(c.storage_class.is_none());
        assert!(serde_yaml::from_str::<KubernetesConfig>("namespace: a\nbogus: 1\n").is_err());
    }
}
