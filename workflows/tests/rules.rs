//! Validation rules on small synthetic files, one `check(input, expect)`
//! per rule: the snapshot is the rendered diagnostics (or `ok` plus any
//! warnings). Covers what the real corpus does not (INDEX.md "gaps").

use expect_test::{expect, Expect};
use workflows::validate_file;

fn render(file: &str, text: &str) -> String {
    match validate_file(file, text) {
        Ok((_, warnings)) => {
            let mut out = String::from("ok\n");
            for w in warnings {
                out.push_str(&format!("{w}\n"));
            }
            out
        }
        Err(diags) => diags.iter().map(|d| format!("{d}\n")).collect(),
    }
}

fn check(text: &str, expect: Expect) {
    expect.assert_eq(&render("wf.yaml", text));
}

fn check_buildspec(text: &str, expect: Expect) {
    expect.assert_eq(&render("buildspec.yml", text));
}

const HEAD: &str = "Name: wf\nSchemaVersion: \"1.0\"\n";

fn wf(body: &str) -> String {
    format!("{HEAD}{body}")
}

#[test]
fn minimal_workflow_is_ok() {
    check(
        &wf("Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi\n"),
        expect![[r#"
            ok
        "#]],
    );
}

#[test]
fn required_top_level_keys() {
    check(
        "Triggers: []\n",
        expect![[r#"
            wf.yaml:1:1: error: the workflow is missing the required key `Name`
              help: add `Name:`
            wf.yaml:1:1: error: the workflow is missing the required key `SchemaVersion`
              help: add `SchemaVersion:`
            wf.yaml:1:1: error: the workflow is missing the required key `Actions`
              help: add `Actions:`
        "#]],
    );
    check(
        "Name: wf\nSchemaVersion: 2.0\nActions: {}\nExtra: 1\n",
        expect![[r#"
            wf.yaml:2:16: error: unsupported `SchemaVersion` `2.0`
              help: the only valid value is `1.0`
            wf.yaml:3:10: error: `Actions` is empty
              help: define at least one action
            wf.yaml:4:1: error: unknown key `Extra` in the workflow
              help: allowed here: `Name`, `SchemaVersion`, `RunMode`, `Compute`, `Triggers`, `Actions`
        "#]],
    );
}

#[test]
fn dependency_cycles_report_the_path() {
    check(
        &wf("Actions:
  A:
    Identifier: aws/build@v1
    DependsOn: [C]
    Configuration: {Steps: [{Run: a}]}
  B:
    Identifier: aws/build@v1
    DependsOn: [A]
    Configuration: {Steps: [{Run: b}]}
  C:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo ${B.X}
    DependsOn: []
  Self:
    Identifier: aws/build@v1
    DependsOn: [Self]
    Configuration: {Steps: [{Run: s}]}
"),
        expect![[r#"
            wf.yaml:10:17: error: dependency cycle: A -> C -> B -> A
              help: remove one of these dependencies (DependsOn entries, ${Action.Var} references or input artifacts)
            wf.yaml:16:21: error: `${B.X}`: action `B` does not export `X`
              help: add `X` to `Outputs.Variables` of `B`
            wf.yaml:20:17: error: dependency cycle: Self -> Self
              help: remove one of these dependencies (DependsOn entries, ${Action.Var} references or input artifacts)
        "#]],
    );
}

#[test]
fn a_group_cannot_contain_what_it_waits_for() {
    check(
        &wf("Actions:
  G:
    Actions:
      A:
        Identifier: aws/build@v1
        DependsOn: [G]
        Configuration: {Steps: [{Run: a}]}
"),
        expect![[r#"
            wf.yaml:8:21: warning: `G.A` (inside group `G`) depends on `G` outside its group
              help: CodeCatalyst's documentation allows only siblings in DependsOn; Cove (like AWS's local runner) accepts it
            wf.yaml:8:21: error: dependency cycle: G.A -> G.A
              help: remove one of these dependencies (DependsOn entries, ${Action.Var} references or input artifacts)
        "#]],
    );
}

#[test]
fn unknown_names_in_depends_on_and_references() {
    check(
        &wf("Actions:
  A:
    Identifier: aws/build@v1
    DependsOn: [Nope]
    Outputs: {Variables: [X]}
    Configuration:
      Steps:
        - Run: echo ${Missing.X} ${WorkflowSource.Sha} ${A.X}
  G:
    Actions:
      B:
        Identifier: aws/build@v1
        Configuration:
          Steps:
            - Run: echo ${A.Y} ${G.Z} ${G.B2.V}
      B2:
        Identifier: aws/cdk-deploy@v1
        Configuration: {StackName: s}
"),
        expect![[r#"
            wf.yaml:6:17: error: `A` depends on `Nope`, which is not an action or action group
              help: names at this level: G
            wf.yaml:10:21: error: `${Missing.X}` refers to `Missing`, which is not an action
              help: write `${Action.Variable}` or `${Group.Action.Variable}`; for a shell variable write `$NAME`
            wf.yaml:10:34: error: unknown variable `${WorkflowSource.Sha}`
              help: WorkflowSource provides `${WorkflowSource.CommitId}` and `${WorkflowSource.BranchName}`
            wf.yaml:10:56: error: action `A` refers to its own output `${A.X}`
              help: inside the action use the shell variable `$X`
            wf.yaml:17:25: error: `${A.Y}`: action `A` does not export `Y`
              help: add `Y` to `Outputs.Variables` of `A`
            wf.yaml:17:32: error: `${G.Z}` refers to action group `G`
              help: name the action inside it: `${G.<Action>.Z}`
        "#]],
    );
}

#[test]
fn artifacts_must_exist_and_be_unique() {
    check(
        &wf("Actions:
  A:
    Identifier: aws/build@v1
    Outputs:
      Artifacts:
        - {Name: out, Files: [a]}
    Configuration: {Steps: [{Run: a}]}
  B:
    Identifier: aws/build@v1
    Inputs: {Artifacts: [out, ghost]}
    Outputs:
      Artifacts:
        - {Name: out, Files: [b]}
    Configuration: {Steps: [{Run: b}]}
"),
        expect![[r#"
            wf.yaml:12:31: error: input artifact `ghost` is not produced by any action
              help: add it to some action's `Outputs.Artifacts`, or fix the name
            wf.yaml:15:18: error: artifact `out` is already produced by `A`
              help: artifact names must be unique in a workflow: rename one
        "#]],
    );
}

#[test]
fn at_most_five_secrets_per_action() {
    check(
        &wf("Actions:
  A:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo ${Secrets.a} ${Secrets.b} ${Secrets.c} ${Secrets.a}
        - Run: echo ${Secrets.d} ${Secrets.e} ${Secrets.f}
"),
        expect![[r#"
            wf.yaml:9:47: error: action `A` uses more than 5 secrets
              help: split the action; CodeCatalyst allows at most 5 secrets per action
        "#]],
    );
}

#[test]
fn triggers_schedule_manual_and_errors() {
    check(
        &wf("Triggers:
  - Type: schedule
    Expression: \"0 9 ? * MON-FRI *\"
    Branches: [main]
  - Type: Manual
  - Type: PUSH
    Events: [OPEN]
    FilesChanged: [\"src/.*\", \"(unclosed\"]
  - Type: SCHEDULE
    Expression: \"0 9 * * * *\"
  - Type: PULLREQUEST
    Events: [opened]
  - Type: Cron
Actions:
  A:
    Identifier: aws/build@v1
    Configuration: {Steps: [{Run: a}]}
"),
        expect![[r#"
            wf.yaml:9:5: error: `Events` is not allowed in a PUSH trigger
              help: `Events` belongs to PULLREQUEST triggers
            wf.yaml:10:31: error: `FilesChanged`: invalid regular expression `(unclosed`: unclosed group
              help: FilesChanged entries are regular expressions matched against the whole name
            wf.yaml:11:11: error: a workflow may have only one SCHEDULE trigger
              help: merge the schedules into one cron expression or split the workflow
            wf.yaml:12:22: error: invalid schedule `Expression` `0 9 * * * *`: exactly one of day-of-month and day-of-week must be `?`
              help: use 6 fields `min hour day-of-month month day-of-week year` (UTC), with `?` in exactly one of day-of-month/day-of-week
            wf.yaml:14:14: error: unknown pull request event `opened`
              help: use OPEN, REVISION or CLOSED
            wf.yaml:15:11: error: unknown trigger `Type` `Cron`
              help: use `PUSH`, `PULLREQUEST`, `SCHEDULE` or `MANUAL`
        "#]],
    );
}

#[test]
fn yaml_1_1_booleans_and_compute() {
    check(
        &wf("Compute:
  Type: ec2
  SharedInstance: yes
Actions:
  A:
    Identifier: aws/build@v1
    Compute: {Type: Lambda}
    Timeout: 0
    Configuration: {Steps: [{Run: a}]}
  B:
    Identifier: aws/build@v1
    Outputs:
      AutoDiscoverReports: {Enabled: maybe}
    Configuration: {Steps: [{Run: b}]}
"),
        expect![[r#"
            wf.yaml:9:5: error: action `A` sets `Compute` but the workflow already does
              help: compute is set at workflow level or action level, not both: remove one
            wf.yaml:10:14: error: `Timeout` (minutes) must be a positive whole number, found `0`
              help: write a number such as `60`
            wf.yaml:15:38: error: `Enabled` must be a boolean, found `maybe`
              help: write `true`/`false` (YAML 1.1 `yes`/`no` also work)
        "#]],
    );
    check(
        &wf("Compute: {Type: EC2, SharedInstance: off}\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: a}]}\n"),
        expect![[r#"
            ok
        "#]],
    );
}

#[test]
fn action_shape_errors() {
    check(
        &wf("Actions:
  bad name:
    Identifier: aws/build@v1
    Configuration: {Steps: [{Run: a}]}
  NoKind:
    DependsOn: []
  Build:
    Identifier: build
    Configuration:
      steps: []
  Test:
    Identifier: aws/managed-test@v1
    Configuration:
      Steps:
        - run: lower case
        - Run:
      Container: {Registry: quay, Image: x}
  Empty:
    Actions: {}
"),
        expect![[r#"
            wf.yaml:4:3: error: action name `bad name` contains characters other than letters, digits, `_` and `-`
              help: rename it, e.g. `bad_name`
            wf.yaml:7:3: error: `NoKind` is neither an action nor an action group
              help: an action needs `Identifier` (e.g. `aws/build@v1`); a group needs `Actions`
            wf.yaml:10:17: error: `Identifier` `build` is not `owner/name@version` or `.`
              help: e.g. `aws/build@v1`, `aws/managed-test@v1.0.0`, or `.` for a custom action in this repository
            wf.yaml:17:11: error: unknown key `run` in a step
              help: did you mean `Run`? (keys are case-sensitive)
            wf.yaml:17:11: error: this step is missing the required key `Run`
              help: add `Run:`
            wf.yaml:19:7: error: `Run` must not be empty
              help: give it a value
            wf.yaml:19:29: error: unknown `Registry` `quay`
              help: use `CODECATALYST`, `ECR` or `DockerHub`
            wf.yaml:21:14: error: action group `Empty` has no actions
              help: add actions under its `Actions:` or remove the group
        "#]],
    );
}

#[test]
fn packages_caching_environment_kept() {
    let text = wf("Actions:
  A:
    Identifier: aws/build@v1
    Timeout: 30
    Environment:
      Name: dev
      Connections:
        - {Name: \"111122223333\", Role: deployer}
    Caching:
      FileCaching:
        npm:
          Path: ~/.npm
          RestoreKeys: [npm-]
    Packages:
      NpmConfiguration:
        PackageRegistries:
          - PackagesRepository: main-repo
            Scopes: [\"@cove\"]
      ExportAuthorizationToken: true
    Configuration:
      Container: {Registry: codecatalyst, Image: CodeCatalystLinux_x86_64:2024_03}
      Steps:
        - Run: npm ci
");
    let (w, warnings) = validate_file("wf.yaml", &text).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = &w.actions[0];
    expect![[r#"
        {
          "id": "A",
          "name": "A",
          "group_path": [],
          "identifier": "aws/build@v1",
          "kind": "build",
          "depends_on": [],
          "inputs": {
            "sources": [],
            "artifacts": [],
            "variables": []
          },
          "outputs": {
            "artifacts": [],
            "variables": [],
            "reports": []
          },
          "configuration": {
            "steps": [
              {
                "kind": "run",
                "command": "npm ci"
              }
            ],
            "container": {
              "registry": "CODECATALYST",
              "image": "CodeCatalystLinux_x86_64:2024_03"
            }
          },
          "timeout_minutes": 30,
          "environment": {
            "name": "dev",
            "connections": [
              {
                "name": "111122223333",
                "role": "deployer"
              }
            ]
          },
          "caching": [
            {
              "key": "npm",
              "paths": [
                "~/.npm"
              ],
              "restore_keys": [
                "npm-"
              ]
            }
          ],
          "packages": {
            "ExportAuthorizationToken": true,
            "NpmConfiguration": {
              "PackageRegistries": [
                {
                  "PackagesRepository": "main-repo",
                  "Scopes": [
                    "@cove"
                  ]
                }
              ]
            }
          }
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(a).expect("serializable"));
}

#[test]
fn document_markers() {
    check(
        &format!("{HEAD}Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {{Steps: [{{Run: a}}]}}\n---\nName: ignored\n"),
        expect![[r#"
            ok
            wf.yaml:7:1: warning: everything after this `---` is ignored (CodeCatalyst reads only the first document)
              help: remove the `---` line, or move the content above it
        "#]],
    );
    check(
        &format!("---\n{HEAD}Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {{Steps: [{{Run: a}}]}}\n"),
        expect![[r#"
            ok
            wf.yaml:1:1: warning: CodeCatalyst workflows must not use `---`
              help: remove this line
        "#]],
    );
}

#[test]
fn syntax_and_detection_errors() {
    check(
        "Name: [unclosed\n",
        expect![[r#"
            wf.yaml:2:1: error: YAML syntax error: while parsing a flow sequence, expected ',' or ']'
              help: check the indentation, quoting and brackets at and just before this position
        "#]],
    );
    check(
        "",
        expect![[r#"
        wf.yaml:1:1: error: the file is empty
          help: a workflow needs `Name`, `SchemaVersion` and `Actions`; a buildspec needs `version` and `phases`
    "#]],
    );
    check(
        "just: text\n",
        expect![[r#"
            wf.yaml:1:1: error: not a workflow: found neither CodeCatalyst keys (`SchemaVersion`, `Actions`) nor buildspec keys (`version`, `phases`)
              help: a CodeCatalyst workflow starts with `Name:`, `SchemaVersion: "1.0"` and `Actions:`; a buildspec with `version: 0.2` and `phases:`
        "#]],
    );
    check(
        "Name: a\nName: b\n",
        expect![[r#"
            wf.yaml:2:1: error: YAML syntax error: duplicate key `Name` in a mapping
              help: check the indentation, quoting and brackets at and just before this position
        "#]],
    );
}

#[test]
fn buildspec_on_failure_and_phases() {
    check_buildspec(
        "version: 0.2
phases:
  install:
    on-failure: CONTINUE
    runtime-versions: {python: 3.10}
    commands: [pip install x]
  build:
    on-failure: RETRY-2-.*timed out.*
    runtime-versions: {node: 20}
    commands:
      - echo a: b
      - make
    finally: [echo done]
  post-build:
    commands: [x]
  post_build:
    on-failure: EXPLODE
    commands: [y]
",
        expect![[r#"
            buildspec.yml:9:5: error: `runtime-versions` is only allowed in the install phase, not in `build`
              help: move it under `phases.install`
            buildspec.yml:11:9: error: this command was read as a mapping because it contains `: `
              help: quote the whole command, e.g. `- "echo a: b"`
            buildspec.yml:14:3: error: unknown key `post-build` in `phases`
              help: did you mean `post_build`? (keys are case-sensitive)
            buildspec.yml:17:17: error: invalid `on-failure` `EXPLODE`: expected ABORT, CONTINUE or a RETRY form
              help: use ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>
        "#]],
    );
}

#[test]
fn buildspec_normalized_form() {
    let text = "version: '0.2'
run-as: builder
env:
  shell: bash
  variables: {A: 1, B: yes, C: \"$PATH:/x\"}
  parameter-store: {P: /cove/param}
  secrets-manager: {S: \"db:password\"}
  exported-variables: [A]
  git-credential-helper: no
proxy: {upload-artifacts: yes, logs: no}
phases:
  install:
    runtime-versions: {python: 3.10, java: corretto17}
  build:
    on-failure: ABORT
    commands: [make]
    finally: [make clean]
artifacts:
  files: ['**/*']
  base-directory: out
  discard-paths: yes
  exclude-paths: [tmp/*]
  secondary-artifacts:
    logs: {files: [log/*], name: logs-$(date +%F)}
reports:
  unit: {files: [junit.xml], file-format: cucumberjson}
cache:
  paths: ['/root/.m2/**/*']
";
    let (w, warnings) = validate_file("ci/buildspec.yml", text).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    expect![[r#"
        {
          "name": "buildspec",
          "source_file": "ci/buildspec.yml",
          "format": "buildspec",
          "schema_version": "0.2",
          "run_mode": "QUEUED",
          "triggers": [],
          "actions": [
            {
              "id": "buildspec",
              "name": "buildspec",
              "group_path": [],
              "identifier": "buildspec@0.2",
              "kind": "build",
              "depends_on": [],
              "inputs": {
                "sources": [
                  "WorkflowSource"
                ],
                "artifacts": [],
                "variables": [
                  {
                    "name": "A",
                    "value": "1"
                  },
                  {
                    "name": "B",
                    "value": "yes"
                  },
                  {
                    "name": "C",
                    "value": "$PATH:/x"
                  }
                ]
              },
              "outputs": {
                "artifacts": [
                  {
                    "name": "primary",
                    "files": [
                      "**/*"
                    ],
                    "base_directory": "out",
                    "discard_paths": true,
                    "exclude_paths": [
                      "tmp/*"
                    ]
                  },
                  {
                    "name": "logs",
                    "files": [
                      "log/*"
                    ],
                    "name_template": "logs-$(date +%F)"
                  }
                ],
                "variables": [
                  "A"
                ],
                "reports": [
                  {
                    "name": "unit",
                    "format": "CUCUMBERJSON",
                    "files": [
                      "junit.xml"
                    ]
                  }
                ]
              },
              "configuration": {
                "steps": [
                  {
                    "kind": "phase",
                    "name": "install",
                    "runtime_versions": {
                      "java": "corretto17",
                      "python": "3.10"
                    },
                    "commands": []
                  },
                  {
                    "kind": "phase",
                    "name": "build",
                    "on_failure": "ABORT",
                    "commands": [
                      "make"
                    ],
                    "finally": [
                      "make clean"
                    ]
                  }
                ],
                "shell": "bash",
                "run_as": "builder",
                "git_credential_helper": false,
                "other": {
                  "proxy": {
                    "logs": false,
                    "upload-artifacts": true
                  }
                }
              },
              "caching": [
                {
                  "paths": [
                    "/root/.m2/**/*"
                  ]
                }
              ],
              "secrets": [
                {
                  "source": "parameter_store",
                  "env": "P",
                  "parameter": "/cove/param"
                },
                {
                  "source": "secrets_manager",
                  "env": "S",
                  "secret_id": "db",
                  "json_key": "password"
                }
              ]
            }
          ]
        }"#]]
    .assert_eq(&serde_json::to_string_pretty(&w).expect("serializable"));
}

#[test]
fn buildspec_errors() {
    check_buildspec(
        "version: 0.1
env:
  variables: {CODEBUILD_X: 1}
  exported-variables: [AWS_REGION]
  git-credential-helper: maybe
phases:
  build:
    commands: make
artifacts:
  name: x
reports:
  r: {files: [a], file-format: XML}
cache: {paths: [a], action: keep}
",
        expect![[r#"
            buildspec.yml:1:10: error: buildspec version 0.1 is not supported
              help: use `version: 0.2` (0.1 runs every command in its own shell, without state carry-over)
            buildspec.yml:3:15: error: environment variable `CODEBUILD_X` uses the reserved `CODEBUILD_` prefix
              help: rename it
            buildspec.yml:4:24: error: `AWS_REGION` cannot be exported (reserved prefix)
              help: rename the variable
            buildspec.yml:5:26: error: `env.git-credential-helper` must be a boolean, found `maybe`
              help: write `true`/`false` (YAML 1.1 `yes`/`no` also work)
            buildspec.yml:8:15: error: `commands` must be a list, found a single value
              help: write one `- item` per line, or `[a, b]`
            buildspec.yml:10:3: error: `artifacts` requires `files`
              help: add `files:` with one glob per line, e.g. `- '**/*'`
            buildspec.yml:12:32: error: unknown report `file-format` `XML`
              help: use one of JUNITXML, CUCUMBERJSON, NUNITXML, NUNIT3XML, TESTNGXML, VISUALSTUDIOTRX, CLOVERXML, COBERTURAXML, JACOCOXML, SIMPLECOV
            buildspec.yml:13:29: error: unknown `cache.action` `keep`
              help: use `restore` or `save`
        "#]],
    );
    check_buildspec(
        "version: 0.2\n",
        expect![[r#"
        buildspec.yml:1:1: error: the buildspec has no `phases`
          help: add `phases:` with at least `build: {commands: [...]}`
    "#]],
    );
}

#[test]
fn implicit_buildspec_workflow_runs_on_default_branch_pushes() {
    let text = "version: 0.2\nphases:\n  build:\n    commands: [make]\n";
    let (w, _) =
        workflows::implicit_buildspec_workflow("buildspec.yml", text, "main").expect("valid");
    assert_eq!(w.name, "buildspec");
    assert!(w.matches_push("main", &["src/a.rs"]));
    assert!(!w.matches_push("main2", &[]));
    assert!(!w.matches_push("feature", &[]));
    let (w, _) = workflows::implicit_buildspec_workflow("buildspec.yml", text, "release/1.0")
        .expect("valid");
    assert!(w.matches_push("release/1.0", &[]));
    assert!(
        !w.matches_push("release/1x0", &[]),
        "the branch is a literal, not a regex"
    );
    let cc = format!("{HEAD}Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {{Steps: [{{Run: a}}]}}\n");
    assert!(workflows::implicit_buildspec_workflow("wf.yaml", &cc, "main").is_err());
}

#[test]
fn packages_under_configuration_as_in_aws_examples() {
    let text = wf("Actions:
  Build:
    Identifier: aws/build-beta@v1
    Configuration:
      Packages:
        NpmConfiguration:
          PackageRegistries:
            - PackagesRepository: main-repo
            - PackagesRepository: scoped-repo
              Scopes: [\"@scope1\"]
      Steps:
        - Run: npm ci
");
    let (w, _) = validate_file("wf.yaml", &text).expect("valid");
    let a = &w.actions[0];
    assert_eq!(a.kind, workflows::ActionKind::Build);
    expect![[r#"{"NpmConfiguration":{"PackageRegistries":[{"PackagesRepository":"main-repo"},{"PackagesRepository":"scoped-repo","Scopes":["@scope1"]}]}}"#]].assert_eq(&serde_json::to_string(&a.packages).expect("json"));
    check(
        &wf("Actions:
  Build:
    Identifier: aws/build@v1
    Packages: {ExportAuthorizationToken: yes}
    Configuration:
      Packages: {ExportAuthorizationToken: true}
      Steps: [{Run: a}]
"),
        expect![[r#"
            wf.yaml:8:7: error: action `Build` sets `Packages` twice
              help: keep either the action-level `Packages` or `Configuration.Packages`
        "#]],
    );
}
