//! VS Code in the browser (docs/vscode.md): code-server for environments whose editor is
//! `vscode`.
//!
//! The image `cove/code-server:latest` (images/code-server/) holds `/opt/cove/code-server`
//! (Node 20 + code-server). Its tree is copied once per image into a named volume
//! (`cove-code-server-<image id>`, filled by Docker's copy-up when a short-lived container of
//! the image first mounts the empty volume), which is mounted read-only at the same path into
//! the environment's first source container. There code-server runs detached, on the pod's
//! loopback only (`127.0.0.1:13337`), so its terminal, tasks and extensions see the dev
//! container's tools and `/projects`; the server reaches it through `ports::connect` and
//! serves it at `/env/{env}/vscode/` to the environment's owner. Stopping the container ends
//! it; every start and restart starts it again.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions,
    WaitContainerOptions,
};
use cove_api::Editor;
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::pod::{PodError, PodSpec, Runtime};

/// The image code-server comes from (built by `images/build.sh code-server`).
pub const IMAGE: &str = "cove/code-server:latest";
/// Where its tree is, in the image and in the environment's container (read-only).
pub const MOUNT: &str = "/opt/cove/code-server";
/// The port code-server listens on, on the pod's loopback.
pub const PORT: u16 = 13337;
/// Label on the code-server volumes (they outlive environments; one per image).
pub const LABEL_EDITOR_VOLUME: &str = "cove.editor-volume";
/// Where code-server's output goes inside the container.
pub const LOG: &str = "/tmp/cove-code-server.log";

/// One volume fill at a time on this agent.
static FILL: Mutex<()> = Mutex::const_new(());

/// For an environment whose editor is `vscode`: the code-server volume (filled from the image
/// when this image has none yet) set as `spec.editor_volume`, so the first source container
/// mounts it. Nothing for `terminal`. A missing image is an error that says how to build it.
pub async fn prepare(rt: &Runtime, spec: &mut PodSpec, editor: Editor) -> Result<(), PodError> {
    if editor != Editor::Vscode {
        spec.editor_volume = None;
        return Ok(());
    }
    spec.editor_volume = Some(volume(rt).await.map_err(|message| PodError::Editor {
        env: spec.env_id.clone(),
        message: format!("VS Code (code-server) cannot be prepared: {message}"),
    })?);
    Ok(())
}

/// The name of the filled code-server volume of the current image.
async fn volume(rt: &Runtime) -> Result<String, String> {
    let docker = rt.docker();
    let image = docker.inspect_image(IMAGE).await.map_err(|e| {
        format!("image {IMAGE} is not on this engine ({e}); build it with `images/build.sh code-server`")
    })?;
    let id = image.id.unwrap_or_default();
    let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
    if short.is_empty() {
        return Err(format!("image {IMAGE} has no id"));
    }
    let name = format!("cove-code-server-{short}");
    let _one = FILL.lock().await;
    if docker.inspect_volume(&name).await.is_ok() {
        return Ok(name);
    }
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(HashMap::from([(
                LABEL_EDITOR_VOLUME.to_string(),
                IMAGE.to_string(),
            )])),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create volume {name}: {e}"))?;
    if let Err(e) = fill(rt, &name).await {
        docker
            .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
            .await
            .ok();
        return Err(e);
    }
    Ok(name)
}

/// Docker copies an image's content at a mount point into an empty named volume when a
/// container mounts it: a container of the image that runs `true` fills the volume.
async fn fill(rt: &Runtime, volume: &str) -> Result<(), String> {
    let docker = rt.docker();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        entrypoint: Some(vec!["/bin/true".into()]),
        cmd: Some(Vec::new()),
        labels: Some(HashMap::from([(
            LABEL_EDITOR_VOLUME.to_string(),
            "fill".to_string(),
        )])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(MOUNT.into()),
                source: Some(volume.into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(|e| format!("create the container that fills {volume}: {e}"))?
        .id;
    let result = async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| format!("start the container that fills {volume}: {e}"))?;
        let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
        while let Some(w) = wait.next().await {
            w.map_err(|e| format!("filling {volume}: {e}"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .ok();
    result
}

/// The shell line that starts code-server in the first source container: the project's
/// folder (`$PROJECT_SOURCE`, else `$PROJECTS_ROOT`, else `/projects`) opened, no password
/// (the server's proxy is the gate), no telemetry or update checks, output to [`LOG`].
pub fn start_command() -> Vec<String> {
    let line = format!(
        "d=\"${{PROJECT_SOURCE:-${{PROJECTS_ROOT:-/projects}}}}\"; [ -d \"$d\" ] || d=\"${{PROJECTS_ROOT:-/}}\"; \
         exec {MOUNT}/bin/cove-code-server --bind-addr 127.0.0.1:{PORT} --auth none \
         --disable-telemetry --disable-update-check --disable-workspace-trust \
         --disable-getting-started-override \"$d\" >>{LOG} 2>&1"
    );
    vec!["/bin/sh".into(), "-c".into(), line]
}

/// Starts code-server (detached) in the environment's first source container when its editor
/// is `vscode`. A code-server that already runs keeps the port; the new one exits.
pub async fn start(rt: &Runtime, spec: &PodSpec, editor: Editor) -> Result<(), PodError> {
    if editor != Editor::Vscode {
        return Ok(());
    }
    let Some(main) = spec.plan.main_container() else {
        return Ok(());
    };
    rt.exec_detached(&spec.env_id, &main.name, start_command())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_line_binds_loopback_without_password() {
        let cmd = start_command();
        assert_eq!(cmd[0], "/bin/sh");
        assert!(cmd[2].contains("--bind-addr 127.0.0.1:13337"));
        assert!(cmd[2].contains("--auth none"));
        assert!(cmd[2].contains("/opt/cove/code-server/bin/cove-code-server"));
    }
}
