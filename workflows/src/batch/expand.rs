//! A batch-only buildspec → one action per build.

use std::collections::{BTreeSet, HashMap};

use yamlmap::{Diagnostic, Pos};

use super::{normalize_path, Build, BuildspecReader, Spec, MAX_BATCH_FILES, MAX_BATCH_TEXT};
use crate::model::{Action, BatchBuild, Container, Dependency, DependencyReason, Format, Variable};

/// A referenced buildspec, read and judged once per batch.
enum Child {
    /// Its single action, and its size in bytes.
    Ok(Box<Action>, usize),
    /// Unreadable or invalid (already reported).
    Bad,
}

/// The actions of a batch-only buildspec `file` whose `batch` section is
/// `spec`: each build runs the phases of its own buildspec (read with
/// `reader`, judged like any buildspec Cove runs), with the build's `env`
/// over that buildspec's variables and image. `Ok` carries the actions and
/// the warnings (the referenced files' too); `Err` every error found, each
/// in the file it is about.
pub(crate) fn expand(
    file: &str,
    spec: &Spec,
    reader: &mut dyn BuildspecReader,
) -> Result<(Vec<Action>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let error = |diags: &mut Vec<Diagnostic>, pos: Pos, msg: String, help: &str| {
        diags.push(Diagnostic::error(file, pos, msg).with_help(help));
    };
    if spec.too_many {
        return Err(diags);
    }
    if spec.kind.is_none() {
        error(
            &mut diags,
            spec.pos,
            "the batch has no builds: a batch-only buildspec needs `build-graph`, `build-list` or `build-matrix`".into(),
            "list the builds, each with its own `buildspec`",
        );
        return Err(diags);
    }
    if spec.builds.is_empty() {
        error(
            &mut diags,
            spec.pos,
            "the batch has no builds".into(),
            "list at least one build, each with its own `buildspec`",
        );
        return Err(diags);
    }
    if spec.builds.len() > super::MAX_BATCH_BUILDS {
        error(
            &mut diags,
            spec.pos,
            format!(
                "the batch has {} builds; Cove runs at most {} builds in one batch",
                spec.builds.len(),
                super::MAX_BATCH_BUILDS
            ),
            "split the batch",
        );
        return Err(diags);
    }
    let mut children: HashMap<String, Child> = HashMap::new();
    let mut text_total = 0usize;
    let mut actions = Vec::new();
    for build in &spec.builds {
        let Some((written, pos)) = &build.buildspec else {
            error(
                &mut diags,
                build.pos,
                format!(
                    "build `{}` names no `buildspec`, and this file has no `phases` for it to run",
                    build.id
                ),
                "add `buildspec: path/in/the/repository.yml` to the build",
            );
            continue;
        };
        let path = match normalize_path(written) {
            Ok(p) => p,
            Err(why) if why.contains("S3") => {
                error(
                    &mut diags,
                    *pos,
                    format!("not supported by Cove: {why} (`{}`)", written.trim()),
                    "commit the buildspec to the repository and name its path",
                );
                continue;
            }
            Err(why) => {
                error(
                    &mut diags,
                    *pos,
                    format!(
                        "`{}` is {why}; a build's buildspec is a path in the repository",
                        written.trim()
                    ),
                    "write the path from the repository's root, e.g. `ci/build.yml`",
                );
                continue;
            }
        };
        if !children.contains_key(&path) {
            if children.len() >= MAX_BATCH_FILES {
                error(
                    &mut diags,
                    *pos,
                    format!(
                        "the batch names more than {MAX_BATCH_FILES} different buildspec files"
                    ),
                    "share buildspecs between builds and vary them with `env.variables`",
                );
                continue;
            }
            let child = read_child(file, &path, *pos, &build.id, reader, &mut diags);
            children.insert(path.clone(), child);
        }
        let Some(Child::Ok(template, size)) = children.get(&path) else {
            continue;
        };
        text_total = text_total.saturating_add(*size);
        if text_total > MAX_BATCH_TEXT {
            error(
                &mut diags,
                spec.pos,
                format!(
                    "the builds of this batch run more than {} MiB of buildspec text in total",
                    MAX_BATCH_TEXT / (1024 * 1024)
                ),
                "use fewer builds or smaller buildspecs",
            );
            return Err(finish(file, diags));
        }
        actions.push(action(template, build, &path, spec));
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(finish(file, diags));
    }
    Ok((actions, finish(file, diags)))
}

/// Reads and judges the buildspec `path` (named at `pos` by build `id`).
fn read_child(
    file: &str,
    path: &str,
    pos: Pos,
    id: &str,
    reader: &mut dyn BuildspecReader,
    diags: &mut Vec<Diagnostic>,
) -> Child {
    let text = match reader.read(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::error(file, pos, format!("the buildspec of build `{id}`: {e}"))
                    .with_help(
                    "commit the file, or fix the path (it is relative to the repository's root)",
                ),
            );
            return Child::Bad;
        }
    };
    match crate::validate_batch_child(path, &text) {
        Err(errs) => {
            diags.extend(errs);
            diags.push(
                Diagnostic::error(
                    file,
                    pos,
                    format!("the buildspec `{path}` of build `{id}` is not valid"),
                )
                .with_help(format!("its errors are listed under `{path}`")),
            );
            Child::Bad
        }
        Ok((w, warnings)) => {
            diags.extend(warnings);
            if w.format != Format::Buildspec || w.actions.len() != 1 {
                let what = if w.format == Format::Buildspec {
                    "has no `phases` (a batch's build runs one buildspec's phases; batches do not nest)"
                } else {
                    "is a CodeCatalyst workflow, not a buildspec"
                };
                diags.push(
                    Diagnostic::error(
                        file,
                        pos,
                        format!("the buildspec `{path}` of build `{id}` {what}"),
                    )
                    .with_help("name a buildspec with `version: 0.2` and `phases`"),
                );
                return Child::Bad;
            }
            let size = text.len();
            let mut actions = w.actions;
            Child::Ok(Box::new(actions.remove(0)), size)
        }
    }
}

fn action(template: &Action, build: &Build, path: &str, spec: &Spec) -> Action {
    let mut a = template.clone();
    a.id = build.id.clone();
    a.name = build.id.clone();
    let mut seen = BTreeSet::new();
    a.depends_on = build
        .depend_on
        .iter()
        .filter(|d| seen.insert(d.as_str()))
        .map(|d| Dependency {
            action: d.clone(),
            via: DependencyReason::DependsOn(d.clone()),
        })
        .collect();
    for (name, value) in &build.variables {
        match a.inputs.variables.iter_mut().find(|v| &v.name == name) {
            Some(v) => v.value = value.clone(),
            None => a.inputs.variables.push(Variable {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
    if let Some(image) = &build.image {
        let registry = if image.contains(".dkr.ecr.") {
            "ECR"
        } else {
            "DockerHub"
        };
        a.configuration.container = Some(Container {
            registry: registry.to_string(),
            image: image.clone(),
        });
    }
    if a.timeout_minutes.is_none() {
        a.timeout_minutes = spec.timeout_minutes;
    }
    a.batch = Some(BatchBuild {
        buildspec: path.to_string(),
        ignore_failure: build.ignore_failure,
    });
    a
}

/// The batch file's own diagnostics first, then each referenced file's, by
/// position; capped like every diagnostic list.
fn finish(file: &str, mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diags.sort_by(|a, b| {
        (a.file != file, &a.file, a.line, a.column).cmp(&(
            b.file != file,
            &b.file,
            b.line,
            b.column,
        ))
    });
    yamlmap::cap_diagnostics(&mut diags, yamlmap::MAX_DIAGNOSTICS, Default::default());
    diags
}
