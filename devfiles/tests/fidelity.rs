//! Issue 17 (devfile fidelity): real-world constructs behave as in Che, odo
//! and devfile/library. The devfiles are in `tests/fidelity/`.

#![allow(clippy::unwrap_used)]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::path::{Path, PathBuf};

use devfiles::{EnvironmentPlan, LoadOptions, Loaded, PlanOptions, Rejected};
use expect_test::{expect, Expect};

fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fidelity")
        .join(name)
}

fn load(name: &str) -> Result<Loaded, Rejected> {
    devfile_fs::load_file(
        &path(name),
        &LoadOptions::default(),
        &devfile_fs::FsResolver,
    )
}

/// Diagnostics with the directory cut off, one per line.
fn render(diags: &[devfiles::Diagnostic]) -> String {
    let dir = format!(
        "{}/",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fidelity")
            .display()
    );
    diags
        .iter()
        .map(|d| format!("{d}\n").replace(&dir, ""))
        .collect()
}

fn errors(name: &str, expect: Expect) {
    match load(name) {
        Ok(_) => panic!("{name} loaded"),
        Err(r) => expect.assert_eq(&render(&r.errors)),
    }
}

fn plan(name: &str) -> (EnvironmentPlan, String) {
    let loaded = load(name).unwrap_or_else(|r| panic!("{r}"));
    let (plan, plan_warnings) = loaded.plan(&PlanOptions::default());
    let mut all = loaded.warnings.clone();
    all.extend(plan_warnings);
    (plan, render(&all))
}

#[test]
fn a_service_sidecar_keeps_its_image_entrypoint() {
    let (plan, _) = plan("sidecar.yaml");
    let app = plan.container("app").unwrap();
    assert!(app.keep_alive && app.command.is_some());
    assert_eq!(app.entrypoint, "keep-alive (commands run here)");
    assert!(app.terminal);
    let web = plan.container("web").unwrap();
    assert!(!web.keep_alive);
    assert_eq!(web.command, None);
    assert_eq!(web.args, None);
    assert_eq!(web.entrypoint, "image (no command runs here)");
    assert_eq!(plan.main_container().unwrap().name, "app");

    // the attribute decides over the rule, both ways; with no command at
    // all, the first container with sources is where terminals run
    let text = "schemaVersion: 2.2.0
components:
  - name: db
    attributes: {cove/entrypoint: keep-alive}
    container: {image: db, mountSources: false}
  - name: tools
    container: {image: tools}
  - name: cache
    container: {image: cache}
  - name: runner
    attributes: {cove/entrypoint: image}
    container: {image: runner}
commands:
  - id: go
    exec: {component: runner, commandLine: go}
";
    let loaded = devfiles::load_str(
        "d.yaml",
        text,
        &devfiles::NoParents,
        &LoadOptions::default(),
    )
    .unwrap();
    let (plan, _) = loaded.plan(&PlanOptions::default());
    let shown: Vec<(&str, bool, &str, bool)> = plan
        .containers
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.keep_alive,
                c.entrypoint.as_str(),
                c.terminal,
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                "db",
                true,
                "keep-alive (attribute cove/entrypoint: keep-alive)",
                false
            ),
            ("tools", false, "image (no command runs here)", false),
            ("cache", false, "image (no command runs here)", false),
            (
                "runner",
                false,
                "image (attribute cove/entrypoint: image)",
                true
            ),
        ]
    );
}

#[test]
fn container_and_pod_overrides_apply_or_warn() {
    let (plan, warnings) = plan("overrides.yaml");
    expect![[r#"
        overrides.yaml:5:7: warning: `pod-overrides` field `metadata` is not applied: Docker has no equivalent
        overrides.yaml:9:25: warning: `pod-overrides` field `spec.runtimeClassName` is not applied: Docker has no equivalent
        overrides.yaml:15:60: warning: `container-overrides` field `resources.limits.nvidia.com/gpu` is not applied: Docker has no equivalent
        overrides.yaml:19:23: warning: `container-overrides` securityContext.privileged: true is not applied: Cove's containers never gain privileges (no-new-privileges, not privileged)
        overrides.yaml:21:18: warning: capability `NET_ADMIN` is not added: it is outside Cove's security baseline (only CHOWN, DAC_OVERRIDE, FSETID, FOWNER, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL may be added back)
        overrides.yaml:22:26: warning: `container-overrides` field `imagePullPolicy` is not applied: Docker has no equivalent
    "#]]
    .assert_eq(&warnings);
    let app = plan.container("app").unwrap();
    // the override wins over memoryLimit / cpuLimit
    assert_eq!(app.memory_limit_bytes, Some(1 << 30));
    assert_eq!(app.cpu_limit_millis, Some(500));
    assert_eq!(app.cpu_request_millis, Some(250));
    // pod-level user, container-level group
    assert_eq!(app.user.as_deref(), Some("1000:2000"));
    assert_eq!(app.cap_add, vec!["CHOWN"]);
    let db = plan.container("db").unwrap();
    assert_eq!(db.user.as_deref(), Some("1000"));
    assert_eq!(db.memory_limit_bytes, None);

    // malformed values are errors at their place
    let bad = "schemaVersion: 2.2.0
components:
  - name: app
    attributes:
      container-overrides:
        resources: {limits: {memory: lots}, requests: {cpu: '3'}}
        securityContext: {runAsUser: root}
    container: {image: img, cpuLimit: '1'}
";
    let r = devfiles::load_str("d.yaml", bad, &devfiles::NoParents, &LoadOptions::default())
        .unwrap_err();
    expect![[r#"
        d.yaml:6:20: error: with `container-overrides` applied, the cpu request of container `app` is larger than its limit
          help: lower the cpu request or raise the limit
        d.yaml:6:38: error: `container-overrides` resources.limits.memory `lots` is not a resource quantity
        d.yaml:7:38: error: `container-overrides` securityContext.runAsUser must be a user or group number
    "#]]
    .assert_eq(&render(&r.errors));
}

#[test]
fn absolute_clone_path_and_errors_from_a_parent_override_point_at_the_child() {
    errors(
        "clonepath-child.yaml",
        expect![[r#"
            clonepath-child.yaml:8:18: error: clonePath `../outside` must name a directory inside the projects root
              help: remove any `..`; an absolute path such as `/app` means PROJECTS_ROOT/app
            clonepath-child.yaml:12:22: error: memoryLimit `lots` is not a resource quantity
              help: use a quantity such as 512Mi, 2Gi, 500m or 2
        "#]],
    );
    // an absolute clonePath is under the projects root
    let text = std::fs::read_to_string(path("clonepath-child.yaml"))
        .unwrap()
        .replace("../outside", "lib")
        .replace("lots", "128Mi");
    let child = path("clonepath-ok.yaml");
    let loaded = devfiles::load_str(
        &child.display().to_string(),
        &text,
        &devfile_fs::FsResolver,
        &LoadOptions::default(),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let (plan, _) = loaded.plan(&PlanOptions::default());
    let dirs: Vec<&str> = plan
        .projects
        .iter()
        .map(|p| p.clone_path.as_str())
        .collect();
    assert_eq!(dirs, vec!["srv/app", "lib"]);
    let tools = plan.container("tools").unwrap();
    let source = tools
        .env
        .iter()
        .find(|e| e.name == "PROJECT_SOURCE")
        .unwrap();
    assert_eq!(source.value, "/projects/srv/app");
}

#[test]
fn top_level_variables_and_attributes_of_the_parent_are_duplicates() {
    errors(
        "duplicates-child.yaml",
        expect![[r#"
            duplicates-child.yaml:9:3: error: variable `registry` is already defined in parent
              help: to change it, set it under `parent: variables:` instead of the top-level `variables:`
            duplicates-child.yaml:12:3: error: attribute `team` is already defined in parent
              help: to change it, set it under `parent: attributes:` instead of the top-level `attributes:`
        "#]],
    );
}

#[test]
fn github_sources_and_sparse_checkout_in_2_0_0() {
    let (plan, warnings) = plan("github-2.0.0.yaml");
    assert_eq!(warnings, "");
    let docs = &plan.projects[0];
    assert_eq!(docs.clone_url(), Some("file:///tmp/seed.git"));
    assert_eq!(docs.sparse_checkout_dirs, vec!["docs", "site"]);
    let second = &plan.projects[1];
    assert_eq!(second.clone_url(), Some("https://example.invalid/b.git"));
    assert_eq!(second.revision.as_deref(), Some("main"));
    // a later schemaVersion removed them: the error says so
    errors(
        "github-2.2.0.yaml",
        expect![[r#"
            github-2.2.0.yaml:7:5: error: a project needs one of: git, zip
              help: add exactly one of git, zip
            github-2.2.0.yaml:8:5: error: `sparseCheckoutDirs`: devfile 2.0.0 has them, but 2.1.0 removed them and this devfile declares 2.2.0
              help: use `git` remotes (and no `sparseCheckoutDirs`), or declare schemaVersion 2.0.0
            github-2.2.0.yaml:9:5: error: `github` project sources (use `git` from 2.1.0 on): devfile 2.0.0 has them, but 2.1.0 removed them and this devfile declares 2.2.0
              help: use `git` remotes (and no `sparseCheckoutDirs`), or declare schemaVersion 2.0.0
        "#]],
    );
    // and the real semantic errors of a 2.0.0 file are reported
    let text = std::fs::read_to_string(path("github-2.0.0.yaml"))
        .unwrap()
        .replace("remote: upstream", "remote: nope");
    let r = devfiles::load_str(
        "g.yaml",
        &text,
        &devfiles::NoParents,
        &LoadOptions::default(),
    )
    .unwrap_err();
    expect![[r#"
        g.yaml:24:17: error: checkoutFrom.remote `nope` is not one of the project's remotes
    "#]]
    .assert_eq(&render(&r.errors));
}

#[test]
fn errors_are_sorted_by_file_and_position() {
    errors(
        "unsorted.yaml",
        expect![[r#"
            unsorted.yaml:5:18: error: exec command `build` refers to component `nowhere`, which does not exist
              help: use one of the container components: app
            unsorted.yaml:8:15: error: postStart event "missing" does not map to a valid devfile command
              help: define a command with id `missing` or remove it from events.postStart
            unsorted.yaml:14:17: error: env `PROJECTS_ROOT` is set by Cove from `sourceMapping` and cannot be set in a devfile
              help: remove it; use `sourceMapping` to move the sources
            unsorted.yaml:17:17: error: volumeMount `nothing` of container `app` refers to a volume component that does not exist
              help: add a component `- name: nothing` with `volume: {}`, or fix the name
        "#]],
    );
}

#[test]
fn a_parent_chain_that_comes_back_to_one_of_its_files_is_a_cycle() {
    // b.yaml names a.yaml through another spelling of the same path
    let dir = std::env::temp_dir().join(format!("cove-parent-cycle-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let doc = |parent: &str| {
        format!(
            "schemaVersion: 2.2.0\nmetadata:\n  name: n\nparent:\n  uri: {parent}\ncomponents:\n  - name: c\n    container:\n      image: busybox\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), doc("sub/b.yaml")).unwrap();
    std::fs::write(dir.join("sub/b.yaml"), doc("../sub/../a.yaml")).unwrap();
    let r = devfile_fs::load_file(
        &dir.join("a.yaml"),
        &LoadOptions::default(),
        &devfile_fs::FsResolver,
    )
    .unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let e = &r.errors[0];
    assert_eq!(
        e.message, "parent `../sub/../a.yaml` is already part of this parent chain (a cycle)",
        "{e}"
    );
    assert!(e.file.ends_with("sub/b.yaml"), "{e}");
    assert_eq!((e.pos().line, e.pos().column), (5, 8), "{e}");
    assert_eq!(r.errors.len(), 1, "{r}");
}
