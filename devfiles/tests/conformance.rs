//! The shared devfile conformance corpus (`../shared/conformance/devfiles`),
//! read at test time: every valid file loads and plans with the warnings
//! INDEX.md states; every invalid file is rejected with the substance INDEX.md
//! expects, at a real position.

#![allow(clippy::unwrap_used)]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::path::{Path, PathBuf};

use devfiles::{CommandAction, GroupKind, LoadOptions, Loaded, PlanOptions, Rejected, Severity};

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/devfiles");
    assert!(
        dir.join("INDEX.md").exists(),
        "the conformance corpus is missing at {}: the repository must be checked out next to `shared/`",
        dir.display()
    );
    dir
}

fn load(rel: &str) -> Result<Loaded, Rejected> {
    devfile_fs::load_file(
        &corpus().join(rel),
        &LoadOptions::default(),
        &devfile_fs::FsResolver,
    )
}

fn valid(rel: &str) -> Loaded {
    match load(rel) {
        Ok(l) => l,
        Err(r) => panic!("{rel} must be valid, got:\n{r}"),
    }
}

#[test]
fn every_listed_file_exists_and_every_file_is_listed() {
    let index = std::fs::read_to_string(corpus().join("INDEX.md")).unwrap();
    for sub in ["valid", "invalid"] {
        for entry in std::fs::read_dir(corpus().join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                index.contains(&name),
                "{sub}/{name} is not described in INDEX.md"
            );
        }
    }
}

#[test]
fn every_valid_file_loads_and_plans() {
    let mut checked = 0;
    let dir = corpus().join("valid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = if path.is_dir() {
            format!(
                "valid/{}/devfile-child.yaml",
                path.file_name().unwrap().to_str().unwrap()
            )
        } else {
            format!("valid/{}", path.file_name().unwrap().to_str().unwrap())
        };
        let loaded = valid(&rel);
        let (plan, _) = loaded.plan(&PlanOptions::default());
        assert!(
            !plan.containers.is_empty() || !plan.skipped.is_empty(),
            "{rel}: empty plan"
        );
        // only the file with an undefined variable warns during loading
        let var_warnings: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.message.contains("variable"))
            .collect();
        if rel.ends_with("registry--java-wildfly-2.0.2.yaml") {
            assert_eq!(var_warnings.len(), 1, "{rel}: {var_warnings:?}");
        } else {
            assert!(
                var_warnings.is_empty(),
                "{rel}: unexpected warnings {var_warnings:?}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 23, "only {checked} valid devfiles found");
}

/// (file, what the error must say, line of the first error)
const INVALID: &[(&str, &str, usize)] = &[
    ("odo--devfile-with-preStart.yaml", "myprestart should either map to an apply command or a composite command with apply commands", 116),
    ("codecatalyst--hands-on-with-codecatalyst.yaml", "does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", 21),
    ("api--simple-devfile.yaml", "the command \"opendevfile\" mentioned in the composite command does not exist", 24),
    ("api-schematest--componentContainerAll.yaml", "multiple containers with same endpoint targetPort: 1234", 90),
    ("api-schematest--componentContainerNoImage.yaml", "missing field `image`", 6),
    ("api-schematest--componentContainerMixedCaseName.yaml", "`testContainer1` does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", 4),
    ("api-schematest--componentContainerBadEndpointExposure.yaml", "expected one of `public`, `internal`, `none`", 17),
    ("api-schematest--componentKubernetesBothInlinedAndUri.yaml", "has both `uri` and `inlined`", 6),
    ("api-schematest--execCommandNoComponent.yaml", "missing field `component`", 6),
    ("api-schematest--eventIvalid.yaml", "unknown field `preStep`", 9),
    ("api-schematest--parentPluginIdAndUri.yaml", "has both `uri` and `id`", 3),
    ("api-schematest--projectsGitAndZip.yaml", "has both `git` and `zip`", 8),
    ("api-schematest--metadataBadVersion.yaml", "metadata.version `x.x.x` does not match the semver pattern", 4),
];

#[test]
fn every_invalid_file_is_rejected_with_the_expected_error() {
    let files: Vec<String> = std::fs::read_dir(corpus().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for f in &files {
        assert!(
            INVALID.iter().any(|(name, _, _)| name == f),
            "invalid/{f} has no expectation in this test"
        );
    }
    for (name, expected, line) in INVALID {
        let rel = format!("invalid/{name}");
        let rejected = match load(&rel) {
            Ok(_) => panic!("{rel} must be rejected"),
            Err(r) => r,
        };
        let hit = rejected
            .errors
            .iter()
            .find(|e| e.message.contains(expected));
        let Some(hit) = hit else {
            panic!("{rel}: no error says {expected:?}; got:\n{rejected}")
        };
        assert_eq!(hit.line, *line, "{rel}: {hit}");
        assert!(hit.column >= 1);
        assert!(hit.file.ends_with(*name), "{rel}: file name in {hit}");
        assert!(rejected
            .errors
            .iter()
            .all(|e| e.severity == Severity::Error));
    }
}

#[test]
fn component_container_all_reports_the_missing_volume_too() {
    let r = load("invalid/api-schematest--componentContainerAll.yaml").unwrap_err();
    assert!(
        r.errors
            .iter()
            .any(|e| e.message.contains("volumeMount `volume`")),
        "{r}"
    );
}

// ---- semantics of particular valid files (INDEX.md "expected") ----

#[test]
fn nodejs_mongodb_shares_localhost_and_defaults_the_single_run_command() {
    let (plan, _) = valid("valid/registry--nodejs-mongodb.yaml").plan(&PlanOptions::default());
    assert_eq!(plan.containers.len(), 2);
    let run = plan
        .default_command(GroupKind::Run)
        .expect("single run command is the default");
    assert_eq!(run.id, "run-application");
    let mongo = plan
        .containers
        .iter()
        .find(|c| c.endpoints.iter().any(|e| e.port == 27017))
        .unwrap();
    assert!(
        mongo.mounts.iter().any(|m| m.path == "/bitnami/mongodb"),
        "{mongo:?}"
    );
    assert!(plan
        .volumes
        .iter()
        .any(|v| v.name == "mongo-storage" && v.persistent));
}

#[test]
fn ollama_post_start_order_and_source_mapping() {
    let (plan, _) = valid("valid/registry--ollama.yaml").plan(&PlanOptions::default());
    assert_eq!(
        plan.events.post_start,
        ["pullmodel", "pullautocompletemodel", "copyconfig"]
    );
    let ollama = plan.container("ollama").unwrap();
    assert_eq!(ollama.source_mapping.as_deref(), Some("/.ollama"));
    assert!(ollama
        .env
        .iter()
        .any(|e| e.name == "PROJECTS_ROOT" && e.value == "/.ollama"));
}

#[test]
fn source_mapping_and_mount_sources_defaults() {
    let (plan, _) = valid("valid/odo--devfileSourceMapping.yaml").plan(&PlanOptions::default());
    assert_eq!(plan.containers[0].source_mapping.as_deref(), Some("/test"));
    let (plan, _) = valid("valid/registry--kaoto.yaml").plan(&PlanOptions::default());
    assert!(plan
        .containers
        .iter()
        .all(|c| c.source_mapping.as_deref() == Some("/projects")));
}

#[test]
fn variables_are_substituted_in_env_names_values_and_images() {
    let (plan, _) = valid("valid/odo--devfile-variables.yaml").plan(&PlanOptions::default());
    let runtime = plan.container("runtime").unwrap();
    assert!(
        runtime
            .env
            .iter()
            .any(|e| e.name == "FOO" && e.value == "bar"),
        "{:?}",
        runtime.env
    );
    let (plan, _) = valid("valid/registry--java-openliberty.yaml").plan(&PlanOptions::default());
    assert_eq!(
        plan.containers[0].image,
        "icr.io/appcafe/open-liberty-devfile-stack:22.0.0.1"
    );
    let loaded = valid("valid/registry--registry-root.yaml");
    let builder = loaded
        .devfile
        .components
        .iter()
        .find_map(|c| c.image.as_ref())
        .unwrap();
    assert_eq!(builder.image_name, "quay.io/devfile/devfile-index:next");
}

#[test]
fn undefined_variable_is_a_warning_and_the_text_is_kept() {
    let loaded = valid("valid/registry--java-wildfly-2.0.2.yaml");
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.message.contains("imageName"))
        .unwrap();
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.line, 41);
    let (plan, _) = loaded.plan(&PlanOptions::default());
    assert!(plan.containers[0]
        .env
        .iter()
        .any(|e| e.name == "IMAGE" && e.value == "{{imageName}}"));
}

#[test]
fn shell_variables_are_not_devfile_variables() {
    let (plan, _) = valid("valid/registry--java-quarkus-1.5.0.yaml").plan(&PlanOptions::default());
    let uses_shell_var = plan.commands.iter().any(|c| matches!(&c.action, CommandAction::Exec { command_line, .. } if command_line.contains("${DEBUG_PORT}")));
    assert!(uses_shell_var);
}

#[test]
fn local_parent_is_flattened() {
    let loaded = valid("valid/odo--local-parent/devfile-child.yaml");
    let (plan, _) = loaded.plan(&PlanOptions::default());
    assert_eq!(plan.containers.len(), 1);
    let runtime = plan.container("runtime").unwrap();
    assert_eq!(runtime.source_mapping.as_deref(), Some("/project"));
    assert_eq!(runtime.endpoints[0].port, 3000);
    for kind in [
        GroupKind::Build,
        GroupKind::Run,
        GroupKind::Debug,
        GroupKind::Test,
    ] {
        assert!(plan.default_command(kind).is_some(), "no default {kind:?}");
    }
}

#[test]
fn containers_without_command_are_kept_alive() {
    for rel in [
        "valid/registry--udi.yaml",
        "valid/codecatalyst--todoapp-codecatalyst-demo.yaml",
    ] {
        let (plan, _) = valid(rel).plan(&PlanOptions::default());
        assert!(
            plan.containers
                .iter()
                .all(|c| c.keep_alive && c.command.is_some()),
            "{rel}"
        );
    }
    let (plan, _) = valid("valid/registry--java-quarkus-1.5.0.yaml").plan(&PlanOptions::default());
    assert!(
        !plan.containers[0].keep_alive,
        "args only: the image entrypoint runs them"
    );
}

#[test]
fn kubernetes_components_are_skipped_with_a_warning() {
    let (plan, warnings) = valid("valid/api--job-apply-example.yaml").plan(&PlanOptions::default());
    assert_eq!(plan.skipped.len(), 1);
    assert!(warnings
        .iter()
        .any(|w| w.message.contains("skipped") && w.line > 1));
}

#[test]
fn mixed_case_event_references_resolve() {
    let (plan, _) =
        valid("valid/odo--devfile-with-valid-events.yaml").plan(&PlanOptions::default());
    assert!(!plan.events.pre_stop.is_empty());
    for id in plan.events.post_start.iter().chain(&plan.events.pre_stop) {
        assert!(plan.command(id).is_some(), "{id}");
    }
}
