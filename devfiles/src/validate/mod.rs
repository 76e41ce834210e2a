//! The semantic stage: devfile rules 2–7 and 10 of
//! `shared/design/devfile.md` §(e), on the flattened devfile. Every finding
//! points at the file and element that must change.

use std::collections::{BTreeMap, HashMap, HashSet};

use yamlmap::{Diagnostic, Dropped, Pos, Seg, MAX_DIAGNOSTICS};

use crate::model::{Command, ComponentKind, Devfile, GroupKind, Project};
use crate::resolve::Flattened;
use crate::{overrides, quantity};

mod command_graph;
mod runtime;

use command_graph::*;

/// What the semantic stage found: at most [`MAX_DIAGNOSTICS`] errors and
/// warnings each, and how many more were counted without being kept.
pub(crate) struct Findings {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub dropped_errors: Dropped,
    pub dropped_warnings: Dropped,
}

/// Environment variables Cove sets itself (rule 6).
pub const RESERVED_ENV: &[&str] = &["PROJECTS_ROOT", "PROJECT_SOURCE"];

pub(crate) fn validate(f: &Flattened) -> Findings {
    let mut v = Validator {
        f,
        d: &f.devfile,
        findings: Findings {
            errors: Vec::new(),
            warnings: Vec::new(),
            dropped_errors: Dropped::default(),
            dropped_warnings: Dropped::default(),
        },
    };
    v.unique_names();
    v.components();
    v.commands();
    v.events();
    v.default_commands();
    v.projects();
    v.overrides();
    v.docker_only();
    v.findings
}

struct Validator<'a> {
    f: &'a Flattened,
    d: &'a Devfile,
    findings: Findings,
}

impl Validator<'_> {
    fn error(
        &mut self,
        section: &str,
        key: &str,
        rel: &[Seg<'_>],
        msg: String,
        help: Option<String>,
    ) {
        if self.errors_full() {
            // counted, not kept: no need to look up where
            let d = Diagnostic::error("", Pos::START, "");
            self.findings.dropped_errors.add(&d);
            return;
        }
        let (file, pos) = self.f.locate(section, key, rel);
        let mut d = Diagnostic::error(file, pos, msg);
        if let Some(h) = help {
            d = d.with_help(h);
        }
        self.push_error(d);
    }

    fn errors_full(&self) -> bool {
        self.findings.errors.len() >= MAX_DIAGNOSTICS
    }

    fn push_error(&mut self, d: Diagnostic) {
        if self.errors_full() {
            self.findings.dropped_errors.add(&d);
        } else {
            self.findings.errors.push(d);
        }
    }

    fn warn(
        &mut self,
        section: &str,
        key: &str,
        rel: &[Seg<'_>],
        msg: String,
        help: Option<String>,
    ) {
        if self.findings.warnings.len() >= MAX_DIAGNOSTICS {
            let d = Diagnostic::warning("", Pos::START, "");
            self.findings.dropped_warnings.add(&d);
            return;
        }
        let (file, pos) = self.f.locate(section, key, rel);
        let mut d = Diagnostic::warning(file, pos, msg);
        if let Some(h) = help {
            d = d.with_help(h);
        }
        self.findings.warnings.push(d);
    }

    fn kinds(&self) -> HashMap<String, ComponentKind> {
        self.d
            .components
            .iter()
            .filter_map(|c| c.kind().map(|k| (c.name.to_lowercase(), k)))
            .collect()
    }

    /// Rule 2: names unique; endpoint names unique across all components.
    fn unique_names(&mut self) {
        let mut seen = HashSet::new();
        for c in &self.d.components {
            if !seen.insert(c.name.to_lowercase()) {
                self.error(
                    "components",
                    &c.name,
                    &[Seg::Key("name")],
                    format!("component name `{}` is used twice", c.name),
                    Some("give each component a unique name".into()),
                );
            }
        }
        let mut seen = HashSet::new();
        for c in &self.d.commands {
            if !seen.insert(c.id.to_lowercase()) {
                self.error(
                    "commands",
                    &c.id,
                    &[Seg::Key("id")],
                    format!("command id `{}` is used twice", c.id),
                    Some("give each command a unique id".into()),
                );
            }
        }
        let mut endpoints: HashMap<String, String> = HashMap::new();
        for c in &self.d.components {
            let eps = match (&c.container, &c.kubernetes, &c.openshift) {
                (Some(ct), _, _) => &ct.endpoints,
                (_, Some(k), _) | (_, _, Some(k)) => &k.endpoints,
                _ => continue,
            };
            let kind = match c.kind() {
                Some(ComponentKind::Container) => "container",
                Some(ComponentKind::Kubernetes) => "kubernetes",
                _ => "openshift",
            };
            for (i, ep) in eps.iter().enumerate() {
                if let Some(other) = endpoints.insert(ep.name.clone(), c.name.clone()) {
                    self.error(
                        "components",
                        &c.name,
                        &[Seg::Key(kind), Seg::Key("endpoints"), Seg::Index(i), Seg::Key("name")],
                        format!("endpoint name `{}` is already used by component `{other}`; endpoint names must be unique across all components", ep.name),
                        Some("rename one of the endpoints".into()),
                    );
                }
            }
        }
    }

    /// Rules 3 (volume mounts), 6 (reserved env) and 7 (one network namespace),
    /// plus resource quantities.
    fn components(&mut self) {
        let kinds = self.kinds();
        let mut ports: BTreeMap<u16, String> = BTreeMap::new();
        for c in &self.d.components {
            let Some(ct) = &c.container else { continue };
            for (i, m) in ct.volume_mounts.iter().enumerate() {
                match kinds.get(&m.name.to_lowercase()) {
                    Some(ComponentKind::Volume) => {}
                    Some(k) => self.error("components", &c.name, &[Seg::Key("container"), Seg::Key("volumeMounts"), Seg::Index(i), Seg::Key("name")],
                        format!("volumeMount `{}` names a {k:?} component, not a volume", m.name).to_lowercase(), Some(format!("add a component `- name: {}` with `volume: {{}}` or mount another volume", m.name))),
                    None => self.error("components", &c.name, &[Seg::Key("container"), Seg::Key("volumeMounts"), Seg::Index(i), Seg::Key("name")],
                        format!("volumeMount `{}` of container `{}` refers to a volume component that does not exist", m.name, c.name),
                        Some(format!("add a component `- name: {}` with `volume: {{}}`, or fix the name", m.name))),
                }
            }
            for (i, e) in ct.env.iter().enumerate() {
                if RESERVED_ENV.contains(&e.name.as_str()) {
                    self.error("components", &c.name, &[Seg::Key("container"), Seg::Key("env"), Seg::Index(i), Seg::Key("name")],
                        format!("env `{}` is set by Cove from `sourceMapping` and cannot be set in a devfile", e.name),
                        Some("remove it; use `sourceMapping` to move the sources".into()));
                }
            }
            let mut mine = HashSet::new();
            for (i, ep) in ct.endpoints.iter().enumerate() {
                if !mine.insert(ep.target_port) {
                    continue; // several endpoints of one container may share a port
                }
                if let Some(other) = ports.get(&ep.target_port) {
                    let other = other.clone();
                    self.error("components", &c.name, &[Seg::Key("container"), Seg::Key("endpoints"), Seg::Index(i), Seg::Key("targetPort")],
                        format!("devfile contains multiple containers with same endpoint targetPort: {} (`{other}` and `{}`); all containers share one network namespace", ep.target_port, c.name),
                        Some("use a different targetPort in one of the containers".into()));
                } else {
                    ports.insert(ep.target_port, c.name.clone());
                }
            }
            for (field, limit, request, parse) in [
                (
                    "memory",
                    &ct.memory_limit,
                    &ct.memory_request,
                    quantity::bytes as fn(&str) -> Option<u64>,
                ),
                ("cpu", &ct.cpu_limit, &ct.cpu_request, quantity::millicores),
            ] {
                let mut parsed = [None, None];
                for (j, (name, q)) in [
                    (format!("{field}Limit"), limit),
                    (format!("{field}Request"), request),
                ]
                .into_iter()
                .enumerate()
                {
                    if let Some(q) = q {
                        parsed[j] = parse(q);
                        if parsed[j].is_none() {
                            self.error(
                                "components",
                                &c.name,
                                &[Seg::Key("container"), Seg::Key(&name)],
                                format!("{name} `{q}` is not a resource quantity"),
                                Some("use a quantity such as 512Mi, 2Gi, 500m or 2".into()),
                            );
                        }
                    }
                }
                if let [Some(l), Some(r)] = parsed {
                    if r > l {
                        let name = format!("{field}Request");
                        self.error(
                            "components",
                            &c.name,
                            &[Seg::Key("container"), Seg::Key(&name)],
                            format!(
                                "{field}Request is larger than {field}Limit in container `{}`",
                                c.name
                            ),
                            Some(format!("lower {field}Request or raise {field}Limit")),
                        );
                    }
                }
            }
        }
        for c in &self.d.components {
            if let Some(size) = c.volume.as_ref().and_then(|v| v.size.as_ref()) {
                if quantity::bytes(size).is_none() {
                    self.error(
                        "components",
                        &c.name,
                        &[Seg::Key("volume"), Seg::Key("size")],
                        format!("volume size `{size}` is not a resource quantity"),
                        Some("use a quantity such as 1Gi".into()),
                    );
                }
            }
        }
    }

    /// Rule 3: command references.
    fn commands(&mut self) {
        let kinds = self.kinds();
        let by_id = commands_by_id(self.d);
        for c in &self.d.commands {
            if let Some(e) = &c.exec {
                match kinds.get(&e.component.to_lowercase()) {
                    Some(ComponentKind::Container) => {}
                    Some(k) => self.error("commands", &c.id, &[Seg::Key("exec"), Seg::Key("component")],
                        format!("exec command `{}` runs in `{}`, which is a {} component; exec commands need a container", c.id, e.component, kind_name(*k)), None),
                    None => self.error("commands", &c.id, &[Seg::Key("exec"), Seg::Key("component")],
                        format!("exec command `{}` refers to component `{}`, which does not exist", c.id, e.component),
                        (!self.errors_full()).then(|| format!("use one of the container components: {}", self.names_of(&[ComponentKind::Container])))),
                }
            }
            if let Some(a) = &c.apply {
                match kinds.get(&a.component.to_lowercase()) {
                    Some(ComponentKind::Volume) => self.error("commands", &c.id, &[Seg::Key("apply"), Seg::Key("component")],
                        format!("apply command `{}` refers to volume `{}`; apply needs a container, kubernetes, openshift or image component", c.id, a.component), None),
                    Some(_) => {}
                    None => self.error("commands", &c.id, &[Seg::Key("apply"), Seg::Key("component")],
                        format!("apply command `{}` refers to component `{}`, which does not exist", c.id, a.component), None),
                }
            }
            if let Some(comp) = &c.composite {
                for (i, child) in comp.commands.iter().enumerate() {
                    if !by_id.contains_key(&child.to_lowercase()) {
                        self.error("commands", &c.id, &[Seg::Key("composite"), Seg::Key("commands"), Seg::Index(i)],
                            format!("the command \"{}\" is invalid - the command \"{child}\" mentioned in the composite command does not exist in the devfile", c.id),
                            Some(format!("define a command with id `{child}` or remove it from the list")));
                    }
                }
            }
        }
        // composite cycles: one pass finds the commands on a cycle; a path is
        // spelled out for the first few of them
        let graph = CommandGraph::new(self.d);
        let on_cycle = graph.on_cycle();
        let mut paths = 0;
        for (i, c) in self.d.commands.iter().enumerate() {
            if !on_cycle[i] || graph.first[&c.id.to_lowercase()] != i {
                continue;
            }
            let message = if paths < MAX_CYCLE_PATHS {
                paths += 1;
                let cycle = graph.cycle_through(i);
                format!(
                    "composite command `{}` includes itself: {}",
                    c.id,
                    show_cycle(&cycle)
                )
            } else {
                format!(
                    "composite command `{}` includes itself (through other composite commands)",
                    c.id
                )
            };
            self.error(
                "commands",
                &c.id,
                &[Seg::Key("composite"), Seg::Key("commands")],
                message,
                Some("remove one of the references to break the cycle".into()),
            );
        }
    }

    fn names_of(&self, kinds: &[ComponentKind]) -> String {
        let names = list_names(
            self.d
                .components
                .iter()
                .filter(|c| c.kind().is_some_and(|k| kinds.contains(&k)))
                .map(|c| c.name.as_str()),
        );
        if names.is_empty() {
            "(none)".into()
        } else {
            names
        }
    }

    /// Rules 3 and 4: event ids exist and have the right command type.
    fn events(&mut self) {
        let Some(events) = &self.d.events else { return };
        let by_id = commands_by_id(self.d);
        let graph = CommandGraph::new(self.d);
        let leaves_apply = graph.leaves_are(self.d, true);
        let leaves_exec = graph.leaves_are(self.d, false);
        for (kind, ids, want_apply) in [
            ("preStart", &events.pre_start, true),
            ("postStart", &events.post_start, false),
            ("preStop", &events.pre_stop, false),
            ("postStop", &events.post_stop, true),
        ] {
            for (i, id) in ids.iter().enumerate() {
                let (file, pos) = self.f.locate_event(kind, i);
                match by_id.get(&id.to_lowercase()) {
                    None => self.push_error(
                        Diagnostic::error(
                            file,
                            pos,
                            format!(
                                "{kind} event \"{id}\" does not map to a valid devfile command"
                            ),
                        )
                        .with_help(format!(
                            "define a command with id `{id}` or remove it from events.{kind}"
                        )),
                    ),
                    Some(_) => {
                        let i = graph.first[&id.to_lowercase()];
                        let ok = if want_apply {
                            leaves_apply[i]
                        } else {
                            leaves_exec[i]
                        };
                        if !ok {
                            let need = if want_apply {
                                "an apply command or a composite command with apply commands"
                            } else {
                                "an exec command or a composite command with exec commands"
                            };
                            self.push_error(
                                Diagnostic::error(
                                    file,
                                    pos,
                                    format!("{id} should either map to {need} ({kind} event)"),
                                )
                                .with_help(if want_apply {
                                    "bind exec commands to postStart instead".to_string()
                                } else {
                                    "bind apply commands to preStart or postStop instead"
                                        .to_string()
                                }),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Rule 5: at most one default per group kind; several without one ⇒ warning.
    fn default_commands(&mut self) {
        let mut by_kind: BTreeMap<GroupKind, Vec<&Command>> = BTreeMap::new();
        for c in &self.d.commands {
            if let Some(g) = c.group() {
                by_kind.entry(g.kind).or_default().push(c);
            }
        }
        for (kind, cmds) in by_kind {
            let defaults: Vec<&&Command> = cmds
                .iter()
                .filter(|c| c.group().and_then(|g| g.is_default) == Some(true))
                .collect();
            if defaults.len() > 1 {
                let ids = list_names(defaults.iter().map(|c| c.id.as_str()));
                self.error("commands", &defaults[1].id, &[],
                    format!("there should be exactly one default command, currently there are {} default commands for group kind {} ({ids})", defaults.len(), kind.as_str()),
                    Some("set `isDefault: true` on only one of them".into()));
            } else if defaults.is_empty() && cmds.len() > 1 {
                self.warn("commands", &cmds[0].id, &[],
                    format!("{} commands of group kind {} and none is marked isDefault; there is no default {} command", cmds.len(), kind.as_str(), kind.as_str()),
                    Some("mark one of them with `isDefault: true`".into()));
            }
        }
    }

    /// Projects: clonePath stays inside PROJECTS_ROOT; remotes consistent.
    fn projects(&mut self) {
        for (section, list) in [
            ("projects", &self.d.projects),
            ("starterProjects", &self.d.starter_projects),
            ("dependentProjects", &self.d.dependent_projects),
        ] {
            for p in list {
                self.project(section, p);
            }
        }
    }

    fn project(&mut self, section: &str, p: &Project) {
        for (i, dir) in p.sparse_checkout_dirs.iter().enumerate() {
            if dir.split('/').any(|s| s == "..") || dir.trim_matches('/').is_empty() {
                self.error(
                    section,
                    &p.name,
                    &[Seg::Key("sparseCheckoutDirs"), Seg::Index(i)],
                    format!(
                        "sparseCheckoutDirs entry `{dir}` must name a directory inside the project"
                    ),
                    Some("use a path such as `docs` or `src/app`, without `..`".into()),
                );
            }
        }
        if p.zip.is_some() && section != "starterProjects" {
            self.warn(
                section,
                &p.name,
                &[Seg::Key("zip")],
                format!("project `{}` is a zip archive; Cove clones git projects only and does not download it", p.name),
                Some("use a `git` source, or download the archive in a postStart command".into()),
            );
        }
        if !p.sparse_checkout_dirs.is_empty() && p.zip.is_some() {
            self.error(
                section,
                &p.name,
                &[Seg::Key("sparseCheckoutDirs")],
                format!(
                    "project `{}` is a zip archive; sparseCheckoutDirs needs a git source",
                    p.name
                ),
                None,
            );
        }
        if let Some(cp) = &p.clone_path {
            // an absolute clonePath is under the projects root (leading `/`
            // stripped, as devfile/library and the DevWorkspace Operator's
            // path join do); `..` would leave it
            if cp.split('/').any(|s| s == "..") || cp.trim_start_matches('/').is_empty() {
                self.error(
                    section,
                    &p.name,
                    &[Seg::Key("clonePath")],
                    format!("clonePath `{cp}` must name a directory inside the projects root"),
                    Some(
                        "remove any `..`; an absolute path such as `/app` means PROJECTS_ROOT/app"
                            .into(),
                    ),
                );
            }
        }
        if let Some(git) = p.git_source() {
            let kind = if p.git.is_some() { "git" } else { "github" };
            if git.remotes.is_empty() {
                self.error(
                    section,
                    &p.name,
                    &[Seg::Key(kind), Seg::Key("remotes")],
                    format!("project `{}` has no git remotes", p.name),
                    Some("add at least one remote, e.g. `origin: <url>`".into()),
                );
            }
            let from = git.checkout_from.as_ref().and_then(|c| c.remote.as_ref());
            match from {
                Some(r) if !git.remotes.contains_key(r) => self.error(
                    section,
                    &p.name,
                    &[Seg::Key(kind), Seg::Key("checkoutFrom"), Seg::Key("remote")],
                    format!("checkoutFrom.remote `{r}` is not one of the project's remotes"),
                    None,
                ),
                None if git.remotes.len() > 1 => self.error(
                    section,
                    &p.name,
                    &[Seg::Key(kind), Seg::Key("remotes")],
                    format!(
                        "project `{}` has {} remotes; say which one to check out from",
                        p.name,
                        git.remotes.len()
                    ),
                    Some("add `checkoutFrom: {remote: <name>}`".into()),
                ),
                _ => {}
            }
        }
    }
}

fn commands_by_id(d: &Devfile) -> HashMap<String, &Command> {
    d.commands
        .iter()
        .map(|c| (c.id.to_lowercase(), c))
        .collect()
}

fn kind_name(k: ComponentKind) -> &'static str {
    match k {
        ComponentKind::Container => "container",
        ComponentKind::Kubernetes => "kubernetes",
        ComponentKind::Openshift => "openshift",
        ComponentKind::Volume => "volume",
        ComponentKind::Image => "image",
    }
}
