//! Creating a pod: volumes, the infra container, the component containers.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, RemoveVolumeOptions,
    StartContainerOptions,
};
use devfiles::{ContainerPlan, Protocol, KEEP_ALIVE};

use super::*;

impl Runtime {
    /// Create and start the pod. On failure everything this call created is
    /// removed again; volumes that already existed are kept.
    pub async fn create(&self, spec: &PodSpec) -> Result<PodStatus> {
        if !valid_env_id(&spec.env_id) {
            return Err(PodError::BadId(spec.env_id.clone()));
        }
        self.check_limits(spec)?;
        let mut created_volumes = Vec::new();
        let result = self.create_inner(spec, &mut created_volumes).await;
        if result.is_err() {
            self.remove_containers(&spec.env_id).await.ok();
            crate::env_net::remove(&self.docker, &spec.env_id, &self.network)
                .await
                .ok();
            for v in created_volumes {
                self.docker
                    .remove_volume(&v, Some(RemoveVolumeOptions { force: true }))
                    .await
                    .ok();
            }
        }
        result
    }

    pub(super) async fn create_inner(
        &self,
        spec: &PodSpec,
        created_volumes: &mut Vec<String>,
    ) -> Result<PodStatus> {
        let env = spec.env_id.as_str();
        // volumes and the environment's own network (with host isolation, unless turned off)
        // are independent: made concurrently
        // a warm shell of this id (`shells.rs`) already has the network, the sources volume
        // and a started infra container: its marker goes, the rest is found in place
        let infra_container = infra_name(env);
        let (volumes, network, took_shell, shell) = tokio::join!(
            self.ensure_volumes(spec, created_volumes),
            crate::env_net::ensure(&self.docker, env, &self.network),
            self.take_shell(env),
            self.docker
                .inspect_container(&infra_container, None::<InspectContainerOptions>)
        );
        volumes?;
        let network = network?;
        // infra container: owns the network namespace and publishes endpoints
        let infra = infra_body(spec, network.as_deref());
        let wanted = infra
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SPEC))
            .cloned();
        let found = shell.is_ok();
        let kept = shell.ok().filter(|c| {
            let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
            let spec = c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_SPEC));
            running && spec.is_some() && spec == wanted.as_ref()
        });
        let shell_id = kept.and_then(|c| c.id);
        let infra_running = shell_id.is_some();
        let infra_id = match shell_id {
            Some(id) => id,
            None => {
                // whatever else is there under the name (a shell of another shape) goes
                if found {
                    self.docker
                        .remove_container(
                            &infra_name(env),
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await
                        .ok();
                }
                self.docker
                    .create_container(
                        Some(CreateContainerOptions {
                            name: Some(infra_name(env)),
                            ..Default::default()
                        }),
                        infra,
                    )
                    .await
                    .map_err(Self::err(env, "create infra container"))?
                    .id
            }
        };
        // the components join the infra container's namespace, which must run before they
        // start but not before they are created: they are created (concurrently) while it
        // starts, then started (concurrently)
        let creates = spec.plan.containers.iter().map(|c| {
            let body = self.component_body(spec, c, &infra_id, network.as_deref());
            async move {
                let options = CreateContainerOptions {
                    name: Some(container_name(env, &c.name)),
                    ..Default::default()
                };
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map(|r| r.id)
                    .map_err(Self::err(env, format!("create container `{}`", c.name)))
            }
        });
        let start_infra = async {
            if infra_running {
                return Ok(());
            }
            self.docker
                .start_container(&infra_id, None::<StartContainerOptions>)
                .await
        };
        let (infra_started, created) =
            tokio::join!(start_infra, futures_util::future::join_all(creates));
        infra_started.map_err(Self::err(env, "start infra container"))?;
        let mut ids = Vec::new();
        for (c, r) in spec.plan.containers.iter().zip(created) {
            ids.push((c, r?));
        }
        let starts = ids.iter().map(|(c, id)| async move {
            self.docker
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(Self::err(env, format!("start container `{}`", c.name)))
        });
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
        let mut status = self
            .status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        status.sources_empty = took_shell || created_volumes.contains(&sources_volume(env));
        Ok(status)
    }

    /// The sources volume and the plan's volumes. An ephemeral volume is removed and made
    /// again empty, unless a running container still mounts it (the engine refuses to
    /// remove a volume in use): a restart that keeps that container keeps its contents.
    pub(super) async fn ensure_volumes(
        &self,
        spec: &PodSpec,
        created_volumes: &mut Vec<String>,
    ) -> Result<()> {
        let env = spec.env_id.as_str();
        // volumes: sources + devfile volumes (ephemeral ones are recreated), concurrently
        let sources = sources_volume(env);
        let mut wanted: Vec<(String, &str, Option<&str>, bool)> =
            vec![(sources, "sources", None, false)];
        for v in &spec.plan.volumes {
            wanted.push((
                volume_name(env, &v.name),
                "volume",
                Some(v.name.as_str()),
                !v.persistent,
            ));
        }
        let made = wanted
            .iter()
            .map(|(name, role, component, ephemeral)| async move {
                if *ephemeral {
                    self.docker
                        .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
                        .await
                        .ok();
                }
                let mut created = Vec::new();
                let r = self
                    .ensure_volume(env, name, role, *component, *ephemeral, &mut created)
                    .await;
                (r, created)
            });
        let mut first_error = None;
        for (r, created) in futures_util::future::join_all(made).await {
            created_volumes.extend(created);
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub(super) async fn ensure_volume(
        &self,
        env: &str,
        name: &str,
        role: &str,
        component: Option<&str>,
        ephemeral: bool,
        created: &mut Vec<String>,
    ) -> Result<()> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(());
        }
        let mut l = labels(env, role, component);
        if ephemeral {
            l.insert(LABEL_EPHEMERAL.into(), "true".into());
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(l),
                ..Default::default()
            })
            .await
            .map_err(Self::err(env, format!("create volume `{name}`")))?;
        created.push(name.to_string());
        Ok(())
    }

    pub(super) fn component_body(
        &self,
        spec: &PodSpec,
        c: &ContainerPlan,
        infra_id: &str,
        network: Option<&str>,
    ) -> ContainerCreateBody {
        let env = spec.env_id.as_str();
        let mut mounts = Vec::new();
        if let Some(path) = &c.source_mapping {
            mounts.push(Mount {
                target: Some(path.clone()),
                source: Some(sources_volume(env)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        for m in &c.mounts {
            mounts.push(Mount {
                target: Some(m.path.clone()),
                source: Some(volume_name(env, &m.volume)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        if let Some(v) = &spec.editor_volume {
            if spec.plan.main_container().map(|m| m.name.as_str()) == Some(c.name.as_str()) {
                mounts.push(Mount {
                    target: Some(crate::editor::MOUNT.into()),
                    source: Some(v.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                });
            }
        }
        let (_, max_mem) = self.max_limits(spec);
        let default_memory = match (spec.default_memory_bytes, max_mem) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (d, _) => d,
        };
        let memory = c
            .memory_limit_bytes
            .or(default_memory)
            .or(spec.max_memory_bytes)
            .map(|b| b as i64);
        let cpu_millis = c.cpu_limit_millis.or(spec.max_cpu_millis);
        let (cap_add, cap_drop) = capabilities(c);
        let mut body = ContainerCreateBody {
            image: Some(c.image.clone()),
            user: c.user.clone(),
            entrypoint: c.command.clone(),
            cmd: c
                .args
                .clone()
                .or_else(|| c.command.as_ref().map(|_| Vec::new())),
            env: Some(
                c.env
                    .iter()
                    .map(|e| format!("{}={}", e.name, e.value))
                    .collect(),
            ),
            working_dir: c.source_mapping.clone(),
            labels: Some(labels(env, "component", Some(&c.name))),
            stop_timeout: Some(STOP_TIMEOUT_SECS.into()),
            host_config: Some(HostConfig {
                network_mode: if c.dedicated_pod {
                    network.map(str::to_string)
                } else {
                    Some(format!("container:{infra_id}"))
                },
                mounts: Some(mounts),
                memory,
                nano_cpus: cpu_millis.map(|m| (m as i64) * 1_000_000),
                pids_limit: Some(spec.pids_limit),
                cap_drop: Some(cap_drop),
                cap_add: (!cap_add.is_empty()).then_some(cap_add),
                readonly_rootfs: c.read_only_root_fs.then_some(true),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                init: signals_forwarded(c).then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        // what the mounts mean beyond their names: an ephemeral volume is recreated
        let mounted: Vec<&devfiles::VolumePlan> = spec
            .plan
            .volumes
            .iter()
            .filter(|v| c.mounts.iter().any(|m| m.volume == v.name))
            .collect();
        restart::stamp(&mut body, &mounted);
        body
    }
}

/// The infra container of `spec`: holds the pod's network namespace and publishes its
/// endpoints; `network` is the environment's own network, if any.
pub(super) fn infra_body(spec: &PodSpec, network: Option<&str>) -> ContainerCreateBody {
    let env = spec.env_id.as_str();
    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    for c in spec.plan.containers.iter().filter(|c| !c.dedicated_pod) {
        for e in c.endpoints.iter().filter(|e| e.published()) {
            let key = format!(
                "{}/{}",
                e.port,
                if e.protocol == Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                }
            );
            exposed.push(key.clone());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(spec.publish_address.clone()),
                    host_port: Some(String::new()),
                }]),
            );
        }
    }
    let mut body = ContainerCreateBody {
        image: Some(spec.infra_image.clone()),
        entrypoint: Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
        cmd: Some(Vec::new()),
        hostname: Some(
            spec.plan
                .name
                .clone()
                .filter(|n| devfiles::is_identifier(n))
                .unwrap_or_else(|| env.to_string()),
        ),
        labels: Some(labels(env, "infra", None)),
        exposed_ports: Some(exposed),
        stop_timeout: Some(STOP_TIMEOUT_SECS.into()),
        host_config: Some(HostConfig {
            network_mode: network.map(str::to_string),
            port_bindings: Some(bindings),
            pids_limit: Some(64),
            memory: Some(32 * 1024 * 1024),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    restart::stamp(&mut body, &[]);
    body
}

/// Whether a component runs under Docker's init (`HostConfig.Init`, tini), which forwards
/// SIGTERM to the process and reaps orphans: yes when the devfile (or Cove's keep-alive) chose
/// the command. Such a process is no init: as PID 1 the kernel ignores every signal it has no
/// handler for, so `dynalite` or `sleep` would sit out the whole stop timeout. Under the init
/// it gets the default action (exit) or runs its own handler, as anywhere else. A container
/// that keeps its image's entrypoint runs as the image intends, as PID 1 (images such as
/// s6-overlay's refuse to run otherwise) and gets Docker's grace period on stop.
pub fn signals_forwarded(c: &ContainerPlan) -> bool {
    c.command.is_some()
}
