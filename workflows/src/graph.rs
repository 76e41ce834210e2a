//! Dependency resolution for CodeCatalyst workflows (design notes §1.4,
//! §1.6, §6 rule 4): explicit `DependsOn` (actions and groups), group-level
//! `DependsOn`, and the implicit edges from `${Action.Var}` references and
//! `Inputs.Artifacts`; then cycle detection.
//!
//! Names resolve from the referrer's level outward: the sibling first, then
//! each enclosing level up to the top (so `${deploy.endpointUrl}` inside
//! group `beta` means `beta.deploy`, and an in-group `DependsOn: [build]`
//! may name a top-level group — accepted with a warning, as AWS's local
//! runner accepts it).

use std::collections::BTreeMap;

use yamlmap::{Node, Pos};

use crate::codecatalyst::MAX_SECRETS_PER_ACTION;
use crate::interpolate::{references, resolve_scoped, Reference};
use crate::model::{Action, Dependency, DependencyReason, SecretRef};
use crate::plan::cycles;
use crate::reader::Reader;

/// An action or group as found in the file, before resolution.
pub(crate) struct Raw<'n> {
    pub id: String,
    pub group_path: Vec<String>,
    pub node: &'n Node,
    pub key_pos: Pos,
    /// Index into the actions, or `None` for a group.
    pub action: Option<usize>,
}

struct Graph<'a, 'n> {
    raws: &'a [Raw<'n>],
    /// id → member action indices (an action is its own single member; a
    /// group has every action below it).
    members: BTreeMap<&'a str, Vec<usize>>,
    /// (dependent, dependency, where the edge was written)
    edges: Vec<(usize, usize, Pos)>,
}

/// Fill in every action's `depends_on` and `secrets`; report unknown names,
/// unknown variables, secrets over the limit and cycles.
pub(crate) fn resolve(r: &mut Reader, raws: &[Raw], actions: &mut [Action]) {
    let mut g = Graph::new(raws);
    g.depends_on(r, actions);
    g.artifacts(r, actions);
    for raw in raws {
        if let Some(i) = raw.action {
            actions[i].secrets = g.references(r, raw, i, actions);
        }
    }
    g.report_cycles(r, actions);
}

impl<'a, 'n> Graph<'a, 'n> {
    fn new(raws: &'a [Raw<'n>]) -> Self {
        let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for raw in raws {
            let entry = members.entry(raw.id.as_str()).or_default();
            let Some(i) = raw.action else { continue };
            entry.push(i);
            for depth in 1..=raw.group_path.len() {
                let gid = raw.group_path[..depth].join(".");
                if let Some(group) = raws.iter().find(|x| x.id == gid && x.action.is_none()) {
                    members.entry(group.id.as_str()).or_default().push(i);
                }
            }
        }
        Graph {
            raws,
            members,
            edges: Vec::new(),
        }
    }

    fn is_group(&self, id: &str) -> bool {
        self.raws.iter().any(|x| x.id == id && x.action.is_none())
    }

    fn lookup(&self, scope: &[String], name: &str) -> Option<String> {
        resolve_scoped(scope, name, |id| self.members.contains_key(id))
    }

    fn add(
        &mut self,
        actions: &mut [Action],
        from: usize,
        to: usize,
        via: DependencyReason,
        pos: Pos,
    ) {
        self.edges.push((from, to, pos));
        let target = actions[to].id.clone();
        if !actions[from].depends_on.iter().any(|d| d.action == target) {
            actions[from].depends_on.push(Dependency {
                action: target,
                via,
            });
        }
    }

    /// Explicit `DependsOn` of actions and groups.
    fn depends_on(&mut self, r: &mut Reader, actions: &mut [Action]) {
        for raw in self.raws {
            let Some(dep_node) = raw.node.get("DependsOn") else {
                continue;
            };
            let Some(items) = r.seq(dep_node, "`DependsOn`") else {
                continue;
            };
            let from = self
                .members
                .get(raw.id.as_str())
                .cloned()
                .unwrap_or_default();
            for item in items {
                let Some(name) = r.nonempty_text(item, "a `DependsOn` entry") else {
                    continue;
                };
                let Some(target) = self.lookup(&raw.group_path, &name) else {
                    self.unknown_depends_on(r, raw, item, &name);
                    continue;
                };
                if target.matches('.').count() < raw.group_path.len() {
                    r.warn(
                        item.pos,
                        format!(
                            "`{}` (inside group `{}`) depends on `{target}` outside its group",
                            raw.id,
                            raw.group_path.join(".")
                        ),
                        "CodeCatalyst's documentation allows only siblings in DependsOn; \
                         Cove (like AWS's local runner) accepts it",
                    );
                }
                let via = match raw.action {
                    Some(_) => DependencyReason::DependsOn(name.clone()),
                    None => DependencyReason::GroupDependsOn(raw.id.clone()),
                };
                let to = self
                    .members
                    .get(target.as_str())
                    .cloned()
                    .unwrap_or_default();
                for &f in &from {
                    for &t in &to {
                        self.add(actions, f, t, via.clone(), item.pos);
                    }
                }
            }
        }
    }

    fn unknown_depends_on(&self, r: &mut Reader, raw: &Raw, item: &Node, name: &str) {
        let siblings: Vec<&str> = self
            .raws
            .iter()
            .filter(|x| x.group_path == raw.group_path && x.id != raw.id)
            .map(|x| x.id.rsplit('.').next().unwrap_or(&x.id))
            .collect();
        r.error(
            item.pos,
            format!(
                "`{}` depends on `{name}`, which is not an action or action group",
                raw.id
            ),
            if siblings.is_empty() {
                "remove the entry".to_string()
            } else {
                format!("names at this level: {}", siblings.join(", "))
            },
        );
    }

    /// Unique artifact names; an edge consumer → producer per input.
    fn artifacts(&mut self, r: &mut Reader, actions: &mut [Action]) {
        let mut producers: BTreeMap<String, usize> = BTreeMap::new();
        for raw in self.raws {
            let Some(i) = raw.action else { continue };
            for a in &actions[i].outputs.artifacts {
                if let Some(&p) = producers.get(&a.name) {
                    let pos = raw
                        .node
                        .at(&["Outputs".into(), "Artifacts".into()])
                        .map(|n| r.find_from(n.pos, &a.name))
                        .unwrap_or(raw.key_pos);
                    r.error(
                        pos,
                        format!(
                            "artifact `{}` is already produced by `{}`",
                            a.name, actions[p].id
                        ),
                        "artifact names must be unique in a workflow: rename one",
                    );
                } else {
                    producers.insert(a.name.clone(), i);
                }
            }
        }
        for raw in self.raws {
            let Some(i) = raw.action else { continue };
            let Some(list) = raw.node.at(&["Inputs".into(), "Artifacts".into()]) else {
                continue;
            };
            for item in list.items() {
                let Some(name) = item.as_str() else { continue };
                match producers.get(name) {
                    None => r.error(
                        item.pos,
                        format!("input artifact `{name}` is not produced by any action"),
                        "add it to some action's `Outputs.Artifacts`, or fix the name",
                    ),
                    Some(&p) if p == i => r.error(
                        item.pos,
                        format!("action `{}` consumes its own artifact `{name}`", raw.id),
                        "remove it from `Inputs.Artifacts`",
                    ),
                    Some(&p) => {
                        let via = DependencyReason::Artifact(name.to_string());
                        self.add(actions, i, p, via, item.pos);
                    }
                }
            }
        }
    }

    /// `${…}` references anywhere in the action (except `Identifier` and
    /// `DependsOn`): implicit edges, and the secrets the action uses.
    fn references(
        &mut self,
        r: &mut Reader,
        raw: &Raw,
        i: usize,
        actions: &mut [Action],
    ) -> Vec<SecretRef> {
        let mut nodes = Vec::new();
        scalars(raw.node, &["Identifier", "DependsOn"], &mut nodes);
        let mut secrets = Vec::new();
        for node in nodes {
            let Some(text) = node.as_str() else { continue };
            for rf in references(text) {
                let pos = r.find_from(node.pos, rf.text(text));
                match rf.scope {
                    "Secrets" => {
                        let s = SecretRef::Codecatalyst {
                            name: rf.name.to_string(),
                        };
                        if secrets.contains(&s) {
                            continue;
                        }
                        secrets.push(s);
                        if secrets.len() == MAX_SECRETS_PER_ACTION + 1 {
                            r.error(
                                pos,
                                format!(
                                    "action `{}` uses more than {MAX_SECRETS_PER_ACTION} secrets",
                                    raw.id
                                ),
                                "split the action; CodeCatalyst allows at most 5 secrets per action",
                            );
                        }
                    }
                    "WorkflowSource" => {
                        if !matches!(rf.name, "CommitId" | "BranchName") {
                            r.error(
                                pos,
                                format!("unknown variable `{}`", rf.text(text)),
                                "WorkflowSource provides `${WorkflowSource.CommitId}` and \
                                 `${WorkflowSource.BranchName}`",
                            );
                        }
                    }
                    _ => self.output_reference(r, raw, i, actions, &rf, text, pos),
                }
            }
        }
        secrets
    }

    #[allow(clippy::too_many_arguments)]
    fn output_reference(
        &mut self,
        r: &mut Reader,
        raw: &Raw,
        i: usize,
        actions: &mut [Action],
        rf: &Reference,
        text: &str,
        pos: Pos,
    ) {
        let rtext = rf.text(text);
        let Some(target) = self.lookup(&raw.group_path, rf.scope) else {
            r.error(
                pos,
                format!("`{rtext}` refers to `{}`, which is not an action", rf.scope),
                "write `${Action.Variable}` or `${Group.Action.Variable}`; \
                 for a shell variable write `$NAME`",
            );
            return;
        };
        if self.is_group(&target) {
            r.error(
                pos,
                format!("`{rtext}` refers to action group `{target}`"),
                format!(
                    "name the action inside it: `${{{target}.<Action>.{}}}`",
                    rf.name
                ),
            );
            return;
        }
        let Some(&t) = self.members.get(target.as_str()).and_then(|m| m.first()) else {
            return;
        };
        if t == i {
            r.error(
                pos,
                format!("action `{}` refers to its own output `{rtext}`", raw.id),
                format!("inside the action use the shell variable `${}`", rf.name),
            );
            return;
        }
        if actions[t].kind.declares_outputs()
            && !actions[t].outputs.variables.iter().any(|v| v == rf.name)
        {
            r.error(
                pos,
                format!("`{rtext}`: action `{target}` does not export `{}`", rf.name),
                format!("add `{}` to `Outputs.Variables` of `{target}`", rf.name),
            );
        }
        self.add(
            actions,
            i,
            t,
            DependencyReason::Variable(rtext.to_string()),
            pos,
        );
    }

    /// One error per cycle, at the edge that closes it.
    fn report_cycles(&self, r: &mut Reader, actions: &[Action]) {
        let mut deps = vec![Vec::new(); actions.len()];
        for &(f, t, _) in &self.edges {
            if !deps[f].contains(&t) {
                deps[f].push(t);
            }
        }
        for cycle in cycles(&deps) {
            let n = cycle.len();
            let (f, t) = (cycle[n - 2], cycle[n - 1]);
            let pos = self
                .edges
                .iter()
                .find(|(a, b, _)| *a == f && *b == t)
                .map_or(Pos::START, |e| e.2);
            let path: Vec<&str> = cycle.iter().map(|&i| actions[i].id.as_str()).collect();
            r.error(
                pos,
                format!("dependency cycle: {}", path.join(" -> ")),
                "remove one of these dependencies \
                 (DependsOn entries, ${Action.Var} references or input artifacts)",
            );
        }
    }
}

/// All scalar values under `n` (not keys), skipping the given top-level
/// keys.
fn scalars<'n>(n: &'n Node, skip: &[&str], out: &mut Vec<&'n Node>) {
    match &n.value {
        yamlmap::Value::Scalar { .. } => out.push(n),
        yamlmap::Value::Seq(items) => items.iter().for_each(|i| scalars(i, &[], out)),
        yamlmap::Value::Map(entries) => {
            for e in entries {
                if e.key.as_str().is_some_and(|k| skip.contains(&k)) {
                    continue;
                }
                scalars(&e.value, &[], out);
            }
        }
    }
}
