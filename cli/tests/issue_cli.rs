//! `cove issue …` against a real in-process server with a repository pushed with the real
//! `git`: create with an assignee, labels, priority and estimate; list with filters; assign,
//! comment, move to "In review" and show; a branch from the issue (checked with `git
//! ls-remote`); the board; close; a reader's move refused with the server's message.

#![allow(clippy::unwrap_used)]

mod common;

use cove_api::{Board, Issue};

use common::{cove, create_repo, create_token, create_user, git, ok, put_member, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_commands_plan_and_move_work() {
    let s = common::serve(|config| config.embedded_agent = false).await;
    let url = s.url.clone();
    let http = &s.http;
    for user in ["bob", "rita"] {
        create_user(http, &url, user, "a long enough password").await;
    }
    let bob = create_token(
        http,
        &url,
        "bob",
        "a long enough password",
        "cli",
        &["read", "write"],
    )
    .await
    .token;
    let rita = create_token(
        http,
        &url,
        "rita",
        "a long enough password",
        "cli",
        &["read", "write"],
    )
    .await
    .token;
    create_repo(http, &url, ADMIN_TOKEN, "app").await;
    assert_eq!(
        put_member(http, &url, "admin/app", "bob", "writer")
            .await
            .status(),
        200
    );
    assert_eq!(
        put_member(http, &url, "admin/app", "rita", "reader")
            .await
            .status(),
        200
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let remote = common::admin_git_url(&url, "app");
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("README.md"), "# App\n").unwrap();
    git(w, &["add", "README.md"]);
    git(w, &["commit", "-q", "-m", "readme"]);
    git(w, &["push", "-q", &remote, "main"]);

    let h = s.home.path();
    let repo = ["--repo", "admin/app"];
    let run = |token: &str, args: &[&str]| {
        let mut all: Vec<&str> = vec!["issue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&repo);
        cove(h, &url, token, &all)
    };
    let created = ok(&run(
        ADMIN_TOKEN,
        &[
            "create",
            "--title",
            "Add a copyright footer",
            "--description",
            "In `README.md`, @bob",
            "--assignee",
            "bob",
            "--label",
            "ui",
            "--priority",
            "high",
            "--estimate",
            "M",
            "--output",
            "json",
        ],
    ));
    let issue: Issue = serde_json::from_str(&created).unwrap();
    assert_eq!(issue.number, 1);
    assert_eq!(issue.assignees, vec!["bob"]);
    assert_eq!(issue.estimate.as_deref(), Some("M"));
    ok(&run(ADMIN_TOKEN, &["create", "--title", "Second"]));

    let listed = ok(&run(&bob, &["list", "--label", "ui"]));
    assert!(listed.contains("Add a copyright footer"), "{listed}");
    assert!(!listed.contains("Second"), "{listed}");
    let listed = ok(&run(&bob, &["list", "--search", "second"]));
    assert!(listed.contains("Second"), "{listed}");

    let out = ok(&run(&bob, &["assign", "2", "bob", "admin"]));
    assert!(out.contains("assigned to bob, admin"), "{out}");
    ok(&run(&bob, &["comment", "1", "Starting now"]));
    let out = ok(&run(&bob, &["move", "1", "In review"]));
    assert!(out.contains("#1 is in In review"), "{out}");
    let out = ok(&run(&bob, &["branch", "1"]));
    assert!(out.contains("issue-1-add-a-copyright-footer"), "{out}");
    let heads = git(
        w,
        &[
            "ls-remote",
            &remote,
            "refs/heads/issue-1-add-a-copyright-footer",
        ],
    );
    assert!(!heads.is_empty(), "the branch exists on the server");
    let shown = ok(&run(&rita, &["show", "1"]));
    for needle in [
        "column      In review",
        "priority    high",
        "branch      issue-1-add-a-copyright-footer",
        "comment",
        "Starting now",
    ] {
        assert!(shown.contains(needle), "{needle:?} in {shown}");
    }
    let board: Board =
        serde_json::from_str(&ok(&run(&rita, &["board", "--output", "json"]))).unwrap();
    assert_eq!(board.columns[3].name, "In review");
    assert_eq!(board.columns[3].issues[0].number, 1);
    let out = ok(&run(&bob, &["close", "1"]));
    assert!(out.contains("closed (Done)"), "{out}");
    ok(&run(
        &bob,
        &["edit", "2", "--estimate", "XL", "--priority", "low"],
    ));
    let listed = ok(&run(&bob, &["list", "--column", "Backlog"]));
    assert!(listed.contains("low") && listed.contains("XL"), "{listed}");

    let out = ok(&run(
        ADMIN_TOKEN,
        &[
            "columns",
            "Backlog",
            "To do",
            "In progress:2",
            "In review",
            "Done",
        ],
    ));
    assert!(out.contains("In progress (limit 2)"), "{out}");
    let text = ok(&run(&rita, &["board"]));
    assert!(text.contains("== In progress (0/2)"), "{text}");
    let refused = run(ADMIN_TOKEN, &["columns", "To do", "Done"]);
    assert!(!refused.status.success(), "Backlog holds #2: it cannot go");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Backlog"), "{err}");

    let refused = run(&rita, &["move", "2", "Done"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("writer"), "{err}");
}
