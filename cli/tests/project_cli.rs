//! `cove project …` against a real in-process server: create with points estimates, attach a
//! repository, invite a user who sees and accepts the invitation, list and change roles, the
//! merged board, a non-administrator's invitation refused with the server's message, leaving.

#![allow(clippy::unwrap_used)]

mod common;

use common::{cove, create_repo, create_token, create_user, ok, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_commands_manage_members_and_invitations() {
    let s = common::serve(|config| config.embedded_agent = false).await;
    let url = s.url.clone();
    let http = &s.http;
    create_user(http, &url, "bob", "a long enough password").await;
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
    create_repo(http, &url, ADMIN_TOKEN, "app").await;
    let h = s.home.path();
    let admin = |args: &[&str]| cove(h, &url, ADMIN_TOKEN, args);
    let as_bob = |args: &[&str]| cove(h, &url, &bob, args);

    let out = ok(&admin(&[
        "project",
        "create",
        "web",
        "--description",
        "the site",
        "--estimates",
        "points",
    ]));
    assert!(out.contains("created project web"), "{out}");
    ok(&admin(&["project", "repos", "add", "web", "admin/app"]));
    let out = ok(&admin(&[
        "project", "members", "add", "web", "bob", "--role", "reader",
    ]));
    assert!(out.contains("invited bob as reader"), "{out}");

    // bob sees the invitation, has no access before accepting, accepts
    let out = ok(&as_bob(&["project", "list"]));
    assert!(
        out.contains("web") && out.contains("invited as reader"),
        "{out}"
    );
    assert!(!as_bob(&["issue", "list", "--repo", "admin/app"])
        .status
        .success());
    let out = ok(&as_bob(&["project", "invitations", "accept", "web"]));
    assert!(out.contains("you are now reader in project web"), "{out}");
    ok(&as_bob(&["issue", "list", "--repo", "admin/app"]));

    // members, roles; a reader cannot invite (the server's message is shown)
    let out = ok(&as_bob(&["project", "members", "list", "web"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("admin") && l.contains("administrator")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("bob") && l.contains("reader")),
        "{out}"
    );
    let refused = as_bob(&[
        "project", "members", "add", "web", "admin", "--role", "reader",
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("administrator role in project web"), "{err}");
    let out = ok(&admin(&[
        "project",
        "members",
        "role",
        "web",
        "bob",
        "contributor",
    ]));
    assert!(out.contains("bob is now contributor"), "{out}");
    let out = ok(&as_bob(&["project", "show", "web"]));
    assert!(
        out.contains("estimates   points") && out.contains("your role   contributor"),
        "{out}"
    );
    assert!(out.contains("repository  admin/app"), "{out}");

    // points estimates on the project's issues; the merged board
    ok(&as_bob(&[
        "issue",
        "create",
        "--repo",
        "admin/app",
        "--title",
        "footer",
        "--estimate",
        "8",
    ]));
    let out = ok(&admin(&["project", "board", "web"]));
    assert!(
        out.contains("== Backlog (1)") && out.contains("admin/app#1"),
        "{out}"
    );

    // leaving
    let out = ok(&as_bob(&["project", "leave", "web"]));
    assert!(out.contains("you left project web"), "{out}");
    assert!(!as_bob(&["issue", "list", "--repo", "admin/app"])
        .status
        .success());
    let out = ok(&admin(&["project", "members", "list", "web"]));
    assert!(!out.contains("bob"), "{out}");
    let out = ok(&admin(&["project", "members", "add", "web", "bob"]));
    assert!(out.contains("invited bob as contributor"), "{out}");
    ok(&admin(&["project", "members", "remove", "web", "bob"]));
    let out = ok(&as_bob(&["project", "list"]));
    assert!(!out.contains("web"), "{out}");
}
