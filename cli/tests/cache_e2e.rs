//! File caches end to end (issue 17): a real in-process server whose embedded agent runs the
//! action on the real Docker engine. The first run of a workflow with `Caching.FileCaching`
//! misses (its step builds the "dependencies"), saves the cache after the success; the second
//! run of the same workflow restores both paths (one under the source directory, one
//! absolute) before the steps and hits. Before issue 17 `Caching` was accepted and ignored:
//! every run missed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use cove_api::{Run, RunState};

use common::{git, ok, ADMIN_TOKEN};

const WORKFLOW: &str = r#"Name: cached
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Caching:
      FileCaching:
        deps:
          Path: deps
        tools:
          Path: /opt/tools
          RestoreKeys: [deps]
    Configuration:
      Steps:
        - Run: |
            if [ -f deps/marker ] && [ -f /opt/tools/bin/tool ]; then
              echo "cache hit: $(cat deps/marker) $(cat /opt/tools/bin/tool)"
            else
              echo "cache miss"
              mkdir -p deps /opt/tools/bin
              echo "built-$CATALYST_WORKFLOW_RUN_ID" > deps/marker
              echo tool-v1 > /opt/tools/bin/tool
            fi
"#;

fn cove(home: &Path, url: &str, args: &[&str]) -> Output {
    common::cove_command(home, url, ADMIN_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

fn wait_done(home: &Path, url: &str, count: usize) -> Run {
    let start = Instant::now();
    loop {
        let out = ok(&cove(
            home,
            url,
            &["run", "list", "--repo", "app", "--output", "json"],
        ));
        let runs: Vec<Run> = serde_json::from_str(&out).unwrap();
        if runs.len() >= count && runs[0].state.is_terminal() {
            return runs[0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(180), "runs: {runs:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_misses_then_hits_across_two_runs() {
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
        std::fs::write(dir.join(".codecatalyst/workflows/cached.yaml"), WORKFLOW).unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-q", "-m", "wf"]);
        git(&dir, &["push", "-q", &push_url, "main"]);

        let first = wait_done(&home, &url, 1);
        assert_eq!(first.state, RunState::Succeeded, "{first:#?}");
        let log = ok(&cove(
            &home,
            &url,
            &["run", "logs", &first.id.to_string(), "Build"],
        ));
        assert!(log.contains("cache miss"), "{log}");
        assert!(log.contains("cache cove-cache-0 saved"), "{log}");
        assert!(log.contains("cache cove-cache-1 saved"), "{log}");

        ok(&cove(
            &home,
            &url,
            &["run", "start", "app", "--workflow", "cached"],
        ));
        let second = wait_done(&home, &url, 2);
        assert_ne!(second.id, first.id);
        assert_eq!(second.state, RunState::Succeeded, "{second:#?}");
        let log = ok(&cove(
            &home,
            &url,
            &["run", "logs", &second.id.to_string(), "Build"],
        ));
        assert!(log.contains("cache cove-cache-0 restored"), "{log}");
        assert!(
            log.contains(&format!("cache hit: built-{} tool-v1", first.id)),
            "the second run restored what the first built: {log}"
        );
    })
    .await
    .unwrap();
}
