#![allow(clippy::unwrap_used)]
//! Issues, the board and in-browser edits (issue 16) on a real server with real git and, for
//! the board's concurrency, SQLite and PostgreSQL: numbering per repository, filters and
//! pages, comments edited and deleted only by their author, readers refused, card moves kept
//! in order and stable under concurrent moves, column limits, `Fixes #N` from a merged pull
//! request and from a push to the default branch, branches from issues, file edits committed
//! with git plumbing (a concurrent change refused, binary and oversized files refused), the
//! `@mention` notification delivered to a webhook receiver on 127.0.0.1.

mod common;
mod notify_receiver;

use std::path::PathBuf;

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use serde_json::{json, Value};

const REPO: &str = "admin/plan";

struct Team {
    server: TestServer,
    alice: String,
    bob: String,
    rita: String,
    work: PathBuf,
}

impl Team {
    async fn start(database_url: Option<String>) -> Result<Team> {
        let server = TestServer::start_configured(|c| {
            c.embedded_agent = false;
            c.database_url = database_url;
            c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        })
        .await?;
        let alice = server.create_user("alice").await?;
        let bob = server.create_user("bob").await?;
        let rita = server.create_user("rita").await?;
        server.create_repo(&server.admin_token, "plan").await?;
        for (user, role) in [("alice", "writer"), ("bob", "writer"), ("rita", "reader")] {
            let r = server.put_member(REPO, user, role).await?;
            assert_eq!(r.status(), 200);
        }
        let work = server.tmp.path().join("work");
        std::fs::create_dir_all(&work)?;
        git_ok(&work, &["init", "-q", "-b", "main"]).await?;
        commit_file(&work, "README.md", b"# Plan\n", "readme").await?;
        let team = Team {
            alice,
            bob,
            rita,
            work,
            server,
        };
        team.push("main").await?;
        Ok(team)
    }

    async fn push(&self, branch: &str) -> Result<()> {
        let url = self.server.git_url(REPO, Some(&self.alice));
        git_ok(&self.work, &["push", "-q", "-f", &url, branch]).await?;
        Ok(())
    }

    async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .server
            .http
            .request(method.parse()?, self.server.api(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn ok(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.api(token, method, path, body).await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        value
    }

    async fn create(&self, token: &str, body: Value) -> Value {
        self.ok(token, "POST", &format!("/repos/{REPO}/issues"), Some(body))
            .await
    }

    async fn board_order(&self) -> Vec<(String, Vec<i64>)> {
        let board = self
            .ok(&self.alice, "GET", &format!("/repos/{REPO}/board"), None)
            .await;
        board["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["issues"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i["number"].as_i64().unwrap())
                        .collect(),
                )
            })
            .collect()
    }

    async fn column_of(&self, number: i64) -> String {
        let issue = self
            .ok(
                &self.alice,
                "GET",
                &format!("/repos/{REPO}/issues/{number}"),
                None,
            )
            .await;
        issue["column"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_are_numbered_filtered_commented_and_guarded_by_role() -> Result<()> {
    let team = Team::start(None).await?;
    let first = team
        .create(
            &team.alice,
            json!({"title": "Add a copyright footer", "description": "See `README.md`, @bob",
                   "assignees": ["bob"], "labels": ["ui", "legal"], "priority": "high",
                   "estimate": "s"}),
        )
        .await;
    assert_eq!(first["number"], 1);
    assert_eq!(first["column"], "Backlog");
    assert_eq!(first["priority"], "high");
    assert_eq!(first["estimate"], "S");
    assert_eq!(first["assignees"], json!(["bob"]));
    assert_eq!(first["author"], "alice");
    assert_eq!(first["done"], false);
    for i in 2..=7 {
        let label = if i % 2 == 0 { "ui" } else { "api" };
        let issue = team
            .create(
                &team.bob,
                json!({"title": format!("Task {i}"), "labels": [label], "column": "to do"}),
            )
            .await;
        assert_eq!(issue["number"], i);
        assert_eq!(issue["column"], "To do");
    }
    // Another repository numbers from 1.
    team.server
        .create_repo(&team.server.admin_token, "other")
        .await?;
    let other = team
        .ok(
            &team.server.admin_token,
            "POST",
            "/repos/admin/other/issues",
            Some(json!({"title": "elsewhere"})),
        )
        .await;
    assert_eq!(other["number"], 1);

    // Filters and pages.
    let page = |q: &str| format!("/repos/{REPO}/issues?{q}");
    let list = team.ok(&team.rita, "GET", &page("label=ui"), None).await;
    assert_eq!(list["total"], 4, "{list}");
    let list = team
        .ok(&team.rita, "GET", &page("assignee=bob"), None)
        .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["issues"][0]["number"], 1);
    let list = team.ok(&team.rita, "GET", &page("q=COPYRIGHT"), None).await;
    assert_eq!(list["total"], 1);
    let list = team
        .ok(
            &team.rita,
            "GET",
            &page("column=To%20do&limit=2&offset=2"),
            None,
        )
        .await;
    assert_eq!(list["total"], 6);
    let numbers: Vec<i64> = list["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![5, 4], "newest first, third and fourth");
    let list = team.ok(&team.rita, "GET", &page("q=50%25_"), None).await;
    assert_eq!(list["total"], 0, "LIKE wildcards are literal");
    let (status, body) = team
        .api(&team.rita, "GET", &page("column=Nope"), None)
        .await?;
    assert_eq!(status, 400, "{body}");

    // Edits and bad input.
    let edited = team
        .ok(
            &team.bob,
            "PATCH",
            &format!("/repos/{REPO}/issues/1"),
            Some(
                json!({"title": "Add a copyright footer to every page", "estimate": "",
                        "priority": "medium", "labels": []}),
            ),
        )
        .await;
    assert_eq!(edited["estimate"], Value::Null);
    assert_eq!(edited["priority"], "medium");
    assert_eq!(edited["labels"], json!([]));
    for (body, status) in [
        (json!({"estimate": "XXL"}), 400),
        (json!({"priority": "urgent"}), 422),
        (json!({"assignees": ["nobody"]}), 400),
        (json!({"labels": ["a,b"]}), 400),
        (json!({"description": "x".repeat(64 * 1024 + 1)}), 400),
        (json!({"title": " "}), 400),
    ] {
        let (got, answer) = team
            .api(
                &team.bob,
                "PATCH",
                &format!("/repos/{REPO}/issues/1"),
                Some(body.clone()),
            )
            .await?;
        assert_eq!(got, status, "{body}: {answer}");
    }
    let after = team
        .ok(&team.rita, "GET", &format!("/repos/{REPO}/issues/1"), None)
        .await;
    assert_eq!(
        after["title"], "Add a copyright footer to every page",
        "refused edits changed nothing"
    );

    // Comments: edit and delete one's own only (an administrator may delete).
    let comments = format!("/repos/{REPO}/issues/1/comments");
    let c = team
        .ok(
            &team.bob,
            "POST",
            &comments,
            Some(json!({"body": "On it, see #2"})),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let (status, _) = team
        .api(
            &team.alice,
            "PATCH",
            &format!("{comments}/{id}"),
            Some(json!({"body": "hijacked"})),
        )
        .await?;
    assert_eq!(status, 403);
    let (status, _) = team
        .api(&team.alice, "DELETE", &format!("{comments}/{id}"), None)
        .await?;
    assert_eq!(status, 403);
    team.ok(
        &team.bob,
        "PATCH",
        &format!("{comments}/{id}"),
        Some(json!({"body": "Done soon"})),
    )
    .await;
    let list = team.ok(&team.rita, "GET", &comments, None).await;
    assert_eq!(list[0]["body"], "Done soon");
    assert_eq!(list[0]["author"], "bob");
    let second = team
        .ok(&team.alice, "POST", &comments, Some(json!({"body": "x"})))
        .await;
    let (status, _) = team
        .api(
            &team.server.admin_token,
            "DELETE",
            &format!("{comments}/{}", second["id"]),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    team.ok(&team.bob, "DELETE", &format!("{comments}/{id}"), None)
        .await;
    let list = team.ok(&team.rita, "GET", &comments, None).await;
    assert_eq!(list, json!([]));

    // A reader reads but changes nothing.
    for (method, path, body) in [
        (
            "POST",
            format!("/repos/{REPO}/issues"),
            json!({"title": "t"}),
        ),
        (
            "PATCH",
            format!("/repos/{REPO}/issues/1"),
            json!({"title": "t"}),
        ),
        (
            "POST",
            format!("/repos/{REPO}/issues/1/move"),
            json!({"column": "Done"}),
        ),
        ("POST", comments.clone(), json!({"body": "b"})),
        ("POST", format!("/repos/{REPO}/issues/1/branch"), json!({})),
        (
            "PUT",
            format!("/repos/{REPO}/board/columns"),
            json!({"columns": [{"name": "A"}]}),
        ),
    ] {
        let (status, answer) = team.api(&team.rita, method, &path, Some(body)).await?;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    assert_eq!(team.column_of(1).await, "Backlog");
    // A stranger does not even see the issues.
    let eve = team.server.create_user("eve").await?;
    let (status, _) = team
        .api(&eve, "GET", &format!("/repos/{REPO}/issues"), None)
        .await?;
    assert_eq!(status, 404);
    team.server.stop().await;
    Ok(())
}

/// Moves keep the order asked for; a full column refuses; two people moving cards at the
/// same time both land, each card once, in an order that reloads the same (SQLite and
/// PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_moves_are_ordered_limited_and_stable_under_concurrent_moves() -> Result<()> {
    common::on_every_backend(|url| async move {
        let team = Team::start(Some(url)).await?;
        for i in 1..=6 {
            team.create(&team.alice, json!({"title": format!("card {i}")}))
                .await;
        }
        let order = team.board_order().await;
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Backlog", "To do", "In progress", "In review", "Done"]
        );
        assert_eq!(order[0].1, vec![1, 2, 3, 4, 5, 6]);
        let mv = |n: i64, column: &str, position: Option<u32>| {
            let mut body = json!({ "column": column });
            if let Some(p) = position {
                body["position"] = json!(p);
            }
            (format!("/repos/{REPO}/issues/{n}/move"), body)
        };
        let (path, body) = mv(6, "Backlog", Some(0));
        team.ok(&team.alice, "POST", &path, Some(body)).await;
        let (path, body) = mv(1, "In progress", None);
        team.ok(&team.bob, "POST", &path, Some(body)).await;
        let (path, body) = mv(3, "Backlog", Some(1));
        team.ok(&team.bob, "POST", &path, Some(body)).await;
        let order = team.board_order().await;
        assert_eq!(order[0].1, vec![6, 3, 2, 4, 5]);
        assert_eq!(order[2].1, vec![1]);
        // Many moves into the same gap: renumbering keeps the order.
        for _ in 0..14 {
            let (path, body) = mv(5, "Backlog", Some(1));
            team.ok(&team.alice, "POST", &path, Some(body)).await;
            let (path, body) = mv(4, "Backlog", Some(1));
            team.ok(&team.alice, "POST", &path, Some(body)).await;
        }
        let order = team.board_order().await;
        assert_eq!(order[0].1, vec![6, 4, 5, 3, 2]);
        // Column limits.
        let columns = json!({"columns": [
            {"name": "Backlog"}, {"name": "To do"}, {"name": "In progress", "limit": 1},
            {"name": "In review"}, {"name": "Done"}]});
        team.ok(
            &team.server.admin_token,
            "PUT",
            &format!("/repos/{REPO}/board/columns"),
            Some(columns),
        )
        .await;
        let (path, body) = mv(2, "In progress", None);
        let (status, answer) = team.api(&team.alice, "POST", &path, Some(body)).await?;
        assert_eq!(status, 409, "{answer}");
        assert!(answer.to_string().contains("limit of 1"), "{answer}");
        assert_eq!(team.column_of(2).await, "Backlog");
        // A column with cards cannot be removed.
        let (status, answer) = team
            .api(
                &team.server.admin_token,
                "PUT",
                &format!("/repos/{REPO}/board/columns"),
                Some(json!({"columns": [{"name": "Backlog"}, {"name": "Done"}]})),
            )
            .await?;
        assert_eq!(status, 409, "{answer}");

        // Concurrent moves: alice and bob each move cards into To do at the top, at the same
        // time, many rounds.
        for round in 0..8 {
            let a = {
                let (path, body) = mv(if round % 2 == 0 { 2 } else { 3 }, "To do", Some(0));
                let token = team.alice.clone();
                let http = team.server.http.clone();
                let url = team.server.api(&path);
                tokio::spawn(
                    async move { http.post(url).bearer_auth(token).json(&body).send().await },
                )
            };
            let b = {
                let (path, body) = mv(if round % 2 == 0 { 4 } else { 5 }, "To do", Some(0));
                let token = team.bob.clone();
                let http = team.server.http.clone();
                let url = team.server.api(&path);
                tokio::spawn(
                    async move { http.post(url).bearer_auth(token).json(&body).send().await },
                )
            };
            let (a, b) = (a.await??, b.await??);
            assert_eq!(a.status(), 200, "{}", a.text().await?);
            assert_eq!(b.status(), 200, "{}", b.text().await?);
        }
        let order = team.board_order().await;
        let todo = &order[1].1;
        let mut sorted = todo.clone();
        sorted.sort();
        assert_eq!(sorted, vec![2, 3, 4, 5], "each card once: {order:?}");
        let mut all: Vec<i64> = order.iter().flat_map(|(_, n)| n.clone()).collect();
        all.sort();
        assert_eq!(all, vec![1, 2, 3, 4, 5, 6], "{order:?}");
        // The last two moves (round 7: 3 and 5) are the top two, in either order.
        let mut top: Vec<i64> = todo[..2].to_vec();
        top.sort();
        assert_eq!(top, vec![3, 5], "{order:?}");
        // Ranks are distinct, so the order reloads the same.
        let board = team
            .ok(&team.rita, "GET", &format!("/repos/{REPO}/board"), None)
            .await;
        let ranks: Vec<i64> = board["columns"][1]["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["rank"].as_i64().unwrap())
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert_eq!(team.board_order().await, order);
        // Close: to the done column.
        let closed = team
            .ok(
                &team.alice,
                "POST",
                &format!("/repos/{REPO}/issues/6/close"),
                None,
            )
            .await;
        assert_eq!(closed["column"], "Done");
        assert_eq!(closed["done"], true);
        // A repository with issues, comments and columns can be deleted.
        team.ok(
            &team.bob,
            "POST",
            &format!("/repos/{REPO}/issues/1/comments"),
            Some(json!({"body": "bye"})),
        )
        .await;
        let (status, answer) = team
            .api(
                &team.server.admin_token,
                "DELETE",
                &format!("/repos/{REPO}"),
                None,
            )
            .await?;
        assert_eq!(status, 204, "{answer}");
        team.server.stop().await;
        Ok(())
    })
    .await
}

/// `Fixes #N` in a merged pull request and `Closes #N` in a commit pushed to the default
/// branch move the issues to Done; the same words on another branch do not. An issue lists
/// the pull requests that mention it and the branch created from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixes_in_merges_and_pushes_move_issues_to_done_and_issues_list_links() -> Result<()> {
    let team = Team::start(None).await?;
    for i in 1..=3 {
        team.create(&team.alice, json!({"title": format!("Issue number {i}")}))
            .await;
    }
    // A branch from issue 1, with git on the server.
    let branch = team
        .ok(
            &team.bob,
            "POST",
            &format!("/repos/{REPO}/issues/1/branch"),
            Some(json!({})),
        )
        .await;
    assert_eq!(branch["name"], "issue-1-issue-number-1");
    let main_head = git_ok(&team.work, &["rev-parse", "HEAD"]).await?;
    assert_eq!(branch["commit"], main_head.trim());
    let (status, _) = team
        .api(
            &team.bob,
            "POST",
            &format!("/repos/{REPO}/issues/1/branch"),
            Some(json!({})),
        )
        .await?;
    assert_eq!(status, 409, "the branch exists");
    let events = team
        .ok(&team.alice, "GET", &format!("/repos/{REPO}/events"), None)
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ref_name"] == "refs/heads/issue-1-issue-number-1" && e["pusher"] == "bob"),
        "the branch is recorded as bob's push: {events}"
    );

    // A pull request from that branch that fixes #1 and mentions #3.
    let url = team.server.git_url(REPO, Some(&team.bob));
    git_ok(&team.work, &["fetch", "-q", &url, "issue-1-issue-number-1"]).await?;
    git_ok(
        &team.work,
        &["checkout", "-q", "-b", "issue-1", "FETCH_HEAD"],
    )
    .await?;
    commit_file(&team.work, "footer.txt", b"(c) Cove\n", "footer").await?;
    git_ok(
        &team.work,
        &["push", "-q", &url, "issue-1:issue-1-issue-number-1"],
    )
    .await?;
    team.ok(
        &team.bob,
        "POST",
        &format!("/repos/{REPO}/pulls"),
        Some(
            json!({"source": "issue-1-issue-number-1", "title": "Footer",
                    "description": "Fixes #1\n\nRelated: #3"}),
        ),
    )
    .await;
    let links = team
        .ok(
            &team.rita,
            "GET",
            &format!("/repos/{REPO}/issues/1/links"),
            None,
        )
        .await;
    assert_eq!(links["branches"], json!(["issue-1-issue-number-1"]));
    assert_eq!(links["pulls"][0]["number"], 1);
    assert_eq!(links["pulls"][0]["fixes"], true);
    let links3 = team
        .ok(
            &team.rita,
            "GET",
            &format!("/repos/{REPO}/issues/3/links"),
            None,
        )
        .await;
    assert_eq!(links3["pulls"][0]["fixes"], false);
    let links2 = team
        .ok(
            &team.rita,
            "GET",
            &format!("/repos/{REPO}/issues/2/links"),
            None,
        )
        .await;
    assert_eq!(links2["pulls"], json!([]));
    assert_eq!(team.column_of(1).await, "Backlog");
    team.ok(
        &team.alice,
        "POST",
        &format!("/repos/{REPO}/pulls/1/merge"),
        Some(json!({"method": "merge"})),
    )
    .await;
    wait_for_column(&team, 1, "Done").await;
    assert_eq!(
        team.column_of(3).await,
        "Backlog",
        "a mention does not close"
    );

    // A commit on another branch says Closes #2: nothing; pushed to main: Done.
    git_ok(&team.work, &["checkout", "-q", "-b", "side", "main"]).await?;
    commit_file(&team.work, "b.txt", b"b\n", "Closes #2").await?;
    team.push("side").await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(team.column_of(2).await, "Backlog");
    git_ok(&team.work, &["fetch", "-q", &url, "main"]).await?;
    git_ok(&team.work, &["checkout", "-q", "-B", "main", "FETCH_HEAD"]).await?;
    git_ok(&team.work, &["merge", "-q", "--no-edit", "side"]).await?;
    team.push("main").await?;
    wait_for_column(&team, 2, "Done").await;
    team.server.stop().await;
    Ok(())
}

async fn wait_for_column(team: &Team, number: i64, column: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = team.column_of(number).await;
        if now == column {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "issue #{number} stayed in {now}, not {column}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A file edited through the API is a commit by the caller on the branch (or a new one),
/// recorded as their push; a change made since the editor read the file is refused and
/// nothing is overwritten; binary and oversized files are refused; readers are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_edits_commit_as_the_caller_and_refuse_conflicts() -> Result<()> {
    let team = Team::start(None).await?;
    commit_file(&team.work, "bin.dat", b"\x00\x01\x02binary", "binary").await?;
    commit_file(&team.work, "big.txt", &vec![b'a'; 1024 * 1024 + 10], "big").await?;
    team.push("main").await?;
    let read = team
        .ok(
            &team.bob,
            "GET",
            &format!("/repos/{REPO}/files/README.md?ref=main"),
            None,
        )
        .await;
    let base = read["commit"].as_str().unwrap().to_string();
    let put = |file: &str| format!("/repos/{REPO}/contents/{file}");
    let edit = |content: &str, base: &str| {
        json!({"branch": "main", "base_commit": base, "content": content,
               "message": "Add a footer\n\nFixes nothing."})
    };
    let result = team
        .ok(
            &team.bob,
            "PUT",
            &put("README.md"),
            Some(edit("# Plan\n\n(c) Cove\n", &base)),
        )
        .await;
    let commit = result["commit"].as_str().unwrap().to_string();
    assert_eq!(result["branch"], "main");
    let bare = team
        .server
        .data_dir
        .join("repos")
        .join(format!("{REPO}.git"));
    let git_dir = bare.to_str().unwrap();
    let shown = git_ok(
        &team.work,
        &[
            "--git-dir",
            git_dir,
            "show",
            "-s",
            "--format=%an|%s|%P",
            "main",
        ],
    )
    .await?;
    assert_eq!(shown.trim(), format!("bob|Add a footer|{base}"));
    let text = git_ok(
        &team.work,
        &["--git-dir", git_dir, "show", "main:README.md"],
    )
    .await?;
    assert_eq!(text.trim_end(), "# Plan\n\n(c) Cove");
    let commits = team
        .ok(
            &team.rita,
            "GET",
            &format!("/repos/{REPO}/commits?branch=main"),
            None,
        )
        .await;
    assert_eq!(commits[0]["id"], commit.as_str());
    let events = team
        .ok(&team.alice, "GET", &format!("/repos/{REPO}/events"), None)
        .await;
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["new_sha"], commit.as_str(), "{events}");
    assert_eq!(last["old_sha"], base.as_str());
    assert_eq!(last["pusher"], "bob");

    // alice still has the old base: her edit of README.md is refused, nothing overwritten.
    let (status, answer) = team
        .api(
            &team.alice,
            "PUT",
            &put("README.md"),
            Some(edit("# Plan by alice\n", &base)),
        )
        .await?;
    assert_eq!(status, 409, "{answer}");
    assert!(answer.to_string().contains("reload"), "{answer}");
    let text = git_ok(
        &team.work,
        &["--git-dir", git_dir, "show", "main:README.md"],
    )
    .await?;
    assert_eq!(text.trim_end(), "# Plan\n\n(c) Cove");
    // Another file from the same old base is fine (it did not change): committed on top.
    let other = team
        .ok(
            &team.alice,
            "PUT",
            &put("docs/new.md"),
            Some(edit("new\n", &base)),
        )
        .await;
    let parents = git_ok(
        &team.work,
        &[
            "--git-dir",
            git_dir,
            "show",
            "-s",
            "--format=%P|%an",
            other["commit"].as_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(parents.trim(), format!("{commit}|alice"));
    // To a new branch.
    let head = other["commit"].as_str().unwrap().to_string();
    let mut body = edit("# Plan\n\nbranch\n", &head);
    body["new_branch"] = json!("issue-9-footer");
    let on_branch = team
        .ok(&team.bob, "PUT", &put("README.md"), Some(body.clone()))
        .await;
    assert_eq!(on_branch["branch"], "issue-9-footer");
    let main_now = git_ok(&team.work, &["--git-dir", git_dir, "rev-parse", "main"]).await?;
    assert_eq!(main_now.trim(), head, "main did not move");
    let (status, _) = team
        .api(&team.bob, "PUT", &put("README.md"), Some(body))
        .await?;
    assert_eq!(status, 409, "the new branch exists now");

    // Refusals.
    for (file, body, status) in [
        ("bin.dat", edit("text", &head), 422),
        ("big.txt", edit("small", &head), 422),
        ("README.md", edit(&"b".repeat(1024 * 1024 + 1), &head), 413),
        ("README.md", edit("a\0b", &head), 422),
        ("a/%2E%2E%2Fx", edit("x", &head), 400),
        (".git/config", edit("x", &head), 400),
        ("README.md/x", edit("x", &head), 422),
        ("README.md", edit("x", "nothex"), 400),
        (
            "README.md",
            json!({"branch": "nope", "base_commit": head, "content": "x", "message": "m"}),
            404,
        ),
    ] {
        let (got, answer) = team.api(&team.bob, "PUT", &put(file), Some(body)).await?;
        assert_eq!(got, status, "{file}: {answer}");
    }
    let (got, answer) = team
        .api(
            &team.rita,
            "PUT",
            &put("README.md"),
            Some(edit("r\n", &head)),
        )
        .await?;
    assert_eq!(got, 403, "{answer}");
    let main_after = git_ok(&team.work, &["--git-dir", git_dir, "rev-parse", "main"]).await?;
    assert_eq!(main_after.trim(), head, "no refused edit moved main");
    // A branch that takes changes only through pull requests refuses edits.
    let rules = json!({"rules": [{"pattern": "main", "require_pull_request": true}]});
    let (status, answer) = team
        .api(
            &team.server.admin_token,
            "PUT",
            &format!("/repos/{REPO}/branch-rules"),
            Some(rules),
        )
        .await?;
    assert_eq!(status, 200, "{answer}");
    let (got, answer) = team
        .api(
            &team.bob,
            "PUT",
            &put("README.md"),
            Some(edit("r\n", &head)),
        )
        .await?;
    assert_eq!(got, 403, "{answer}");
    assert!(answer.to_string().contains("pull request"), "{answer}");
    team.server.stop().await;
    Ok(())
}

/// `@bob` in an issue and in a comment, and assigning bob, reach the repository's webhook
/// receiver on 127.0.0.1 as `issue_mentioned` / `issue_assigned` naming bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_and_assignments_notify_the_user() -> Result<()> {
    use notify_receiver::{add_target, Receiver};
    let team = Team::start(None).await?;
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    let r = add_target(
        &team.server.http,
        &team.server.url,
        "plan",
        json!({"kind": "webhook", "url": format!("{hook}/hook"),
               "events": ["issue_mentioned", "issue_assigned"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    team.create(
        &team.alice,
        json!({"title": "Footer", "description": "@bob can you check? Not @eve (no such user).",
               "assignees": ["rita"]}),
    )
    .await;
    let mentioned = receiver.wait_for("/hook", "issue_mentioned").await;
    let body = mentioned.json();
    assert_eq!(body["data"]["mentioned"], json!(["bob"]), "{body}");
    assert_eq!(body["data"]["issue"], 1);
    assert_eq!(body["data"]["actor"], "alice");
    let assigned = receiver.wait_for("/hook", "issue_assigned").await;
    assert_eq!(assigned.json()["data"]["assignees"], json!(["rita"]));
    team.ok(&team.rita, "GET", &format!("/repos/{REPO}/issues/1"), None)
        .await;
    team.ok(
        &team.bob,
        "POST",
        &format!("/repos/{REPO}/issues/1/comments"),
        Some(json!({"body": "Sure, @alice"})),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !receiver
        .requests("/hook")
        .iter()
        .any(|g| g.json()["data"]["mentioned"] == json!(["alice"]))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no mention of alice in the comment reached the receiver"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Editing the comment without a new mention notifies no one again.
    team.server.stop().await;
    Ok(())
}
