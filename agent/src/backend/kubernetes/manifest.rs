//! A devfile plan as Kubernetes objects (pure: no API calls), as Che's DevWorkspace
//! operator maps a devfile: one Pod whose containers are the plan's containers (they share
//! the Pod's network namespace, so `localhost` reaches every component), a
//! PersistentVolumeClaim for `/projects` and for each persistent devfile volume, `emptyDir`
//! for `ephemeral` ones, and one ClusterIP Service for the published endpoints.

use std::collections::BTreeMap;

use devfiles::{ContainerPlan, Protocol};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSpec as KPodSpec,
    ResourceRequirements, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::KubernetesConfig;
use crate::pod::PodSpec;

/// On every object Cove makes in the namespace.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "cove";
/// The environment id.
pub const LABEL_ENV: &str = "cove.dev/env";
/// `pod`, `projects`, `volume`, `service` or `plan`.
pub const LABEL_ROLE: &str = "cove.dev/role";
/// The devfile volume a claim holds.
pub const LABEL_VOLUME: &str = "cove.dev/volume";

/// Grace period between SIGTERM and SIGKILL on stop (the Docker backend's stop timeout).
pub const STOP_GRACE_SECS: i64 = 5;

/// Memory and CPU asked for (requests) when the devfile sets no request: small, so an
/// environment schedules on a busy node; limits stay what the devfile says.
const DEFAULT_MEMORY_REQUEST: u64 = 64 << 20;
const DEFAULT_CPU_REQUEST_MILLIS: u64 = 50;

pub fn pod_name(env: &str) -> String {
    format!("cove-env-{env}")
}

pub fn service_name(env: &str) -> String {
    format!("cove-env-{env}")
}

/// The Secret that keeps the Pod manifest while the environment is stopped (a plan's
/// environment variables may be sensitive).
pub fn plan_secret_name(env: &str) -> String {
    format!("cove-env-{env}-plan")
}

pub fn projects_claim(env: &str) -> String {
    format!("cove-env-{env}-projects")
}

pub fn volume_claim(env: &str, volume: &str) -> String {
    format!("cove-env-{env}-vol-{volume}")
}

/// `app.kubernetes.io/managed-by=cove,cove.dev/env=<env>`.
pub fn env_selector(env: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ENV}={env}")
}

pub fn labels(env: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_ENV.to_string(), env.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
    ])
}

fn meta(name: String, env: &str, role: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        labels: Some(labels(env, role)),
        ..Default::default()
    }
}

/// What an environment is on the cluster.
#[derive(Clone, Debug)]
pub struct Manifests {
    pub pod: Pod,
    pub claims: Vec<PersistentVolumeClaim>,
    /// `None` when no endpoint is published.
    pub service: Option<Service>,
}

/// Build the objects of `spec`. `max` is the largest CPU (millicores) and memory (bytes)
/// limit a container may have (also the limit of containers that set none).
pub fn build(spec: &PodSpec, cfg: &KubernetesConfig, max: (Option<u64>, Option<u64>)) -> Manifests {
    let env = spec.env_id.as_str();
    let mut volumes = Vec::new();
    let mut claims = Vec::new();
    claims.push(claim_for(
        projects_claim(env),
        env,
        "projects",
        None,
        None,
        cfg,
    ));
    volumes.push(Volume {
        name: "projects".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: projects_claim(env),
            read_only: None,
        }),
        ..Default::default()
    });
    // pod volume names are DNS labels: index-based, the devfile name is in the claim's
    let mut volume_names = BTreeMap::new();
    for (i, v) in spec.plan.volumes.iter().enumerate() {
        let name = format!("vol-{i}");
        volume_names.insert(v.name.clone(), name.clone());
        if v.persistent {
            claims.push(claim_for(
                volume_claim(env, &v.name),
                env,
                "volume",
                Some(&v.name),
                v.size_bytes,
                cfg,
            ));
            volumes.push(Volume {
                name,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: volume_claim(env, &v.name),
                    read_only: None,
                }),
                ..Default::default()
            });
        } else {
            volumes.push(Volume {
                name,
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: v.size_bytes.map(|b| Quantity(b.to_string())),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let containers = spec
        .plan
        .containers
        .iter()
        .map(|c| container(spec, c, cfg, max, &volume_names))
        .collect();
    let hostname = spec
        .plan
        .name
        .clone()
        .filter(|n| devfiles::is_identifier(n) && n.len() <= 63)
        .unwrap_or_else(|| env.to_string());
    let pod = Pod {
        metadata: meta(pod_name(env), env, "pod"),
        spec: Some(KPodSpec {
            containers,
            volumes: Some(volumes),
            hostname: Some(hostname),
            restart_policy: Some("Always".into()),
            // the environment never talks to the API server as the agent
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(STOP_GRACE_SECS),
            ..Default::default()
        }),
        status: None,
    };
    Manifests {
        pod,
        claims,
        service: service(spec),
    }
}

/// A claim of environment `env` (`role` `projects` or `volume`, `volume` its devfile name),
/// of `size_bytes` or the configuration's `volume_size`.
pub(super) fn claim_for(
    name: String,
    env: &str,
    role: &str,
    volume: Option<&str>,
    size_bytes: Option<u64>,
    cfg: &KubernetesConfig,
) -> PersistentVolumeClaim {
    let mut metadata = meta(name, env, role);
    if let (Some(v), Some(l)) = (volume, metadata.labels.as_mut()) {
        l.insert(LABEL_VOLUME.into(), v.to_string());
    }
    let size = size_bytes
        .map(|b| b.to_string())
        .unwrap_or_else(|| cfg.volume_size.clone());
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: cfg.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn container(
    spec: &PodSpec,
    c: &ContainerPlan,
    cfg: &KubernetesConfig,
    (_, max_mem): (Option<u64>, Option<u64>),
    volume_names: &BTreeMap<String, String>,
) -> Container {
    let mut mounts = Vec::new();
    if let Some(path) = &c.source_mapping {
        mounts.push(VolumeMount {
            name: "projects".into(),
            mount_path: path.clone(),
            ..Default::default()
        });
    }
    for m in &c.mounts {
        if let Some(name) = volume_names.get(&m.volume) {
            mounts.push(VolumeMount {
                name: name.clone(),
                mount_path: m.path.clone(),
                ..Default::default()
            });
        }
    }
    // the same limits as the Docker backend: the devfile's, else the default, else the maximum
    let default_memory = match (spec.default_memory_bytes, max_mem) {
        (Some(d), Some(m)) => Some(d.min(m)),
        (d, _) => d,
    };
    let memory = c
        .memory_limit_bytes
        .or(default_memory)
        .or(spec.max_memory_bytes);
    let cpu = c.cpu_limit_millis.or(spec.max_cpu_millis);
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if let Some(m) = memory {
        limits.insert("memory".to_string(), Quantity(m.to_string()));
    }
    let mem_request = c
        .memory_request_bytes
        .unwrap_or(DEFAULT_MEMORY_REQUEST)
        .min(memory.unwrap_or(u64::MAX));
    requests.insert("memory".to_string(), Quantity(mem_request.to_string()));
    if let Some(m) = cpu {
        limits.insert("cpu".to_string(), Quantity(format!("{m}m")));
    }
    let cpu_request = c
        .cpu_request_millis
        .unwrap_or(DEFAULT_CPU_REQUEST_MILLIS)
        .min(cpu.unwrap_or(u64::MAX));
    requests.insert("cpu".to_string(), Quantity(format!("{cpu_request}m")));
    let (add, drop) = capabilities(c);
    let (run_as_user, run_as_group) = user_ids(c.user.as_deref());
    Container {
        name: c.name.clone(),
        image: Some(c.image.clone()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        // the plan already holds the entrypoint rule (docs/devfiles.md "entrypoint"):
        // `command` replaces the image's ENTRYPOINT (and, without `args`, its CMD too, as
        // the Docker backend does), `args` its CMD, neither keeps the image's own
        command: c.command.clone(),
        args: c.args.clone(),
        env: Some(
            c.env
                .iter()
                .map(|e| EnvVar {
                    name: e.name.clone(),
                    value: Some(e.value.clone()),
                    value_from: None,
                })
                .collect(),
        ),
        working_dir: c.source_mapping.clone(),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: Some(requests),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: (!add.is_empty()).then_some(add),
                drop: Some(drop),
            }),
            read_only_root_filesystem: c.read_only_root_fs.then_some(true),
            run_as_user,
            run_as_group,
            ..Default::default()
        }),
        ports: None,
        ..Default::default()
    }
}

/// Cove's baseline drops plus the plan's; additions limited to
/// [`devfiles::ADDABLE_CAPABILITIES`] whatever the plan says (as the Docker backend).
fn capabilities(c: &ContainerPlan) -> (Vec<String>, Vec<String>) {
    let mut drop: Vec<String> = devfiles::REFUSED_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect();
    for d in &c.cap_drop {
        let d = devfiles::capability_name(d);
        if !drop.contains(&d) {
            drop.push(d);
        }
    }
    let add = c
        .cap_add
        .iter()
        .map(|a| devfiles::capability_name(a))
        .filter(|a| devfiles::ADDABLE_CAPABILITIES.contains(&a.as_str()))
        .collect();
    (add, drop)
}

/// `uid[:gid]` as numbers; a name (not a number) is left to the image.
fn user_ids(user: Option<&str>) -> (Option<i64>, Option<i64>) {
    let Some(user) = user else {
        return (None, None);
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    (u.parse().ok(), g.and_then(|g| g.parse().ok()))
}

/// One ClusterIP Service for every published endpoint (`exposure: none` stays private),
/// selecting the environment's Pod.
fn service(spec: &PodSpec) -> Option<Service> {
    let env = spec.env_id.as_str();
    let mut ports: Vec<ServicePort> = Vec::new();
    for e in spec
        .plan
        .containers
        .iter()
        .flat_map(|c| c.endpoints.iter())
        .filter(|e| e.published())
    {
        let protocol = if e.protocol == Protocol::Udp {
            "UDP"
        } else {
            "TCP"
        };
        if ports
            .iter()
            .any(|p| p.port == i32::from(e.port) && p.protocol.as_deref() == Some(protocol))
        {
            continue;
        }
        ports.push(ServicePort {
            // IANA service names: at most 15 characters with a letter
            name: Some(format!("{}-{}", protocol.to_ascii_lowercase(), e.port)),
            port: i32::from(e.port),
            target_port: Some(IntOrString::Int(i32::from(e.port))),
            protocol: Some(protocol.into()),
            ..Default::default()
        });
    }
    if ports.is_empty() {
        return None;
    }
    Some(Service {
        metadata: meta(service_name(env), env, "service"),
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                (LABEL_ENV.to_string(), env.to_string()),
                (LABEL_ROLE.to_string(), "pod".to_string()),
            ])),
            ports: Some(ports),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use devfiles::{EndpointPlan, EnvPair, EnvironmentPlan, Exposure, MountPlan, VolumePlan};

    fn cfg() -> KubernetesConfig {
        KubernetesConfig {
            namespace: "cove".into(),
            storage_class: Some("cove-hostpath".into()),
            image_pull_policy: "Never".into(),
            volume_size: "1Gi".into(),
            ready_timeout_secs: 120,
            job_gateway_address: None,
        }
    }

    fn plan() -> EnvironmentPlan {
        EnvironmentPlan {
            name: Some("demo".into()),
            schema_version: "2.2.0".into(),
            containers: vec![
                ContainerPlan {
                    name: "app".into(),
                    image: "cove/busybox:latest".into(),
                    command: Some(devfiles::KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
                    keep_alive: true,
                    env: vec![EnvPair {
                        name: "IS_LOCAL".into(),
                        value: "true".into(),
                    }],
                    source_mapping: Some("/projects".into()),
                    memory_limit_bytes: Some(256 << 20),
                    cpu_limit_millis: Some(500),
                    mounts: vec![MountPlan {
                        volume: "cache".into(),
                        path: "/cache".into(),
                    }],
                    user: Some("1000:1000".into()),
                    cap_add: vec!["NET_RAW".into(), "CHOWN".into()],
                    ..Default::default()
                },
                ContainerPlan {
                    name: "echo".into(),
                    image: "cove/echo-server:latest".into(),
                    endpoints: vec![
                        EndpointPlan {
                            name: "http".into(),
                            port: 8080,
                            exposure: Exposure::Internal,
                            protocol: Protocol::Http,
                            secure: false,
                            path: None,
                        },
                        EndpointPlan {
                            name: "private".into(),
                            port: 9090,
                            exposure: Exposure::None,
                            protocol: Protocol::Http,
                            secure: false,
                            path: None,
                        },
                    ],
                    mounts: vec![MountPlan {
                        volume: "data".into(),
                        path: "/data".into(),
                    }],
                    ..Default::default()
                },
            ],
            volumes: vec![
                VolumePlan {
                    name: "data".into(),
                    persistent: true,
                    size_bytes: Some(2 << 30),
                },
                VolumePlan {
                    name: "cache".into(),
                    persistent: false,
                    size_bytes: None,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_plan_becomes_one_pod_with_claims_and_a_service() {
        let mut spec = PodSpec::new("e1", plan());
        spec.max_cpu_millis = Some(2000);
        let m = build(&spec, &cfg(), (Some(2000), Some(8 << 30)));
        let pod = m.pod.spec.as_ref().unwrap();
        assert_eq!(m.pod.metadata.name.as_deref(), Some("cove-env-e1"));
        let l = m.pod.metadata.labels.as_ref().unwrap();
        assert_eq!(l[LABEL_MANAGED_BY], "cove");
        assert_eq!(l[LABEL_ENV], "e1");
        assert_eq!(pod.hostname.as_deref(), Some("demo"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        // both containers in the one Pod, in order, with the keep-alive where the plan says
        let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "echo"]);
        let app = &pod.containers[0];
        assert_eq!(app.command.as_ref().unwrap()[0], "/bin/sh");
        assert_eq!(app.image_pull_policy.as_deref(), Some("Never"));
        // the sidecar keeps its image's entrypoint
        assert!(pod.containers[1].command.is_none() && pod.containers[1].args.is_none());
        assert_eq!(app.env.as_ref().unwrap()[0].name, "IS_LOCAL");
        assert_eq!(app.working_dir.as_deref(), Some("/projects"));
        let res = app.resources.as_ref().unwrap();
        let limits = res.limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, (256u64 << 20).to_string());
        assert_eq!(limits["cpu"].0, "500m");
        let requests = res.requests.as_ref().unwrap();
        assert_eq!(requests["memory"].0, (64u64 << 20).to_string());
        assert_eq!(requests["cpu"].0, "50m");
        // a container without limits gets the maximum
        let echo_limits = pod.containers[1].resources.as_ref().unwrap().limits.clone();
        assert_eq!(echo_limits.unwrap()["cpu"].0, "2000m");
        let sc = app.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(1000)));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.add.as_deref(), Some(&["CHOWN".to_string()][..]));
        assert!(caps.drop.as_ref().unwrap().contains(&"NET_RAW".to_string()));
        // /projects and `data` are claims, `cache` (ephemeral) an emptyDir
        let claims: Vec<_> = m
            .claims
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(claims, ["cove-env-e1-projects", "cove-env-e1-vol-data"]);
        assert_eq!(
            m.claims[0]
                .spec
                .as_ref()
                .unwrap()
                .storage_class_name
                .as_deref(),
            Some("cove-hostpath")
        );
        let data = m.claims[1]
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap();
        assert_eq!(
            data.requests.as_ref().unwrap()["storage"].0,
            (2u64 << 30).to_string()
        );
        let vols = pod.volumes.as_ref().unwrap();
        assert!(vols
            .iter()
            .any(|v| v.name == "vol-1" && v.empty_dir.is_some()));
        let app_mounts: Vec<_> = app
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(app_mounts, [("projects", "/projects"), ("vol-1", "/cache")]);
        // only published endpoints are in the Service
        let svc = m.service.unwrap();
        let ports = svc.spec.unwrap().ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].port, ports[0].name.as_deref()),
            (8080, Some("tcp-8080"))
        );
    }

    #[test]
    fn no_published_endpoint_no_service() {
        let mut p = plan();
        p.containers[1].endpoints.clear();
        let m = build(&PodSpec::new("e2", p), &cfg(), (None, None));
        assert!(m.service.is_none());
        // without a maximum a container without limits has none
        assert!(m.pod.spec.unwrap().containers[1]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .is_none());
    }
}
