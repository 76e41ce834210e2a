//! One CodeCatalyst action: identifier, environment, caching, inputs,
//! outputs, packages and its `Configuration`.

use super::*;

pub(super) fn action(
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
