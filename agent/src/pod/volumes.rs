//! An environment's volumes out of one engine and into another (`cove env move`, issue 20):
//! a volume's contents as a tar archive, through a helper container that is created and never
//! started (the engine's archive API works on created containers), so nothing of the
//! environment runs while it is copied and no devfile command or event is involved.
//!
//! Export: the helper mounts the volume read-only at [`MOUNT`]; the archive of [`MOUNT`] is
//! streamed out. Import: the volume is made anew with the environment's labels (so deleting
//! the environment removes it), the helper mounts it at [`MOUNT`] and the archive is unpacked
//! at `/`. Entries keep their owners and modes (the archive API keeps the archive's uid/gid
//! unless asked to chown). The helper carries the environment's label with the role `mover`:
//! deleting the environment removes a helper a crash left behind.

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    RemoveVolumeOptions, UploadToContainerOptions,
};
use futures_util::{Stream, StreamExt};

use super::Runtime;
use super::{is_not_found, labels, sources_volume, valid_env_id, volume_name, PodError, Result};

/// Where the helper container mounts the volume.
pub const MOUNT: &str = "/cove-volume";

/// The engine's name of environment `env`'s volume `volume` (`None`: the sources) and its
/// labels' role and component.
fn volume_of(env: &str, volume: Option<&str>) -> Result<(String, &'static str, Option<String>)> {
    if !valid_env_id(env) {
        return Err(PodError::BadId(env.to_string()));
    }
    Ok(match volume {
        None => (sources_volume(env), "sources", None),
        Some(v) if devfiles::is_identifier(v) && v.len() <= 63 => {
            (volume_name(env, v), "volume", Some(v.to_string()))
        }
        Some(v) => {
            return Err(PodError::Volume {
                env: env.to_string(),
                message: format!("{v:?} is not a devfile volume name"),
            })
        }
    })
}

impl Runtime {
    /// A never-started container of `image` with `volume` mounted at [`MOUNT`].
    async fn volume_helper(
        &self,
        env: &str,
        volume: &str,
        image: &str,
        read_only: bool,
    ) -> Result<String> {
        // one helper per volume at a time (a name the engine keeps unique); a stale one from
        // an interrupted copy goes first
        let suffix = if read_only { "out" } else { "in" };
        let name = format!("cove-{env}--mover-{suffix}-{}", short_hash(volume));
        self.remove_helper(&name).await;
        let id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(image.to_string()),
                    cmd: Some(vec!["true".into()]),
                    labels: Some(labels(env, "mover", None)),
                    network_disabled: Some(true),
                    host_config: Some(HostConfig {
                        mounts: Some(vec![Mount {
                            target: Some(MOUNT.into()),
                            source: Some(volume.to_string()),
                            typ: Some(MountType::VOLUME),
                            read_only: Some(read_only),
                            ..Default::default()
                        }]),
                        network_mode: Some("none".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create the volume helper container"))?
            .id;
        Ok(id)
    }

    async fn remove_helper(&self, id: &str) {
        self.docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: false,
                    ..Default::default()
                }),
            )
            .await
            .ok();
    }

    /// The archive of environment `env`'s volume (`None`: the sources), streamed; the helper
    /// container goes when the stream ends or is dropped. `Err` before any byte when the
    /// volume does not exist.
    pub async fn export_volume(
        &self,
        env: &str,
        volume: Option<&str>,
        helper_image: &str,
    ) -> Result<impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
        let (name, _, _) = volume_of(env, volume)?;
        if let Err(e) = self.docker.inspect_volume(&name).await {
            return Err(if is_not_found(&e) {
                PodError::Volume {
                    env: env.to_string(),
                    message: format!("no volume `{name}` on this engine"),
                }
            } else {
                Self::err(env, format!("inspect volume `{name}`"))(e)
            });
        }
        let id = self.volume_helper(env, &name, helper_image, true).await?;
        let guard = HelperGuard {
            rt: self.clone(),
            id: Some(id.clone()),
        };
        let archive = self.docker.download_from_container(
            &id,
            Some(DownloadFromContainerOptions {
                path: MOUNT.to_string(),
            }),
        );
        // the guard lives as long as the stream: the helper goes when it is dropped
        Ok(archive.map(move |chunk| {
            let _keep = &guard;
            chunk.map_err(std::io::Error::other)
        }))
    }

    /// Makes environment `env`'s volume (`None`: the sources) anew from `archive` (an
    /// [`Runtime::export_volume`] stream). A volume of that name already there is replaced;
    /// on failure the volume is removed again.
    pub async fn import_volume(
        &self,
        env: &str,
        volume: Option<&str>,
        helper_image: &str,
        archive: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        let (name, role, component) = volume_of(env, volume)?;
        match self
            .docker
            .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Err(e) if !is_not_found(&e) => {
                return Err(Self::err(env, format!("replace volume `{name}`"))(e))
            }
            _ => {}
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels(env, role, component.as_deref())),
                ..Default::default()
            })
            .await
            .map_err(Self::err(env, format!("create volume `{name}`")))?;
        let result = async {
            let id = self.volume_helper(env, &name, helper_image, false).await?;
            let upload = self
                .docker
                .upload_to_container(
                    &id,
                    Some(UploadToContainerOptions {
                        path: "/".into(),
                        ..Default::default()
                    }),
                    bollard::body_try_stream(archive),
                )
                .await
                .map_err(Self::err(
                    env,
                    format!("unpack the archive into volume `{name}`"),
                ));
            self.remove_helper(&id).await;
            upload
        }
        .await;
        if result.is_err() {
            self.docker
                .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
                .await
                .ok();
        }
        result
    }
}

/// Eight hex digits of `s` (FNV-1a), to keep helper names short and distinct per volume.
pub(crate) fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Removes the export's helper container when dropped.
struct HelperGuard {
    rt: Runtime,
    id: Option<String>,
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let rt = self.rt.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { rt.remove_helper(&id).await });
            }
        }
    }
}
