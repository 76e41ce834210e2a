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

fn triggers(r: &mut Reader, n: &Node) -> Vec<Trigger> {
    let Some(items) = r.seq(n, "`Triggers`") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut schedule_seen = false;
    for item in items {
        if r.map(item, "a trigger").is_none() {
            continue;
        }
        r.check_keys(item, TRIGGER_KEYS, "a trigger");
        let Some(type_node) = r.required(item, "Type", "this trigger") else {
            continue;
        };
        let Some(ty) = r.text(type_node, "trigger `Type`") else {
            continue;
        };
        let upper = ty.to_ascii_uppercase();
        let branches = item
            .get("Branches")
            .map(|b| patterns(r, b, "Branches"))
            .unwrap_or_default();
        let files_changed = item
            .get("FilesChanged")
            .map(|b| patterns(r, b, "FilesChanged"))
            .unwrap_or_default();
        let forbid = |r: &mut Reader, key: &str, why: &str| {
            if let Some(e) = item.entry(key) {
                r.error(
                    e.key.pos,
                    format!("`{key}` is not allowed in a {upper} trigger"),
                    why.to_string(),
                );
            }
        };
        match upper.as_str() {
            "PUSH" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                out.push(Trigger::Push {
                    branches,
                    files_changed,
                });
            }
            "PULLREQUEST" => {
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                let events = match item.get("Events") {
                    Some(ev) => pr_events(r, ev),
                    None => {
                        r.error(
                            item.pos,
                            "a PULLREQUEST trigger requires `Events`",
                            "add `Events: [OPEN, REVISION]` (or CLOSED)",
                        );
                        Vec::new()
                    }
                };
                out.push(Trigger::PullRequest {
                    events,
                    branches,
                    files_changed,
                });
            }
            "SCHEDULE" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(
                    r,
                    "FilesChanged",
                    "a schedule does not look at changed files",
                );
                if schedule_seen {
                    r.error(
                        type_node.pos,
                        "a workflow may have only one SCHEDULE trigger",
                        "merge the schedules into one cron expression or split the workflow",
                    );
                }
                schedule_seen = true;
                let expression = r
                    .required(item, "Expression", "a SCHEDULE trigger")
                    .and_then(|e| {
                        let text = r.nonempty_text(e, "`Expression`")?;
                        if let Err(why) = crate::cron::Cron::parse(&text) {
                            let pos = pattern_error_pos(r, e, &text, Some(why.offset));
                            r.error(
                                pos,
                                format!("invalid schedule `Expression` `{text}`: {why}"),
                                "use 6 fields `min hour day-of-month month day-of-week year` (UTC), with `?` in exactly one of day-of-month/day-of-week",
                            );
                        }
                        Some(text)
                    })
                    .unwrap_or_default();
                out.push(Trigger::Schedule {
                    expression,
                    branches,
                });
            }
            "MANUAL" => {
                forbid(r, "Events", "`Events` belongs to PULLREQUEST triggers");
                forbid(r, "Expression", "`Expression` belongs to SCHEDULE triggers");
                forbid(
                    r,
                    "FilesChanged",
                    "a manual run does not look at changed files",
                );
                out.push(Trigger::Manual);
            }
            _ => r.error(
                type_node.pos,
                format!("unknown trigger `Type` `{ty}`"),
                "use `PUSH`, `PULLREQUEST`, `SCHEDULE` or `MANUAL`",
            ),
        }
    }
    out
}

fn pr_events(r: &mut Reader, n: &Node) -> Vec<PullRequestEvent> {
    let Some(items) = r.seq(n, "`Events`") else {
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            n.pos,
            "`Events` is empty",
            "list at least one of OPEN, REVISION, CLOSED",
        );
    }
    let mut out = Vec::new();
    for item in items {
        let Some(t) = r.text(item, "an event") else {
            continue;
        };
        let ev = match t.to_ascii_uppercase().as_str() {
            "OPEN" => PullRequestEvent::Open,
            "REVISION" => PullRequestEvent::Revision,
            "CLOSED" => PullRequestEvent::Closed,
            "DRAFT" => PullRequestEvent::Draft,
            "MERGED" => PullRequestEvent::Merged,
            _ => {
                r.error(
                    item.pos,
                    format!("unknown pull request event `{t}`"),
                    "use OPEN, REVISION or CLOSED",
                );
                continue;
            }
        };
        if !out.contains(&ev) {
            out.push(ev);
        }
    }
    out
}

pub(crate) fn patterns(r: &mut Reader, n: &Node, key: &str) -> Vec<Pattern> {
    let Some(items) = r.seq(n, &format!("`{key}`")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(src) = r.nonempty_text(item, &format!("an entry of `{key}`")) else {
            continue;
        };
        match Pattern::new(&src) {
            Ok(p) => {
                if key == "FilesChanged" && src.ends_with('/') {
                    r.warn(
                        item.pos,
                        format!("`{src}` matches only the path `{src}` itself: FilesChanged entries are full-match regular expressions"),
                        format!("to match files below it write `{src}.*`"),
                    );
                }
                out.push(p);
            }
            Err(e) => {
                let help = if src.contains('*') && !src.contains(".*") {
                    format!(
                        "{key} entries are regular expressions, not globs: \
                         write `.*` for \"anything\" (e.g. `{}`)",
                        src.replace('*', ".*")
                    )
                } else {
                    format!("{key} entries are regular expressions matched against the whole name")
                };
                r.error(
                    pattern_error_pos(r, item, &src, e.offset),
                    format!("`{key}`: {e}"),
                    help,
                );
            }
        }
    }
    out
}

/// Where in the file the regex error is: inside the scalar when its text
/// appears verbatim on the scalar's first line, else the scalar itself.
fn pattern_error_pos(r: &Reader, item: &Node, src: &str, offset: Option<usize>) -> Pos {
    let Some(offset) = offset else {
        return item.pos;
    };
    let found = r.find_from(item.pos, src);
    let quote = usize::from(matches!(
        &item.value,
        yamlmap::Value::Scalar { plain: false, .. }
    ));
    if found.line == item.pos.line && found.column <= item.pos.column + quote {
        Pos::new(found.line, found.column + offset)
    } else {
        item.pos
    }
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

fn action(
    r: &mut Reader,
    name: &str,
    id: &str,
    group_path: &[String],
    n: &Node,
    workflow_compute: bool,
) -> Action {
    r.check_keys(n, ACTION_KEYS, &format!("action `{id}`"));
    let mut identifier = String::new();
    let mut kind = ActionKind::ThirdParty;
    if let Some(idn) = n.get("Identifier") {
        if let Some(t) = r.nonempty_text(idn, "`Identifier`") {
            match kind_of(&t) {
                Some(k) => kind = k,
                None => r.error(
                    idn.pos,
                    format!("`Identifier` `{t}` is not `owner/name@version` or `.`"),
                    "e.g. `aws/build@v1`, `aws/managed-test@v1.0.0`, or `.` for a custom action in this repository",
                ),
            }
            identifier = t;
        }
    }

    let action_compute = n.entry("Compute").and_then(|e| {
        if workflow_compute {
            r.error(
                e.key.pos,
                format!("action `{id}` sets `Compute` but the workflow already does"),
                "compute is set at workflow level or action level, not both: remove one",
            );
        }
        compute(r, &e.value, false)
    });
    let timeout_minutes = n
        .get("Timeout")
        .and_then(|t| r.positive(t, "`Timeout` (minutes)"));
    let environment = n.get("Environment").and_then(|e| environment(r, e));
    let caching = n.get("Caching").map(|c| caching(r, c)).unwrap_or_default();
    let mut packages = n.get("Packages").and_then(|p| read_packages(r, p));
    // AWS's own examples also put `Packages` under `Configuration`.
    if let Some(e) = n.get("Configuration").and_then(|c| c.entry("Packages")) {
        if kind.declares_outputs() {
            if packages.is_some() {
                r.error(
                    e.key.pos,
                    format!("action `{id}` sets `Packages` twice"),
                    "keep either the action-level `Packages` or `Configuration.Packages`",
                );
            } else {
                packages = read_packages(r, &e.value);
            }
        }
    }
    let inputs = n.get("Inputs").map(|i| inputs(r, i)).unwrap_or_default();
    let outputs = n.get("Outputs").map(|o| outputs(r, o)).unwrap_or_default();
    let configuration = configuration(r, n, kind, id);
    let gate = (kind == ActionKind::Approval).then(|| {
        let config = n
            .get("Configuration")
            .filter(|c| matches!(c.value, yamlmap::Value::Map(_)));
        crate::approval::read_gate(r, config, id)
    });

    Action {
        id: id.to_string(),
        name: name.to_string(),
        group_path: group_path.to_vec(),
        identifier,
        kind,
        depends_on: Vec::new(),
        inputs,
        outputs,
        configuration,
        compute: action_compute,
        timeout_minutes,
        environment,
        caching,
        packages,
        secrets: Vec::new(),
        gate,
        batch: None,
    }
}

/// `Packages` (npm package repositories, token export), kept as data.
fn read_packages(r: &mut Reader, p: &Node) -> Option<serde_json::Value> {
    r.map(p, "`Packages`")?;
    r.check_keys(
        p,
        &["NpmConfiguration", "ExportAuthorizationToken"],
        "`Packages`",
    );
    if let Some(b) = p.get("ExportAuthorizationToken") {
        r.boolean(b, "`ExportAuthorizationToken`");
    }
    let Some(npm) = p.get("NpmConfiguration") else {
        return Some(to_json(p));
    };
    if r.map(npm, "`NpmConfiguration`").is_some() {
        r.check_keys(npm, &["PackageRegistries"], "`NpmConfiguration`");
        let regs = npm.get("PackageRegistries");
        for reg in regs
            .and_then(|x| r.seq(x, "`PackageRegistries`"))
            .unwrap_or_default()
        {
            if r.map(reg, "a package registry").is_some() {
                r.check_keys(reg, &["PackagesRepository", "Scopes"], "a package registry");
                if let Some(repo) = r.required(reg, "PackagesRepository", "this package registry") {
                    r.nonempty_text(repo, "`PackagesRepository`");
                }
                if let Some(scopes) = reg.get("Scopes") {
                    r.text_list(scopes, "`Scopes`");
                }
            }
        }
    }
    Some(to_json(p))
}

fn environment(r: &mut Reader, n: &Node) -> Option<Environment> {
    r.map(n, "`Environment`")?;
    r.check_keys(n, &["Name", "Connections"], "`Environment`");
    let name = r
        .required(n, "Name", "`Environment`")
        .and_then(|x| r.nonempty_text(x, "`Environment.Name`"))
        .unwrap_or_default();
    let mut connections = Vec::new();
    if let Some(cs) = n.get("Connections") {
        for c in r.seq(cs, "`Connections`").unwrap_or_default() {
            if r.map(c, "a connection").is_none() {
                continue;
            }
            r.check_keys(c, &["Name", "Role"], "a connection");
            let name = r
                .required(c, "Name", "this connection")
                .and_then(|x| r.nonempty_text(x, "connection `Name`"));
            let role = r
                .required(c, "Role", "this connection")
                .and_then(|x| r.nonempty_text(x, "connection `Role`"));
            if let (Some(name), Some(role)) = (name, role) {
                connections.push(Connection { name, role });
            }
        }
    }
    Some(Environment { name, connections })
}

fn caching(r: &mut Reader, n: &Node) -> Vec<Cache> {
    let mut out = Vec::new();
    if r.map(n, "`Caching`").is_none() {
        return out;
    }
    r.check_keys(n, &["FileCaching"], "`Caching`");
    let Some(fc) = n.get("FileCaching") else {
        return out;
    };
    for e in r.map(fc, "`FileCaching`").unwrap_or_default() {
        let key = e.key.as_str().unwrap_or_default().to_string();
        if r.map(&e.value, &format!("cache `{key}`")).is_none() {
            continue;
        }
        r.check_keys(
            &e.value,
            &["Path", "RestoreKeys"],
            &format!("cache `{key}`"),
        );
        let Some(path) = r
            .required(&e.value, "Path", &format!("cache `{key}`"))
            .and_then(|p| r.nonempty_text(p, "`Path`"))
        else {
            continue;
        };
        let restore_keys = e
            .value
            .get("RestoreKeys")
            .map(|k| r.text_list(k, "`RestoreKeys`"))
            .unwrap_or_default();
        out.push(Cache {
            key: Some(key),
            paths: vec![path],
            restore_keys,
        });
    }
    out
}

fn inputs(r: &mut Reader, n: &Node) -> Inputs {
    let mut out = Inputs::default();
    if r.map(n, "`Inputs`").is_none() {
        return out;
    }
    r.check_keys(n, &["Sources", "Artifacts", "Variables"], "`Inputs`");
    if let Some(s) = n.get("Sources") {
        out.sources = r.text_list(s, "`Inputs.Sources`");
    }
    if let Some(a) = n.get("Artifacts") {
        out.artifacts = r.text_list(a, "`Inputs.Artifacts`");
    }
    if let Some(vs) = n.get("Variables") {
        for v in r.seq(vs, "`Inputs.Variables`").unwrap_or_default() {
            if r.map(v, "an input variable").is_none() {
                continue;
            }
            r.check_keys(v, &["Name", "Value"], "an input variable");
            let name = r
                .required(v, "Name", "this input variable")
                .and_then(|x| r.nonempty_text(x, "variable `Name`"));
            let value = r.required(v, "Value", "this input variable").and_then(|x| {
                if x.is_null() {
                    Some(String::new())
                } else {
                    r.text(x, "variable `Value`")
                }
            });
            if let (Some(name), Some(value)) = (name, value) {
                out.variables.push(Variable { name, value });
            }
        }
    }
    out
}

fn outputs(r: &mut Reader, n: &Node) -> Outputs {
    let mut out = Outputs::default();
    if r.map(n, "`Outputs`").is_none() {
        return out;
    }
    r.check_keys(
        n,
        &["Artifacts", "Variables", "AutoDiscoverReports", "Reports"],
        "`Outputs`",
    );
    if let Some(arts) = n.get("Artifacts") {
        for a in r.seq(arts, "`Outputs.Artifacts`").unwrap_or_default() {
            if r.map(a, "an output artifact").is_none() {
                continue;
            }
            r.check_keys(a, &["Name", "Files"], "an output artifact");
            let name = r.required(a, "Name", "this artifact").and_then(|x| {
                let t = r.nonempty_text(x, "artifact `Name`")?;
                check_name(r, x.pos, &t, "artifact name");
                Some(t)
            });
            let files = r
                .required(a, "Files", "this artifact")
                .map(|f| r.text_list(f, "`Files`"))
                .unwrap_or_default();
            if let Some(name) = name {
                out.artifacts.push(ArtifactOutput {
                    name,
                    files,
                    ..ArtifactOutput::default()
                });
            }
        }
    }
    if let Some(vs) = n.get("Variables") {
        out.variables = r.text_list(vs, "`Outputs.Variables`");
    }
    if let Some(adr) = n.get("AutoDiscoverReports") {
        if r.map(adr, "`AutoDiscoverReports`").is_some() {
            r.check_keys(
                adr,
                &[
                    "Enabled",
                    "ReportNamePrefix",
                    "IncludePaths",
                    "ExcludePaths",
                    "SuccessCriteria",
                ],
                "`AutoDiscoverReports`",
            );
            if let Some(en) = adr.get("Enabled") {
                r.boolean(en, "`Enabled`");
            }
            out.auto_discover_reports = Some(to_json(adr));
        }
    }
    if let Some(reports) = n.get("Reports") {
        for e in r.map(reports, "`Outputs.Reports`").unwrap_or_default() {
            let name = e.key.as_str().unwrap_or_default().to_string();
            let ctx = format!("report `{name}`");
            if r.map(&e.value, &ctx).is_none() {
                continue;
            }
            r.check_keys(
                &e.value,
                &["Format", "IncludePaths", "ExcludePaths", "SuccessCriteria"],
                &ctx,
            );
            let format = r
                .required(&e.value, "Format", &ctx)
                .and_then(|f| {
                    let t = r.text(f, "`Format`")?;
                    let upper = t.to_ascii_uppercase();
                    if !REPORT_FORMATS.contains(&upper.as_str()) {
                        r.error(
                            f.pos,
                            format!("unknown report `Format` `{t}`"),
                            format!("use one of {}", REPORT_FORMATS.join(", ")),
                        );
                    }
                    Some(upper)
                })
                .unwrap_or_default();
            let files = e
                .value
                .get("IncludePaths")
                .map(|f| r.text_list(f, "`IncludePaths`"))
                .unwrap_or_default();
            let exclude_paths = e
                .value
                .get("ExcludePaths")
                .map(|f| r.text_list(f, "`ExcludePaths`"))
                .unwrap_or_default();
            out.reports.push(Report {
                name,
                format,
                files,
                exclude_paths,
                base_directory: None,
                discard_paths: false,
                success_criteria: e.value.get("SuccessCriteria").map(to_json),
            });
        }
    }
    out
}

fn configuration(r: &mut Reader, action: &Node, kind: ActionKind, id: &str) -> Configuration {
    let mut out = Configuration::default();
    let Some(n) = action.get("Configuration") else {
        if kind.declares_outputs() {
            r.error(
                action.pos,
                format!("build/test action `{id}` has no `Configuration`"),
                "add `Configuration: {Steps: [{Run: …}]}`",
            );
        }
        return out;
    };
    if r.map(n, "`Configuration`").is_none() {
        return out;
    }
    match kind {
        ActionKind::Build | ActionKind::Test => {
            r.check_keys(
                n,
                &["Steps", "Container", "Packages"],
                &format!("`Configuration` of build/test action `{id}`"),
            );
            match n.get("Steps") {
                None => r.error(
                    n.pos,
                    format!("build/test action `{id}` has no `Steps`"),
                    "add `Steps:` with one `- Run: <command>` per step",
                ),
                Some(steps) => {
                    for s in r.seq(steps, "`Steps`").unwrap_or_default() {
                        if r.map(s, "a step").is_none() {
                            continue;
                        }
                        r.check_keys(s, &["Run"], "a step");
                        if let Some(run) = r.required(s, "Run", "this step") {
                            if let Some(command) = r.nonempty_text(run, "`Run`") {
                                out.steps.push(Step::Run { command });
                            }
                        }
                    }
                }
            }
            if let Some(c) = n.get("Container") {
                out.container = container(r, c);
            }
        }
        ActionKind::GithubActionsRunner => {
            for e in n.entries() {
                let key = e.key.as_str().unwrap_or_default();
                if key == "Steps" {
                    for s in r.seq(&e.value, "`Steps`").unwrap_or_default() {
                        out.steps.push(Step::Github { step: to_json(s) });
                    }
                } else {
                    out.other.insert(key.to_string(), to_json(&e.value));
                }
            }
        }
        _ => {
            for e in n.entries() {
                let key = e.key.as_str().unwrap_or_default();
                out.other.insert(key.to_string(), to_json(&e.value));
            }
        }
    }
    out
}

fn container(r: &mut Reader, n: &Node) -> Option<Container> {
    r.map(n, "`Container`")?;
    r.check_keys(n, &["Registry", "Image"], "`Container`");
    let registry = r.required(n, "Registry", "`Container`").and_then(|x| {
        let t = r.text(x, "`Registry`")?;
        let canon = ["CODECATALYST", "ECR", "DockerHub"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(&t));
        if canon.is_none() {
            r.error(
                x.pos,
                format!("unknown `Registry` `{t}`"),
                "use `CODECATALYST`, `ECR` or `DockerHub`",
            );
        }
        canon.map(str::to_string)
    });
    let image = r
        .required(n, "Image", "`Container`")
        .and_then(|x| r.nonempty_text(x, "`Image`"));
    Some(Container {
        registry: registry?,
        image: image?,
    })
}
