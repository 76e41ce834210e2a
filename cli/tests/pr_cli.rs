//! `cove pr …` against a real in-process server (no agent: nothing runs), the repository
//! pushed with the real `git`: create with a reviewer, list, diff --stat, a line comment,
//! show (not mergeable until the reviewer approves, with the reason), review, merge, and the
//! destination checked with `git`; a PULLREQUEST workflow's run printed as a check by `pr show`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use cove_api::{CreatedToken, PullRequest};
use cove_server::{Config, Server};
use serde_json::json;

const ADMIN_TOKEN: &str = "cove_pr_cli_admin_token_0123456789abcdef01234567";

fn cove(home: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", token)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cove failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_commands_open_review_and_merge() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::new(data.path());
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.embedded_agent = false;
    let server = Server::new(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    let api = format!("{url}/api/v1");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{api}/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"username": "bob", "password": "bob's long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{api}/tokens"))
        .basic_auth("bob", Some("bob's long password"))
        .json(&json!({"name": "cli", "scopes": ["read", "write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bob = r.json::<CreatedToken>().await.unwrap().token;
    let r = http
        .post(format!("{api}/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .put(format!("{api}/repos/admin/app/members/bob"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"role": "writer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let remote = format!(
        "http://cove:{ADMIN_TOKEN}@{}/git/admin/app.git",
        url.trim_start_matches("http://")
    );
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("a.txt"), "one\n").unwrap();
    git(w, &["add", "a.txt"]);
    git(w, &["commit", "-q", "-m", "one"]);
    git(w, &["push", "-q", &remote, "main"]);
    git(w, &["checkout", "-q", "-b", "topic"]);
    std::fs::write(w.join("a.txt"), "one\ntwo\n").unwrap();
    git(w, &["commit", "-q", "-am", "two"]);
    git(w, &["push", "-q", &remote, "topic"]);
    let head = git(w, &["rev-parse", "HEAD"]);

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let created = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &[
            "pr",
            "create",
            "admin/app",
            "topic",
            "--title",
            "Add two",
            "--reviewer",
            "bob",
            "--output",
            "json",
        ],
    ));
    let pr: PullRequest = serde_json::from_str(&created).unwrap();
    assert_eq!(pr.number, 1);
    let list = ok(&cove(h, &url, ADMIN_TOKEN, &["pr", "list", "admin/app"]));
    assert!(
        list.contains("#1") && list.contains("topic -> main") && list.contains("Add two"),
        "{list}"
    );
    let stat = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "diff", "admin/app", "1", "--stat"],
    ));
    assert!(
        stat.contains("a.txt") && stat.contains("1 files changed, 1 insertions(+)"),
        "{stat}"
    );
    let diff = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "diff", "admin/app", "1"],
    ));
    assert!(diff.contains("+two"), "{diff}");
    ok(&cove(
        h,
        &url,
        &bob,
        &[
            "pr",
            "comment",
            "admin/app",
            "1",
            "nice line",
            "--path",
            "a.txt",
            "--line",
            "2",
        ],
    ));
    let show = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "show", "admin/app", "1"],
    ));
    assert!(show.contains("reviewer    bob (pending)"), "{show}");
    assert!(show.contains("mergeable   no"), "{show}");
    assert!(
        show.contains("required reviewer bob has not approved"),
        "{show}"
    );
    assert!(show.contains("on a.txt:2 (new)"), "{show}");

    // Refused before the approval: the reason reaches the user and the exit code fails.
    let refused = cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "merge", "admin/app", "1", "--method", "ff"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("required reviewer bob"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&cove(
        h,
        &url,
        &bob,
        &["pr", "review", "admin/app", "1", "approve", "--body", "ok"],
    ));
    let merged = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &[
            "pr",
            "merge",
            "admin/app",
            "1",
            "--method",
            "ff",
            "--delete-source",
        ],
    ));
    assert!(
        merged.contains(&format!("merged #1 into main as {head}")),
        "{merged}"
    );
    git(w, &["fetch", "-q", &remote, "main"]);
    assert_eq!(git(w, &["rev-parse", "FETCH_HEAD"]), head);
    let list = ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "list", "admin/app", "--state", "merged"],
    ));
    assert!(list.contains("merged"), "{list}");

    // A PULLREQUEST workflow on the source branch runs for the next pull request (queued: no
    // agent) and `pr show` prints it as a check with its run number.
    git(w, &["checkout", "-q", "-b", "ci", "FETCH_HEAD"]);
    std::fs::create_dir_all(w.join(".codecatalyst/workflows")).unwrap();
    std::fs::write(
        w.join(".codecatalyst/workflows/ci.yaml"),
        "Name: ci\nSchemaVersion: '1.0'\nTriggers:\n  - {Type: PULLREQUEST, Events: [OPEN], Branches: [main]}\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n",
    )
    .unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "ci"]);
    git(w, &["push", "-q", &remote, "ci"]);
    ok(&cove(
        h,
        &url,
        ADMIN_TOKEN,
        &["pr", "create", "admin/app", "ci", "--title", "CI"],
    ));
    let start = std::time::Instant::now();
    loop {
        let show = ok(&cove(
            h,
            &url,
            ADMIN_TOKEN,
            &["pr", "show", "admin/app", "2"],
        ));
        if show.contains("check       ci queued (admin/app#1, pullrequest)") {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no check in: {show}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
