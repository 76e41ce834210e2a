//! Cove's refusals and warnings (`validate_for_cove`, `workflows::support`):
//! every construct the parser accepts either runs, warns, or is refused at
//! its position with "not supported by Cove: …". On the code before this
//! module, every file here was accepted without a word.

use workflows::{validate_file, validate_for_cove, Diagnostic};

fn refusals(text: &str) -> Vec<(usize, usize, String)> {
    validate_file("wf.yaml", text).expect("valid for the format");
    match validate_for_cove("wf.yaml", text) {
        Ok((_, w)) => panic!("accepted by Cove; warnings {w:?}"),
        Err(diags) => diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| (d.line, d.column, d.message.clone()))
            .collect(),
    }
}

fn cove_warnings(text: &str) -> Vec<Diagnostic> {
    let (_, plain) = validate_file("wf.yaml", text).expect("valid");
    let (_, warnings) = validate_for_cove("wf.yaml", text).expect("accepted by Cove");
    warnings
        .into_iter()
        .filter(|w| !plain.contains(w))
        .collect()
}

fn action(extra: &str) -> String {
    format!(
        "Name: w\nSchemaVersion: '1.0'\nActions:\n  Build:\n    Identifier: aws/build@v1\n{extra}    Configuration:\n      Steps:\n        - Run: make\n"
    )
}

#[track_caller]
fn refused_at(text: &str, line: usize, column: usize, needle: &str) {
    let r = refusals(text);
    assert!(
        r.iter().any(|(l, c, m)| *l == line
            && *c == column
            && m.starts_with("not supported by Cove: ")
            && m.contains(needle)),
        "want {line}:{column} `{needle}`, got {r:?}"
    );
}

#[test]
fn caches_run_and_globs_are_refused() {
    let t = action("    Caching:\n      FileCaching:\n        deps:\n          Path: node_modules\n          RestoreKeys: [old]\n");
    assert!(cove_warnings(&t).is_empty());
    let t = action("    Caching:\n      FileCaching:\n        deps:\n          Path: '*.jar'\n");
    refused_at(&t, 9, 17, "cache path `*.jar`");
    let b = "version: 0.2\nphases:\n  build:\n    commands: [make]\ncache:\n  paths: ['/root/.m2/**/*', 'deps']\n  key: k\n  fallback-keys: [j]\n";
    assert!(cove_warnings(b).is_empty());
    let b = "version: 0.2\nphases:\n  build:\n    commands: [make]\ncache:\n  paths: ['/root/.m2/**/*.jar']\n";
    refused_at(b, 6, 11, "cache path");
    let b = "version: 0.2\nphases:\n  build:\n    commands: [make]\ncache:\n  paths: [deps]\n  action: restore\n";
    refused_at(b, 7, 3, "`cache.action`");
}

#[test]
fn reports_run_in_formats_cove_reads_and_auto_discovery_is_refused() {
    let t = action("    Outputs:\n      Reports:\n        unit:\n          Format: JUNITXML\n          IncludePaths: [out/*.xml]\n          SuccessCriteria: {PassRate: 100}\n        cov:\n          Format: LCOV\n          IncludePaths: [lcov.info]\n          SuccessCriteria: {LineCoverage: 80, BranchCoverage: 50}\n");
    assert!(cove_warnings(&t).is_empty());
    let t = action("    Outputs:\n      Reports:\n        lint:\n          Format: PYLINTJSON\n          IncludePaths: [lint.json]\n");
    refused_at(&t, 9, 19, "report format `PYLINTJSON`");
    let t = action("    Outputs:\n      Reports:\n        unit:\n          Format: JUNITXML\n          IncludePaths: [a.xml]\n          SuccessCriteria:\n            Vulnerabilities: {Severity: HIGH, Number: 0}\n");
    refused_at(&t, 12, 13, "success criterion `Vulnerabilities`");
    let t = action("    Outputs:\n      AutoDiscoverReports:\n        Enabled: true\n");
    refused_at(&t, 7, 7, "AutoDiscoverReports");
    // disabled auto-discovery asks for nothing
    let t = action("    Outputs:\n      AutoDiscoverReports:\n        Enabled: false\n");
    assert!(cove_warnings(&t).is_empty());
    // buildspec report groups
    let b = "version: 0.2\nphases:\n  build:\n    commands: [make]\nreports:\n  unit:\n    files: ['*.xml']\n    file-format: junitxml\n";
    assert!(cove_warnings(b).is_empty());
    let b = "version: 0.2\nphases:\n  build:\n    commands: [make]\nreports:\n  cov:\n    files: ['*.json']\n    file-format: SIMPLECOV\n";
    refused_at(b, 8, 18, "report format `SIMPLECOV`");
}

#[test]
fn actions_cove_cannot_run_are_refused_at_their_identifier() {
    for (id, needle) in [
        ("aws/github-actions-runner@v1", "GitHub Actions runner"),
        ("aws/cdk-deploy@v1", "managed action `aws/cdk-deploy@v1`"),
        ("aws/cdk-bootstrap@v1", "managed action"),
        (".", "custom actions"),
        ("sonar/sonarcloud-scan@v1.0.7", "third-party action"),
    ] {
        let t = format!(
            "Name: w\nSchemaVersion: '1.0'\nActions:\n  Other:\n    Identifier: {id}\n    Configuration:\n      Steps:\n        - run: echo hi\n"
        );
        refused_at(&t, 5, 17, needle);
    }
}

#[test]
fn compute_types_and_fleets() {
    // A provisioned fleet runs on the agent pool of that name; Arm64 on an arm64 agent.
    assert!(cove_warnings(&action(
        "    Compute:\n      Type: EC2\n      Fleet: my-provisioned\n"
    ))
    .is_empty());
    let w = cove_warnings(&action(
        "    Compute:\n      Type: EC2\n      Fleet: Linux.Arm64.Large\n",
    ));
    assert!(
        w.len() == 1 && w[0].message.contains("arch=arm64") && w[0].line == 8,
        "{w:?}"
    );
    let t = action("    Compute:\n      Type: EC2\n      Fleet: \"my fleet\"\n");
    refused_at(&t, 8, 14, "fleet name `my fleet` as an agent pool");
    let t = "Name: w\nSchemaVersion: '1.0'\nCompute:\n  Type: EC2\n  SharedInstance: true\nActions:\n  B:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: make}]}\n";
    refused_at(t, 5, 19, "SharedInstance");
    let w = cove_warnings(&action(
        "    Compute:\n      Type: Lambda\n      Fleet: Linux.x86-64.Large\n",
    ));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].message.contains("Lambda") && w[0].line == 7);
    assert!(w[1].message.contains("job limits") && w[1].line == 8);
    assert!(cove_warnings(&action("    Compute:\n      Type: EC2\n")).is_empty());
}

#[test]
fn sources_containers_and_draft_events() {
    let t = action("    Inputs:\n      Sources: [WorkflowSource, Other]\n");
    refused_at(&t, 7, 33, "source `Other`");
    let t = format!(
        "{}      Container:\n        Registry: CODECATALYST\n        Image: CodeCatalystLinux_x86_64:2024_03\n",
        action("")
    );
    refused_at(&t, 11, 16, "curated image");
    // an image the agent's engine can pull runs (the private-subnet tests use this form)
    let t = format!(
        "{}      Container:\n        Registry: CODECATALYST\n        Image: cove/universal:latest\n",
        action("")
    );
    assert!(cove_warnings(&t).is_empty());
    let t = "Name: w\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [OPEN, DRAFT]\nActions:\n  B:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: make}]}\n";
    refused_at(t, 5, 20, "DRAFT");
}

#[test]
fn timeout_environment_and_packages_are_accepted() {
    let t = action(
        "    Timeout: 10\n    Environment:\n      Name: prod\n    Packages:\n      ExportAuthorizationToken: true\n",
    );
    assert!(cove_warnings(&t).is_empty());
}

#[test]
fn buildspec_constructs_cove_does_not_run() {
    let base = "version: 0.2\nphases:\n  build:\n    commands: [make]\n";
    for (extra, line, col, needle) in [
        ("run-as: builder\n", 5, 1, "`run-as`"),
        ("env:\n  shell: powershell.exe\n", 6, 10, "Windows shell"),
        (
            "env:\n  parameter-store:\n    K: /p\n",
            6,
            3,
            "env.parameter-store",
        ),
        (
            "env:\n  secrets-manager:\n    K: s:k\n",
            6,
            3,
            "env.secrets-manager",
        ),
        (
            "env:\n  git-credential-helper: yes\n",
            6,
            26,
            "git-credential-helper",
        ),
    ] {
        refused_at(&format!("{base}{extra}"), line, col, needle);
    }
    let t = "version: 0.2\nphases:\n  install:\n    run-as: x\n    commands: [make]\n";
    refused_at(t, 4, 5, "`run-as`");
}

#[test]
fn buildspec_constructs_that_run_with_a_warning() {
    let t = "version: 0.2\nproxy:\n  logs: yes\nphases:\n  install:\n    runtime-versions: {python: 3.12}\n    commands: [make]\nartifacts:\n  files: [a]\n  name: x-$(date)\n  s3-prefix: p\nbatch:\n  build-list:\n    - identifier: a\n";
    let w = cove_warnings(t);
    let lines: Vec<usize> = w.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![2, 6, 10, 11, 12], "{w:?}");
}

#[test]
fn a_batch_only_buildspec_needs_its_buildspecs() {
    // Without a reader (the server and the CLI give one: tests/batch.rs),
    // the builds' buildspecs cannot be read: an error at each.
    let b = "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: a.yml\n";
    let errs = validate_for_cove("wf.yaml", b).unwrap_err();
    assert!(
        errs.iter()
            .any(|d| d.line == 5 && d.column == 18 && d.message.contains("cannot be read here")),
        "{errs:?}"
    );
}
