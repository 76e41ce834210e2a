//! Test and coverage reports end to end (issue 17): a real in-process server whose embedded
//! agent runs the actions on the real Docker engine. An action's steps write JUnit XML and
//! LCOV files; the reports are collected after the steps, stored with the run and shown by
//! `cove run reports` (totals, the failed case with its message, coverage per file); a report
//! below its `SuccessCriteria` fails its action (and skips its dependents) although every
//! step succeeded, as in CodeCatalyst. Before issue 17, `Outputs.Reports` was accepted and
//! ignored: the run succeeded and there was nothing to show.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use cove_api::{JobState, Run, RunReport, RunState};

use common::{git, ok, ADMIN_TOKEN};

const WORKFLOW: &str = r#"Name: reports
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Tests:
    Identifier: aws/build@v1
    Outputs:
      Reports:
        unit:
          Format: JUNITXML
          IncludePaths: [out/*.xml]
          SuccessCriteria:
            PassRate: 100
        cov:
          Format: LCOV
          IncludePaths: [lcov.info]
          SuccessCriteria:
            LineCoverage: 50
    Configuration:
      Steps:
        - Run: mkdir -p out
        - Run: |
            cat > out/junit.xml <<'XML'
            <testsuite name="calc">
              <testcase classname="calc.Add" name="adds"/>
              <testcase classname="calc.Add" name="carries"><failure message="expected 2 but was 3">at calc.rs:7</failure></testcase>
              <testcase classname="calc.Add" name="later"><skipped/></testcase>
            </testsuite>
            XML
        - Run: printf '<testsuite name="io"><testcase classname="io.Read" name="reads"/></testsuite>' > out/io.xml
        - Run: printf 'SF:src/calc.rs\nDA:1,1\nDA:2,1\nDA:3,0\nend_of_record\n' > lcov.info
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Tests]
    Configuration:
      Steps:
        - Run: echo deploying
  Green:
    Identifier: aws/build@v1
    Outputs:
      Reports:
        cov:
          Format: LCOV
          IncludePaths: [lcov.info]
          SuccessCriteria:
            LineCoverage: 50
    Configuration:
      Steps:
        - Run: printf 'SF:src/ok.rs\nDA:1,1\nDA:2,0\nend_of_record\n' > lcov.info
"#;

/// A root buildspec (the implicit workflow of a repository without CodeCatalyst workflows).
const BUILDSPEC: &str = r#"version: 0.2
phases:
  build:
    commands:
      - mkdir -p build/test-results
      - printf '<testsuite name="s"><testcase classname="k" name="ok"/><testcase classname="k" name="bad"><failure message="boom"/></testcase></testsuite>' > build/test-results/TEST-k.xml
reports:
  junit:
    files: ['**/*.xml']
    base-directory: build/test-results
    file-format: JUNITXML
"#;

fn cove(home: &Path, url: &str, args: &[&str]) -> Output {
    common::cove_command(home, url, ADMIN_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_are_collected_shown_and_fail_their_action() {
    let Some(s) = common::serve_jobs(|_| {}).await else {
        return;
    };
    let (home, url) = (s.home.path().to_path_buf(), s.url.clone());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let push_url = common::admin_git_url(&s.url, "app");
    tokio::task::spawn_blocking(move || {
        ok(&cove(&home, &url, &["repo", "create", "app"]));
        git(&dir, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(dir.join(".codecatalyst/workflows")).unwrap();
        std::fs::write(dir.join(".codecatalyst/workflows/reports.yaml"), WORKFLOW).unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-q", "-m", "wf"]);
        git(&dir, &["push", "-q", &push_url, "main"]);

        let start = Instant::now();
        let run = loop {
            let out = ok(&cove(
                &home,
                &url,
                &["run", "list", "--repo", "app", "--output", "json"],
            ));
            let runs: Vec<Run> = serde_json::from_str(&out).unwrap();
            if let Some(r) = runs.first().filter(|r| r.state.is_terminal()) {
                break r.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "run not done: {runs:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        let id = run.id.to_string();
        let shown: Run = serde_json::from_str(&ok(&cove(
            &home,
            &url,
            &["run", "show", &id, "--output", "json"],
        )))
        .unwrap();
        assert_eq!(shown.state, RunState::Failed, "{shown:#?}");
        let job = |a: &str| shown.jobs.iter().find(|j| j.action == a).unwrap();
        assert_eq!(job("Tests").state, JobState::Failed, "{shown:#?}");
        assert!(
            job("Tests")
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("report unit: pass rate 66.7% is below 100%"),
            "{:?}",
            job("Tests").error
        );
        assert_eq!(job("Deploy").state, JobState::Skipped);
        assert_eq!(job("Green").state, JobState::Succeeded);

        let json = ok(&cove(
            &home,
            &url,
            &["run", "reports", &id, "--output", "json"],
        ));
        let reports: Vec<RunReport> = serde_json::from_str(&json).unwrap();
        let get = |a: &str, n: &str| {
            reports
                .iter()
                .find(|r| r.action == a && r.name == n)
                .unwrap_or_else(|| panic!("no report {a}/{n}: {reports:#?}"))
        };
        let unit = get("Tests", "unit");
        assert_eq!(unit.files, 2);
        let t = unit.tests.as_ref().unwrap();
        assert_eq!((t.total, t.passed, t.failed, t.skipped), (4, 2, 1, 1));
        assert_eq!(t.failures[0].message, "expected 2 but was 3");
        assert_eq!(unit.criteria_failed, vec!["pass rate 66.7% is below 100%"]);
        let cov = get("Tests", "cov").coverage.as_ref().unwrap();
        assert_eq!((cov.lines_covered, cov.lines_total), (2, 3));
        assert_eq!(cov.files[0].path, "src/calc.rs");
        assert!(get("Tests", "cov").criteria_failed.is_empty());
        assert!(get("Green", "cov").criteria_failed.is_empty());

        // a buildspec report group is collected from its base directory; as in CodeBuild a
        // failed test in it does not change the build's result
        let dir_b = dir.join("b");
        std::fs::create_dir_all(&dir_b).unwrap();
        ok(&cove(&home, &url, &["repo", "create", "bs"]));
        git(&dir_b, &["init", "-q", "-b", "main"]);
        std::fs::write(dir_b.join("buildspec.yml"), BUILDSPEC).unwrap();
        git(&dir_b, &["add", "."]);
        git(&dir_b, &["commit", "-q", "-m", "bs"]);
        git(
            &dir_b,
            &["push", "-q", &common::admin_git_url(&url, "bs"), "main"],
        );
        let start = Instant::now();
        let bs_run = loop {
            let out = ok(&cove(
                &home,
                &url,
                &["run", "list", "--repo", "bs", "--output", "json"],
            ));
            let runs: Vec<Run> = serde_json::from_str(&out).unwrap();
            if let Some(r) = runs.first().filter(|r| r.state.is_terminal()) {
                break r.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "buildspec run not done: {runs:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(bs_run.state, RunState::Succeeded, "{bs_run:#?}");
        let json = ok(&cove(
            &home,
            &url,
            &["run", "reports", &bs_run.id.to_string(), "--output", "json"],
        ));
        let bs: Vec<RunReport> = serde_json::from_str(&json).unwrap();
        assert_eq!(bs.len(), 1, "{bs:#?}");
        let t = bs[0].tests.as_ref().unwrap();
        assert_eq!((bs[0].files, t.total, t.failed), (1, 2, 1), "{bs:#?}");
        assert_eq!(t.failures[0].message, "boom");

        let text = ok(&cove(&home, &url, &["run", "reports", &id]));
        for want in [
            "Tests / unit (JUNITXML, 2 files)",
            "tests: 4 total, 2 passed, 1 failed, 1 skipped (pass rate 66.7%)",
            "FAILED calc.Add.carries: expected 2 but was 3",
            "criterion failed: pass rate 66.7% is below 100%",
            "coverage: lines 2/3 (66.7%)",
            "src/calc.rs",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    })
    .await
    .unwrap();
}
