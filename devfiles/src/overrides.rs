//! The `container-overrides` and `pod-overrides` attributes (DevWorkspace
//! Operator and odo): Kubernetes fragments merged over the generated
//! container and pod. Cove applies what Docker can express and names the
//! rest in a warning; nothing is dropped silently.
//!
//! Applied (`container-overrides`, per component):
//! - `resources.limits.memory|cpu`, `resources.requests.memory|cpu`: win over
//!   the container's `memoryLimit`/`cpuLimit`/`memoryRequest`/`cpuRequest`;
//! - `securityContext.runAsUser|runAsGroup` → the container's user,
//!   `securityContext.readOnlyRootFilesystem` → a read-only root filesystem,
//!   `securityContext.capabilities.add|drop` → capabilities, where `add` is
//!   limited to [`ADDABLE_CAPABILITIES`] (never wider than Cove's baseline);
//! - `securityContext.allowPrivilegeEscalation: false` and
//!   `privileged: false` are what Cove does anyway.
//!
//! Applied (`pod-overrides`, top-level or per component, to every container):
//! `spec.securityContext.runAsUser|runAsGroup` (a container's own
//! `container-overrides` win). `metadata.labels|annotations` have no meaning
//! on Docker and are ignored with a warning like every other field.

use serde_yaml::Value as Yaml;

use crate::quantity;

/// The attribute keys.
pub const CONTAINER_OVERRIDES: &str = "container-overrides";
pub const POD_OVERRIDES: &str = "pod-overrides";

/// Capabilities Cove removes from every component container (docs/security.md
/// "What an environment can reach"); an override cannot add them back.
pub const REFUSED_CAPABILITIES: &[&str] = &["NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP"];

/// Capabilities `capabilities.add` may name: Docker's default set minus
/// [`REFUSED_CAPABILITIES`] (useful after `drop: [ALL]`).
pub const ADDABLE_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
];

/// A capability name as Docker spells it (`cap_net_admin` → `NET_ADMIN`).
pub fn capability_name(s: &str) -> String {
    let up = s.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// What the overrides of one container amount to.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Applied {
    pub memory_limit: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub cpu_request: Option<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub read_only_root: Option<bool>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

/// Something about an override worth telling: `path` is relative to the
/// attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub path: Vec<String>,
    pub message: String,
    pub error: bool,
}

fn warn(path: &[&str], message: impl Into<String>) -> Finding {
    Finding {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        error: false,
    }
}

fn error(path: &[&str], message: impl Into<String>) -> Finding {
    Finding {
        error: true,
        ..warn(path, message)
    }
}

fn unsupported(attr: &str, path: &[&str]) -> Finding {
    warn(
        path,
        format!(
            "`{attr}` field `{}` is not applied: Docker has no equivalent",
            path.join(".")
        ),
    )
}

/// Fields of `map` other than `known`, as "not applied" warnings.
fn others(attr: &str, map: &serde_yaml::Mapping, prefix: &[&str], known: &[&str]) -> Vec<Finding> {
    map.keys()
        .filter_map(Yaml::as_str)
        .filter(|k| !known.contains(k))
        .map(|k| {
            let mut p = prefix.to_vec();
            p.push(k);
            unsupported(attr, &p)
        })
        .collect()
}

/// Parse a `container-overrides` value.
pub(crate) fn container(v: &Yaml) -> (Applied, Vec<Finding>) {
    let attr = CONTAINER_OVERRIDES;
    let mut out = Applied::default();
    let mut findings = Vec::new();
    let Some(map) = v.as_mapping() else {
        findings.push(error(
            &[],
            format!("`{attr}` must be a mapping (a Kubernetes container fragment)"),
        ));
        return (out, findings);
    };
    findings.extend(others(attr, map, &[], &["resources", "securityContext"]));
    if let Some(res) = map.get("resources") {
        resources(res, &mut out, &mut findings);
    }
    if let Some(sc) = map.get("securityContext") {
        security_context(
            attr,
            sc,
            &["securityContext"],
            true,
            &mut out,
            &mut findings,
        );
    }
    (out, findings)
}

/// Parse a `pod-overrides` value: only the user and group apply.
pub(crate) fn pod(v: &Yaml) -> (Applied, Vec<Finding>) {
    let attr = POD_OVERRIDES;
    let mut out = Applied::default();
    let mut findings = Vec::new();
    let Some(map) = v.as_mapping() else {
        findings.push(error(
            &[],
            format!("`{attr}` must be a mapping (a Kubernetes pod fragment)"),
        ));
        return (out, findings);
    };
    findings.extend(others(attr, map, &[], &["spec"]));
    if let Some(spec) = map.get("spec") {
        match spec.as_mapping() {
            Some(s) => {
                findings.extend(others(attr, s, &["spec"], &["securityContext"]));
                if let Some(sc) = s.get("securityContext") {
                    security_context(
                        attr,
                        sc,
                        &["spec", "securityContext"],
                        false,
                        &mut out,
                        &mut findings,
                    );
                }
            }
            None => findings.push(error(&["spec"], "`spec` must be a mapping")),
        }
    }
    (out, findings)
}

fn resources(v: &Yaml, out: &mut Applied, findings: &mut Vec<Finding>) {
    let attr = CONTAINER_OVERRIDES;
    let Some(map) = v.as_mapping() else {
        findings.push(error(&["resources"], "`resources` must be a mapping"));
        return;
    };
    findings.extend(others(attr, map, &["resources"], &["limits", "requests"]));
    for which in ["limits", "requests"] {
        let Some(m) = map.get(which).and_then(Yaml::as_mapping) else {
            continue;
        };
        findings.extend(others(attr, m, &["resources", which], &["memory", "cpu"]));
        for res in ["memory", "cpu"] {
            let Some(q) = m.get(res) else { continue };
            let text = match q {
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let ok = if res == "memory" {
                quantity::bytes(&text).is_some()
            } else {
                quantity::millicores(&text).is_some()
            };
            if !ok {
                findings.push(error(
                    &["resources", which, res],
                    format!("`{attr}` resources.{which}.{res} `{text}` is not a resource quantity"),
                ));
                continue;
            }
            let slot = match (which, res) {
                ("limits", "memory") => &mut out.memory_limit,
                ("limits", _) => &mut out.cpu_limit,
                (_, "memory") => &mut out.memory_request,
                _ => &mut out.cpu_request,
            };
            *slot = Some(text);
        }
    }
}

fn security_context(
    attr: &str,
    v: &Yaml,
    at: &[&str],
    container: bool,
    out: &mut Applied,
    findings: &mut Vec<Finding>,
) {
    let Some(map) = v.as_mapping() else {
        findings.push(error(at, "`securityContext` must be a mapping"));
        return;
    };
    let known: &[&str] = if container {
        &[
            "runAsUser",
            "runAsGroup",
            "readOnlyRootFilesystem",
            "capabilities",
            "allowPrivilegeEscalation",
            "privileged",
        ]
    } else {
        &["runAsUser", "runAsGroup"]
    };
    findings.extend(others(attr, map, at, known));
    let path = |k: &'static str| {
        let mut p = at.to_vec();
        p.push(k);
        p
    };
    for (key, slot) in [
        ("runAsUser", &mut out.run_as_user),
        ("runAsGroup", &mut out.run_as_group),
    ] {
        if let Some(n) = map.get(key) {
            match n.as_i64().filter(|n| (0..=i64::from(u32::MAX)).contains(n)) {
                Some(n) => *slot = Some(n),
                None => findings.push(error(
                    &path(key),
                    format!("`{attr}` securityContext.{key} must be a user or group number"),
                )),
            }
        }
    }
    if !container {
        return;
    }
    if let Some(b) = map.get("readOnlyRootFilesystem") {
        match b.as_bool() {
            Some(b) => out.read_only_root = Some(b),
            None => findings.push(error(
                &path("readOnlyRootFilesystem"),
                "readOnlyRootFilesystem must be true or false",
            )),
        }
    }
    for key in ["allowPrivilegeEscalation", "privileged"] {
        if map.get(key).and_then(Yaml::as_bool) == Some(true) {
            findings.push(warn(
                &path(key),
                format!("`{attr}` securityContext.{key}: true is not applied: Cove's containers never gain privileges (no-new-privileges, not privileged)"),
            ));
        }
    }
    if let Some(caps) = map.get("capabilities") {
        let Some(caps) = caps.as_mapping() else {
            findings.push(error(
                &path("capabilities"),
                "`capabilities` must be a mapping",
            ));
            return;
        };
        let cap_at = path("capabilities");
        findings.extend(others(attr, caps, &cap_at, &["add", "drop"]));
        for which in ["add", "drop"] {
            let Some(list) = caps.get(which) else {
                continue;
            };
            let mut p = cap_at.clone();
            p.push(which);
            let Some(list) = list.as_sequence() else {
                findings.push(error(&p, format!("capabilities.{which} must be a list")));
                continue;
            };
            for c in list {
                let Some(name) = c.as_str().map(capability_name) else {
                    findings.push(error(&p, format!("capabilities.{which} must list names")));
                    continue;
                };
                if which == "drop" {
                    out.cap_drop.push(name);
                } else if ADDABLE_CAPABILITIES.contains(&name.as_str()) {
                    out.cap_add.push(name);
                } else {
                    findings.push(warn(
                        &p,
                        format!("capability `{name}` is not added: it is outside Cove's security baseline (only {} may be added back)", ADDABLE_CAPABILITIES.join(", ")),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_overrides_apply_and_name_the_rest() {
        let v: Yaml = serde_yaml::from_str(
            "resources: {limits: {memory: 1Gi, cpu: 500m, nvidia.com/gpu: 1}, requests: {cpu: '0.1'}}\n\
             securityContext: {runAsUser: 1000, capabilities: {add: [net_admin, cap_kill], drop: [ALL]}, seLinuxOptions: {}}\n\
             imagePullPolicy: Always\n",
        )
        .unwrap();
        let (a, f) = container(&v);
        assert_eq!(a.memory_limit.as_deref(), Some("1Gi"));
        assert_eq!(a.cpu_limit.as_deref(), Some("500m"));
        assert_eq!(a.cpu_request.as_deref(), Some("0.1"));
        assert_eq!(a.run_as_user, Some(1000));
        assert_eq!(a.cap_add, vec!["KILL"]);
        assert_eq!(a.cap_drop, vec!["ALL"]);
        let msgs: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(f.len(), 4, "{msgs:?}");
        assert!(f.iter().all(|f| !f.error));
        assert!(msgs.iter().any(|m| m.contains("imagePullPolicy")));
        assert!(msgs
            .iter()
            .any(|m| m.contains("resources.limits.nvidia.com/gpu")));
        assert!(msgs.iter().any(|m| m.contains("NET_ADMIN")));
        assert!(msgs
            .iter()
            .any(|m| m.contains("securityContext.seLinuxOptions")));
    }
}
