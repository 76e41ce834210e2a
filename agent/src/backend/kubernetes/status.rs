//! What the cluster says about an environment's Pod.

use k8s_openapi::api::core::v1::{Pod, Service};

use super::FATAL_WAITING;
use crate::pod::{ContainerState, PodStatus, PublishedEndpoint};

/// Whether every container of a Pod has started at least once.
pub(super) enum Started {
    Yes,
    NotYet(String),
    Never(String),
}

pub(super) fn started(pod: &Pod) -> Started {
    let Some(status) = &pod.status else {
        return Started::NotYet("no status yet".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Failed" | "Succeeded") {
        return Started::Never(format!(
            "the Pod is {phase}{}",
            status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    let want = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let statuses = status.container_statuses.clone().unwrap_or_default();
    let mut waiting = Vec::new();
    let mut up = 0;
    for c in &statuses {
        let state = c.state.clone().unwrap_or_default();
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_default();
            let line = format!(
                "container `{}`: {reason}{}",
                c.name,
                w.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            if FATAL_WAITING.contains(&reason.as_str()) {
                return Started::Never(line);
            }
            if c.restart_count > 0 {
                up += 1; // it ran, and ended: a service whose image exits
            } else {
                waiting.push(line);
            }
        } else if state.running.is_some() || state.terminated.is_some() {
            up += 1;
        }
    }
    if want > 0 && up == want {
        return Started::Yes;
    }
    if waiting.is_empty() {
        // not scheduled yet, or no container status yet: the scheduler says why
        let why = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.status == "False" && c.message.is_some())
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| format!("the Pod is {phase}"));
        waiting.push(why);
    }
    Started::NotYet(waiting.join("; "))
}

pub(super) fn status_of(
    env: &str,
    pod: Option<&Pod>,
    stored: Option<&Pod>,
    svc: Option<&Service>,
) -> PodStatus {
    let spec = pod.or(stored).and_then(|p| p.spec.as_ref());
    let statuses = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let phase_running = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        == Some("Running");
    let deleting = pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some());
    let containers = spec
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    let st = statuses.iter().find(|s| s.name == c.name);
                    ContainerState {
                        component: c.name.clone(),
                        id: st.and_then(|s| s.container_id.clone()).unwrap_or_default(),
                        running: !deleting
                            && st
                                .and_then(|s| s.state.as_ref())
                                .is_some_and(|s| s.running.is_some()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut endpoints = Vec::new();
    if let Some(spec) = svc.and_then(|s| s.spec.as_ref()) {
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            endpoints.push(PublishedEndpoint {
                port: u16::try_from(p.port).unwrap_or(0),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: ip.clone(),
                host_port: u16::try_from(p.port).unwrap_or(0),
            });
        }
    }
    endpoints.sort_by_key(|e| e.port);
    PodStatus {
        env_id: env.to_string(),
        infra_running: phase_running && !deleting,
        containers,
        endpoints,
        sources_empty: false,
    }
}
