//! Restart by difference: the running pod is compared with the containers the new plan
//! would create, and only the components that differ are recreated.
//!
//! Every container carries [`LABEL_SPEC`]: a digest of what it was created from, per
//! aspect (`image`, `command` — entrypoint, arguments and whether Docker's init runs —,
//! `env`, `mounts` with the kind of the volumes mounted, `resources`, and `other`, which is
//! everything else in the create body, so a field added to the body later is compared too).
//! A component whose container runs and whose digests the new plan reproduces keeps its
//! container (same id, processes and in-memory state untouched). When the infra container's
//! own body changes (published endpoints, hostname, network, image), the pod's network
//! namespace cannot be kept and everything is recreated, as before. Containers made before
//! the label existed have no digests and are recreated.

use std::collections::BTreeMap;

use bollard::models::{ContainerCreateBody, ContainerSummary};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    container_name, infra_body, remove_container_gone, role_of, valid_env_id, PodError, PodSpec,
    PodStatus, Result, Runtime, LABEL_COMPONENT, LABEL_SPEC,
};

/// What a restart does with one component's container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Same digests and running: left alone.
    Keep,
    /// Removed and made again from the new plan.
    Recreate,
    /// New in the plan.
    Create,
    /// Gone from the plan: removed.
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentChange {
    pub component: String,
    pub change: Change,
    /// Why: the aspects that differ (`image`, `env`, …), `not running`, `new`, `removed`.
    pub why: Vec<String>,
}

/// The difference between a running pod and a new plan ([`Runtime::restart_plan`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPlan {
    pub env_id: String,
    /// `Some(reason)`: every container is recreated (the infra container cannot be kept).
    pub full: Option<String>,
    pub components: Vec<ComponentChange>,
    /// Whether every container of the pod ran when the plan was made (preStop can run).
    pub running: bool,
}

impl RestartPlan {
    /// True when some container is removed or made.
    pub fn changes_anything(&self) -> bool {
        self.full.is_some() || self.components.iter().any(|c| c.change != Change::Keep)
    }

    /// Components whose containers are kept.
    pub fn kept(&self) -> Vec<&str> {
        self.components
            .iter()
            .filter(|c| c.change == Change::Keep && self.full.is_none())
            .map(|c| c.component.as_str())
            .collect()
    }

    /// One line for the environment's log, e.g.
    /// `recreated app (env); kept dynamodb`.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.full {
            return format!("recreated every container: {why}");
        }
        let mut parts = Vec::new();
        for (change, verb) in [
            (Change::Recreate, "recreated"),
            (Change::Create, "created"),
            (Change::Remove, "removed"),
        ] {
            let names: Vec<String> = self
                .components
                .iter()
                .filter(|c| c.change == change)
                .map(|c| match change {
                    Change::Recreate => format!("{} ({})", c.component, c.why.join(", ")),
                    _ => c.component.clone(),
                })
                .collect();
            if !names.is_empty() {
                parts.push(format!("{verb} {}", names.join(", ")));
            }
        }
        let kept = self.kept();
        if !kept.is_empty() {
            parts.push(format!("kept {}", kept.join(", ")));
        }
        if !self.changes_anything() {
            return format!("nothing changed; kept {}", kept.join(", "));
        }
        parts.join("; ")
    }
}

/// Puts [`LABEL_SPEC`] on a create body; `volumes` are the plan's volumes it mounts.
pub(super) fn stamp(body: &mut ContainerCreateBody, volumes: &[&devfiles::VolumePlan]) {
    let digests = fingerprint(body, volumes);
    body.labels
        .get_or_insert_with(Default::default)
        .insert(LABEL_SPEC.into(), digests);
}

/// `image:<hex> command:<hex> env:<hex> mounts:<hex> resources:<hex> other:<hex>`. The
/// network mode `container:<infra id>` counts as the same for every infra container (the
/// infra container is compared on its own).
fn fingerprint(body: &ContainerCreateBody, volumes: &[&devfiles::VolumePlan]) -> String {
    let mut rest = body.clone();
    rest.labels = None;
    let mut hc = rest.host_config.take().unwrap_or_default();
    if hc
        .network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("container:"))
    {
        hc.network_mode = Some("container:infra".into());
    }
    let image = value(&rest.image.take());
    let command = value(&(rest.entrypoint.take(), rest.cmd.take(), hc.init.take()));
    let env = value(&rest.env.take());
    let mounts = value(&(hc.mounts.take(), volumes));
    let resources = value(&(hc.memory.take(), hc.nano_cpus.take(), hc.pids_limit.take()));
    rest.host_config = Some(hc);
    let other = value(&rest);
    [
        ("image", image),
        ("command", command),
        ("env", env),
        ("mounts", mounts),
        ("resources", resources),
        ("other", other),
    ]
    .iter()
    .map(|(name, v)| format!("{name}:{}", digest(v)))
    .collect::<Vec<_>>()
    .join(" ")
}

fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// JSON with object keys sorted (maps in the body are hash maps), so equal bodies have
/// equal digests.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn digest(v: &Value) -> String {
    let mut text = String::new();
    canonical(v, &mut text);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The aspects whose digests differ between a container's label and a new body's; every
/// aspect when the container has no label.
fn differing(existing: Option<&str>, wanted: Option<&str>) -> Vec<String> {
    let parse = |s: Option<&str>| -> BTreeMap<String, String> {
        s.unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (old, new) = (parse(existing), parse(wanted));
    if old.is_empty() {
        return vec!["made before Cove compared plans".into()];
    }
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.to_string()),
    );
    out
}

fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    c.labels.as_ref()?.get(key).map(String::as_str)
}

fn body_label<'a>(b: &'a ContainerCreateBody, key: &str) -> Option<&'a str> {
    b.labels.as_ref()?.get(key).map(String::as_str)
}

fn is_running(c: &ContainerSummary) -> bool {
    matches!(
        c.state,
        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
    )
}

impl Runtime {
    /// The environment's own network, as [`crate::env_net::ensure`] names it.
    fn expected_network(&self, env: &str) -> Option<String> {
        self.network
            .settings
            .isolate
            .then(|| crate::env_net::network_name(env))
    }

    /// What a restart onto `spec` changes: per component keep, recreate, create or
    /// remove, or everything when the infra container cannot be kept. Refuses a plan over
    /// the limits, like [`Runtime::recreate`]. Changes nothing.
    pub async fn restart_plan(&self, spec: &PodSpec) -> Result<RestartPlan> {
        let env = spec.env_id.as_str();
        if !valid_env_id(env) {
            return Err(PodError::BadId(spec.env_id.clone()));
        }
        self.check_limits(spec)?;
        let list = self.containers(env).await?;
        let running = !list.is_empty() && list.iter().all(is_running);
        let everything = |why: String| RestartPlan {
            env_id: env.to_string(),
            full: Some(why),
            components: spec
                .plan
                .containers
                .iter()
                .map(|c| ComponentChange {
                    component: c.name.clone(),
                    change: Change::Recreate,
                    why: Vec::new(),
                })
                .collect(),
            running,
        };
        let Some(infra) = list.iter().find(|c| role_of(c) == "infra") else {
            return Ok(everything("the pod has no infra container".into()));
        };
        if !is_running(infra) {
            return Ok(everything(
                "the pod's infra container is not running".into(),
            ));
        }
        let network = self.expected_network(env);
        let wanted = infra_body(spec, network.as_deref());
        let changed = differing(label(infra, LABEL_SPEC), body_label(&wanted, LABEL_SPEC));
        if !changed.is_empty() {
            return Ok(everything(format!(
                "the infra container that holds the network namespace changed ({}): published endpoints, hostname, network or image",
                changed.join(", ")
            )));
        }
        let mut components = Vec::new();
        for c in &spec.plan.containers {
            let body = self.component_body(spec, c, "infra", network.as_deref());
            let existing = list
                .iter()
                .find(|x| role_of(x) == "component" && label(x, LABEL_COMPONENT) == Some(&c.name));
            let (change, why) = match existing {
                None => (Change::Create, vec!["new".to_string()]),
                Some(x) if !is_running(x) => (Change::Recreate, vec!["not running".to_string()]),
                Some(x) => {
                    let d = differing(label(x, LABEL_SPEC), body_label(&body, LABEL_SPEC));
                    if d.is_empty() {
                        (Change::Keep, d)
                    } else {
                        (Change::Recreate, d)
                    }
                }
            };
            components.push(ComponentChange {
                component: c.name.clone(),
                change,
                why,
            });
        }
        for x in list.iter().filter(|x| role_of(x) == "component") {
            let name = label(x, LABEL_COMPONENT).unwrap_or_default();
            if !spec.plan.containers.iter().any(|c| c.name == name) {
                components.push(ComponentChange {
                    component: name.to_string(),
                    change: Change::Remove,
                    why: vec!["removed".into()],
                });
            }
        }
        Ok(RestartPlan {
            env_id: env.to_string(),
            full: None,
            components,
            running,
        })
    }

    /// Apply a [`RestartPlan`] made for `spec`: everything recreated ([`Runtime::recreate`])
    /// when it says so, else only the components that differ, with the infra container and
    /// every kept container left running. Volumes and `/projects` are kept. When a new
    /// container cannot be made, every container is removed (the environment is left
    /// stopped with its data intact, as [`Runtime::recreate`] leaves it).
    pub async fn restart_with(&self, spec: &PodSpec, plan: &RestartPlan) -> Result<PodStatus> {
        self.check_limits(spec)?;
        if plan.full.is_some() {
            return self.recreate(spec).await;
        }
        let result = self.apply_partial(spec, plan).await;
        if result.is_err() {
            self.remove_containers(&spec.env_id).await.ok();
        }
        result
    }

    async fn apply_partial(&self, spec: &PodSpec, plan: &RestartPlan) -> Result<PodStatus> {
        let env = spec.env_id.as_str();
        let list = self.containers(env).await?;
        let infra_id = list
            .iter()
            .find(|c| role_of(c) == "infra")
            .and_then(|c| c.id.clone())
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        let goes = |name: &str| {
            plan.components.iter().any(|c| {
                c.component == name && matches!(c.change, Change::Recreate | Change::Remove)
            })
        };
        // the containers that go, concurrently
        let removals = list
            .iter()
            .filter(|c| role_of(c) == "component")
            .filter(|c| goes(label(c, LABEL_COMPONENT).unwrap_or_default()))
            .filter_map(|c| c.id.clone())
            .map(|id| async move {
                remove_container_gone(&self.docker, &id)
                    .await
                    .map_err(Self::err(env, "remove container"))
            });
        for r in futures_util::future::join_all(removals).await {
            r?;
        }
        // an ephemeral volume no kept container mounts is made again empty
        self.ensure_volumes(spec, &mut Vec::new()).await?;
        let network = self.expected_network(env);
        let made = spec
            .plan
            .containers
            .iter()
            .filter(|c| {
                plan.components.iter().any(|p| {
                    p.component == c.name && matches!(p.change, Change::Recreate | Change::Create)
                })
            })
            .map(|c| {
                let body = self.component_body(spec, c, &infra_id, network.as_deref());
                async move {
                    let options = CreateContainerOptions {
                        name: Some(container_name(env, &c.name)),
                        ..Default::default()
                    };
                    let id = self
                        .docker
                        .create_container(Some(options), body)
                        .await
                        .map_err(Self::err(env, format!("create container `{}`", c.name)))?
                        .id;
                    self.docker
                        .start_container(&id, None::<StartContainerOptions>)
                        .await
                        .map_err(Self::err(env, format!("start container `{}`", c.name)))
                }
            });
        for r in futures_util::future::join_all(made).await {
            r?;
        }
        self.status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(env: &[&str]) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some("cove/busybox:latest".into()),
            env: Some(env.iter().map(|s| s.to_string()).collect()),
            labels: Some(
                [("cove.env".to_string(), "e".to_string())]
                    .into_iter()
                    .collect(),
            ),
            host_config: Some(bollard::models::HostConfig {
                network_mode: Some("container:abc".into()),
                port_bindings: Some(
                    (0..20)
                        .map(|p| (format!("{p}/tcp"), None))
                        .collect::<std::collections::HashMap<_, _>>(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn digests_name_the_aspect_that_changed() {
        let a = fingerprint(&body(&["A=1"]), &[]);
        // hash maps serialize in any order; the digest does not depend on it
        assert_eq!(a, fingerprint(&body(&["A=1"]), &[]));
        let b = fingerprint(&body(&["A=2"]), &[]);
        assert_eq!(differing(Some(&a), Some(&b)), ["env"]);
        // another infra container id is the same namespace rule
        let mut other_infra = body(&["A=1"]);
        other_infra.host_config.as_mut().unwrap().network_mode = Some("container:def".into());
        assert_eq!(fingerprint(&other_infra, &[]), a);
        // anything outside the named aspects lands in `other`
        let mut user = body(&["A=1"]);
        user.user = Some("1000".into());
        assert_eq!(
            differing(Some(&a), Some(&fingerprint(&user, &[]))),
            ["other"]
        );
        let mut init = body(&["A=1"]);
        init.host_config.as_mut().unwrap().init = Some(true);
        assert_eq!(
            differing(Some(&a), Some(&fingerprint(&init, &[]))),
            ["command"]
        );
        // a container without the label is recreated
        assert_eq!(differing(None, Some(&a)).len(), 1);
        // the label itself does not count
        let mut stamped = body(&["A=1"]);
        stamp(&mut stamped, &[]);
        assert_eq!(fingerprint(&stamped, &[]), a);
    }

    #[test]
    fn summary_says_what_was_kept() {
        let plan = RestartPlan {
            env_id: "e".into(),
            full: None,
            components: vec![
                ComponentChange {
                    component: "app".into(),
                    change: Change::Recreate,
                    why: vec!["env".into()],
                },
                ComponentChange {
                    component: "dynamodb".into(),
                    change: Change::Keep,
                    why: vec![],
                },
            ],
            running: true,
        };
        assert_eq!(plan.summary(), "recreated app (env); kept dynamodb");
        assert_eq!(plan.kept(), ["dynamodb"]);
    }
}
