//! The validation rules on small inline devfiles. Each case goes through one
//! `check` helper that renders every diagnostic, compared with `expect!`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use devfiles::{LoadOptions, NoParents, Resolver};
use expect_test::{expect, Expect};

struct Files(BTreeMap<&'static str, &'static str>);

impl Resolver for Files {
    fn read(&self, _from: &str, uri: &str) -> Result<(String, String), String> {
        self.0
            .get(uri)
            .map(|t| (uri.to_string(), t.to_string()))
            .ok_or_else(|| "no such file".to_string())
    }
}

fn render(text: &str, resolver: &dyn Resolver) -> String {
    match devfiles::load_str("devfile.yaml", text, resolver, &LoadOptions::default()) {
        Ok(l) => {
            let mut out = String::from("ok\n");
            for w in &l.warnings {
                out.push_str(&format!("{w}\n"));
            }
            out
        }
        Err(r) => r.errors.iter().map(|e| format!("{e}\n")).collect(),
    }
}

fn check(text: &str, expect: Expect) {
    expect.assert_eq(&render(text, &NoParents));
}

const C: &str =
    "schemaVersion: 2.2.0\ncomponents:\n  - name: app\n    container:\n      image: img\n";

#[test]
fn unsupported_or_malformed_versions() {
    check(
        "schemaVersion: 2.4.0\n",
        expect![[r#"
        devfile.yaml:1:16: error: schemaVersion 2.4.0 is not supported; Cove reads devfile 2.0.0 to 2.3.0
          help: use one of 2.0.0, 2.1.0, 2.2.0, 2.2.1, 2.2.2, 2.3.0
    "#]],
    );
    check(
        "metadata: {name: x}\n",
        expect![[r#"
        devfile.yaml:1:1: error: missing required field `schemaVersion`
          help: add `schemaVersion: 2.2.0` as the first line
    "#]],
    );
    check(
        "schemaVersion: 2.2.0-latest\n",
        expect![[r#"
        ok
    "#]],
    );
}

#[test]
fn yaml_syntax_and_duplicate_keys() {
    check(
        "schemaVersion: 2.2.0\ncomponents: [\n",
        expect![[r#"
        devfile.yaml:3:1: error: YAML syntax error: while parsing a node, did not find expected node content
          help: fix the indentation or quoting at this position
    "#]],
    );
    check(
        "schemaVersion: 2.2.0\nevents: {}\nevents: {}\n",
        expect![[r#"
        devfile.yaml:3:1: error: YAML syntax error: duplicate key `events` in a mapping
          help: fix the indentation or quoting at this position
    "#]],
    );
}

#[test]
fn fields_newer_than_the_declared_version() {
    check(
        "schemaVersion: 2.0.0\ncomponents:\n  - name: app\n    container:\n      image: img\n      cpuLimit: 500m\n",
        expect![[r#"
            devfile.yaml:6:7: error: `cpuLimit` needs schemaVersion 2.1.0 or later, but this devfile declares 2.0.0
              help: raise schemaVersion to 2.1.0 or remove `cpuLimit`
        "#]],
    );
    check(
        &format!("{C}      imagee: x\n"),
        expect![[r#"
        devfile.yaml:6:7: error: unknown field `imagee` in `components[].container` (not allowed by the devfile 2.2.0 schema)
          help: did you mean `image`?
    "#]],
    );
}

#[test]
fn references_must_resolve() {
    check(
        &format!("{C}  - name: data\n    volume: {{}}\ncommands:\n  - id: a\n    exec: {{component: data, commandLine: x}}\n  - id: b\n    apply: {{component: nope}}\n"),
        expect![[r#"
            devfile.yaml:10:23: error: exec command `a` runs in `data`, which is a volume component; exec commands need a container
            devfile.yaml:12:24: error: apply command `b` refers to component `nope`, which does not exist
        "#]],
    );
}

#[test]
fn composite_cycles_are_rejected() {
    check(
        &format!("{C}commands:\n  - id: a\n    composite: {{commands: [b]}}\n  - id: b\n    composite: {{commands: [A]}}\n"),
        expect![[r#"
            devfile.yaml:8:27: error: composite command `a` includes itself: a -> b -> a
              help: remove one of the references to break the cycle
            devfile.yaml:10:27: error: composite command `b` includes itself: b -> a -> b
              help: remove one of the references to break the cycle
        "#]],
    );
}

#[test]
fn one_default_per_group() {
    let cmd = |id: &str, d: bool| {
        format!("  - id: {id}\n    exec: {{component: app, commandLine: x, group: {{kind: build, isDefault: {d}}}}}\n")
    };
    check(
        &format!("{C}commands:\n{}{}", cmd("a", true), cmd("b", true)),
        expect![[r#"
        devfile.yaml:9:5: error: there should be exactly one default command, currently there are 2 default commands for group kind build (a, b)
          help: set `isDefault: true` on only one of them
    "#]],
    );
    check(
        &format!("{C}commands:\n{}{}", cmd("a", false), cmd("b", false)),
        expect![[r#"
        ok
        devfile.yaml:7:5: warning: 2 commands of group kind build and none is marked isDefault; there is no default build command
          help: mark one of them with `isDefault: true`
    "#]],
    );
}

#[test]
fn reserved_env_and_quantities() {
    check(
        &format!("{C}      env: [{{name: PROJECT_SOURCE, value: /x}}]\n      memoryLimit: 1Gi\n      memoryRequest: 2Gi\n      cpuLimit: lots\n"),
        expect![[r#"
            devfile.yaml:6:20: error: env `PROJECT_SOURCE` is set by Cove from `sourceMapping` and cannot be set in a devfile
              help: remove it; use `sourceMapping` to move the sources
            devfile.yaml:8:22: error: memoryRequest is larger than memoryLimit in container `app`
              help: lower memoryRequest or raise memoryLimit
            devfile.yaml:9:17: error: cpuLimit `lots` is not a resource quantity
              help: use a quantity such as 512Mi, 2Gi, 500m or 2
        "#]],
    );
}

#[test]
fn variables_only_from_2_1_0() {
    check(
        "schemaVersion: 2.0.0\ncomponents:\n  - name: app\n    container:\n      image: '{{img}}'\n",
        expect![[r#"
            ok
        "#]],
    );
    let loaded = devfiles::load_str(
        "d.yaml",
        "schemaVersion: 2.2.0\nvariables: {img: debian}\ncomponents:\n  - name: app\n    container:\n      image: '{{img}}:12'\n",
        &NoParents,
        &LoadOptions { variables: BTreeMap::from([("img".to_string(), "cove/universal".to_string())]) },
    )
    .unwrap();
    assert_eq!(
        loaded.devfile.components[0]
            .container
            .as_ref()
            .unwrap()
            .image,
        "cove/universal:12",
        "--var wins"
    );
}

#[test]
fn parents_merge_override_and_refuse_redefinition() {
    let parent = "schemaVersion: 2.1.0\ncomponents:\n  - name: runtime\n    container:\n      image: node:14\n      env: [{name: A, value: '1'}]\n      command: [a, b]\nevents:\n  postStart: [init]\ncommands:\n  - id: init\n    exec: {component: runtime, commandLine: echo parent}\n";
    let files = Files(BTreeMap::from([("parent.yaml", parent)]));
    let child = "schemaVersion: 2.2.0\nparent:\n  uri: parent.yaml\n  components:\n    - name: runtime\n      container:\n        image: node:18\n        env: [{name: B, value: '2'}]\n        command: [c]\ncomponents:\n  - name: sidecar\n    container: {image: busybox}\n";
    let loaded =
        devfiles::load_str("devfile.yaml", child, &files, &LoadOptions::default()).unwrap();
    let (plan, _) = loaded.plan(&Default::default());
    let runtime = plan.container("runtime").unwrap();
    assert_eq!(runtime.image, "node:18");
    assert_eq!(
        runtime.command.as_deref(),
        Some(&["c".to_string()][..]),
        "command replaces"
    );
    let names: Vec<&str> = runtime.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[..2], ["A", "B"], "env merges by name");
    assert_eq!(plan.containers.len(), 2);
    assert_eq!(plan.events.post_start, ["init"]);

    let redefine = "schemaVersion: 2.2.0\nparent: {uri: parent.yaml}\ncomponents:\n  - name: runtime\n    container: {image: x}\n";
    expect![[r#"
        devfile.yaml:4:11: error: `runtime` is already defined in components of the parent devfile
          help: to change it, override it under `parent: components:` instead of redefining it
    "#]]
    .assert_eq(&render(redefine, &files));
    let unknown = "schemaVersion: 2.2.0\nparent:\n  uri: parent.yaml\n  commands:\n    - id: nope\n      exec: {commandLine: x}\n";
    expect![[r#"
        devfile.yaml:5:11: error: `parent.commands` overrides `nope`, which the parent devfile does not define
          help: overrides can only change existing elements; to add `nope`, list it under the top-level `commands:`
    "#]]
    .assert_eq(&render(unknown, &files));
    let newer = "schemaVersion: 2.0.0\nparent: {uri: parent.yaml}\n";
    expect![[r#"
        devfile.yaml:2:15: error: the parent devfile uses schemaVersion 2.1.0 which is newer than this devfile's 2.0.0
          help: raise this devfile's schemaVersion to 2.1.0 or later
    "#]]
    .assert_eq(&render(newer, &files));
}

#[test]
fn registry_and_missing_parents_say_what_to_do() {
    check(
        "schemaVersion: 2.2.0\nparent: {id: nodejs, registryUrl: 'http://r'}\n",
        expect![[r#"
            devfile.yaml:2:14: error: cannot read parent `nodejs` from a devfile registry: parents from a devfile registry (here http://r) are read by `cove devfile validate|plan`, not here; commit the parent into the repository and use `parent.uri`
              help: check `parent.registryUrl` and `parent.version`, or copy the parent into the repository and use `parent.uri`
        "#]],
    );
    check(
        "schemaVersion: 2.2.0\nparent: {uri: base.yaml}\n",
        expect![[r#"
        devfile.yaml:2:15: error: cannot read parent devfile `base.yaml`: this devfile was not read from a repository, so relative parents cannot be found
          help: `parent.uri` is resolved relative to this devfile's directory
    "#]],
    );
}

#[test]
fn projects_stay_inside_the_projects_root() {
    check(&format!("{C}projects:\n  - name: p\n    clonePath: ../../etc\n    git: {{remotes: {{origin: 'http://x'}}}}\n"), expect![[r#"
        devfile.yaml:8:16: error: clonePath `../../etc` must name a directory inside the projects root
          help: remove any `..`; an absolute path such as `/app` means PROJECTS_ROOT/app
    "#]]);
}
