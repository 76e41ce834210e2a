//! `workflows` — Cove's reader for CI workflow files: CodeCatalyst workflow
//! YAML (`.codecatalyst/workflows/*.yaml`) and CodeBuild buildspec 0.2, both
//! turned into one normalized [`Workflow`] model, plus the pure logic built
//! on it: validation, trigger matching ([`Workflow::matches_push`] …), the
//! interpolation boundary ([`interpolate()`]) and run scheduling
//! ([`RunPlan`]).
//!
//! Owns: the workflow model, its validation rules and their diagnostics
//! (every error carries `file:line:col` and says what to change), and the
//! documented execution semantics ([`Step`]) that the agent implements.
//!
//! Architecture invariant: this crate is pure. It must not depend on IO
//! (no filesystem, no network, no clock, no process spawning), async
//! runtimes, Docker, HTTP, or any other Cove crate except `yamlmap`. Callers
//! pass text in and get values out; warnings are returned, never printed.
//!
//! Reference: `shared/design/workflows.md` §1, §2, §6; conformance corpus
//! `shared/conformance/workflows/` (tested in `tests/conformance.rs`).
//!
//! ```
//! use std::collections::BTreeSet;
//! use workflows::{interpolate, validate_file, Context, RunPlan, Step, Target};
//!
//! let text = r#"
//! Name: ci
//! SchemaVersion: "1.0"
//! Triggers:
//!   - Type: Push
//!     Branches: [main, "release/.*"]
//! Actions:
//!   Build:
//!     Identifier: aws/build@v1
//!     Outputs: {Variables: [VERSION]}
//!     Configuration:
//!       Steps:
//!         - Run: VERSION=1.2.3
//!   Deploy:
//!     Identifier: aws/build@v1
//!     Configuration:
//!       Steps:
//!         - Run: ./deploy.sh ${Build.VERSION} $HOME
//! "#;
//! let (workflow, warnings) = validate_file("ci.yaml", text).expect("valid");
//! assert!(warnings.is_empty());
//! assert!(workflow.matches_push("release/1.0", &[]));
//! assert!(!workflow.matches_push("my-release/1.0", &[]), "full match");
//!
//! // `${Build.VERSION}` made Deploy depend on Build.
//! let plan = RunPlan::new(&workflow).expect("no cycle");
//! assert_eq!(plan.ready(&BTreeSet::new()), vec!["Build"]);
//!
//! let deploy = workflow.action("Deploy").expect("declared");
//! let mut ctx = Context::for_action(deploy, Target::Shell);
//! ctx.outputs.insert("Build".into(), [("VERSION".to_string(), "1.2.3".to_string())].into());
//! let Step::Run { command } = &deploy.configuration.steps[0] else { unreachable!() };
//! assert_eq!(interpolate(command, &ctx).expect("resolvable"), "./deploy.sh 1.2.3 $HOME");
//! ```

pub mod approval;
pub mod batch;
mod buildspec;
mod codecatalyst;
pub mod cron;
pub mod fleet;
mod graph;
pub mod interpolate;
mod model;
pub mod pattern;
pub mod plan;
mod reader;
pub mod reports;
pub mod support;
mod triggers;
pub mod yaml11;

pub use batch::{BuildspecReader, NoBuildspecs, ReadError};
pub use buildspec::{parse_on_failure, OnFailureError, BUILDSPEC_ACTION};
pub use codecatalyst::MAX_SECRETS_PER_ACTION;
pub use cron::{Cron, CronError};
pub use interpolate::{interpolate, Context, InterpolateError, Target};
pub use model::*;
pub use pattern::{Pattern, PatternError};
pub use plan::{ActionState, CycleError, RunPlan, RunProgress};
pub use yamlmap::{Diagnostic, Severity};

use reader::Reader;

/// What [`validate_file`] returns on success: the workflow and its
/// warnings.
pub type Validated = (Workflow, Vec<Diagnostic>);

/// Which format a document is, judged by its top-level keys.
fn detect(root: &yamlmap::Node) -> Option<Format> {
    let has = |k: &str| root.get(k).is_some();
    if has("SchemaVersion") || has("Actions") {
        Some(Format::Codecatalyst)
    } else if has("version") || has("phases") {
        Some(Format::Buildspec)
    } else if has("Name") || has("Triggers") {
        Some(Format::Codecatalyst)
    } else {
        None
    }
}

/// Parse and validate one workflow file.
///
/// The format is detected from the content: a buildspec has `version` and
/// `phases`; a CodeCatalyst workflow has `SchemaVersion` and `Actions`.
/// `path_display` is used in diagnostics and as [`Workflow::source_file`];
/// a buildspec's workflow name is its file stem.
///
/// On success returns the workflow and its warnings; otherwise every error
/// found (and the warnings), sorted by position.
///
/// A batch-only buildspec (`batch` without `phases`) is valid here with no
/// actions: its builds need the files they name ([`validate_for_cove_with`]).
pub fn validate_file(path_display: &str, text: &str) -> Result<Validated, Vec<Diagnostic>> {
    validate(path_display, text, false, None)
}

/// [`validate_file`], then what Cove does with the constructs used
/// ([`support`]): a construct Cove would not run with its documented meaning
/// is an error `not supported by Cove: …` at its position, one that runs
/// with a difference a warning. Servers and `cove workflow validate` use
/// this, so nothing is accepted and then ignored.
///
/// A batch-only buildspec needs the files its builds name:
/// [`validate_for_cove_with`]; here every such file is unreadable.
pub fn validate_for_cove(path_display: &str, text: &str) -> Result<Validated, Vec<Diagnostic>> {
    validate_for_cove_with(path_display, text, &mut NoBuildspecs)
}

/// [`validate_for_cove`], reading the buildspecs that the builds of a
/// batch-only buildspec name through `reader` (paths relative to the
/// repository's root, at the same commit). Each build becomes an action
/// (see [`batch`]); errors in a referenced buildspec point into that file.
pub fn validate_for_cove_with(
    path_display: &str,
    text: &str,
    reader: &mut dyn BuildspecReader,
) -> Result<Validated, Vec<Diagnostic>> {
    validate(path_display, text, true, Some(reader))
}

/// A buildspec named by a batch build: judged like any buildspec Cove
/// runs; a batch inside it is not expanded (it has no actions then).
pub(crate) fn validate_batch_child(
    path_display: &str,
    text: &str,
) -> Result<Validated, Vec<Diagnostic>> {
    validate(path_display, text, true, None)
}

fn validate(
    path_display: &str,
    text: &str,
    cove: bool,
    reader: Option<&mut dyn BuildspecReader>,
) -> Result<Validated, Vec<Diagnostic>> {
    let root = match yamlmap::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![Diagnostic::error(
                path_display,
                yamlmap::Pos::START,
                "the file is empty",
            )
            .with_help("a workflow needs `Name`, `SchemaVersion` and `Actions`; a buildspec needs `version` and `phases`")])
        }
        Err(e) => {
            let help = if e.syntax {
                "check the indentation, quoting and brackets at and just before this position"
            } else {
                e.limit_help()
            };
            return Err(vec![
                Diagnostic::error(path_display, e.pos, e.describe()).with_help(help)
            ]);
        }
    };
    let mut r = Reader::new(path_display, text);
    let mut spec = None;
    let workflow = match detect(&root) {
        Some(Format::Codecatalyst) => codecatalyst::parse(&mut r, &root, text),
        Some(Format::Buildspec) => buildspec::parse(&mut r, &root, text).map(|(mut w, s)| {
            w.name = file_stem(path_display).to_string();
            spec = s;
            w
        }),
        None => {
            r.error(
                root.pos,
                "not a workflow: found neither CodeCatalyst keys (`SchemaVersion`, `Actions`) nor buildspec keys (`version`, `phases`)",
                "a CodeCatalyst workflow starts with `Name:`, `SchemaVersion: \"1.0\"` and `Actions:`; a buildspec with `version: 0.2` and `phases:`",
            );
            None
        }
    };
    let mut diags = r.finish();
    let Some(mut w) = workflow.filter(|_| !diags.iter().any(Diagnostic::is_error)) else {
        return Err(diags);
    };
    if cove {
        diags.extend(support::check(path_display, &root, w.format));
        diags.sort_by_key(|d| (d.line, d.column));
        if diags.iter().any(Diagnostic::is_error) {
            return Err(diags);
        }
        let batch_only = w.format == Format::Buildspec && root.get("phases").is_none();
        if let (true, Some(spec), Some(reader)) = (batch_only, &spec, reader) {
            match batch::expand(path_display, spec, reader) {
                Ok((actions, warnings)) => {
                    w.actions = actions;
                    w.fast_fail = spec.fast_fail;
                    diags.extend(warnings);
                }
                Err(errors) => {
                    diags.extend(errors);
                    return Err(diags);
                }
            }
            if let Err(e) = RunPlan::new(&w) {
                diags.push(
                    Diagnostic::error(path_display, spec.pos, format!("`depend-on` {e}"))
                        .with_help("remove one `depend-on` of the cycle"),
                );
                return Err(diags);
            }
        }
    }
    Ok((w, diags))
}

fn file_stem(path: &str) -> &str {
    let base = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match base.rfind('.') {
        Some(i) if i > 0 => &base[..i],
        _ => base,
    }
}

/// The workflow for a repository that has a root `buildspec.yml` and no
/// CodeCatalyst workflow: the buildspec's single action, triggered on a
/// push to `default_branch`. Judged as [`validate_for_cove`] does.
pub fn implicit_buildspec_workflow(
    path_display: &str,
    text: &str,
    default_branch: &str,
) -> Result<Validated, Vec<Diagnostic>> {
    implicit_buildspec_workflow_with(path_display, text, default_branch, &mut NoBuildspecs)
}

/// [`implicit_buildspec_workflow`], reading the buildspecs a batch-only
/// buildspec's builds name through `reader` (see [`validate_for_cove_with`]).
pub fn implicit_buildspec_workflow_with(
    path_display: &str,
    text: &str,
    default_branch: &str,
    reader: &mut dyn BuildspecReader,
) -> Result<Validated, Vec<Diagnostic>> {
    let (mut w, warnings) = validate_for_cove_with(path_display, text, reader)?;
    if w.format != Format::Buildspec {
        return Err(vec![Diagnostic::error(
            path_display,
            yamlmap::Pos::START,
            "expected a buildspec (`version` and `phases`), found a CodeCatalyst workflow",
        )]);
    }
    let branch = Pattern::literal(default_branch).map_err(|e| {
        vec![
            Diagnostic::error(path_display, yamlmap::Pos::START, e.to_string())
                .with_help("the default branch name cannot be used as a trigger"),
        ]
    })?;
    w.triggers = vec![Trigger::Push {
        branches: vec![branch],
        files_changed: Vec::new(),
    }];
    Ok((w, warnings))
}

/// True when a repository with these files (paths relative to its root,
/// `/`-separated) should get [`implicit_buildspec_workflow`]: it has a root
/// `buildspec.yml` (or `.yaml`) and no `.codecatalyst/workflows/*.yml|yaml`.
pub fn needs_implicit_buildspec<S: AsRef<str>>(paths: &[S]) -> bool {
    let is_workflow = |p: &str| {
        p.strip_prefix(".codecatalyst/workflows/")
            .is_some_and(|f| !f.contains('/') && (f.ends_with(".yaml") || f.ends_with(".yml")))
    };
    let paths: Vec<&str> = paths.iter().map(AsRef::as_ref).collect();
    paths
        .iter()
        .any(|p| matches!(*p, "buildspec.yml" | "buildspec.yaml"))
        && !paths.iter().any(|p| is_workflow(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_workflow_needs_root_buildspec_and_no_workflow() {
        assert!(needs_implicit_buildspec(&["buildspec.yml", "src/main.rs"]));
        assert!(!needs_implicit_buildspec(&["ci/buildspec.yml"]));
        assert!(!needs_implicit_buildspec(&[
            "buildspec.yml",
            ".codecatalyst/workflows/ci.yaml"
        ]));
        assert!(needs_implicit_buildspec(&[
            "buildspec.yml",
            ".codecatalyst/workflows/notes/readme.yaml"
        ]));
    }

    #[test]
    fn file_stems() {
        assert_eq!(file_stem("a/b/buildspec.yml"), "buildspec");
        assert_eq!(file_stem("buildspec"), "buildspec");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }
}
