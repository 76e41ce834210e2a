//! Where and how the host firewall rules are run: the local iptables, or a short-lived
//! helper container in the host's network namespace (and the removal of helpers a killed
//! process left).

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::Docker;

use super::*;

/// Where iptables runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firewall {
    /// This process runs in the host's network namespace: run the binary.
    Local { iptables: String },
    /// The agent runs in a container with the engine's socket: each batch
    /// of rules runs in a short-lived container of `image` in the host's
    /// network namespace with `NET_ADMIN` (the agent itself stays
    /// unprivileged).
    HostContainer { iptables: String, image: String },
}

impl Firewall {
    pub(crate) fn binary(&self) -> &str {
        match self {
            Firewall::Local { iptables } | Firewall::HostContainer { iptables, .. } => iptables,
        }
    }

    /// Runs `batch` (argument lists for iptables) in order. With
    /// `keep_going` every command runs and failures are collected;
    /// otherwise the first failure stops the batch. Returns the standard
    /// output of the commands and the failures (`command: message`).
    pub(crate) async fn run(
        &self,
        docker: &Docker,
        batch: Vec<Vec<String>>,
        keep_going: bool,
    ) -> (String, Vec<String>) {
        match self {
            Firewall::Local { iptables } => {
                let iptables = iptables.clone();
                tokio::task::spawn_blocking(move || {
                    let (mut out, mut failures) = (String::new(), Vec::new());
                    for args in batch {
                        let command = format!("{iptables} {}", args.join(" "));
                        match std::process::Command::new(&iptables).args(&args).output() {
                            Ok(o) if o.status.success() => {
                                out.push_str(&String::from_utf8_lossy(&o.stdout))
                            }
                            Ok(o) => failures.push(format!(
                                "{command}: {}",
                                String::from_utf8_lossy(&o.stderr).trim()
                            )),
                            Err(e) => failures.push(format!("{command}: {e}")),
                        }
                        if !failures.is_empty() && !keep_going {
                            break;
                        }
                    }
                    (out, failures)
                })
                .await
                .unwrap_or_else(|e| (String::new(), vec![e.to_string()]))
            }
            Firewall::HostContainer { iptables, image } => {
                host_container_batch(docker, image, iptables, &batch, keep_going).await
            }
        }
    }
}

impl Firewall {
    /// The network interfaces of the host's namespace, where the rules live (`None`: they
    /// could not be listed). Another engine on the same host has its own bridges there: a
    /// rule on an interface that exists is not this agent's to call stale.
    pub(crate) async fn host_interfaces(
        &self,
        docker: &Docker,
    ) -> Option<std::collections::BTreeSet<String>> {
        match self {
            Firewall::Local { .. } => std::fs::read_dir("/sys/class/net").ok().map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            }),
            // the helper runs in the host's network namespace: its /sys/class/net is the host's
            Firewall::HostContainer { image, .. } => {
                let (out, failures) = host_container_batch(
                    docker,
                    image,
                    "ls",
                    &[vec!["/sys/class/net".to_string()]],
                    false,
                )
                .await;
                failures
                    .is_empty()
                    .then(|| out.split_whitespace().map(str::to_string).collect())
            }
        }
    }
}

pub(super) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `cove.role` of a firewall helper container.
pub const ROLE_FIREWALL: &str = "firewall";

/// Removes firewall helper containers that exited (or never started) at least `min_age` ago
/// and that `consider` accepts: an agent removes its helper as soon as it has read the
/// output, so such a helper was left by a process killed while the helper ran (the engine
/// runs it to the end anyway). Running helpers are left alone. Returns how many were removed.
pub async fn remove_stale_helpers(
    docker: &Docker,
    min_age: std::time::Duration,
    consider: impl Fn(&str) -> bool,
) -> Result<usize, DockerError> {
    use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
    let filters = HashMap::from([
        (
            "label".to_string(),
            vec![format!("{LABEL_ROLE}={ROLE_FIREWALL}")],
        ),
        (
            "status".to_string(),
            vec![
                "exited".to_string(),
                "created".to_string(),
                "dead".to_string(),
            ],
        ),
    ]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut removed = 0;
    for c in list {
        let Some(id) = c.id else { continue };
        let age = now.saturating_sub(c.created.unwrap_or(now));
        if age < min_age.as_secs() as i64 || !consider(&id) {
            continue;
        }
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => removed += 1,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "firewall helpers a killed process left removed");
    }
    Ok(removed)
}

/// One helper container for a batch of iptables commands: `--network host`,
/// `NET_ADMIN`/`NET_RAW` only, removed afterwards.
pub(super) async fn host_container_batch(
    docker: &Docker,
    image: &str,
    iptables: &str,
    batch: &[Vec<String>],
    keep_going: bool,
) -> (String, Vec<String>) {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use bollard::query_parameters::{
        LogsOptions, RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
    };
    use futures_util::StreamExt;
    // Each command's stderr goes to stdout behind a marker line, so a
    // failure can be attributed to its command.
    let mut script = String::from("rc=0\n");
    for (n, args) in batch.iter().enumerate() {
        let words: Vec<String> = std::iter::once(iptables.to_string())
            .chain(args.iter().cloned())
            .map(|w| shell_quote(&w))
            .collect();
        script.push_str(&format!(
            "{} 2>/tmp/err || {{ rc=1; echo \"@@cove-fail {n} $(tr '\\n' ' ' </tmp/err)\"; {} }}\n",
            words.join(" "),
            if keep_going { "" } else { "exit 1;" }
        ));
    }
    script.push_str("exit $rc\n");
    let labels = HashMap::from([(LABEL_ROLE.to_string(), ROLE_FIREWALL.to_string())]);
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        cmd: Some(Vec::new()),
        labels: Some(labels),
        network_disabled: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let fail = |e: String| {
        (
            String::new(),
            vec![format!("firewall helper container ({image}): {e}")],
        )
    };
    let id = match docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
    {
        Ok(c) => c.id,
        Err(e) => return fail(e.to_string()),
    };
    let result = async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
        while let Some(w) = wait.next().await {
            // A non-zero exit is reported as an error by bollard; the
            // output below says which command failed.
            if w.is_err() {
                break;
            }
        }
        let mut logs = docker.logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(chunk) = logs.next().await {
            out.push_str(&chunk.map_err(|e| e.to_string())?.to_string());
        }
        Ok::<String, String>(out)
    }
    .await;
    let _ = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    match result {
        Err(e) => fail(e),
        Ok(out) => {
            let (mut stdout, mut failures) = (String::new(), Vec::new());
            for line in out.lines() {
                match line.strip_prefix("@@cove-fail ") {
                    Some(rest) => {
                        let (n, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                        let args = n
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| batch.get(n))
                            .map(|a| a.join(" "))
                            .unwrap_or_default();
                        failures.push(format!("{iptables} {args}: {}", msg.trim()));
                    }
                    None => {
                        stdout.push_str(line);
                        stdout.push('\n');
                    }
                }
            }
            (stdout, failures)
        }
    }
}
