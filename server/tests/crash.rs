//! The real `cove-server` binary is SIGKILLed in the middle of a push and restarted: the
//! repository stays consistent (`git fsck` clean), the push landed whole or not at all, and
//! acknowledged push events are still there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{clone, commit_file, free_port, git_ok, spawn_server, ADMIN_TOKEN};
use cove_api::PushEvent;
use rand::RngCore;
use tokio::process::Command;

async fn events(url: &str) -> Result<Vec<PushEvent>> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/api/v1/repos/admin/crash/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?)
}

fn quarantine_exists(repo: &Path) -> bool {
    std::fs::read_dir(repo.join("objects"))
        .map(|it| {
            it.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains("incoming"))
        })
        .unwrap_or(false)
}

fn bare_git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_push_then_restart_keeps_repository_and_events_consistent() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    let port = free_port()?;
    let mut server = spawn_server(&data_dir, port).await?;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/repos", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "crash"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let host = server.url.trim_start_matches("http://").to_string();
    let git_url = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/crash.git");
    let bare: PathBuf = data_dir.join("repos/admin/crash.git");

    let a = clone(&work, &git_url, "a", &[]).await?;
    let acked = commit_file(&a, "small", b"small", "acknowledged").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let acked_events = events(&server.url).await?;
    assert_eq!(acked_events.len(), 1);

    // Three rounds, killing at different moments of a large push.
    let mut data = vec![0u8; 24 * 1024 * 1024];
    for round in 0..3 {
        rand::thread_rng().fill_bytes(&mut data);
        let before = bare_git(&bare, &["rev-parse", "refs/heads/main"])?;
        let pushed = commit_file(&a, &format!("big{round}.bin"), &data, "big").await?;
        let push = Command::new("git")
            .args(["push", "-q", "origin", "main"])
            .current_dir(&a)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        match round {
            // As soon as git has started receiving the pack.
            0 => {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !quarantine_exists(&bare) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            1 => tokio::time::sleep(Duration::from_millis(150)).await,
            _ => tokio::time::sleep(Duration::from_millis(600)).await,
        }
        server.child.start_kill().context("SIGKILL cove-server")?;
        server.child.wait().await?;
        let pushed_ok = push.wait_with_output().await?.status.success();

        // The orphaned receive-pack sees EOF and exits; give it a moment. (git may leave its
        // quarantine directory behind; the restarted server removes it.)
        let deadline = Instant::now() + Duration::from_secs(2);
        while quarantine_exists(&bare) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bare_git(&bare, &["fsck", "--strict", "--no-progress"])?;
        let after = bare_git(&bare, &["rev-parse", "refs/heads/main"])?;
        assert!(
            after == before || after == pushed,
            "round {round}: main is {after}, neither {before} nor {pushed}"
        );
        if after == pushed {
            // Whole: the big file is readable at the new head.
            let size = bare_git(
                &bare,
                &["cat-file", "-s", &format!("{pushed}:big{round}.bin")],
            )?;
            assert_eq!(size, data.len().to_string());
        } else {
            assert!(
                !pushed_ok,
                "round {round}: git reported success but nothing landed"
            );
            // Undo locally so the next round builds on the server's state.
            git_ok(&a, &["reset", "-q", "--hard", &before]).await?;
        }

        server = spawn_server(&data_dir, port).await?;
        assert!(
            !quarantine_exists(&bare),
            "round {round}: stale quarantine kept"
        );
        bare_git(&bare, &["fsck", "--strict", "--no-progress"])?;
        let now = events(&server.url).await?;
        assert!(
            now.iter()
                .any(|e| e.new_sha == acked && e.old_sha == cove_api::ZERO_SHA),
            "round {round}: acknowledged event lost: {now:?}"
        );
        if pushed_ok || after == pushed {
            // Acknowledged, or landed and recovered at start-up: either way there is an event.
            assert!(
                now.iter().any(|e| e.new_sha == pushed),
                "round {round}: landed push without event: {now:?}"
            );
        }
        // The server still accepts pushes to the repository.
        let tip = commit_file(&a, &format!("after{round}"), b"x", "after").await?;
        git_ok(&a, &["push", "-q", "origin", "main"]).await?;
        assert_eq!(bare_git(&bare, &["rev-parse", "refs/heads/main"])?, tip);
    }
    server.child.start_kill()?;
    server.child.wait().await?;
    Ok(())
}
