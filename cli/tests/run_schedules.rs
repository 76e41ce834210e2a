//! `cove run schedules` and run numbers against a real in-process `cove-server` (no job
//! loop) and a repository pushed with the real `git`: schedules are listed with their next
//! time, runs are named `owner/name#N` by the CLI, and `OWNER/NAME#N`, `NAME#N` and `#N` with
//! `--repo` are accepted wherever a run id is (the id keeps working).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::Result;

use common::{ok, ADMIN_TOKEN};

const NIGHTLY: &str = "Name: nightly\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: SCHEDULE\n    Expression: \"0 3 ? * MON-FRI *\"\n    Branches: [main]\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo n\n";
const MANUAL: &str = "Name: by-hand\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: MANUAL\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo m\n";

async fn cove(home: &Path, url: &str, args: &[&str]) -> Result<Output> {
    Ok(common::cove_async(home, url, ADMIN_TOKEN, args).await)
}

async fn git(dir: &Path, args: &[&str]) -> Result<()> {
    common::git_async(dir, args).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_and_runs_go_by_number() -> Result<()> {
    let s = common::serve(|config| config.embedded_agent = false).await;
    let url = s.url.clone();
    let home = s.home.path();
    ok(&cove(home, &url, &["repo", "create", "app"]).await?);

    let work = tempfile::tempdir()?;
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]).await?;
    std::fs::create_dir_all(w.join(".codecatalyst/workflows"))?;
    std::fs::write(w.join(".codecatalyst/workflows/nightly.yaml"), NIGHTLY)?;
    std::fs::write(w.join(".codecatalyst/workflows/by-hand.yaml"), MANUAL)?;
    git(w, &["add", "."]).await?;
    git(w, &["commit", "-q", "-m", "workflows"]).await?;
    git(
        w,
        &["push", "-q", &common::admin_git_url(&url, "app"), "main"],
    )
    .await?;

    // The push is turned into schedules asynchronously.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let out = ok(&cove(home, &url, &["run", "schedules", "app"]).await?);
        if out.lines().count() > 1 || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("REPOSITORY") && lines[0].contains("NEXT"));
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["admin/app", "nightly", "main"], "{listed}");
    assert!(lines[1].contains("0 3 ? * MON-FRI *"), "{listed}");
    // The next time: a weekday at 03:00:00 UTC.
    assert!(lines[1].contains(" 03:00:00 UTC"), "{listed}");
    assert!(lines[1].trim_end().ends_with('-'), "never fired: {listed}");
    let all = ok(&cove(home, &url, &["run", "schedules", "--output", "json"]).await?);
    let all: Vec<serde_json::Value> = serde_json::from_str(&all)?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["repo"], "admin/app");

    // No run from the push (schedule-only and manual-only workflows).
    let list = ok(&cove(home, &url, &["run", "list", "--repo", "app"]).await?);
    assert_eq!(list.lines().count(), 1, "{list}");

    let first = ok(&cove(
        home,
        &url,
        &["run", "start", "app", "--workflow", "by-hand"],
    )
    .await?);
    assert!(first.starts_with("run admin/app#1 started"), "{first}");
    let second = ok(&cove(
        home,
        &url,
        &[
            "run",
            "start",
            "app",
            "--workflow",
            "by-hand",
            "--output",
            "json",
        ],
    )
    .await?);
    let second: cove_api::Run = serde_json::from_str(&second)?;
    assert_eq!(second.number, 2);

    let list = ok(&cove(home, &url, &["run", "list", "--repo", "app"]).await?);
    let names: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["admin/app#2", "admin/app#1"], "{list}");
    assert!(
        !list.contains(&second.id.to_string()),
        "no 19-digit ids: {list}"
    );

    for args in [
        &["run", "show", "admin/app#2"][..],
        &["run", "show", "app#2"][..],
        &["run", "show", "#2", "--repo", "app"][..],
        &["run", "show", "2", "--repo", "admin/app"][..],
        &["run", "show", &second.id.to_string()][..],
    ] {
        let shown = ok(&cove(home, &url, args).await?);
        assert!(
            shown.starts_with(&format!("run        admin/app#2 (id {})", second.id)),
            "{args:?}: {shown}"
        );
    }
    let cancelled = ok(&cove(home, &url, &["run", "cancel", "admin/app#1"]).await?);
    assert!(cancelled.starts_with("run admin/app#1 "), "{cancelled}");

    let missing = cove(home, &url, &["run", "show", "admin/app#9"]).await?;
    assert!(!missing.status.success());
    let no_repo = cove(home, &url, &["run", "show", "#1"]).await?;
    assert!(!no_repo.status.success());
    assert!(
        String::from_utf8_lossy(&no_repo.stderr).contains("--repo"),
        "{}",
        String::from_utf8_lossy(&no_repo.stderr)
    );
    Ok(())
}
