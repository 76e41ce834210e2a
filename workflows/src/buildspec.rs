//! CodeBuild buildspec 0.2 (design notes §2) → a [`Workflow`] with one
//! action whose steps are the phases (see [`Step`] for the execution
//! semantics).
//!
//! Decisions where the reference leaves a choice (conformance `INDEX.md`):
//! - `version` is read as text: `0.2` unquoted (a YAML float) and `'0.2'`
//!   are the same; `0.1` (every command in its own shell) is refused.
//! - `env.exported-variables` written as a single value is read as a
//!   one-element list, with a warning.
//! - `artifacts` with only `secondary-artifacts` (no `files`) is accepted
//!   with a warning that there is no primary artifact.
//! - `secrets-manager` and `parameter-store` values are literal (`$X` in a
//!   secret id is not expanded).
//! - `batch` is read by [`crate::batch`] (unknown keys inside it are
//!   warnings); a batch-only buildspec (no `phases`) parses with no actions
//!   here, and [`crate::validate_for_cove`] expands its builds.

use std::collections::BTreeMap;

use yamlmap::{Node, Pos};

use crate::model::*;
use crate::pattern::Pattern;
use crate::reader::{show, Reader};
use crate::yaml11::to_json;

pub(crate) const TOP_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];
pub(crate) const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
];
pub(crate) const PHASE_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];
pub(crate) const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
pub(crate) const REPORT_KEYS: &[&str] =
    &["files", "base-directory", "discard-paths", "file-format"];
const REPORT_FORMATS: &[&str] = &[
    "JUNITXML",
    "CUCUMBERJSON",
    "NUNITXML",
    "NUNIT3XML",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];
pub(crate) const CACHE_KEYS: &[&str] = &["paths", "key", "fallback-keys", "action"];
const SHELLS: &[&str] = &[
    "bash",
    "sh",
    "/bin/sh",
    "/bin/bash",
    "powershell.exe",
    "pwsh.exe",
    "cmd.exe",
];

/// The id of the single action a buildspec becomes.
pub const BUILDSPEC_ACTION: &str = "buildspec";

/// The workflow, and the `batch` section when there is one.
pub(crate) fn parse(
    r: &mut Reader,
    root: &Node,
    text: &str,
) -> Option<(Workflow, Option<crate::batch::Spec>)> {
    check_later_documents(r, text);
    r.map(root, "a buildspec")?;
    r.check_keys(root, TOP_KEYS, "the buildspec");

    let version = r
        .required(root, "version", "the buildspec")
        .and_then(|v| {
            let t = r.text(v, "`version`")?;
            match t.as_str() {
                "0.2" => {}
                "0.1" => r.error(
                    v.pos,
                    "buildspec version 0.1 is not supported",
                    "use `version: 0.2` (0.1 runs every command in its own shell, without state carry-over)",
                ),
                _ => r.error(v.pos, format!("unknown buildspec version `{t}`"), "use `version: 0.2`"),
            }
            Some(t)
        })
        .unwrap_or_default();

    let mut configuration = Configuration {
        run_as: root
            .get("run-as")
            .and_then(|n| r.nonempty_text(n, "`run-as`")),
        ..Configuration::default()
    };
    let mut inputs = Inputs {
        sources: vec!["WorkflowSource".to_string()],
        ..Inputs::default()
    };
    let mut outputs = Outputs::default();
    let mut secrets = Vec::new();

    if let Some(env) = root.get("env") {
        read_env(
            r,
            env,
            &mut configuration,
            &mut inputs,
            &mut outputs,
            &mut secrets,
        );
    }
    if let Some(proxy) = root.get("proxy") {
        if r.map(proxy, "`proxy`").is_some() {
            r.check_keys(proxy, &["upload-artifacts", "logs"], "`proxy`");
            for e in proxy.entries() {
                r.boolean(&e.value, &format!("`proxy.{}`", show(&e.key)));
            }
            configuration
                .other
                .insert("proxy".to_string(), to_json(proxy));
        }
    }
    match root.get("phases") {
        Some(phases) => configuration.steps = read_phases(r, phases),
        None if root.get("batch").is_some() => {}
        None => r.error(
            root.pos,
            "the buildspec has no `phases`",
            "add `phases:` with at least `build: {commands: [...]}`",
        ),
    }
    if let Some(a) = root.get("artifacts") {
        read_artifacts(r, a, &mut outputs);
    }
    if let Some(reports) = root.get("reports") {
        read_reports(r, reports, &mut outputs);
    }
    let caching = root
        .get("cache")
        .and_then(|c| read_cache(r, c))
        .into_iter()
        .collect();
    let spec = root
        .entry("batch")
        .and_then(|e| crate::batch::read(r, e.key.pos, &e.value));
    let batch = root.get("batch").map(to_json);
    let batch_only = root.get("phases").is_none() && batch.is_some();

    let mut workflow = Workflow {
        name: String::new(),
        source_file: r.file.to_string(),
        format: Format::Buildspec,
        schema_version: version,
        run_mode: RunMode::Queued,
        triggers: Vec::new(),
        compute: None,
        actions: vec![Action {
            id: BUILDSPEC_ACTION.to_string(),
            name: BUILDSPEC_ACTION.to_string(),
            group_path: Vec::new(),
            identifier: "buildspec@0.2".to_string(),
            kind: ActionKind::Build,
            depends_on: Vec::new(),
            inputs,
            outputs,
            configuration,
            compute: None,
            timeout_minutes: None,
            environment: None,
            caching,
            packages: None,
            secrets,
            gate: None,
            batch: None,
        }],
        batch,
        fast_fail: false,
    };
    if batch_only {
        // The builds become the actions (`validate_for_cove`).
        workflow.actions.clear();
    }
    Some((workflow, spec))
}

/// A leading `---` is legal; later documents are ignored.
fn check_later_documents(r: &mut Reader, text: &str) {
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") {
            if seen_content {
                r.warn(
                    Pos::new(i + 1, 1),
                    "everything after this `---` is ignored (only the first YAML document is read)",
                    "remove the `---` line or move the content above it",
                );
                return;
            }
            continue;
        }
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            seen_content = true;
        }
    }
}

fn env_name_ok(r: &mut Reader, key: &Node, name: &str) {
    if name.starts_with("CODEBUILD_") {
        r.error(
            key.pos,
            format!("environment variable `{name}` uses the reserved `CODEBUILD_` prefix"),
            "rename it",
        );
    }
}

fn read_env(
    r: &mut Reader,
    env: &Node,
    configuration: &mut Configuration,
    inputs: &mut Inputs,
    outputs: &mut Outputs,
    secrets: &mut Vec<SecretRef>,
) {
    if r.map(env, "`env`").is_none() {
        return;
    }
    r.check_keys(env, ENV_KEYS, "`env`");
    if let Some(shell) = env.get("shell") {
        if let Some(t) = r.nonempty_text(shell, "`env.shell`") {
            if !SHELLS.contains(&t.as_str()) {
                r.warn(
                    shell.pos,
                    format!("unusual `env.shell` `{t}`"),
                    "CodeBuild supports bash and /bin/sh on Linux, powershell.exe and cmd.exe on Windows",
                );
            }
            configuration.shell = Some(t);
        }
    }
    if let Some(vars) = env.get("variables") {
        for e in r.map(vars, "`env.variables`").unwrap_or_default() {
            let Some(name) = e.key.as_str() else { continue };
            env_name_ok(r, &e.key, name);
            let value = if e.value.is_null() {
                Some(String::new())
            } else {
                r.text(&e.value, &format!("`env.variables.{name}`"))
            };
            if let Some(value) = value {
                inputs.variables.push(Variable {
                    name: name.to_string(),
                    value,
                });
            }
        }
    }
    if let Some(ps) = env.get("parameter-store") {
        for e in r.map(ps, "`env.parameter-store`").unwrap_or_default() {
            let Some(name) = e.key.as_str() else { continue };
            env_name_ok(r, &e.key, name);
            if let Some(parameter) = r.nonempty_text(&e.value, "a parameter name") {
                secrets.push(SecretRef::ParameterStore {
                    env: name.to_string(),
                    parameter,
                });
            }
        }
    }
    if let Some(sm) = env.get("secrets-manager") {
        for e in r.map(sm, "`env.secrets-manager`").unwrap_or_default() {
            let Some(name) = e.key.as_str() else { continue };
            env_name_ok(r, &e.key, name);
            if let Some(reference) = r.nonempty_text(&e.value, "a secret reference") {
                secrets.push(secrets_manager(name, &reference));
            }
        }
    }
    if let Some(ev) = env.get("exported-variables") {
        let names = if let Some(t) = ev.as_str().filter(|_| !ev.is_null()) {
            r.warn(
                ev.pos,
                "`exported-variables` should be a list",
                format!("write `exported-variables: [{t}]`; read as a one-element list"),
            );
            vec![t.to_string()]
        } else {
            r.text_list(ev, "`env.exported-variables`")
        };
        for (i, n) in names.iter().enumerate() {
            if n.starts_with("AWS_") || n.starts_with("CODEBUILD_") {
                let pos = ev.items().get(i).map(|x| x.pos).unwrap_or(ev.pos);
                r.error(
                    pos,
                    format!("`{n}` cannot be exported (reserved prefix)"),
                    "rename the variable",
                );
            }
        }
        outputs.variables = names;
    }
    if let Some(g) = env.get("git-credential-helper") {
        configuration.git_credential_helper = r.boolean(g, "`env.git-credential-helper`");
    }
}

/// `secret-id[:json-key[:version-stage[:version-id]]]`; an ARN secret id
/// keeps its own colons.
fn secrets_manager(env: &str, reference: &str) -> SecretRef {
    let parts: Vec<&str> = reference.split(':').collect();
    let id_len = if reference.starts_with("arn:") {
        7.min(parts.len())
    } else {
        1
    };
    let secret_id = parts[..id_len].join(":");
    let rest = &parts[id_len..];
    let part = |i: usize| rest.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
    SecretRef::SecretsManager {
        env: env.to_string(),
        secret_id,
        json_key: part(0),
        version_stage: part(1),
        version_id: part(2),
    }
}

fn read_phases(r: &mut Reader, phases: &Node) -> Vec<Step> {
    let mut steps = Vec::new();
    if r.map(phases, "`phases`").is_none() {
        return steps;
    }
    let keys: Vec<&str> = PhaseName::ALL.iter().map(|p| p.key()).collect();
    r.check_keys(phases, &keys, "`phases`");
    for name in PhaseName::ALL {
        let Some(entry) = phases.entry(name.key()) else {
            continue;
        };
        let n = &entry.value;
        let ctx = format!("phase `{}`", name.key());
        if r.map(n, &ctx).is_none() {
            continue;
        }
        r.check_keys(n, PHASE_KEYS, &ctx);
        let run_as = n.get("run-as").and_then(|x| r.nonempty_text(x, "`run-as`"));
        let on_failure = n.get("on-failure").and_then(|x| {
            let t = r.text(x, "`on-failure`")?;
            match parse_on_failure(&t) {
                Ok(of) => Some(of),
                Err(why) => {
                    r.error(
                        x.pos,
                        format!("invalid `on-failure` `{t}`: {why}"),
                        "use ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>",
                    );
                    None
                }
            }
        });
        let mut runtime_versions = BTreeMap::new();
        if let Some(rv) = n.entry("runtime-versions") {
            if name != PhaseName::Install {
                r.error(
                    rv.key.pos,
                    format!(
                        "`runtime-versions` is only allowed in the install phase, not in `{}`",
                        name.key()
                    ),
                    "move it under `phases.install`",
                );
            }
            for e in r.map(&rv.value, "`runtime-versions`").unwrap_or_default() {
                let Some(lang) = e.key.as_str() else { continue };
                if let Some(v) = r.nonempty_text(&e.value, &format!("runtime version of `{lang}`"))
                {
                    runtime_versions.insert(lang.to_string(), v);
                }
            }
        }
        let commands = n
            .get("commands")
            .map(|c| read_commands(r, c, "commands"))
            .unwrap_or_default();
        let finally = n
            .get("finally")
            .map(|c| read_commands(r, c, "finally"))
            .unwrap_or_default();
        steps.push(Step::Phase(Phase {
            name,
            run_as,
            on_failure,
            runtime_versions,
            commands,
            finally,
        }));
    }
    steps
}

fn read_commands(r: &mut Reader, n: &Node, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in r.seq(n, &format!("`{key}`")).unwrap_or_default() {
        match &item.value {
            yamlmap::Value::Scalar { text, .. } if !item.is_null() => out.push(text.clone()),
            yamlmap::Value::Map(_) => r.error(
                item.pos,
                "this command was read as a mapping because it contains `: `",
                "quote the whole command, e.g. `- \"echo a: b\"`",
            ),
            _ => r.error(
                item.pos,
                "a command must be a single line or block of text",
                "write the command as text, e.g. `- make test`; remove empty `-` entries",
            ),
        }
    }
    out
}

/// Why an `on-failure` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OnFailureError(pub String);

/// Parse a phase's `on-failure` (keywords case-insensitive).
pub fn parse_on_failure(text: &str) -> Result<OnFailure, OnFailureError> {
    on_failure(text).map_err(OnFailureError)
}

fn on_failure(text: &str) -> Result<OnFailure, String> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "ABORT" => return Ok(OnFailure::Abort),
        "CONTINUE" => return Ok(OnFailure::Continue),
        "RETRY" => {
            return Ok(OnFailure::Retry {
                count: None,
                regex: None,
            })
        }
        _ => {}
    }
    if !upper.starts_with("RETRY-") {
        return Err("expected ABORT, CONTINUE or a RETRY form".to_string());
    }
    let rest = &text["RETRY-".len()..];
    let (count, regex) = match rest.split_once('-') {
        Some((n, re)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(n), Some(re))
        }
        _ if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) => (Some(rest), None),
        _ => (None, Some(rest)),
    };
    let count = match count {
        Some(n) => Some(
            n.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("retry count `{n}` must be a positive number"))?,
        ),
        None => None,
    };
    if let Some(re) = regex {
        if re.is_empty() {
            return Err("empty retry regular expression".to_string());
        }
        Pattern::new(re).map_err(|e| e.to_string())?;
    }
    Ok(OnFailure::Retry {
        count,
        regex: regex.map(str::to_string),
    })
}

fn artifact(r: &mut Reader, n: &Node, name: &str, secondary: bool) -> Option<ArtifactOutput> {
    let ctx = if secondary {
        format!("secondary artifact `{name}`")
    } else {
        "`artifacts`".to_string()
    };
    r.map(n, &ctx)?;
    let keys = if secondary {
        &ARTIFACT_KEYS[..7]
    } else {
        ARTIFACT_KEYS
    };
    r.check_keys(n, keys, &ctx);
    let files = n
        .get("files")
        .map(|f| r.text_list(f, "`files`"))
        .unwrap_or_default();
    let text = |r: &mut Reader, key: &str| {
        n.get(key)
            .and_then(|x| r.nonempty_text(x, &format!("`{key}`")))
    };
    let name_template = text(r, "name");
    let base_directory = text(r, "base-directory");
    let s3_prefix = text(r, "s3-prefix");
    let discard_paths = n
        .get("discard-paths")
        .and_then(|x| r.boolean(x, "`discard-paths`"))
        .unwrap_or(false);
    let enable_symlinks = n
        .get("enable-symlinks")
        .and_then(|x| r.boolean(x, "`enable-symlinks`"));
    let exclude_paths = n
        .get("exclude-paths")
        .map(|x| r.text_list(x, "`exclude-paths`"))
        .unwrap_or_default();
    Some(ArtifactOutput {
        name: name.to_string(),
        files,
        name_template,
        base_directory,
        discard_paths,
        exclude_paths,
        enable_symlinks,
        s3_prefix,
    })
}

fn read_artifacts(r: &mut Reader, n: &Node, outputs: &mut Outputs) {
    let Some(primary) = artifact(r, n, "primary", false) else {
        return;
    };
    let has_files = n.get("files").is_some();
    let secondary = n.get("secondary-artifacts");
    if has_files {
        if primary.files.is_empty() {
            r.error(
                n.pos,
                "`artifacts.files` is empty",
                "list at least one glob, e.g. `'**/*'`",
            );
        }
        outputs.artifacts.push(primary);
    } else if secondary.is_some() {
        r.warn(
            n.pos,
            "`artifacts` has no `files`: there is no primary artifact, only secondary artifacts",
            "add `files:` if the project expects a primary artifact",
        );
    } else {
        r.error(
            n.pos,
            "`artifacts` requires `files`",
            "add `files:` with one glob per line, e.g. `- '**/*'`",
        );
    }
    if let Some(sec) = secondary {
        for e in r.map(sec, "`secondary-artifacts`").unwrap_or_default() {
            let Some(id) = e.key.as_str() else { continue };
            if let Some(a) = artifact(r, &e.value, id, true) {
                if e.value.get("files").is_none() {
                    r.error(
                        e.value.pos,
                        format!("secondary artifact `{id}` requires `files`"),
                        "add `files:`",
                    );
                }
                outputs.artifacts.push(a);
            }
        }
    }
}

fn read_reports(r: &mut Reader, n: &Node, outputs: &mut Outputs) {
    for e in r.map(n, "`reports`").unwrap_or_default() {
        let Some(name) = e.key.as_str() else { continue };
        let ctx = format!("report group `{name}`");
        if r.map(&e.value, &ctx).is_none() {
            continue;
        }
        r.check_keys(&e.value, REPORT_KEYS, &ctx);
        let files = r
            .required(&e.value, "files", &ctx)
            .map(|f| r.text_list(f, "`files`"))
            .unwrap_or_default();
        let format = match e.value.get("file-format") {
            None => "JUNITXML".to_string(),
            Some(f) => {
                let t = r
                    .text(f, "`file-format`")
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if !REPORT_FORMATS.contains(&t.as_str()) {
                    r.error(
                        f.pos,
                        format!("unknown report `file-format` `{}`", show(f)),
                        format!("use one of {}", REPORT_FORMATS.join(", ")),
                    );
                }
                t
            }
        };
        outputs.reports.push(Report {
            name: name.to_string(),
            format,
            files,
            exclude_paths: Vec::new(),
            base_directory: e
                .value
                .get("base-directory")
                .and_then(|x| r.nonempty_text(x, "`base-directory`")),
            discard_paths: e
                .value
                .get("discard-paths")
                .and_then(|x| r.boolean(x, "`discard-paths`"))
                .unwrap_or(false),
            success_criteria: None,
        });
    }
}

fn read_cache(r: &mut Reader, n: &Node) -> Option<Cache> {
    r.map(n, "`cache`")?;
    r.check_keys(n, CACHE_KEYS, "`cache`");
    let paths = n
        .get("paths")
        .map(|p| r.text_list(p, "`cache.paths`"))
        .unwrap_or_default();
    let key = n.get("key").and_then(|k| r.nonempty_text(k, "`cache.key`"));
    let restore_keys = n
        .get("fallback-keys")
        .map(|k| r.text_list(k, "`cache.fallback-keys`"))
        .unwrap_or_default();
    if let Some(a) = n.get("action") {
        if let Some(t) = r.text(a, "`cache.action`") {
            if !matches!(t.as_str(), "restore" | "save") {
                r.error(
                    a.pos,
                    format!("unknown `cache.action` `{t}`"),
                    "use `restore` or `save`",
                );
            }
        }
    }
    Some(Cache {
        key,
        paths,
        restore_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_forms() {
        assert_eq!(parse_on_failure("ABORT"), Ok(OnFailure::Abort));
        assert_eq!(parse_on_failure("continue"), Ok(OnFailure::Continue));
        assert_eq!(
            parse_on_failure("RETRY"),
            Ok(OnFailure::Retry {
                count: None,
                regex: None
            })
        );
        assert_eq!(
            parse_on_failure("RETRY-2"),
            Ok(OnFailure::Retry {
                count: Some(2),
                regex: None
            })
        );
        assert_eq!(
            parse_on_failure("RETRY-3-.*timeout.*"),
            Ok(OnFailure::Retry {
                count: Some(3),
                regex: Some(".*timeout.*".into())
            })
        );
        assert_eq!(
            parse_on_failure("RETRY-Error: rate.*"),
            Ok(OnFailure::Retry {
                count: None,
                regex: Some("Error: rate.*".into())
            })
        );
        // the regex keeps its case even though the keyword is matched case-insensitively
        assert_eq!(
            parse_on_failure("retry-1-Conn"),
            Ok(OnFailure::Retry {
                count: Some(1),
                regex: Some("Conn".into())
            })
        );
        assert!(parse_on_failure("STOP").is_err());
        assert!(parse_on_failure("RETRY-0").is_err());
        assert!(parse_on_failure("RETRY-2-(")
            .unwrap_err()
            .0
            .contains("unclosed group"));
        assert!(parse_on_failure("RETRY-").is_err());
    }

    #[test]
    fn secrets_manager_references() {
        assert_eq!(
            secrets_manager("K", "npm/bot/2FA:OTP_SECRET_KEY"),
            SecretRef::SecretsManager {
                env: "K".into(),
                secret_id: "npm/bot/2FA".into(),
                json_key: Some("OTP_SECRET_KEY".into()),
                version_stage: None,
                version_id: None,
            }
        );
        let SecretRef::SecretsManager {
            secret_id,
            json_key,
            version_stage,
            ..
        } = secrets_manager(
            "K",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password:AWSCURRENT",
        )
        else {
            unreachable!()
        };
        assert_eq!(
            secret_id,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
        );
        assert_eq!(json_key.as_deref(), Some("password"));
        assert_eq!(version_stage.as_deref(), Some("AWSCURRENT"));
    }
}
