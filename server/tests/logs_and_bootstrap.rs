//! The real `cove-server` binary: the generated admin token is printed exactly once (on
//! first start, on stdout) and no token ever reaches the logs, even at debug level.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{clone, commit_file, git, git_ok};
use tokio::process::{Child, Command};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn spawn(data_dir: &Path, port: u16, out: &Path, err: &Path) -> Result<Child> {
    let child = Command::new(env!("CARGO_BIN_EXE_cove-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("COVE_ADMIN_TOKEN")
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(out)?)
        .stderr(std::fs::File::create(err)?)
        .kill_on_drop(true)
        .spawn()?;
    // The port accepts connections as soon as it is bound, before start-up finishes; the
    // "cove-server listening" log line comes after any bootstrap token was printed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(err)?.contains("cove-server listening") {
        if Instant::now() > deadline {
            bail!(
                "cove-server did not start: {}",
                std::fs::read_to_string(err)?
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(child)
}

async fn stop(mut child: Child) -> Result<()> {
    // SIGTERM through kill(1): graceful shutdown.
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()?;
    }
    tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_shown_once_and_tokens_never_reach_the_logs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let (out1, err1) = (tmp.path().join("out1"), tmp.path().join("err1"));
    let port = free_port()?;
    let server = spawn(&data, port, &out1, &err1).await?;
    let stdout = std::fs::read_to_string(&out1)?;
    let admin = stdout
        .split_whitespace()
        .find(|w| w.starts_with("cove_"))
        .map(str::to_string);
    let Some(admin) = admin else {
        bail!("no admin token on stdout: {stdout:?}")
    };

    // Exercise auth paths: API with the token, a second token, git push with the token in
    // the URL, a wrong token, a password login.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let resp = http
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "logs"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let created: cove_api::CreatedToken = http
        .post(format!("{url}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "second", "scopes": ["read", "write"]}))
        .send()
        .await?
        .json()
        .await?;
    let resp = http
        .post(format!("{url}/api/v1/users"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"username": "pat", "password": "hunter2hunter2"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let resp = http
        .get(format!("{url}/api/v1/user"))
        .basic_auth("pat", Some("hunter2hunter2"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let work = tempfile::tempdir()?;
    let git_url = format!(
        "http://u:{}@127.0.0.1:{port}/git/admin/logs.git",
        created.token
    );
    let a = clone(work.path(), &git_url, "a", &[]).await?;
    commit_file(&a, "f", b"x", "x").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let wrong = "cove_this_is_a_wrong_token_that_must_not_be_logged";
    let out = git(
        &a,
        &[
            "push",
            &format!("http://u:{wrong}@127.0.0.1:{port}/git/admin/logs.git"),
            "main",
        ],
    )
    .await?;
    assert!(!out.status.success());
    stop(server).await?;

    // Second start: nothing printed.
    let (out2, err2) = (tmp.path().join("out2"), tmp.path().join("err2"));
    let server = spawn(&data, port, &out2, &err2).await?;
    stop(server).await?;
    assert!(!std::fs::read_to_string(&out2)?.contains("cove_"));

    let logs = std::fs::read_to_string(&err1)? + &std::fs::read_to_string(&err2)?;
    assert!(logs.contains("request"), "expected request logs");
    for secret in [
        admin.as_str(),
        created.token.as_str(),
        wrong,
        "hunter2hunter2",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    // Stdout holds the token exactly once.
    assert_eq!(stdout.matches(&admin).count(), 1);
    Ok(())
}
