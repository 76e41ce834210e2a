//! CodeCatalyst workflow YAML (`.codecatalyst/workflows/*.yaml`, design
//! notes §1) → [`Workflow`].
//!
//! Decisions where the reference leaves a choice (conformance `INDEX.md`):
//! - **Cross-level `DependsOn`** is accepted as an extension (AWS's local
//!   runner does): a name resolves to a sibling first, then outward level by
//!   level to the top; a warning says CodeCatalyst itself forbids it.
//! - **Implicit edges**: `${A.v}` references and `Inputs.Artifacts` add a
//!   dependency on the referenced/producing action (AWS runner behaviour).
//! - **Unknown `${A.v}`** is an error only for build/test actions, whose
//!   exports are exactly their `Outputs.Variables`; deploy, custom and
//!   third-party actions publish variables the file cannot declare.
//! - Action names need only be unique among siblings (real files repeat
//!   `deploy` in several groups); ids are `Group.Action`.

use yamlmap::{Node, Pos};

use crate::graph::{self, Raw};
use crate::model::*;
use crate::pattern::Pattern;
use crate::reader::{is_name, Reader};
use crate::yaml11::to_json;

mod action;
mod trigger_defs;

use action::action;
pub(crate) use trigger_defs::patterns;
use trigger_defs::triggers;

pub(crate) const TOP_KEYS: &[&str] = &[
    "Name",
    "SchemaVersion",
    "RunMode",
    "Compute",
    "Triggers",
    "Actions",
];
pub(crate) const ACTION_KEYS: &[&str] = &[
    "Identifier",
    "DependsOn",
    "Compute",
    "Timeout",
    "Environment",
    "Caching",
    "Inputs",
    "Outputs",
    "Configuration",
    "Packages",
];
pub(crate) const GROUP_KEYS: &[&str] = &["Actions", "DependsOn"];
pub(crate) const TRIGGER_KEYS: &[&str] =
    &["Type", "Events", "Branches", "FilesChanged", "Expression"];
const ON_DEMAND_FLEETS: &[&str] = &[
    "Linux.x86-64.Large",
    "Linux.x86-64.XLarge",
    "Linux.Arm64.Large",
    "Linux.Arm64.XLarge",
];
const REPORT_FORMATS: &[&str] = &[
    "JUNITXML",
    "CUCUMBERJSON",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "NUNITXML",
    "NUNIT3XML",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
    "LCOV",
    "ESLINTJSON",
    "PYLINTJSON",
    "SARIFSA",
    "SARIFSCA",
];
/// At most this many distinct secrets per action.
pub const MAX_SECRETS_PER_ACTION: usize = 5;

pub(crate) fn parse(r: &mut Reader, root: &Node, text: &str) -> Option<Workflow> {
    check_document_markers(r, text);
    r.map(root, "a workflow file")?;
    r.check_keys(root, TOP_KEYS, "the workflow");

    let name = r.required(root, "Name", "the workflow").and_then(|n| {
        let name = r.nonempty_text(n, "`Name`")?;
        check_name(r, n.pos, &name, "workflow `Name`");
        Some(name)
    });
    let schema_version = r
        .required(root, "SchemaVersion", "the workflow")
        .and_then(|n| {
            let v = r.text(n, "`SchemaVersion`")?;
            if v != "1.0" {
                r.error(
                    n.pos,
                    format!("unsupported `SchemaVersion` `{v}`"),
                    "the only valid value is `1.0`",
                );
            }
            Some(v)
        })
        .unwrap_or_default();
    let run_mode = root
        .get("RunMode")
        .and_then(|n| run_mode(r, n))
        .unwrap_or_default();
    let compute = root.get("Compute").and_then(|n| compute(r, n, true));
    let triggers = root
        .get("Triggers")
        .map(|n| triggers(r, n))
        .unwrap_or_default();

    let mut raws = Vec::new();
    let mut actions = Vec::new();
    if let Some(acts) = r.required(root, "Actions", "the workflow") {
        if acts.entries().is_empty() && r.map(acts, "`Actions`").is_some() {
            r.error(acts.pos, "`Actions` is empty", "define at least one action");
        }
        collect(r, acts, &[], &mut raws, &mut actions, compute.is_some());
    }

    graph::resolve(r, &raws, &mut actions);

    Some(Workflow {
        name: name.unwrap_or_default(),
        source_file: r.file.to_string(),
        format: Format::Codecatalyst,
        schema_version,
        run_mode,
        triggers,
        compute,
        actions,
        batch: None,
        fast_fail: false,
    })
}

/// "Do not use `---`: CodeCatalyst ignores everything after it." We read
/// only the first document (as CodeCatalyst does) and say so.
fn check_document_markers(r: &mut Reader, text: &str) {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            let pos = Pos::new(i + 1, 1);
            if seen_content {
                r.warn(
                    pos,
                    "everything after this `---` is ignored (CodeCatalyst reads only the first document)",
                    "remove the `---` line, or move the content above it",
                );
                return;
            }
            r.warn(
                pos,
                "CodeCatalyst workflows must not use `---`",
                "remove this line",
            );
            continue;
        }
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            seen_content = true;
        }
    }
}

fn check_name(r: &mut Reader, pos: Pos, name: &str, what: &str) {
    if !is_name(name) {
        r.error(
            pos,
            format!("{what} `{name}` contains characters other than letters, digits, `_` and `-`"),
            format!("rename it, e.g. `{}`", sanitize(name)),
        );
    }
}

fn sanitize(name: &str) -> String {
    let words: Vec<&str> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map(|w| w.trim_matches(['-', '_']))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        "Workflow".to_string()
    } else {
        words.join("_")
    }
}

fn run_mode(r: &mut Reader, n: &Node) -> Option<RunMode> {
    let t = r.text(n, "`RunMode`")?;
    match t.to_ascii_uppercase().as_str() {
        "QUEUED" => Some(RunMode::Queued),
        "SUPERSEDED" => Some(RunMode::Superseded),
        "PARALLEL" => Some(RunMode::Parallel),
        _ => {
            r.error(
                n.pos,
                format!("unknown `RunMode` `{t}`"),
                "use `QUEUED` (default), `SUPERSEDED` or `PARALLEL`",
            );
            None
        }
    }
}

fn compute(r: &mut Reader, n: &Node, workflow_level: bool) -> Option<Compute> {
    r.map(n, "`Compute`")?;
    let keys: &[&str] = if workflow_level {
        &["Type", "Fleet", "SharedInstance"]
    } else {
        &["Type", "Fleet"]
    };
    r.check_keys(n, keys, "`Compute`");
    let kind = r.required(n, "Type", "`Compute`").and_then(|t| {
        let text = r.text(t, "`Compute.Type`")?;
        match text.to_ascii_uppercase().as_str() {
            "EC2" => Some(ComputeType::Ec2),
            "LAMBDA" => Some(ComputeType::Lambda),
            _ => {
                r.error(
                    t.pos,
                    format!("unknown compute `Type` `{text}`"),
                    "use `EC2` or `Lambda`",
                );
                None
            }
        }
    });
    let fleet = n.get("Fleet").and_then(|f| {
        let name = r.nonempty_text(f, "`Compute.Fleet`")?;
        if let Some(known) = ON_DEMAND_FLEETS
            .iter()
            .find(|k| k.eq_ignore_ascii_case(&name) && **k != name)
        {
            r.error(
                f.pos,
                format!("fleet `{name}` is not an on-demand fleet (names are case-sensitive)"),
                format!("did you mean `{known}`?"),
            );
        }
        Some(name)
    });
    let shared_instance = n
        .get("SharedInstance")
        .and_then(|s| r.boolean(s, "`Compute.SharedInstance`"));
    Some(Compute {
        kind: kind?,
        fleet,
        shared_instance,
    })
}

/// Walk `Actions` (recursively through groups), creating actions.
fn collect<'n>(
    r: &mut Reader,
    actions_node: &'n Node,
    group_path: &[String],
    raws: &mut Vec<Raw<'n>>,
    actions: &mut Vec<Action>,
    workflow_compute: bool,
) {
    if r.map(actions_node, "`Actions`").is_none() {
        return;
    }
    for e in actions_node.entries() {
        let Some(name) = e.key.as_str() else {
            r.error(
                e.key.pos,
                "an action name must be a plain name",
                "write the name followed by `:`, e.g. `Build:`",
            );
            continue;
        };
        check_name(r, e.key.pos, name, "action name");
        let mut path = group_path.to_vec();
        let id = if group_path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", group_path.join("."))
        };
        if r.map(&e.value, &format!("action `{name}`")).is_none() {
            continue;
        }
        let has_identifier = e.value.get("Identifier").is_some();
        let has_actions = e.value.get("Actions").is_some();
        match (has_identifier, has_actions) {
            (true, _) => {
                if has_actions {
                    r.error(
                        e.value.get("Actions").map(|n| n.pos).unwrap_or(e.key.pos),
                        format!(
                            "`{name}` has both `Identifier` (an action) and `Actions` (a group)"
                        ),
                        "split it into an action and a group",
                    );
                }
                let idx = actions.len();
                actions.push(action(r, name, &id, group_path, &e.value, workflow_compute));
                raws.push(Raw {
                    id,
                    group_path: group_path.to_vec(),
                    node: &e.value,
                    key_pos: e.key.pos,
                    action: Some(idx),
                });
            }
            (false, true) => {
                r.check_keys(&e.value, GROUP_KEYS, &format!("action group `{name}`"));
                raws.push(Raw {
                    id: id.clone(),
                    group_path: group_path.to_vec(),
                    node: &e.value,
                    key_pos: e.key.pos,
                    action: None,
                });
                path.push(name.to_string());
                if let Some(inner) = e.value.get("Actions") {
                    if inner.entries().is_empty() {
                        r.error(
                            inner.pos,
                            format!("action group `{name}` has no actions"),
                            "add actions under its `Actions:` or remove the group",
                        );
                    }
                    collect(r, inner, &path, raws, actions, workflow_compute);
                }
            }
            (false, false) => r.error(
                e.key.pos,
                format!("`{name}` is neither an action nor an action group"),
                "an action needs `Identifier` (e.g. `aws/build@v1`); a group needs `Actions`",
            ),
        }
    }
}

fn kind_of(identifier: &str) -> Option<ActionKind> {
    if identifier == "." {
        return Some(ActionKind::Custom);
    }
    let (path, version) = identifier.split_once('@')?;
    let (owner, name) = path.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !ok(owner) || !ok(name) || !ok(version) {
        return None;
    }
    Some(match (owner, name) {
        ("aws", "build" | "build-beta") => ActionKind::Build,
        ("aws", "managed-test") => ActionKind::Test,
        ("aws", "github-actions-runner") => ActionKind::GithubActionsRunner,
        ("aws", "approval") => ActionKind::Approval,
        ("aws", _) => ActionKind::AwsManaged,
        _ => ActionKind::ThirdParty,
    })
}
