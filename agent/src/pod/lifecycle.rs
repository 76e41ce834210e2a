//! A pod's containers: status, listing, stop, start, recreate, delete.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions, StartContainerOptions,
    StopContainerOptions,
};

use super::*;

impl Runtime {
    /// Containers of an environment (infra first).
    pub(super) async fn containers(
        &self,
        env: &str,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ENV}={env}")])]);
        let mut list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Self::err(env, "list containers"))?;
        list.sort_by_key(|c| role_of(c) != "infra");
        Ok(list)
    }

    /// The engine's view of an environment, or `None` if it has no containers.
    pub async fn status(&self, env: &str) -> Result<Option<PodStatus>> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Ok(None);
        }
        let mut status = PodStatus {
            env_id: env.to_string(),
            infra_running: false,
            containers: Vec::new(),
            endpoints: Vec::new(),
            sources_empty: false,
        };
        for c in &list {
            let running = matches!(
                c.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
            );
            let id = c.id.clone().unwrap_or_default();
            if role_of(c) == "infra" {
                status.infra_running = running;
                for p in c.ports.iter().flatten() {
                    if let (Some(ip), Some(public)) = (&p.ip, p.public_port) {
                        if ip.contains(':') {
                            continue; // report the IPv4 binding once
                        }
                        status.endpoints.push(PublishedEndpoint {
                            port: p.private_port,
                            protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
                            host_ip: ip.clone(),
                            host_port: public,
                        });
                    }
                }
            } else {
                let component = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_COMPONENT))
                    .cloned()
                    .unwrap_or_default();
                status.containers.push(ContainerState {
                    component,
                    id,
                    running,
                });
            }
        }
        status.endpoints.sort_by_key(|e| e.port);
        Ok(Some(status))
    }

    /// Every environment Cove has on this engine (for reconciliation).
    pub async fn list(&self) -> Result<Vec<PodStatus>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ROLE}=infra")])]);
        let infras = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Self::err("*", "list containers"))?;
        let mut out = Vec::new();
        for c in infras {
            if let Some(env) = c.labels.as_ref().and_then(|l| l.get(LABEL_ENV)) {
                if let Some(s) = self.status(env).await? {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Stop every container (components first, then infra). Volumes stay.
    pub async fn stop(&self, env: &str) -> Result<()> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        let stops = list.iter().filter(|c| role_of(c) != "infra").map(|c| {
            let id = c.id.clone().unwrap_or_default();
            async move {
                match self
                    .docker
                    .stop_container(
                        &id,
                        Some(StopContainerOptions {
                            t: Some(STOP_TIMEOUT_SECS),
                            signal: None,
                        }),
                    )
                    .await
                {
                    Err(e) if !is_not_modified(&e) && !is_not_found(&e) => Err(e),
                    _ => Ok(()),
                }
            }
        });
        for r in futures_util::future::join_all(stops).await {
            r.map_err(Self::err(env, "stop container"))?;
        }
        for c in list.iter().filter(|c| role_of(c) == "infra") {
            let id = c.id.clone().unwrap_or_default();
            match self
                .docker
                .stop_container(
                    &id,
                    Some(StopContainerOptions {
                        t: Some(1),
                        signal: None,
                    }),
                )
                .await
            {
                Err(e) if !is_not_modified(&e) && !is_not_found(&e) => {
                    return Err(Self::err(env, "stop infra container")(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Start a stopped environment (infra first). Ephemeral volumes are
    /// recreated empty by [`Runtime::recreate`], not by a plain start.
    pub async fn start(&self, env: &str) -> Result<PodStatus> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        // rules lost to a host reboot come back before anything runs
        crate::env_net::ensure(&self.docker, env, &self.network).await?;
        for c in &list {
            let id = c.id.clone().unwrap_or_default();
            match self
                .docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
            {
                Err(e) if !is_not_modified(&e) => return Err(Self::err(env, "start container")(e)),
                _ => {}
            }
        }
        self.status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))
    }

    /// Replace the containers with ones built from a new plan. Volumes and
    /// `/projects` are kept. If the new containers cannot be created the
    /// environment is left stopped with its data intact.
    pub async fn recreate(&self, spec: &PodSpec) -> Result<PodStatus> {
        self.check_limits(spec)?;
        self.remove_containers(&spec.env_id).await?;
        let mut created = Vec::new();
        let result = self.create_inner(spec, &mut created).await;
        if result.is_err() {
            self.remove_containers(&spec.env_id).await.ok();
        }
        result
    }

    pub(super) async fn remove_containers(&self, env: &str) -> Result<()> {
        let list = self.containers(env).await?;
        let remove = |c: &bollard::models::ContainerSummary| {
            let id = c.id.clone().unwrap_or_default();
            async move {
                remove_container_gone(&self.docker, &id)
                    .await
                    .map_err(Self::err(env, "remove container"))
            }
        };
        // components first (concurrently), then the infra container that owns their namespace
        let components = list.iter().filter(|c| role_of(c) != "infra").map(remove);
        for r in futures_util::future::join_all(components).await {
            r?;
        }
        for c in list.iter().filter(|c| role_of(c) == "infra") {
            remove(c).await?;
        }
        Ok(())
    }

    /// Remove every container, volume and the network (with its firewall
    /// rules) of the environment.
    ///
    /// A move that still exports the environment (another task) may start a volume helper
    /// after the containers were listed: a volume still in use is tried again, a few times,
    /// after removing the containers again.
    pub async fn delete(&self, env: &str) -> Result<()> {
        let mut round = 0;
        loop {
            round += 1;
            self.remove_containers(env).await?;
            match self.remove_volumes(env).await {
                Err((e, true)) if round < 6 => {
                    tracing::info!(env, error = %e, "a volume is still in use; removing the environment's containers again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err((e, _)) => return Err(e),
                Ok(()) => break,
            }
        }
        crate::env_net::remove(&self.docker, env, &self.network).await
    }

    /// Removes the environment's volumes; an error says whether a volume was in use (409).
    pub(super) async fn remove_volumes(
        &self,
        env: &str,
    ) -> std::result::Result<(), (PodError, bool)> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ENV}={env}")])]);
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| (Self::err(env, "list volumes")(e), false))?;
        for v in volumes.volumes.into_iter().flatten() {
            match self
                .docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Err(e) if !is_not_found(&e) => {
                    let in_use = matches!(
                        e,
                        DockerError::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }
                    );
                    return Err((
                        Self::err(env, format!("remove volume `{}`", v.name))(e),
                        in_use,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Wait until every container of the environment runs, or `timeout`.
    pub async fn wait_running(&self, env: &str, timeout: Duration) -> Result<PodStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .status(env)
                .await?
                .ok_or_else(|| PodError::NotFound(env.to_string()))?;
            if status.running() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
