//! Acceptance of issue 14 "Accountable": `cove audit` (the real binary) lists the actions of a
//! representative session against a real in-process server with its embedded agent on the
//! real Docker engine and a push with the real `git` client — a failed and a successful login,
//! token create and revoke, a secret set, an environment created and its terminal opened, a
//! push and a refused request — each with the right user and result, and never a secret.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cove_api::{AuditEntry, AuditPage, EnvState, Environment};
use serde_json::json;

use common::{cove_logged_in as cove, create_token, create_user, git, ok, ADMIN_TOKEN};

const ALICE_PASSWORD: &str = "alice-correct-horse";
const BOB_PASSWORD: &str = "bob-battery-staple";
const SECRET_VALUE: &str = "s3cret-value-that-must-never-be-logged";

fn audit(home: &Path, args: &[&str]) -> Vec<AuditEntry> {
    let mut all = vec!["audit", "--json", "--limit", "1000"];
    all.extend_from_slice(args);
    let page: AuditPage = serde_json::from_str(&ok(&cove(home, &all))).unwrap();
    page.entries
}

/// The one entry with this action, user and result (whose target contains `target`).
fn find<'a>(
    entries: &'a [AuditEntry],
    action: &str,
    user: &str,
    result: &str,
    target: &str,
) -> &'a AuditEntry {
    let found: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| {
            e.action == action
                && e.user.as_deref() == Some(user)
                && e.result == result
                && e.target.contains(target)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {action} by {user} ({result}, target ~ {target}) in:\n{}",
        serde_json::to_string_pretty(entries).unwrap()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cove_audit_lists_the_actions_of_a_session() {
    cove_tests::require_image("cove/busybox:latest");
    let s = common::serve_with_engine(|_| {}).await;
    let url = s.url.clone();
    let api = format!("{url}/api/v1");
    let http = s.http.clone();

    // Users: alice (who acts) and bob (a reader of her repository).
    for (name, password) in [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] {
        create_user(&http, &url, name, password).await;
    }

    // A failed and a successful web UI login.
    let r = http
        .post(format!("{api}/session"))
        .basic_auth("alice", Some("wrong-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{api}/session"))
        .basic_auth("alice", Some(ALICE_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Tokens: one kept, one revoked (created with the password, like a first login would).
    let mut tokens = Vec::new();
    for name in ["laptop", "old"] {
        tokens.push(
            create_token(
                &http,
                &url,
                "alice",
                ALICE_PASSWORD,
                name,
                &["read", "write"],
            )
            .await,
        );
    }
    let alice = tokens[0].token.clone();
    let revoked = tokens[1].info.id;
    let r = http
        .delete(format!("{api}/tokens/{revoked}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The revoked token no longer opens anything: a refused credential, even on a read.
    let r = http
        .get(format!("{api}/user"))
        .bearer_auth(&tokens[1].token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A repository, a secret, a push.
    common::create_repo(&http, &url, &alice, "proj").await;
    let r = http
        .put(format!("{api}/repos/alice/proj/secrets/DEPLOY_KEY"))
        .bearer_auth(&alice)
        .json(&json!({"value": SECRET_VALUE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("devfile.yaml"),
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n",
    )
    .unwrap();
    let remote = format!(
        "http://alice:{alice}@{}/git/alice/proj.git",
        url.trim_start_matches("http://")
    );
    let dir = work.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        git(&dir, &["init", "-q", "-b", "main"]);
        git(
            &dir,
            &[
                "-c",
                "user.name=A",
                "-c",
                "user.email=a@example.com",
                "add",
                ".",
            ],
        );
        git(
            &dir,
            &[
                "-c",
                "user.name=A",
                "-c",
                "user.email=a@example.com",
                "commit",
                "-qm",
                "devfile",
            ],
        );
        git(&dir, &["push", "-q", &remote, "main"]);
    })
    .await
    .unwrap();

    // An environment, and its terminal opened.
    let r = http
        .post(format!("{api}/repos/alice/proj/environments"))
        .bearer_auth(&alice)
        .json(&json!({"name": "dev", "idle_timeout_secs": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let env: Environment = r.json().await.unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let shown: Environment = http
            .get(format!("{api}/environments/{}", env.id))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown.state == EnvState::Running {
            break;
        }
        assert!(
            shown.state != EnvState::Failed && Instant::now() < deadline,
            "environment not running: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ws = format!(
        "ws://{}/api/v1/environments/{}/terminal?cols=80&rows=24",
        url.trim_start_matches("http://"),
        env.id
    );
    let token = alice.clone();
    tokio::task::spawn_blocking(move || {
        use tungstenite::client::IntoClientRequest;
        let mut request = ws.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let (mut socket, response) = tungstenite::connect(request).unwrap();
        assert_eq!(response.status(), 101);
        let _ = socket.close(None);
    })
    .await
    .unwrap();

    // A refused request: bob, a reader, tries to replace the secret.
    let r = http
        .put(format!("{api}/repos/alice/proj/members/bob"))
        .bearer_auth(&alice)
        .json(&json!({"role": "reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .put(format!("{api}/repos/alice/proj/secrets/DEPLOY_KEY"))
        .basic_auth("bob", Some(BOB_PASSWORD))
        .json(&json!({"value": SECRET_VALUE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // ... and to push (git asks without credentials first; that refusal is not recorded).
    let bob_remote = format!(
        "http://bob:{BOB_PASSWORD}@{}/git/alice/proj.git",
        url.trim_start_matches("http://")
    );
    let dir = work.path().to_path_buf();
    let refused = tokio::task::spawn_blocking(move || {
        common::git_output(&dir, &["push", "-q", &bob_remote, "main:refs/heads/bob"])
    })
    .await
    .unwrap();
    assert!(!refused.status.success(), "a reader cannot push");

    // What `cove audit` says, as the administrator.
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_path_buf();
    let env_id = env.id.clone();
    let admin_url = url.clone();
    let alice_token = alice.clone();
    let tokens_created: Vec<i64> = tokens.iter().map(|t| t.info.id).collect();
    tokio::task::spawn_blocking(move || {
        ok(&cove(&home, &["login", &admin_url, "--token", ADMIN_TOKEN]));
        let entries = audit(&home, &[]);

        let failed = find(&entries, "login", "alice", "denied", "/api/v1/session");
        assert_eq!(failed.status, Some(401));
        assert_eq!(failed.auth.as_deref(), Some("password"));
        assert_eq!(failed.client.as_deref(), Some("127.0.0.1"));
        let login = find(&entries, "login", "alice", "ok", "/api/v1/session");
        assert_eq!(login.status, Some(201));

        let created = entries
            .iter()
            .filter(|e| e.action == "POST /api/v1/tokens" && e.user.as_deref() == Some("alice"))
            .count();
        assert_eq!(created, 2, "both token creations are listed");
        let laptop = format!("token {} \"laptop\"", tokens_created[0]);
        assert!(
            entries
                .iter()
                .any(|e| e.detail.as_deref() == Some(laptop.as_str())),
            "a token creation names the token: {laptop}"
        );
        let revoke = find(
            &entries,
            "DELETE /api/v1/tokens/{id}",
            "alice",
            "ok",
            &format!("/api/v1/tokens/{revoked}"),
        );
        assert_eq!(revoke.auth.as_deref(), Some("token"));
        assert!(
            revoke.token_id.is_some(),
            "the token used is named: {revoke:?}"
        );

        let refused_token: Vec<&AuditEntry> = entries
            .iter()
            .filter(|e| e.action == "login" && e.auth.as_deref() == Some("token"))
            .collect();
        assert_eq!(
            refused_token.len(),
            1,
            "the revoked token's use: {refused_token:?}"
        );
        assert_eq!(refused_token[0].result, "denied");
        assert_eq!(refused_token[0].target, "/api/v1/user");
        assert!(refused_token[0].user.is_none());

        let secret = find(
            &entries,
            "PUT /api/v1/repos/{owner}/{name}/secrets/{secret}",
            "alice",
            "ok",
            "/DEPLOY_KEY",
        );
        assert_eq!(secret.repo.as_deref(), Some("alice/proj"));

        let push = find(&entries, "git.push", "alice", "ok", "alice/proj");
        assert!(
            push.detail
                .as_deref()
                .unwrap_or_default()
                .contains("refs/heads/main"),
            "the push names its refs: {push:?}"
        );
        assert_eq!(push.client.as_deref(), Some("127.0.0.1"));

        let create = find(
            &entries,
            "POST /api/v1/repos/{owner}/{name}/environments",
            "alice",
            "ok",
            "/api/v1/repos/alice/proj/environments",
        );
        assert_eq!(create.status, Some(201));
        let terminal = find(
            &entries,
            "GET /api/v1/environments/{env}/terminal",
            "alice",
            "ok",
            &env_id,
        );
        assert_eq!(terminal.status, Some(101));
        assert_eq!(terminal.repo.as_deref(), Some("alice/proj"));

        let denied = find(
            &entries,
            "PUT /api/v1/repos/{owner}/{name}/secrets/{secret}",
            "bob",
            "denied",
            "/DEPLOY_KEY",
        );
        assert_eq!(denied.status, Some(403));
        let refused_push = find(&entries, "git.push", "bob", "denied", "/git/alice/proj.git");
        assert_eq!(refused_push.status, Some(403));
        assert_eq!(refused_push.repo.as_deref(), Some("alice/proj"));

        // Reads are not recorded, and nothing secret ever is.
        assert!(entries
            .iter()
            .all(|e| !e.action.starts_with("GET /api/v1/environments/{env}")
                || e.action.ends_with("/terminal")));
        let text = ok(&cove(&home, &["audit", "--json", "--limit", "1000"]));
        for secret in [
            SECRET_VALUE,
            ALICE_PASSWORD,
            BOB_PASSWORD,
            "wrong-password",
            &alice_token,
            ADMIN_TOKEN,
        ] {
            assert!(!text.contains(secret), "the audit log holds a secret");
        }

        // Filters: user + result, action, repository; pages follow the cursor.
        let bob = audit(&home, &["--user", "bob", "--result", "denied"]);
        assert_eq!(bob.len(), 2, "{bob:?}");
        let logins = audit(&home, &["--action", "login", "--user", "alice"]);
        assert_eq!(logins.len(), 2, "{logins:?}");
        let pushes = audit(&home, &["--action", "git.push", "--repo", "alice/proj"]);
        assert_eq!(pushes.len(), 2, "{pushes:?}");
        let first: AuditPage =
            serde_json::from_str(&ok(&cove(&home, &["audit", "--json", "--limit", "2"]))).unwrap();
        assert_eq!(first.entries.len(), 2);
        let cursor = first.next_cursor.clone().expect("a next page");
        let second: AuditPage = serde_json::from_str(&ok(&cove(
            &home,
            &["audit", "--json", "--limit", "2", "--cursor", &cursor],
        )))
        .unwrap();
        assert!(
            second.entries[0].id < first.entries[1].id,
            "older entries follow"
        );
        assert_eq!(second.entries[0], entries[2]);
        let since_future = audit(&home, &["--since", "2999-01-01"]);
        assert!(since_future.is_empty());
        // Bad filters are refused with what to do, not answered with everything.
        let long = "x".repeat(300);
        for (args, says) in [
            (vec!["audit", "--cursor", "nope"], "cursor must be"),
            (vec!["audit", "--user", long.as_str()], "longer than 256"),
            (vec!["audit", "--since", "yesterday"], "a time ago"),
        ] {
            let out = cove(&home, &args);
            assert!(!out.status.success(), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(says), "{args:?}: {err}");
        }

        // The table, as a person reads it.
        let table = ok(&cove(&home, &["audit", "--user", "bob"]));
        assert!(table.contains("TIME (UTC)"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("bob") && l.contains("denied") && l.contains("403")),
            "{table}"
        );

        // Only administrators read the log.
        let alice_home = tempfile::tempdir().unwrap();
        ok(&cove(
            alice_home.path(),
            &["login", &admin_url, "--token", &alice_token],
        ));
        let out = cove(alice_home.path(), &["audit"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("admin"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .unwrap();

    let r = http
        .delete(format!("{api}/environments/{}", env.id))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{api}/environments/{}", env.id))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        == 200
    {
        assert!(Instant::now() < deadline, "environment not deleted");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
