//! Batch buildspecs end to end (issue 17 item 8): a real in-process server whose embedded
//! agent runs the builds on the real Docker engine. A pushed root buildspec with only `batch:`
//! becomes one job per build, each running the phases of the buildspec it names (read at the
//! pushed commit) with its own `env.variables`: a build graph whose `test` waits for `compile`
//! and whose failing `lint` has `ignore-failure` (the run succeeds), and a 2×2 build matrix.
//! Before this, such a buildspec was a workflow error ("not supported by Cove: a batch-only
//! buildspec") and nothing ran.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use cove_api::{JobState, Run, RunState};

use common::{git, ok, ADMIN_TOKEN};

const GRAPH: &str = r#"version: 0.2
batch:
  fast-fail: false
  build-graph:
    - identifier: compile
      buildspec: ci/step.yml
      env:
        variables:
          STEP: compile
    - identifier: test
      buildspec: ./ci/step.yml
      depend-on:
        - compile
      env:
        variables:
          STEP: test
    - identifier: lint
      buildspec: ci/lint.yml
      ignore-failure: true
"#;

const STEP: &str = r#"version: 0.2
env:
  variables:
    STEP: none
  exported-variables: [DONE]
phases:
  build:
    commands:
      - DONE="$STEP-done"
      - echo "step $STEP"
"#;

const LINT: &str =
    "version: 0.2\nphases:\n  build:\n    commands:\n      - echo linting\n      - exit 3\n";

const MATRIX: &str = r#"version: 0.2
batch:
  build-matrix:
    dynamic:
      buildspec:
        - ci/one.yml
        - ci/two.yml
      env:
        variables:
          MODE:
            - fast
            - slow
"#;

const FAST_FAIL: &str = r#"version: 0.2
batch:
  fast-fail: true
  build-list:
    - identifier: broken
      buildspec: ci/broken.yml
    - identifier: slow
      buildspec: ci/slow.yml
"#;

fn matrix_child(name: &str) -> String {
    format!(
        "version: 0.2\nenv:\n  exported-variables: [SEEN]\nphases:\n  build:\n    commands:\n      - SEEN=\"{name}-$MODE\"\n      - echo \"matrix $SEEN\"\n"
    )
}

fn cove(home: &Path, url: &str, args: &[&str]) -> Output {
    common::cove_command(home, url, ADMIN_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

/// Creates repository `name`, pushes `files` to its `main`, and returns its run once ended.
fn push_and_wait(home: &Path, url: &str, dir: &Path, name: &str, files: &[(&str, &str)]) -> Run {
    ok(&cove(home, url, &["repo", "create", name]));
    std::fs::create_dir_all(dir.join("ci")).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "batch"]);
    git(
        dir,
        &["push", "-q", &common::admin_git_url(url, name), "main"],
    );
    let start = Instant::now();
    let run = loop {
        let out = ok(&cove(
            home,
            url,
            &["run", "list", "--repo", name, "--output", "json"],
        ));
        let runs: Vec<Run> = serde_json::from_str(&out).unwrap();
        if let Some(r) = runs.first().filter(|r| r.state.is_terminal()) {
            break r.clone();
        }
        if runs.is_empty() && start.elapsed() > Duration::from_secs(20) {
            let errors = cove(home, url, &["run", "list", "--repo", name]);
            panic!("no run; workflow errors? {errors:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "run not done: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    serde_json::from_str(&ok(&cove(
        home,
        url,
        &["run", "show", &run.id.to_string(), "--output", "json"],
    )))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_buildspecs_run_as_a_graph_and_a_matrix_of_jobs() {
    let Some(s) = common::serve_jobs(|_| {}).await else {
        return;
    };
    let (home, url) = (s.home.path().to_path_buf(), s.url.clone());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // the graph: compile → test, and lint (fails, ignored)
        let step = STEP.to_string();
        let run = push_and_wait(
            &home,
            &url,
            &dir.join("graph"),
            "graph",
            &[
                ("buildspec.yml", GRAPH),
                ("ci/step.yml", &step),
                ("ci/lint.yml", LINT),
            ],
        );
        let job = |a: &str| {
            run.jobs
                .iter()
                .find(|j| j.action == a)
                .unwrap_or_else(|| panic!("no job {a}: {run:#?}"))
        };
        assert_eq!(run.jobs.len(), 3, "{run:#?}");
        assert_eq!(job("compile").state, JobState::Succeeded, "{run:#?}");
        assert_eq!(job("test").state, JobState::Succeeded, "{run:#?}");
        assert_eq!(job("lint").state, JobState::Failed, "{run:#?}");
        assert_eq!(
            run.state,
            RunState::Succeeded,
            "an ignore-failure build's failure does not fail the run: {run:#?}"
        );
        assert_eq!(job("test").depends_on, vec!["compile".to_string()]);
        assert!(
            job("test").started_at_ms.unwrap() >= job("compile").finished_at_ms.unwrap(),
            "test started before compile ended: {run:#?}"
        );
        // each build's env.variables over its buildspec's
        assert_eq!(job("compile").variables["DONE"], "compile-done");
        assert_eq!(job("test").variables["DONE"], "test-done");
        assert!(job("lint").ignore_failure && !job("test").ignore_failure);
        let shown = ok(&cove(&home, &url, &["run", "show", &run.id.to_string()]));
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("lint") && l.contains("(failure ignored)")),
            "{shown}"
        );
        let log = ok(&cove(
            &home,
            &url,
            &["run", "logs", &run.id.to_string(), "test"],
        ));
        assert!(log.contains("step test"), "{log}");

        // the matrix: 2 buildspecs × 2 values
        let (one, two) = (matrix_child("one"), matrix_child("two"));
        let run = push_and_wait(
            &home,
            &url,
            &dir.join("matrix"),
            "matrix",
            &[
                ("buildspec.yml", MATRIX),
                ("ci/one.yml", &one),
                ("ci/two.yml", &two),
            ],
        );
        assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
        let mut seen: Vec<(String, String)> = run
            .jobs
            .iter()
            .map(|j| {
                assert_eq!(j.state, JobState::Succeeded, "{run:#?}");
                assert!(j.depends_on.is_empty());
                (j.action.clone(), j.variables["SEEN"].clone())
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("one-fast".to_string(), "one-fast".to_string()),
                ("one-slow".to_string(), "one-slow".to_string()),
                ("two-fast".to_string(), "two-fast".to_string()),
                ("two-slow".to_string(), "two-slow".to_string()),
            ]
        );

        // fast-fail: the failed build stops the other one (skipped before it started, or
        // cancelled while it ran), and the run fails
        let run = push_and_wait(
            &home,
            &url,
            &dir.join("fastfail"),
            "fastfail",
            &[
                ("buildspec.yml", FAST_FAIL),
                ("ci/broken.yml", LINT),
                (
                    "ci/slow.yml",
                    "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 30\n      - echo slept\n",
                ),
            ],
        );
        assert_eq!(run.state, RunState::Failed, "{run:#?}");
        let state = |a: &str| run.jobs.iter().find(|j| j.action == a).unwrap().state;
        assert_eq!(state("broken"), JobState::Failed, "{run:#?}");
        assert!(
            matches!(state("slow"), JobState::Skipped | JobState::Cancelled),
            "{run:#?}"
        );
    })
    .await
    .unwrap();
}
