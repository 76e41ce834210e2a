//! An environment's volumes out of the cluster and into it (`cove env move`, issue 20), in
//! the same tar format as the Docker backend's (`pod::volumes`: entries under
//! `cove-volume/`), so an environment moves between a Docker agent and a Kubernetes one in
//! either direction.
//!
//! A helper Pod (`cove.dev/role=mover`, the environment's labels) mounts the claim at
//! [`MOUNT`] — read-only to export — and `tar` runs in it through the API server
//! (`pods/exec`): `tar -c` of `cove-volume` to export, `tar -x` at `/` to import. The helper
//! runs as root with the runtime's default capabilities, so entries keep their owners and
//! modes. Nothing of the environment runs meanwhile (it is stopped: its Pod is gone). The
//! helper is deleted when the streams are dropped, and by the environment's delete (by
//! label) if the agent died first. An import makes the claim anew (the configuration's
//! `volume_size`, the StorageClass as for any claim) and deletes it again when `tar` fails.

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Pod, PodSpec as KPodSpec, SecurityContext,
    Volume, VolumeMount,
};
use kube::api::{ListParams, PostParams};

use super::manifest::{self, projects_claim, volume_claim};
use super::{is_status, kerr, KubernetesBackend};
use crate::backend::{BackendError, ExecStreams, Result};
use crate::pod::volumes::short_hash;
use crate::pod::PodError;

/// Where the helper mounts the claim (the Docker backend's mount point, so archives match).
const MOUNT: &str = crate::pod::volumes::MOUNT;
/// The helper's container.
const MOVER: &str = "mover";
/// Role label of helper Pods.
pub(super) const ROLE: &str = "mover";

/// The claim of environment `env`'s volume (`None`: the sources) and its role label.
fn claim_of(env: &str, volume: Option<&str>) -> Result<(String, &'static str, Option<String>)> {
    if !crate::pod::valid_env_id(env) {
        return Err(PodError::BadId(env.to_string()).into());
    }
    Ok(match volume {
        None => (projects_claim(env), "projects", None),
        Some(v) if devfiles::is_identifier(v) && v.len() <= 63 => {
            (volume_claim(env, v), "volume", Some(v.to_string()))
        }
        Some(v) => {
            return Err(PodError::Volume {
                env: env.to_string(),
                message: format!("{v:?} is not a devfile volume name"),
            }
            .into())
        }
    })
}

fn helper_pod(env: &str, name: &str, claim: &str, image: &str, policy: &str, export: bool) -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(manifest::labels(env, ROLE)),
            ..Default::default()
        },
        spec: Some(KPodSpec {
            containers: vec![Container {
                name: MOVER.into(),
                image: Some(image.to_string()),
                image_pull_policy: Some(policy.to_string()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "volume".into(),
                    mount_path: MOUNT.into(),
                    read_only: Some(export),
                    ..Default::default()
                }]),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    privileged: Some(false),
                    run_as_user: Some(0),
                    run_as_group: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "volume".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_string(),
                    read_only: Some(export),
                }),
                ..Default::default()
            }]),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    }
}

/// Deletes a helper Pod when dropped.
struct Cleanup {
    backend: KubernetesBackend,
    env: String,
    pod: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (backend, env, pod) = (self.backend.clone(), self.env.clone(), self.pod.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                backend
                    .delete_named(&backend.pods(), &env, &pod, Some(0))
                    .await
                    .ok();
            });
        }
    }
}

impl KubernetesBackend {
    /// [`crate::backend::Backend::volume_streams`] on the cluster.
    pub(super) async fn move_volume(
        &self,
        env: &str,
        volume: Option<&str>,
        export: bool,
        helper_image: &str,
    ) -> Result<ExecStreams> {
        let (claim, role, component) = claim_of(env, volume)?;
        if export {
            if self
                .claims()
                .get_opt(&claim)
                .await
                .map_err(kerr(env, "get claim"))?
                .is_none()
            {
                return Err(PodError::Volume {
                    env: env.to_string(),
                    message: format!("no claim `{claim}` in namespace {}", self.config.namespace),
                }
                .into());
            }
        } else {
            self.make_claim(env, &claim, role, component.as_deref())
                .await?;
        }
        let name = format!(
            "cove-env-{env}-mv-{}-{}",
            if export { "out" } else { "in" },
            short_hash(&claim)
        );
        let started = self
            .start_helper(env, &name, &claim, helper_image, export)
            .await;
        let argv: Vec<String> = if export {
            vec![
                "tar",
                "-c",
                "-f",
                "-",
                "-C",
                "/",
                MOUNT.trim_start_matches('/'),
            ]
        } else {
            vec!["tar", "-x", "-f", "-", "-C", "/"]
        }
        .into_iter()
        .map(str::to_string)
        .collect();
        let streams = match started {
            Ok(()) => {
                self.attach_pod(env, &name, MOVER, argv, None, !export)
                    .await
            }
            Err(e) => Err(e),
        };
        let cleanup = Cleanup {
            backend: self.clone(),
            env: env.to_string(),
            pod: name.clone(),
        };
        let mut streams = match streams {
            Ok(s) => s,
            Err(e) => {
                drop(cleanup);
                if !export {
                    self.delete_named(&self.claims(), env, &claim, None)
                        .await
                        .ok();
                }
                return Err(e);
            }
        };
        let keep = std::mem::replace(&mut streams.keep, Box::new(()));
        streams.keep = Box::new((keep, cleanup));
        if !export {
            // a failed unpack leaves no half-filled claim behind
            let exit = std::mem::replace(&mut streams.exit, Box::pin(async { Ok(None) }));
            let (backend, env, claim) = (self.clone(), env.to_string(), claim.clone());
            streams.exit = Box::pin(async move {
                let code = exit.await;
                if !matches!(code, Ok(Some(0))) {
                    // the helper first: a claim in use stays until its Pod is gone
                    backend
                        .delete_named(&backend.pods(), &env, &name, Some(0))
                        .await
                        .ok();
                    backend
                        .delete_named(&backend.claims(), &env, &claim, None)
                        .await
                        .ok();
                }
                code
            });
        }
        Ok(streams)
    }

    /// The claim made anew (one of that name already there is deleted first, and waited
    /// for).
    async fn make_claim(
        &self,
        env: &str,
        claim: &str,
        role: &str,
        volume: Option<&str>,
    ) -> Result<()> {
        self.delete_and_wait_gone(&self.claims(), env, claim, None, "replace claim")
            .await?;
        let pvc = manifest::claim_for(claim.to_string(), env, role, volume, None, &self.config);
        match self.claims().create(&PostParams::default(), &pvc).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(kerr(env, &format!("create claim `{claim}`"))(e)),
        }
    }

    /// The helper Pod created (a stale one of that name first deleted) and running.
    async fn start_helper(
        &self,
        env: &str,
        name: &str,
        claim: &str,
        image: &str,
        export: bool,
    ) -> Result<()> {
        self.delete_and_wait_gone(
            &self.pods(),
            env,
            name,
            Some(0),
            "replace the volume helper",
        )
        .await?;
        let pod = helper_pod(
            env,
            name,
            claim,
            image,
            &self.config.image_pull_policy,
            export,
        );
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .map_err(kerr(env, "create the volume helper pod"))?;
        if let Err(e) = self.wait_pod_started(env, name).await {
            self.delete_named(&self.pods(), env, name, Some(0))
                .await
                .ok();
            return Err(match e {
                BackendError::NotStarted { env, reason } => BackendError::NotStarted {
                    env,
                    reason: format!("the volume helper: {reason}"),
                },
                other => other,
            });
        }
        Ok(())
    }

    /// Helper Pods of `env` a crash left behind (deleted with the environment).
    pub(super) async fn delete_helpers(&self, env: &str) -> Result<()> {
        let lp = ListParams::default().labels(&format!(
            "{},{}={ROLE}",
            manifest::env_selector(env),
            manifest::LABEL_ROLE
        ));
        let pods = self
            .pods()
            .list(&lp)
            .await
            .map_err(kerr(env, "list volume helpers"))?;
        for p in pods.items {
            let name = p.metadata.name.unwrap_or_default();
            self.delete_named(&self.pods(), env, &name, Some(0)).await?;
        }
        Ok(())
    }
}
