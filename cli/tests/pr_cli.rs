//! `cove pr …` against a real in-process server (no agent: nothing runs), the repository
//! pushed with the real `git`: create with a reviewer, list, diff --stat, a line comment,
//! show (not mergeable until the reviewer approves, with the reason), review, merge, and the
//! destination checked with `git`; a PULLREQUEST workflow's run printed as a check by `pr show`.

#![allow(clippy::unwrap_used)]

mod common;

use cove_api::PullRequest;

use common::{cove, create_repo, create_token, create_user, git, ok, put_member, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_commands_open_review_and_merge() {
    let s = common::serve(|config| config.embedded_agent = false).await;
    let url = s.url.clone();
    let http = &s.http;
    create_user(http, &url, "bob", "bob's long password").await;
    let bob = create_token(
        http,
        &url,
        "bob",
        "bob's long password",
        "cli",
        &["read", "write"],
    )
    .await
    .token;
    create_repo(http, &url, ADMIN_TOKEN, "app").await;
    let r = put_member(http, &url, "admin/app", "bob", "writer").await;
    assert_eq!(r.status(), 200);

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let remote = common::admin_git_url(&url, "app");
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

    let h = s.home.path();
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
