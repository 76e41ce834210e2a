//! The planning story of issue 16, end to end across two users: a real in-process server,
//! the real `cove` binary for each step a person takes, the real `git` client, and a webhook
//! receiver on 127.0.0.1 allowed by the server's configuration.
//!
//! alice (writer) files "Add a copyright footer", assigns bob, sets priority and estimate and
//! mentions `@bob` and a file; the receiver hears `issue_assigned` and `issue_mentioned` for
//! bob. bob moves the card to In progress, creates the branch from the issue, commits the file
//! edit through the contents API (the same call the browser's editor makes — the Chromium
//! side is web/tests/issues.test.mjs), opens a pull request that says `Fixes #1` with alice as
//! required reviewer and moves the card to In review. alice approves and merges; the merge
//! starts the main branch's PUSH workflow (a queued run: no agent here) and the issue ends in
//! Done, listing the pull request and the branch.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cove_api::{Issue, IssueLinks, Run};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{cove, create_repo, create_token, create_user, git, ok, put_member, ADMIN_TOKEN};

const WORKFLOW: &str = r#"Name: ship
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: grep -q Cove README.md
"#;

/// Webhook bodies received, as JSON.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Value>>>);

impl Receiver {
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = self.0.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let got = got.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Ok(n) = conn.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            if let Ok(body) =
                                serde_json::from_slice(&buf[end + 4..end + 4 + length])
                            {
                                got.lock().unwrap().push(body);
                            }
                            let _ = conn
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    async fn wait_for(&self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.0.lock().unwrap().iter().find(|v| want(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; got {:#?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_plans_fixes_and_closes_an_issue() {
    let s = common::serve(|config| {
        config.embedded_agent = false;
        config.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let url = s.url.clone();
    let http = &s.http;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        create_user(http, &url, user, "a long enough password").await;
        tokens.push(
            create_token(
                http,
                &url,
                user,
                "a long enough password",
                "cli",
                &["read", "write"],
            )
            .await
            .token,
        );
    }
    let (alice, bob) = (tokens[0].clone(), tokens[1].clone());
    create_repo(http, &url, ADMIN_TOKEN, "app").await;
    for user in ["alice", "bob"] {
        assert_eq!(
            put_member(http, &url, "admin/app", user, "writer")
                .await
                .status(),
            200
        );
    }
    let receiver = Receiver::default();
    let hook = receiver.serve().await;
    let r = http
        .post(s.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "webhook", "url": format!("{hook}/hook"),
                      "events": ["issue_mentioned", "issue_assigned"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let remote = common::admin_git_url(&url, "app");
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("README.md"), "# App\n").unwrap();
    std::fs::create_dir_all(w.join(".codecatalyst/workflows")).unwrap();
    std::fs::write(w.join(".codecatalyst/workflows/ship.yaml"), WORKFLOW).unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "start"]);
    git(w, &["push", "-q", &remote, "main"]);

    let h = s.home.path();
    let issue = |token: &str, args: &[&str]| {
        let mut all = vec!["issue", "--repo", "admin/app"];
        all.extend_from_slice(args);
        ok(&cove(h, &url, token, &all))
    };

    // alice files the issue.
    let created: Issue = serde_json::from_str(&issue(
        &alice,
        &[
            "create",
            "--title",
            "Add a copyright footer",
            "--description",
            "@bob please add it to `README.md`.",
            "--assignee",
            "bob",
            "--priority",
            "medium",
            "--estimate",
            "S",
            "--output",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(created.number, 1);
    let assigned = receiver
        .wait_for("issue_assigned", |v| v["event"] == "issue_assigned")
        .await;
    assert_eq!(assigned["data"]["assignees"], json!(["bob"]), "{assigned}");
    let mentioned = receiver
        .wait_for("issue_mentioned", |v| {
            v["data"]["mentioned"] == json!(["bob"])
        })
        .await;
    assert_eq!(mentioned["data"]["issue"], 1);
    assert_eq!(mentioned["data"]["actor"], "alice");

    // bob takes it: In progress, a branch from the issue, the edit committed.
    assert!(issue(&bob, &["move", "1", "In progress"]).contains("In progress"));
    let out = issue(&bob, &["branch", "1"]);
    let branch = "issue-1-add-a-copyright-footer";
    assert!(out.contains(branch), "{out}");
    let file: Value = http
        .get(s.api(&format!("/repos/admin/app/files/README.md?ref={branch}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .put(s.api("/repos/admin/app/contents/README.md"))
        .bearer_auth(&bob)
        .json(&json!({"branch": branch, "base_commit": file["commit"],
                      "content": "# App\n\n(c) Cove\n", "message": "Add a copyright footer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let shown = git(w, &["ls-remote", &remote, branch]);
    assert!(!shown.is_empty());

    // The pull request fixes #1; the card goes to In review.
    ok(&cove(
        h,
        &url,
        &bob,
        &[
            "pr",
            "create",
            "admin/app",
            branch,
            "--title",
            "Copyright footer",
            "--description",
            "Fixes #1",
            "--reviewer",
            "alice",
        ],
    ));
    assert!(issue(&bob, &["move", "1", "In review"]).contains("In review"));
    let links: IssueLinks = s.admin_get("/repos/admin/app/issues/1/links").await;
    assert_eq!(links.branches, vec![branch.to_string()]);
    assert_eq!(links.pulls.len(), 1);
    assert!(links.pulls[0].fixes);

    // alice approves and merges: the workflow of main starts, the issue ends in Done.
    ok(&cove(
        h,
        &url,
        &alice,
        &["pr", "review", "admin/app", "1", "approve"],
    ));
    ok(&cove(h, &url, &alice, &["pr", "merge", "admin/app", "1"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: Issue = s.admin_get("/repos/admin/app/issues/1").await;
        if now.done {
            assert_eq!(now.column, "Done");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "issue #1 stayed in {}",
            now.column
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = issue(&bob, &["show", "1"]);
    assert!(shown.contains("column      Done (done)"), "{shown}");
    assert!(shown.contains("fixes"), "{shown}");
    let runs: Vec<Run> = s.admin_get("/repos/admin/app/runs").await;
    assert!(
        runs.iter()
            .any(|r| r.workflow == "ship" && r.branch == "main"),
        "the merge started the main workflow: {runs:?}"
    );
}
