//! A workflow job attempt as Kubernetes objects (pure): its name-safe key, the labels, the
//! Pod, the NetworkPolicy that fences it and the Secret with its secret variables. The
//! lifecycle is `jobs.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, Pod, PodSpec as K8sPodSpec, ResourceRequirements, Secret,
    SecretEnvSource, SecurityContext,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::manifest::{LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY};
use super::KubernetesConfig;
use crate::jobs::{JobSpec, SRC_DIR};

/// A job Pod's grace period when it is deleted (its commands were stopped already).
pub const DELETE_GRACE_SECS: u32 = 1;
/// Label of a job's objects: its key ([`job_key`]: the job id, or a name-safe form of it).
pub const LABEL_JOB: &str = "cove.dev/job";
/// Label of a job's objects: the attempt.
pub const LABEL_ATTEMPT: &str = "cove.dev/attempt";
/// Label of a job's objects when the agent names itself (`JobSpec::owner`).
pub const LABEL_OWNER: &str = "cove.dev/owner";
/// Annotation with the job id as the server gave it.
pub const ANNOTATION_JOB_ID: &str = "cove.dev/job-id";
/// The job Pod's one container.
pub const CONTAINER: &str = "job";

/// A name-safe (DNS label) key for a job id: the id itself when it is one (lowercase
/// letters, digits, `-`, at most 40), else a lowercase form of it with a hash of the id.
pub fn job_key(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if plain {
        return id.to_string();
    }
    let mut safe: String = id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(24)
        .collect();
    safe = safe.trim_matches('-').to_string();
    // FNV-1a: stable across builds (the name must be found again after a restart)
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if safe.is_empty() {
        format!("x{:012x}", h & 0xffff_ffff_ffff)
    } else {
        format!("{safe}-{:012x}", h & 0xffff_ffff_ffff)
    }
}

/// The name of a job attempt's Pod, Secret and NetworkPolicy.
pub fn job_object_name(job: &JobSpec) -> String {
    format!("cove-job-{}-{}", job_key(&job.job_id), job.attempt)
}

/// Selects every object of a job (all attempts).
pub fn job_selector(job_id: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_JOB}={}",
        job_key(job_id)
    )
}

fn job_labels(job: &JobSpec) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ROLE.to_string(), "job".to_string()),
        (LABEL_JOB.to_string(), job_key(&job.job_id)),
        (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
    ]);
    if let Some(owner) = job.owner.as_deref().filter(|o| label_value(o)) {
        l.insert(LABEL_OWNER.to_string(), owner.to_string());
    }
    l
}

pub(super) fn label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn job_meta(job: &JobSpec) -> ObjectMeta {
    ObjectMeta {
        name: Some(job_object_name(job)),
        labels: Some(job_labels(job)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_JOB_ID.to_string(),
            job.job_id.clone(),
        )])),
        ..Default::default()
    }
}

/// The job's Pod: its image running the keep-alive, the Secret's variables, the job's
/// limits, no ServiceAccount token, no Service variables.
pub fn job_pod(job: &JobSpec, cfg: &KubernetesConfig, with_secret: bool) -> Pod {
    let mut limits = BTreeMap::new();
    if let Some(m) = job.limits.memory_bytes {
        limits.insert("memory".to_string(), Quantity(m.to_string()));
    }
    if let Some(n) = job.limits.nano_cpus {
        limits.insert(
            "cpu".to_string(),
            Quantity(format!("{}m", (n / 1_000_000).max(1))),
        );
    }
    let requests = BTreeMap::from([
        ("memory".to_string(), Quantity("64Mi".into())),
        ("cpu".to_string(), Quantity("50m".into())),
    ]);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(job.image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        command: Some(devfiles::KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
        working_dir: Some(SRC_DIR.into()),
        env_from: with_secret.then(|| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: job_object_name(job),
                    optional: Some(false),
                }),
                ..Default::default()
            }]
        }),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: Some(requests),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pod {
        metadata: job_meta(job),
        spec: Some(K8sPodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // the pause process is PID 1 and reaps what the steps leave behind (Docker's
            // `init: true`)
            share_process_namespace: Some(true),
            termination_grace_period_seconds: Some(i64::from(DELETE_GRACE_SECS)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The job's fence: no ingress, egress only to `gateway` (TCP), none without one.
pub fn job_policy(job: &JobSpec) -> NetworkPolicy {
    let selector = BTreeMap::from([
        (LABEL_JOB.to_string(), job_key(&job.job_id)),
        (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
    ]);
    let egress = job
        .gateway
        .map(|gw| {
            let cidr = match gw {
                SocketAddr::V4(a) => format!("{}/32", a.ip()),
                SocketAddr::V6(a) => format!("{}/128", a.ip()),
            };
            vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock { cidr, except: None }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    port: Some(IntOrString::Int(i32::from(gw.port()))),
                    end_port: None,
                }]),
            }]
        })
        .unwrap_or_default();
    NetworkPolicy {
        metadata: job_meta(job),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(Vec::new()),
            egress: Some(egress),
        }),
    }
}

/// The job's secret variables (later values of a name win, as in the environment).
pub fn job_secret(job: &JobSpec) -> Secret {
    let data: BTreeMap<String, String> = job.secrets.iter().cloned().collect();
    Secret {
        metadata: job_meta(job),
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Script;

    #[test]
    fn job_keys_are_name_safe_and_distinct() {
        assert_eq!(job_key("42"), "42");
        assert_eq!(job_key("j-1"), "j-1");
        let a = job_key("Job_A");
        let b = job_key("job_a");
        assert_ne!(a, b);
        for k in [&a, &b, &job_key("_x."), &job_key(&"A".repeat(64))] {
            assert!(k.len() <= 40, "{k}");
            assert!(label_value(k), "{k}");
            assert!(k
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
        }
    }

    #[test]
    fn secrets_stay_out_of_the_pod_and_the_policy_fences_egress() {
        let mut job = JobSpec::new("j1", Script::Steps(vec!["true".into()]));
        job.attempt = 2;
        job.secrets = vec![("CATALYST_SECRETS_t".into(), "s3cr3t-value".into())];
        job.env = vec![("PLAIN".into(), "1".into())];
        job.gateway = Some("10.1.2.3:3128".parse().unwrap());
        let pod = job_pod(&job, &KubernetesConfig::new("cove"), true);
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let c = &spec.containers[0];
        assert_eq!(
            c.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "cove-job-j1-2"
        );
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_JOB], "j1");
        assert_eq!(labels[LABEL_ATTEMPT], "2");

        let policy = serde_json::to_value(job_policy(&job)).unwrap();
        assert_eq!(
            policy["spec"]["egress"],
            serde_json::json!([{
                "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
                "ports": [{"protocol": "TCP", "port": 3128}]
            }])
        );
        assert_eq!(policy["spec"]["ingress"], serde_json::json!([]));
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"],
            serde_json::json!({"cove.dev/job": "j1", "cove.dev/attempt": "2"})
        );
        job.gateway = None;
        let policy = serde_json::to_value(job_policy(&job)).unwrap();
        assert_eq!(policy["spec"]["egress"], serde_json::json!([]));

        let secret = job_secret(&job);
        assert_eq!(
            secret.string_data.unwrap()["CATALYST_SECRETS_t"],
            "s3cr3t-value"
        );
    }
}
