//! Outdated environments end to end (issue 18): a devfile change pushed to an environment's
//! branch marks it outdated (`cove env show`, `cove env list`); `cove env update` restarts it
//! onto the branch's devfile — outdated again false and the new devfile's variable in the
//! container. The workspace devfile was not edited, so this is not "restart required" — not
//! before the update, nor after it while the workspace still has the replaced devfile.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use cove_api::{EnvState, Environment};

use common::{cove_logged_in as cove, git, ok, ADMIN_TOKEN};

fn devfile(greeting: &str) -> String {
    format!(
        "schemaVersion: 2.2.0
metadata:
  name: app
components:
  - name: tools
    container:
      image: cove/universal:latest
      mountSources: true
      memoryLimit: 1Gi
      env:
        - name: GREETING
          value: {greeting}
"
    )
}

fn commit_and_push(dir: &Path, url: &str, message: &str) {
    git(dir, &["add", "."]);
    git(
        dir,
        &[
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
    let push_url =
        url.replace("http://", &format!("http://admin:{ADMIN_TOKEN}@")) + "/git/admin/app.git";
    git(dir, &["push", "-q", &push_url, "main"]);
}

fn show(home: &Path, env: &str) -> Environment {
    serde_json::from_str(&ok(&cove(home, &["env", "show", env, "--output", "json"]))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_devfile_change_makes_an_environment_outdated_until_updated() {
    let s = common::serve_with_engine(|config| {
        config.intervals.devfile_check = std::time::Duration::from_millis(200);
    })
    .await;
    let home = s.home.path().to_path_buf();
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run(&home, &url))
        .await
        .unwrap();
}

fn run(home: &Path, url: &str) {
    ok(&cove(home, &["login", url, "--token", ADMIN_TOKEN]));
    ok(&cove(home, &["repo", "create", "app"]));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("devfile.yaml"), devfile("one")).unwrap();
    commit_and_push(w, url, "app");

    let out = cove(
        home,
        &[
            "env",
            "create",
            "admin/app",
            "--name",
            "app-dev",
            "--output",
            "json",
        ],
    );
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.state, EnvState::Running);
    assert!(!env.outdated);
    let greeting = |home: &Path| {
        ok(&cove(
            home,
            &[
                "env",
                "exec",
                "app-dev",
                "--no-tty",
                "--",
                "sh",
                "-c",
                "echo $GREETING",
            ],
        ))
        .trim()
        .to_string()
    };
    assert_eq!(greeting(home), "one");

    // a change elsewhere in the repository: still up to date
    std::fs::write(w.join("README.md"), "app\n").unwrap();
    commit_and_push(w, url, "readme");
    assert!(!show(home, "app-dev").outdated);

    // the branch's devfile moves on: outdated, not restart required
    std::fs::write(w.join("devfile.yaml"), devfile("two")).unwrap();
    commit_and_push(w, url, "devfile");
    let e = show(home, "app-dev");
    assert!(e.outdated, "{e:?}");
    assert!(!e.restart_required, "{e:?}");
    let text = ok(&cove(home, &["env", "show", "app-dev"]));
    assert!(
        text.contains("OUTDATED") && text.contains("cove env update app-dev"),
        "{text}"
    );
    let list = ok(&cove(home, &["env", "list"]));
    let line = list.lines().find(|l| l.contains("app-dev")).unwrap();
    assert!(line.contains("outdated"), "{list}");

    // update: running on the branch's devfile, no longer outdated
    ok(&cove(home, &["env", "update", "app-dev"]));
    let e = show(home, "app-dev");
    assert_eq!(e.state, EnvState::Running);
    assert!(!e.outdated, "{e:?}");
    assert_eq!(greeting(home), "two");

    // the workspace still has the old devfile: behind the branch, not edited — several
    // watcher passes (every 200 ms) later it is not "restart required"
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let e = show(home, "app-dev");
    assert!(!e.restart_required, "{e:?}");
    // an edit in the workspace still is
    ok(&cove(
        home,
        &[
            "env",
            "exec",
            "app-dev",
            "--no-tty",
            "--",
            "sh",
            "-c",
            "echo '# edited' >> \"$PROJECT_SOURCE/devfile.yaml\"",
        ],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !show(home, "app-dev").restart_required {
        assert!(
            std::time::Instant::now() < deadline,
            "an edit is restart required"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
