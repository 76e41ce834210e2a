//! `EnvironmentPlan`: the only thing an agent consumes. It is a resolved,
//! Docker-oriented description of an environment: concrete containers,
//! volumes, commands and events, with every devfile default applied.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Component, ComponentKind, Devfile, Exposure, GroupKind, Protocol};
use crate::overrides::{self, Applied};
use crate::quantity;

/// The command given to containers that declare neither `command` nor
/// `args`, so that the environment stays up and commands can be exec'd
/// (devfile rule 10). It exits promptly on SIGTERM.
pub const KEEP_ALIVE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];

/// Component attribute that chooses a container's entrypoint: `image` keeps
/// the image's ENTRYPOINT/CMD, `keep-alive` runs [`KEEP_ALIVE`]. Without it
/// (and without `command`/`args`), a container gets the keep-alive when a
/// devfile exec command runs in it, or when it is the terminal container
/// (the first container commands run in — with sources mounted if any is —
/// or, when no command runs anywhere, the first with sources mounted, else
/// the first); every other container is a service and keeps its image's
/// entrypoint, as in odo and Che.
pub const ENTRYPOINT_ATTRIBUTE: &str = "cove/entrypoint";

/// Default source mount path (`sourceMapping`).
pub const DEFAULT_SOURCE_MAPPING: &str = "/projects";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentPlan {
    /// `metadata.name`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub schema_version: String,
    pub containers: Vec<ContainerPlan>,
    pub volumes: Vec<VolumePlan>,
    pub commands: Vec<CommandPlan>,
    pub events: EventsPlan,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<ProjectPlan>,
    /// Components a Docker backend does not run (kubernetes, openshift, image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedComponent>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    /// Replaces the image's ENTRYPOINT when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's CMD when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// True when `command` is Cove's keep-alive (see [`ENTRYPOINT_ATTRIBUTE`]
    /// for the rule).
    pub keep_alive: bool,
    /// What the container runs and why, e.g. `image (no command runs here)`
    /// or `keep-alive (commands run here)`; shown by `cove devfile plan`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entrypoint: String,
    /// The container terminals, `cove env exec`, the sources and dotfiles use.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminal: bool,
    /// Environment in declaration order; includes PROJECTS_ROOT and
    /// PROJECT_SOURCE when sources are mounted.
    pub env: Vec<EnvPair>,
    pub mounts: Vec<MountPlan>,
    /// Where the sources volume is mounted, when `mountSources` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_mapping: Option<String>,
    pub endpoints: Vec<EndpointPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request_millis: Option<u64>,
    /// `dedicatedPod: true`: the container gets its own network namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dedicated_pod: bool,
    /// `uid[:gid]` from `runAsUser`/`runAsGroup` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `readOnlyRootFilesystem: true` override.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_fs: bool,
    /// Capabilities added back (only [`crate::ADDABLE_CAPABILITIES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped on top of Cove's baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPair {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    pub volume: String,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPlan {
    pub name: String,
    pub port: u16,
    pub exposure: Exposure,
    /// Effective protocol: `http`/`ws` become `https`/`wss` when secure.
    pub protocol: Protocol,
    pub secure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl EndpointPlan {
    /// Whether the endpoint is published outside the environment
    /// (`exposure: none` ports are never published).
    pub fn published(&self) -> bool {
        self.exposure != Exposure::None
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub name: String,
    /// False for `ephemeral: true` volumes, which are recreated on restart.
    pub persistent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandPlan {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupKind>,
    /// The default command of its group (explicit, or the only one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    pub action: CommandAction,
}

/// How to run a command (devfile rule 10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandAction {
    /// `/bin/sh -c command_line` in `component`, after `cd working_dir`,
    /// with `env` exported. Build/test/deploy/ungrouped commands terminate
    /// (non-zero exit = failure); run/debug are long-running.
    Exec {
        component: String,
        command_line: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        working_dir: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env: Vec<EnvPair>,
        long_running: bool,
        hot_reload_capable: bool,
    },
    /// Sub-commands by id; sequential stops at the first failure, parallel
    /// runs them all.
    Composite {
        commands: Vec<String>,
        parallel: bool,
    },
    /// Apply a component (a Docker backend runs container components as a
    /// one-shot container and skips kubernetes/openshift/image ones).
    Apply {
        component: String,
        component_kind: ComponentKind,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsPlan {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<String>,
    /// Run once after the environment is created, in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_stop: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectPlan {
    pub name: String,
    /// Relative to PROJECTS_ROOT.
    pub clone_path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remotes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Only these directories are checked out (git sparse checkout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparse_checkout_dirs: Vec<String>,
}

impl ProjectPlan {
    /// The URL to clone: the `checkoutFrom` remote, else the only (first) one.
    pub fn clone_url(&self) -> Option<&str> {
        self.checkout_remote
            .as_ref()
            .and_then(|r| self.remotes.get(r))
            .or_else(|| self.remotes.values().next())
            .map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedComponent {
    pub name: String,
    pub kind: ComponentKind,
    pub reason: String,
}

/// Caller-side choices for planning.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// The repository the environment is for. It is cloned into
    /// `PROJECTS_ROOT/<repo>` and becomes PROJECT_SOURCE.
    pub repo: Option<String>,
}

impl EnvironmentPlan {
    pub fn container(&self, name: &str) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn command(&self, id: &str) -> Option<&CommandPlan> {
        self.commands.iter().find(|c| c.id.eq_ignore_ascii_case(id))
    }

    /// The default command of a group kind.
    pub fn default_command(&self, kind: GroupKind) -> Option<&CommandPlan> {
        self.commands
            .iter()
            .find(|c| c.group == Some(kind) && c.default)
    }

    /// The container that gets terminals and `cove env exec` by default: the
    /// one marked `terminal` (see [`ENTRYPOINT_ATTRIBUTE`]); plans stored
    /// before that flag: the first one with sources mounted, else the first.
    pub fn main_container(&self) -> Option<&ContainerPlan> {
        self.containers
            .iter()
            .find(|c| c.terminal)
            .or_else(|| self.containers.iter().find(|c| c.source_mapping.is_some()))
            .or_else(|| self.containers.first())
    }
}

/// Turn a validated, flattened devfile into a plan.
pub(crate) fn plan(devfile: &Devfile, opts: &PlanOptions) -> EnvironmentPlan {
    let project_dir = opts.repo.clone().or_else(|| {
        devfile
            .projects
            .first()
            .map(|p| clone_dir(p.clone_path.as_deref(), &p.name))
    });
    let kinds: BTreeMap<String, ComponentKind> = devfile
        .components
        .iter()
        .filter_map(|c| c.kind().map(|k| (c.name.to_lowercase(), k)))
        .collect();

    let mut plan = EnvironmentPlan {
        name: devfile
            .metadata
            .as_ref()
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string),
        schema_version: devfile.schema_version.clone(),
        ..Default::default()
    };
    let runs_commands: BTreeSet<String> = devfile
        .commands
        .iter()
        .filter_map(|c| c.exec.as_ref())
        .map(|e| e.component.to_lowercase())
        .collect();
    let terminal = terminal_container(devfile, &runs_commands);
    let pod = pod_overrides(devfile);
    for c in &devfile.components {
        match c.kind() {
            Some(ComponentKind::Container) => {
                let runs = runs_commands.contains(&c.name.to_lowercase());
                let is_terminal = terminal.as_deref() == Some(c.name.as_str());
                plan.containers.push(container_plan(
                    c,
                    project_dir.as_deref(),
                    Role {
                        runs_commands: runs,
                        terminal: is_terminal,
                    },
                    &pod,
                ))
            }
            Some(ComponentKind::Volume) => {
                let v = c.volume.as_ref().expect("kind() said volume");
                plan.volumes.push(VolumePlan {
                    name: c.name.clone(),
                    persistent: !v.ephemeral.unwrap_or(false),
                    size_bytes: v.size.as_deref().and_then(quantity::bytes),
                });
            }
            Some(kind) => {
                let reason = format!("{} components are cluster or build resources; the Docker backend does not run them", kind_str(kind));
                plan.skipped.push(SkippedComponent {
                    name: c.name.clone(),
                    kind,
                    reason,
                });
            }
            None => {}
        }
    }
    // defaults per group kind: explicit isDefault, or the only one of its kind
    let mut count: BTreeMap<GroupKind, usize> = BTreeMap::new();
    for c in &devfile.commands {
        if let Some(g) = c.group() {
            *count.entry(g.kind).or_default() += 1;
        }
    }
    for c in &devfile.commands {
        let group = c.group().map(|g| g.kind);
        let default = c
            .group()
            .is_some_and(|g| g.is_default == Some(true) || count.get(&g.kind) == Some(&1));
        let (label, action) = if let Some(e) = &c.exec {
            (
                e.label.clone(),
                CommandAction::Exec {
                    component: e.component.clone(),
                    command_line: e.command_line.clone(),
                    working_dir: e.working_dir.clone(),
                    env: e
                        .env
                        .iter()
                        .map(|v| EnvPair {
                            name: v.name.clone(),
                            value: v.value.clone(),
                        })
                        .collect(),
                    long_running: matches!(group, Some(GroupKind::Run | GroupKind::Debug)),
                    hot_reload_capable: e.hot_reload_capable.unwrap_or(false),
                },
            )
        } else if let Some(a) = &c.apply {
            let component_kind = kinds
                .get(&a.component.to_lowercase())
                .copied()
                .unwrap_or(ComponentKind::Container);
            (
                a.label.clone(),
                CommandAction::Apply {
                    component: a.component.clone(),
                    component_kind,
                },
            )
        } else if let Some(comp) = &c.composite {
            (
                comp.label.clone(),
                CommandAction::Composite {
                    commands: comp.commands.iter().map(|s| s.to_lowercase()).collect(),
                    parallel: comp.parallel.unwrap_or(false),
                },
            )
        } else {
            continue;
        };
        plan.commands.push(CommandPlan {
            id: c.id.to_lowercase(),
            label,
            group,
            default,
            action,
        });
    }
    if let Some(e) = &devfile.events {
        let lower = |v: &Vec<String>| v.iter().map(|s| s.to_lowercase()).collect();
        plan.events = EventsPlan {
            pre_start: lower(&e.pre_start),
            post_start: lower(&e.post_start),
            pre_stop: lower(&e.pre_stop),
            post_stop: lower(&e.post_stop),
        };
    }
    for p in devfile.projects.iter().chain(&devfile.dependent_projects) {
        plan.projects.push(ProjectPlan {
            name: p.name.clone(),
            clone_path: clone_dir(p.clone_path.as_deref(), &p.name),
            remotes: p
                .git_source()
                .map(|g| g.remotes.clone())
                .unwrap_or_default(),
            checkout_remote: p
                .git_source()
                .and_then(|g| g.checkout_from.as_ref())
                .and_then(|c| c.remote.clone()),
            revision: p
                .git_source()
                .and_then(|g| g.checkout_from.as_ref())
                .and_then(|c| c.revision.clone()),
            zip: p.zip.as_ref().and_then(|z| z.location.clone()),
            sparse_checkout_dirs: p
                .sparse_checkout_dirs
                .iter()
                .map(|d| d.trim_matches('/').to_string())
                .collect(),
        });
    }
    plan
}

/// Where a project goes, relative to PROJECTS_ROOT: its `clonePath` with
/// any leading `/` stripped (an absolute clonePath is under the projects
/// root), else its name.
fn clone_dir(clone_path: Option<&str>, name: &str) -> String {
    match clone_path.map(|c| c.trim_start_matches('/')) {
        Some(c) if !c.is_empty() => c.trim_end_matches('/').to_string(),
        _ => name.to_string(),
    }
}

pub(crate) fn kind_str(k: ComponentKind) -> &'static str {
    match k {
        ComponentKind::Container => "container",
        ComponentKind::Kubernetes => "kubernetes",
        ComponentKind::Openshift => "openshift",
        ComponentKind::Volume => "volume",
        ComponentKind::Image => "image",
    }
}

/// The terminal container's name (rule at [`ENTRYPOINT_ATTRIBUTE`]).
fn terminal_container(devfile: &Devfile, runs_commands: &BTreeSet<String>) -> Option<String> {
    let containers: Vec<&Component> = devfile
        .components
        .iter()
        .filter(|c| c.container.is_some())
        .collect();
    let mounts = |c: &&&Component| {
        let ct = c.container.as_ref().expect("filtered on container");
        ct.mount_sources
            .unwrap_or(!ct.dedicated_pod.unwrap_or(false))
    };
    let runs = |c: &&&Component| runs_commands.contains(&c.name.to_lowercase());
    let with_commands: Vec<&&Component> = containers.iter().filter(runs).collect();
    let pick = if with_commands.is_empty() {
        containers
            .iter()
            .find(mounts)
            .or_else(|| containers.first())
    } else {
        with_commands
            .iter()
            .copied()
            .find(mounts)
            .or_else(|| with_commands.first().copied())
    };
    pick.map(|c| c.name.clone())
}

/// `pod-overrides` of the top level, then of each component, merged.
fn pod_overrides(devfile: &Devfile) -> Applied {
    let mut out = Applied::default();
    let attrs = std::iter::once(&devfile.attributes)
        .chain(devfile.components.iter().map(|c| &c.attributes));
    for a in attrs {
        if let Some(v) = a.get(overrides::POD_OVERRIDES) {
            let (p, _) = overrides::pod(v);
            out.run_as_user = p.run_as_user.or(out.run_as_user);
            out.run_as_group = p.run_as_group.or(out.run_as_group);
        }
    }
    out
}

/// What commands do with a container.
struct Role {
    runs_commands: bool,
    terminal: bool,
}

/// The entrypoint choice: (keep-alive, explanation).
fn entrypoint(c: &Component, role: &Role) -> (bool, String) {
    let ct = c.container.as_ref().expect("container component");
    if ct.command.is_some() || ct.args.is_some() {
        let what = match (&ct.command, &ct.args) {
            (Some(_), Some(_)) => "command and args",
            (Some(_), None) => "command",
            _ => "args",
        };
        return (false, format!("devfile {what}"));
    }
    match c
        .attributes
        .get(ENTRYPOINT_ATTRIBUTE)
        .and_then(|v| v.as_str())
    {
        Some("image") => {
            return (
                false,
                format!("image (attribute {ENTRYPOINT_ATTRIBUTE}: image)"),
            )
        }
        Some("keep-alive") => {
            return (
                true,
                format!("keep-alive (attribute {ENTRYPOINT_ATTRIBUTE}: keep-alive)"),
            )
        }
        _ => {}
    }
    if role.runs_commands {
        (true, "keep-alive (commands run here)".into())
    } else if role.terminal {
        (true, "keep-alive (terminals run here)".into())
    } else {
        (false, "image (no command runs here)".into())
    }
}

fn container_plan(
    c: &Component,
    project_dir: Option<&str>,
    role: Role,
    pod: &Applied,
) -> ContainerPlan {
    let ct = c
        .container
        .as_ref()
        .expect("called for container components");
    let dedicated = ct.dedicated_pod.unwrap_or(false);
    let mount_sources = ct.mount_sources.unwrap_or(!dedicated);
    let source_mapping = mount_sources.then(|| {
        ct.source_mapping
            .clone()
            .unwrap_or_else(|| DEFAULT_SOURCE_MAPPING.to_string())
    });
    let mut env: Vec<EnvPair> = ct
        .env
        .iter()
        .map(|e| EnvPair {
            name: e.name.clone(),
            value: e.value.clone(),
        })
        .collect();
    if let Some(root) = &source_mapping {
        let source = match project_dir {
            Some(dir) => format!("{}/{dir}", root.trim_end_matches('/')),
            None => root.clone(),
        };
        env.push(EnvPair {
            name: "PROJECTS_ROOT".into(),
            value: root.clone(),
        });
        env.push(EnvPair {
            name: "PROJECT_SOURCE".into(),
            value: source,
        });
    }
    let (keep_alive, entrypoint) = entrypoint(c, &role);
    let over = c
        .attributes
        .get(overrides::CONTAINER_OVERRIDES)
        .map(|v| overrides::container(v).0)
        .unwrap_or_default();
    // the override wins over the container's own fields
    let memory_limit = over.memory_limit.as_ref().or(ct.memory_limit.as_ref());
    let memory_request = over.memory_request.as_ref().or(ct.memory_request.as_ref());
    let cpu_limit = over.cpu_limit.as_ref().or(ct.cpu_limit.as_ref());
    let cpu_request = over.cpu_request.as_ref().or(ct.cpu_request.as_ref());
    let uid = over.run_as_user.or(pod.run_as_user);
    let gid = over.run_as_group.or(pod.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        // a group alone is not applied (the validator warns)
        (None, _) => None,
    };
    ContainerPlan {
        entrypoint,
        terminal: role.terminal,
        user,
        read_only_root_fs: over.read_only_root.unwrap_or(false),
        cap_add: over.cap_add,
        cap_drop: over.cap_drop,
        name: c.name.clone(),
        image: ct.image.clone(),
        command: if keep_alive {
            Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect())
        } else {
            ct.command.clone()
        },
        args: ct.args.clone(),
        keep_alive,
        env,
        mounts: ct
            .volume_mounts
            .iter()
            .map(|m| MountPlan {
                volume: m.name.clone(),
                path: m.path.clone().unwrap_or_else(|| format!("/{}", m.name)),
            })
            .collect(),
        source_mapping,
        endpoints: ct
            .endpoints
            .iter()
            .map(|e| {
                let secure = e.secure.unwrap_or(false);
                let protocol = match (e.protocol.unwrap_or_default(), secure) {
                    (Protocol::Http, true) => Protocol::Https,
                    (Protocol::Ws, true) => Protocol::Wss,
                    (p, _) => p,
                };
                EndpointPlan {
                    name: e.name.clone(),
                    port: e.target_port,
                    exposure: e.exposure.unwrap_or_default(),
                    protocol,
                    secure,
                    path: e.path.clone(),
                }
            })
            .collect(),
        memory_limit_bytes: memory_limit.and_then(|q| quantity::bytes(q)),
        memory_request_bytes: memory_request.and_then(|q| quantity::bytes(q)),
        cpu_limit_millis: cpu_limit.and_then(|q| quantity::millicores(q)),
        cpu_request_millis: cpu_request.and_then(|q| quantity::millicores(q)),
        dedicated_pod: dedicated,
    }
}
