//! Batch buildspecs (issue 17 item 8): a buildspec with only `batch:` is a
//! run of builds, each running the phases of the buildspec it names, with
//! CodeBuild's `depend-on`, `ignore-failure`, `env` and matrix semantics.
//! Before this, every batch-only file here was refused ("not supported by
//! Cove: a batch-only buildspec").

use std::collections::{BTreeSet, HashMap};

use workflows::{
    validate_file, validate_for_cove, validate_for_cove_with, BuildspecReader, Diagnostic,
    ReadError, RunPlan, Step, Validated,
};

/// Files of a repository, by path; counts the reads.
#[derive(Default)]
struct Repo {
    files: HashMap<String, String>,
    reads: Vec<String>,
}

impl Repo {
    fn with(files: &[(&str, &str)]) -> Repo {
        Repo {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            reads: Vec::new(),
        }
    }
}

impl BuildspecReader for Repo {
    fn read(&mut self, path: &str) -> Result<String, ReadError> {
        self.reads.push(path.to_string());
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| ReadError::NotFound(path.to_string()))
    }
}

const OK: &str = "version: 0.2\nenv:\n  variables:\n    MODE: default\n    KEEP: kept\nphases:\n  build:\n    commands:\n      - echo $MODE\n";
const FAILS: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - exit 3\n";

fn run(text: &str, repo: &mut Repo) -> Result<Validated, Vec<Diagnostic>> {
    validate_for_cove_with("buildspec.yml", text, repo)
}

fn vars(a: &workflows::Action) -> Vec<(String, String)> {
    a.inputs
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect()
}

#[track_caller]
fn error_at(errs: &[Diagnostic], file: &str, line: usize, column: usize, needle: &str) {
    assert!(
        errs.iter().any(|d| d.is_error()
            && d.file == file
            && d.line == line
            && d.column == column
            && d.message.contains(needle)),
        "no error `{needle}` at {file}:{line}:{column} in {errs:#?}"
    );
}

const GRAPH: &str = "version: 0.2
batch:
  fast-fail: false
  build-graph:
    - identifier: compile
      buildspec: ci/ok.yml
      env:
        variables:
          MODE: compile
    - identifier: test
      buildspec: ./ci/ok.yml
      depend-on:
        - compile
      env:
        image: debian:bookworm
    - identifier: lint
      buildspec: ci/fails.yml
      ignore-failure: true
";

#[test]
fn a_build_graph_becomes_a_dag_of_actions() {
    let mut repo = Repo::with(&[("ci/ok.yml", OK), ("ci/fails.yml", FAILS)]);
    let (w, warnings) = run(GRAPH, &mut repo).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    let ids: Vec<&str> = w.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["compile", "test", "lint"]);
    // each file read once, by its normalized path
    assert_eq!(repo.reads, ["ci/ok.yml", "ci/fails.yml"]);

    let compile = w.action("compile").unwrap();
    assert_eq!(
        vars(compile),
        [
            ("MODE".into(), "compile".into()),
            ("KEEP".into(), "kept".into())
        ],
        "the build's variables override the buildspec's"
    );
    let Step::Phase(p) = &compile.configuration.steps[0] else {
        panic!("phases")
    };
    assert_eq!(p.commands, ["echo $MODE"]);
    assert!(compile.configuration.container.is_none());

    let test = w.action("test").unwrap();
    assert_eq!(test.depends_on[0].action, "compile");
    assert_eq!(
        test.configuration.container.as_ref().unwrap().image,
        "debian:bookworm"
    );
    assert_eq!(vars(test)[0], ("MODE".into(), "default".into()));

    let lint = w.action("lint").unwrap();
    let batch = lint.batch.as_ref().unwrap();
    assert!(batch.ignore_failure);
    assert_eq!(batch.buildspec, "ci/fails.yml");
    assert!(!test.batch.as_ref().unwrap().ignore_failure);
    assert!(!w.fast_fail);

    let plan = RunPlan::new(&w).unwrap();
    assert_eq!(plan.ready(&BTreeSet::new()), ["compile", "lint"]);
    let done: BTreeSet<String> = ["compile".to_string()].into();
    assert_eq!(plan.ready(&done), ["test", "lint"]);
}

#[test]
fn fast_fail_and_the_batch_timeout_reach_the_workflow() {
    let text = "version: 0.2\nbatch:\n  fast-fail: true\n  build-timeout-in-mins: 30\n  build-list:\n    - buildspec: a.yml\n    - buildspec: a.yml\n";
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let (w, warnings) = run(text, &mut repo).expect("valid");
    assert!(w.fast_fail);
    // build-list identifiers are optional
    let ids: Vec<&str> = w.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["build1", "build2"]);
    assert!(w.actions.iter().all(|a| a.depends_on.is_empty()));
    assert!(w.actions.iter().all(|a| a.timeout_minutes == Some(30)));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("build-timeout-in-mins"));
}

#[test]
fn a_matrix_is_the_product_of_its_dynamic_values() {
    let text = "version: 0.2
batch:
  build-matrix:
    static:
      ignore-failure: true
      env:
        variables:
          KEEP: static
    dynamic:
      buildspec:
        - ci/one.yml
        - ci/two.yml
      env:
        variables:
          MODE:
            - fast
            - slow
";
    let mut repo = Repo::with(&[("ci/one.yml", OK), ("ci/two.yml", OK)]);
    let (w, _) = run(text, &mut repo).expect("valid");
    let got: Vec<(String, String, String)> = w
        .actions
        .iter()
        .map(|a| {
            let v = vars(a);
            let mode = v.iter().find(|(k, _)| k == "MODE").unwrap().1.clone();
            (
                a.id.clone(),
                a.batch.as_ref().unwrap().buildspec.clone(),
                mode,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("one-fast".into(), "ci/one.yml".into(), "fast".into()),
            ("one-slow".into(), "ci/one.yml".into(), "slow".into()),
            ("two-fast".into(), "ci/two.yml".into(), "fast".into()),
            ("two-slow".into(), "ci/two.yml".into(), "slow".into()),
        ]
    );
    for a in &w.actions {
        assert!(a.batch.as_ref().unwrap().ignore_failure);
        assert!(vars(a).contains(&("KEEP".into(), "static".into())));
        assert!(a.depends_on.is_empty(), "matrix builds run in parallel");
    }
}

#[test]
fn a_matrix_of_images_sets_each_build_image() {
    let text = "version: 0.2\nbatch:\n  build-matrix:\n    static:\n      env:\n        type: LINUX_CONTAINER\n    dynamic:\n      buildspec: a.yml\n      env:\n        image: [debian:bookworm, 'busybox:1.36']\n";
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let (w, _) = run(text, &mut repo).expect("valid");
    let got: Vec<(&str, &str)> = w
        .actions
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.configuration.container.as_ref().unwrap().image.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("debian_bookworm", "debian:bookworm"),
            ("busybox_1_36", "busybox:1.36")
        ]
    );
}

#[test]
fn errors_point_into_the_right_file() {
    // a missing file: at the `buildspec` value of the batch file
    let mut repo = Repo::with(&[("ci/ok.yml", OK)]);
    let errs = run(GRAPH, &mut repo).unwrap_err();
    error_at(&errs, "buildspec.yml", 17, 18, "no file `ci/fails.yml`");

    // an invalid referenced buildspec: its own error in its own file, and one
    // at the build that names it
    let bad = "version: 0.2\nphases:\n  build:\n    commandz: [x]\n";
    let mut repo = Repo::with(&[("ci/ok.yml", OK), ("ci/fails.yml", bad)]);
    let errs = run(GRAPH, &mut repo).unwrap_err();
    error_at(&errs, "ci/fails.yml", 4, 5, "unknown key `commandz`");
    error_at(&errs, "buildspec.yml", 17, 18, "is not valid");
    assert_eq!(errs[0].file, "buildspec.yml", "the batch file's first");

    // a construct Cove refuses inside a referenced buildspec
    let runas = "version: 0.2\nrun-as: root\nphases:\n  build:\n    commands: [x]\n";
    let mut repo = Repo::with(&[("ci/ok.yml", OK), ("ci/fails.yml", runas)]);
    let errs = run(GRAPH, &mut repo).unwrap_err();
    error_at(
        &errs,
        "ci/fails.yml",
        2,
        1,
        "not supported by Cove: `run-as`",
    );

    // a referenced buildspec that is itself a batch
    let nested = "version: 0.2\nbatch:\n  build-list:\n    - buildspec: x.yml\n";
    let mut repo = Repo::with(&[("ci/ok.yml", OK), ("ci/fails.yml", nested)]);
    let errs = run(GRAPH, &mut repo).unwrap_err();
    error_at(&errs, "buildspec.yml", 17, 18, "has no `phases`");
}

#[test]
fn bad_batches_are_refused_at_their_position() {
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n",
            4,
            7,
            "names no `buildspec`",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: ../a.yml\n",
            5,
            18,
            "leaves the repository",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: /a.yml\n",
            5,
            18,
            "absolute path",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: arn:aws:s3:::b/a.yml\n",
            5,
            18,
            "not supported by Cove: a buildspec stored in S3",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: a.yml\n      depend-on: [b]\n    - identifier: b\n      buildspec: a.yml\n      depend-on: [a]\n",
            2,
            1,
            "cycle",
        ),
        (
            "version: 0.2\nbatch:\n  build-list:\n    - identifier: a\n      buildspec: a.yml\n      depend-on: [a]\n",
            6,
            7,
            "`depend-on` belongs to `build-graph`",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a b\n      buildspec: a.yml\n",
            4,
            19,
            "may use only letters",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: a.yml\n    - identifier: a\n      buildspec: a.yml\n",
            6,
            19,
            "a second build",
        ),
        (
            "version: 0.2\nbatch:\n  build-graph: []\n  build-list: []\n",
            4,
            3,
            "a batch has one type",
        ),
        (
            "version: 0.2\nbatch:\n  build-fanout:\n    parallelism: 3\n",
            3,
            3,
            "not supported by Cove: `build-fanout`",
        ),
        (
            "version: 0.2\nbatch:\n  build-list:\n    - buildspec: a.yml\n      env:\n        privileged-mode: true\n",
            6,
            26,
            "not supported by Cove: `privileged-mode: true`",
        ),
        (
            "version: 0.2\nbatch:\n  build-list:\n    - buildspec: a.yml\n      env:\n        image: aws/codebuild/standard:7.0\n",
            6,
            16,
            "curated image",
        ),
        (
            "version: 0.2\nbatch:\n  build-matrix:\n    dynamic:\n      buildspec: a.yml\n      env:\n        image: [a, 'aws/codebuild/standard:7.0']\n",
            7,
            20,
            "curated image",
        ),
        (
            "version: 0.2\nbatch:\n  build-list:\n    - buildspec: a.yml\n      env:\n        type: WINDOWS_SERVER_2019_CONTAINER\n",
            6,
            15,
            "environment type",
        ),
    ];
    for (text, line, col, needle) in cases {
        let errs = run(text, &mut repo).expect_err(text);
        error_at(&errs, "buildspec.yml", *line, *col, needle);
    }
}

#[test]
fn compute_type_and_debug_sessions_warn() {
    let text = "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: a.yml\n      debug-session: true\n      env:\n        compute-type: BUILD_GENERAL1_LARGE\n";
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let (_, warnings) = run(text, &mut repo).expect("valid");
    let at: Vec<(usize, usize)> = warnings.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(6, 22), (8, 23)], "{warnings:?}");
}

#[test]
fn batches_are_bounded() {
    // 1000 × 1000 values: refused from the counts, without building them
    let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    let list = values.join(", ");
    let text = format!("version: 0.2\nbatch:\n  build-matrix:\n    dynamic:\n      buildspec: a.yml\n      env:\n        variables:\n          A: [{list}]\n          B: [{list}]\n");
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let started = std::time::Instant::now();
    let errs = run(&text, &mut repo).unwrap_err();
    error_at(&errs, "buildspec.yml", 3, 3, "makes 1000000 builds");
    assert!(repo.reads.is_empty(), "nothing read");
    assert!(started.elapsed().as_secs() < 5, "bounded time");

    // at most 16 different buildspec files
    let mut text = String::from("version: 0.2\nbatch:\n  build-list:\n");
    let mut files = Vec::new();
    for i in 0..20 {
        text.push_str(&format!("    - buildspec: f{i}.yml\n"));
        files.push((format!("f{i}.yml"), OK.to_string()));
    }
    let mut repo = Repo {
        files: files.into_iter().collect(),
        reads: Vec::new(),
    };
    let errs = run(&text, &mut repo).unwrap_err();
    error_at(
        &errs,
        "buildspec.yml",
        20,
        18,
        "more than 16 different buildspec files",
    );
    assert_eq!(repo.reads.len(), 16);

    // the text all builds run: at most 8 MiB
    let big = format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n{}",
        "      - echo 0123456789012345678901234567890123456789012345678901234567890123456789\n"
            .repeat(11_000)
    );
    assert!(big.len() < 1024 * 1024);
    let mut text = String::from("version: 0.2\nbatch:\n  build-list:\n");
    for _ in 0..100 {
        text.push_str("    - buildspec: big.yml\n");
    }
    let mut repo = Repo::with(&[("big.yml", &big)]);
    let errs = run(&text, &mut repo).unwrap_err();
    error_at(&errs, "buildspec.yml", 2, 1, "more than 8 MiB");
}

#[test]
fn without_a_reader_the_builds_cannot_be_read() {
    let text = "version: 0.2\nbatch:\n  build-list:\n    - buildspec: a.yml\n";
    let errs = validate_for_cove("buildspec.yml", text).unwrap_err();
    error_at(&errs, "buildspec.yml", 4, 18, "cannot be read here");
    // the format's own rules accept it, with no actions
    let (w, _) = validate_file("buildspec.yml", text).expect("valid for CodeBuild");
    assert!(w.actions.is_empty());
    assert!(w.batch.is_some());
}

#[test]
fn a_batch_beside_phases_still_runs_the_phases_as_one_build() {
    let text = "version: 0.2\nphases:\n  build:\n    commands: [make]\nbatch:\n  build-graph:\n    - identifier: a\n";
    let mut repo = Repo::default();
    let (w, warnings) = run(text, &mut repo).expect("valid");
    assert_eq!(w.actions.len(), 1);
    assert_eq!(w.actions[0].id, "buildspec");
    assert!(warnings.iter().any(|d| d.message.contains("not started")));
    assert!(repo.reads.is_empty());
}

#[test]
fn the_batch_files_own_settings_warn() {
    // each build runs its own buildspec's env and artifacts: the batch file's would be ignored
    let text = "version: 0.2\nenv:\n  variables:\n    A: b\nbatch:\n  build-list:\n    - buildspec: a.yml\nartifacts:\n  files: [x]\n";
    let mut repo = Repo::with(&[("a.yml", OK)]);
    let (_, warnings) = run(text, &mut repo).expect("valid");
    let at: Vec<(usize, usize)> = warnings.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(2, 1), (8, 1)], "{warnings:?}");
    assert!(warnings[0].message.contains("has no effect"));
}
