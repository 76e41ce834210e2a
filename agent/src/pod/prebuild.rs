//! Prebuilds on Docker (docs/prebuilds.md): a prebuild pod's component containers committed
//! to snapshot images, the main container's with the sources volume's contents baked in under
//! its source mapping, so that an environment created from those images gets its `/projects`
//! filled by the engine itself (a new, empty named volume is populated from the image's files
//! at the mount path) and only starts containers. Also the removal of snapshot images.

use std::collections::HashMap;

use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, DownloadFromContainerOptions,
    ListImagesOptions, RemoveContainerOptions, RemoveImageOptions, UploadToContainerOptions,
};
use devfiles::EnvironmentPlan;

use super::{labels, Result, Runtime};

/// Label of a snapshot image: the prebuild's id.
pub const LABEL_PREBUILD: &str = "cove.prebuild";
/// Label of a snapshot image: the Cove installation (its store) that made it, so that one
/// installation never removes another's images on a shared engine.
pub const LABEL_PREBUILD_INSTALL: &str = "cove.prebuild.install";
/// Every snapshot image's repository starts with this.
pub const IMAGE_PREFIX: &str = "cove-prebuild/";

impl Runtime {
    /// Commits every component container of pod `env` to `image_repo:<component>`, the main
    /// (source-mapped) one with the contents of its source mapping copied into the image.
    /// Returns (component, image) pairs; on failure the images made so far are removed.
    pub async fn snapshot(
        &self,
        env: &str,
        plan: &EnvironmentPlan,
        image_repo: &str,
        image_labels: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let mut made = Vec::new();
        let result = self
            .snapshot_inner(env, plan, image_repo, image_labels, &mut made)
            .await;
        if result.is_err() {
            for image in &made {
                self.remove_image_quietly(image).await;
            }
        }
        result.map(|()| {
            plan.containers
                .iter()
                .map(|c| c.name.clone())
                .zip(made)
                .collect()
        })
    }

    async fn snapshot_inner(
        &self,
        env: &str,
        plan: &EnvironmentPlan,
        image_repo: &str,
        image_labels: &[(String, String)],
        made: &mut Vec<String>,
    ) -> Result<()> {
        let changes = label_change(image_labels);
        let main = plan.main_container().map(|c| c.name.clone());
        for c in &plan.containers {
            let id = self.component_id(env, &c.name).await?;
            let image = format!("{image_repo}:{}", c.name);
            let mapping = c
                .source_mapping
                .as_deref()
                .filter(|_| main.as_ref() == Some(&c.name));
            match mapping {
                None => {
                    self.commit(env, &id, Some((image_repo, &c.name)), &changes)
                        .await?;
                }
                Some(path) => {
                    // the container's own files first (untagged), then its sources on top
                    let base = self.commit(env, &id, None, &changes).await?;
                    let tmp = format!("{env}-snapshot");
                    let result = self
                        .bake_sources(env, &id, &base, &tmp, path, image_repo, &c.name, &changes)
                        .await;
                    self.docker
                        .remove_container(
                            &tmp,
                            Some(RemoveContainerOptions {
                                force: true,
                                v: true,
                                ..Default::default()
                            }),
                        )
                        .await
                        .ok();
                    if result.is_err() {
                        self.remove_image_quietly(&base).await;
                    }
                    result?;
                }
            }
            made.push(image);
        }
        Ok(())
    }

    /// A container `tmp` made (never started) from `base`, the tar of `path` streamed from
    /// the running container `from` into it, committed to `image_repo:tag`.
    #[allow(clippy::too_many_arguments)]
    async fn bake_sources(
        &self,
        env: &str,
        from: &str,
        base: &str,
        tmp: &str,
        path: &str,
        image_repo: &str,
        tag: &str,
        changes: &str,
    ) -> Result<()> {
        let tmp_id = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(tmp.to_string()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(base.to_string()),
                    labels: Some(labels(env, "snapshot", None)),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create the snapshot container"))?
            .id;
        let path = path.trim_end_matches('/');
        let parent = match path.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((p, _)) => p,
        };
        // the archive of `path` names its entries after `path`'s last part: into its parent
        let tar = self
            .docker
            .download_from_container(
                from,
                Some(DownloadFromContainerOptions {
                    path: path.to_string(),
                }),
            )
            .map(|chunk| chunk.map_err(std::io::Error::other));
        self.docker
            .upload_to_container(
                &tmp_id,
                Some(UploadToContainerOptions {
                    path: parent.to_string(),
                    ..Default::default()
                }),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(Self::err(env, format!("copy {path} into the snapshot")))?;
        self.commit(env, &tmp_id, Some((image_repo, tag)), changes)
            .await?;
        Ok(())
    }

    async fn commit(
        &self,
        env: &str,
        container: &str,
        name: Option<(&str, &str)>,
        changes: &str,
    ) -> Result<String> {
        let options = CommitContainerOptions {
            container: Some(container.to_string()),
            repo: name.map(|(r, _)| r.to_string()),
            tag: name.map(|(_, t)| t.to_string()),
            pause: true,
            changes: (!changes.is_empty()).then(|| changes.to_string()),
            ..Default::default()
        };
        let id = self
            .docker
            .commit_container(options, ContainerConfig::default())
            .await
            .map_err(Self::err(env, "commit a snapshot"))?
            .id;
        Ok(match name {
            Some((r, t)) => format!("{r}:{t}"),
            None => id,
        })
    }

    async fn remove_image_quietly(&self, image: &str) {
        self.docker
            .remove_image(
                image,
                Some(RemoveImageOptions {
                    force: false,
                    ..Default::default()
                }),
                None,
            )
            .await
            .ok();
    }

    /// Removes the snapshot images of installation `install` whose prebuild is not in
    /// `keep`. An image still used by a container is left (the engine refuses without force;
    /// the next pass retries). Returns how many remain of those it tried.
    pub async fn remove_prebuilds(&self, install: &str, keep: &[String]) -> Result<usize> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_PREBUILD_INSTALL}={install}")],
        )]);
        let list = self
            .docker
            .list_images(Some(ListImagesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Self::err("prebuilds", "list images"))?;
        let mut remaining = 0;
        for image in list {
            let id = image
                .labels
                .get(LABEL_PREBUILD)
                .cloned()
                .unwrap_or_default();
            if keep.contains(&id) {
                continue;
            }
            let tags: Vec<&String> = image
                .repo_tags
                .iter()
                .filter(|t| t.starts_with(IMAGE_PREFIX))
                .collect();
            let names: Vec<String> = if tags.is_empty() {
                vec![image.id.clone()]
            } else {
                tags.into_iter().cloned().collect()
            };
            for name in names {
                let removed = self
                    .docker
                    .remove_image(
                        &name,
                        Some(RemoveImageOptions {
                            force: false,
                            ..Default::default()
                        }),
                        None,
                    )
                    .await;
                if let Err(e) = removed {
                    if !super::is_not_found(&e) {
                        tracing::info!(image = %name, error = %e, "prebuild image kept for now");
                        remaining += 1;
                    }
                }
            }
        }
        Ok(remaining)
    }
}

/// `LABEL k="v" …` for a commit's `changes`.
fn label_change(image_labels: &[(String, String)]) -> String {
    if image_labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = image_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("LABEL {}", pairs.join(" "))
}

/// The snapshot image repository of prebuild `id`.
pub fn image_repo(id: i64) -> String {
    format!("{IMAGE_PREFIX}p{id}")
}

use futures_util::StreamExt as _;
