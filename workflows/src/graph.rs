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

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Ids of the groups.
    groups: BTreeSet<&'a str>,
    /// (dependent, dependency, where it was first written), in the order
    /// written
    edge_list: Vec<(usize, usize, At)>,
    /// (dependent, dependency) → its index in `edge_list`
    edges: HashMap<(usize, usize), usize>,
    /// Set once the edge budget is spent (reported once).
    edges_full: bool,
}

/// Most dependency edges in one workflow (a `DependsOn` on a group adds an
/// edge to each of its actions, so group-to-group dependencies multiply).
pub(crate) const MAX_EDGES: usize = 50_000;

/// Where an edge or a finding was written: exactly, or as the scalar that
/// holds it plus the text to look for in the source (looked up only when
/// reported, so many references in one long scalar cost no rescans).
#[derive(Clone, Debug)]
enum At {
    Exact(Pos),
    Lazy(Pos, String),
}

impl At {
    fn pos(&self, r: &Reader) -> Pos {
        match self {
            At::Exact(p) => *p,
            At::Lazy(p, _) if r.is_full() => *p,
            At::Lazy(p, needle) => r.find_from(*p, needle),
        }
    }

    fn node_pos(&self) -> Pos {
        match self {
            At::Exact(p) | At::Lazy(p, _) => *p,
        }
    }
}

/// Most cycles reported with their path.
const MAX_CYCLES: usize = 20;

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
        let groups: BTreeSet<&str> = raws
            .iter()
            .filter(|x| x.action.is_none())
            .map(|x| x.id.as_str())
            .collect();
        let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for raw in raws {
            let entry = members.entry(raw.id.as_str()).or_default();
            let Some(i) = raw.action else { continue };
            entry.push(i);
            for depth in 1..=raw.group_path.len() {
                let gid = raw.group_path[..depth].join(".");
                if let Some(&group) = groups.get(gid.as_str()) {
                    members.entry(group).or_default().push(i);
                }
            }
        }
        Graph {
            raws,
            members,
            groups,
            edge_list: Vec::new(),
            edges: HashMap::new(),
            edges_full: false,
        }
    }

    fn is_group(&self, id: &str) -> bool {
        self.groups.contains(id)
    }

    /// False (with one error at `pos`) once the workflow has
    /// [`MAX_EDGES`] dependency edges.
    fn has_room(&mut self, r: &mut Reader, pos: Pos) -> bool {
        if self.edge_list.len() < MAX_EDGES {
            return true;
        }
        if !self.edges_full {
            self.edges_full = true;
            r.error(
                pos,
                format!("this workflow has more than {MAX_EDGES} dependencies between actions"),
                "depend on fewer actions or groups (a dependency on a group counts once per action in it)",
            );
        }
        false
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
        at: At,
    ) {
        if self.edges.contains_key(&(from, to)) {
            return;
        }
        self.edges.insert((from, to), self.edge_list.len());
        self.edge_list.push((from, to, at));
        let target = actions[to].id.clone();
        actions[from].depends_on.push(Dependency {
            action: target,
            via,
        });
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
                'pairs: for &f in &from {
                    for &t in &to {
                        if !self.has_room(r, item.pos) {
                            break 'pairs;
                        }
                        self.add(actions, f, t, via.clone(), At::Exact(item.pos));
                    }
                }
            }
        }
    }

    fn unknown_depends_on(&self, r: &mut Reader, raw: &Raw, item: &Node, name: &str) {
        let message = format!(
            "`{}` depends on `{name}`, which is not an action or action group",
            raw.id
        );
        if r.is_full() {
            // not stored: skip listing the siblings
            r.error(item.pos, message, "");
            return;
        }
        let siblings = self
            .raws
            .iter()
            .filter(|x| x.group_path == raw.group_path && x.id != raw.id)
            .map(|x| x.id.rsplit('.').next().unwrap_or(&x.id));
        let listed = crate::reader::list_names(siblings);
        r.error(
            item.pos,
            message,
            if listed.is_empty() {
                "remove the entry".to_string()
            } else {
                format!("names at this level: {listed}")
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
                        if self.has_room(r, item.pos) {
                            let via = DependencyReason::Artifact(name.to_string());
                            self.add(actions, i, p, via, At::Exact(item.pos));
                        }
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
                // the exact place is looked up only when it is reported
                let at = At::Lazy(node.pos, rf.text(text).to_string());
                match rf.scope {
                    "Secrets" => {
                        let s = SecretRef::Codecatalyst {
                            name: rf.name.to_string(),
                        };
                        if secrets.contains(&s) || secrets.len() > MAX_SECRETS_PER_ACTION {
                            continue;
                        }
                        secrets.push(s);
                        if secrets.len() == MAX_SECRETS_PER_ACTION + 1 {
                            r.error(
                                at.pos(r),
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
                                at.pos(r),
                                format!("unknown variable `{}`", rf.text(text)),
                                "WorkflowSource provides `${WorkflowSource.CommitId}` and \
                                 `${WorkflowSource.BranchName}`",
                            );
                        }
                    }
                    _ => self.output_reference(r, raw, i, actions, &rf, text, at),
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
        at: At,
    ) {
        let rtext = rf.text(text);
        let Some(target) = self.lookup(&raw.group_path, rf.scope) else {
            r.error(
                at.pos(r),
                format!("`{rtext}` refers to `{}`, which is not an action", rf.scope),
                "write `${Action.Variable}` or `${Group.Action.Variable}`; \
                 for a shell variable write `$NAME`",
            );
            return;
        };
        if self.is_group(&target) {
            r.error(
                at.pos(r),
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
                at.pos(r),
                format!("action `{}` refers to its own output `{rtext}`", raw.id),
                format!("inside the action use the shell variable `${}`", rf.name),
            );
            return;
        }
        if actions[t].kind.declares_outputs()
            && !actions[t].outputs.variables.iter().any(|v| v == rf.name)
        {
            r.error(
                at.pos(r),
                format!("`{rtext}`: action `{target}` does not export `{}`", rf.name),
                format!("add `{}` to `Outputs.Variables` of `{target}`", rf.name),
            );
        }
        if self.edges.contains_key(&(i, t)) || !self.has_room(r, at.node_pos()) {
            return;
        }
        self.add(
            actions,
            i,
            t,
            DependencyReason::Variable(rtext.to_string()),
            at,
        );
    }

    /// One error per cycle, at the edge that closes it.
    fn report_cycles(&self, r: &mut Reader, actions: &[Action]) {
        let mut deps = vec![Vec::new(); actions.len()];
        for &(f, t, _) in &self.edge_list {
            deps[f].push(t);
        }
        let (found, more) = cycles(&deps, MAX_CYCLES);
        for cycle in found {
            let n = cycle.len();
            let (f, t) = (cycle[n - 2], cycle[n - 1]);
            let pos = self
                .edges
                .get(&(f, t))
                .map_or(Pos::START, |&e| self.edge_list[e].2.pos(r));
            r.error(
                pos,
                format!("dependency cycle: {}", show_path(&cycle, actions)),
                "remove one of these dependencies \
                 (DependsOn entries, ${Action.Var} references or input artifacts)",
            );
        }
        if more > 0 {
            r.error(
                Pos::START,
                format!("and {more} more dependency cycles"),
                "break the cycles above first",
            );
        }
    }
}

/// A cycle for a message; a long one shows its ends.
fn show_path(cycle: &[usize], actions: &[Action]) -> String {
    const ENDS: usize = 8;
    let id = |i: &usize| actions[*i].id.as_str();
    if cycle.len() <= 2 * ENDS + 1 {
        return cycle.iter().map(id).collect::<Vec<_>>().join(" -> ");
    }
    format!(
        "{} -> … ({} more) … -> {}",
        cycle[..ENDS]
            .iter()
            .map(id)
            .collect::<Vec<_>>()
            .join(" -> "),
        cycle.len() - 2 * ENDS,
        cycle[cycle.len() - ENDS..]
            .iter()
            .map(id)
            .collect::<Vec<_>>()
            .join(" -> ")
    )
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
