#![allow(clippy::unwrap_used)]
//! Issue 15, branch rules: real `git push` over HTTP to a real server. A direct push to a
//! protected `main` is refused and git prints Cove's reason; an unprotected branch takes the
//! push; force pushes and deletions of protected branches are refused unless their rule allows
//! them; a refused push leaves the ref unchanged, stores no push event and starts no run; only
//! owners change the rules; a protected non-default branch gets every secret. Runs on SQLite
//! and, when `COVE_TEST_POSTGRES_URL` is set (required with `CI=true`), on PostgreSQL too.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use common::{commit_file, git, git_ok, TestServer};
use cove_api::{BranchRule, BranchRules, PushEvent};
use serde_json::json;

const WORKFLOW: &str = r#"Name: ci
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: ["main", "release/.*", "feature.*"]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo hi
"#;

fn rule(pattern: &str) -> BranchRule {
    BranchRule {
        pattern: pattern.into(),
        require_pull_request: false,
        required_approvals: 0,
        required_checks: Vec::new(),
        merge_roles: Vec::new(),
        merge_users: Vec::new(),
        allow_force_push: false,
        allow_deletion: false,
        require_up_to_date: false,
    }
}

async fn put_rules(server: &TestServer, token: &str, rules: &[BranchRule]) -> Result<u16> {
    let resp = server
        .http
        .put(server.api("/repos/admin/app/branch-rules"))
        .bearer_auth(token)
        .json(&BranchRules {
            rules: rules.to_vec(),
        })
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

async fn get_rules(server: &TestServer, token: &str) -> Result<Vec<BranchRule>> {
    let resp = server
        .http
        .get(server.api("/repos/admin/app/branch-rules"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?;
    Ok(resp.json::<BranchRules>().await?.rules)
}

/// `git push` that is expected to be refused: its stderr.
async fn push_refused(dir: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    let out = git(dir, &all).await?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        bail!("git {all:?} succeeded but should have been refused: {stderr}");
    }
    Ok(stderr)
}

async fn events(server: &TestServer) -> Result<Vec<PushEvent>> {
    common::api_json(server, "/repos/admin/app/events").await
}

/// Waits until `admin/app` has at least `n` runs; how many it has.
async fn wait_runs(server: &TestServer, n: usize) -> Result<usize> {
    let start = std::time::Instant::now();
    loop {
        let runs = common::runs_of(server, "admin/app").await?.len();
        if runs >= n {
            return Ok(runs);
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            bail!("{runs} runs, expected {n}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn scenario(server: &TestServer) -> Result<()> {
    server.create_repo(&server.admin_token, "app").await?;
    let repo = server.state.store().repo("admin", "app").await?.unwrap();
    let walt = server.create_user("walt").await?;
    let r = server.put_member("admin/app", "walt", "writer").await?;
    assert_eq!(r.status(), 200);

    let work = tempfile::tempdir()?;
    let d = work.path();
    git_ok(d, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(d, &["remote", "add", "origin", &url]).await?;
    commit_file(
        d,
        ".codecatalyst/workflows/ci.yaml",
        WORKFLOW.as_bytes(),
        "ci",
    )
    .await?;
    git_ok(d, &["push", "-q", "origin", "main"]).await?;
    git_ok(d, &["push", "-q", "origin", "main:release/1"]).await?;

    // Authorization: a writer reads the rules but cannot change them; bad rules are refused.
    assert!(get_rules(server, &walt).await?.is_empty());
    assert_eq!(put_rules(server, &walt, &[rule("main")]).await?, 403);
    assert!(get_rules(server, &server.admin_token).await?.is_empty());
    assert_eq!(
        put_rules(server, &server.admin_token, &[rule("main"), rule("main")]).await?,
        400
    );
    assert_eq!(
        put_rules(server, &server.admin_token, &[rule("refs/heads/x y")]).await?,
        400
    );
    assert!(get_rules(server, &server.admin_token).await?.is_empty());

    let mut main = rule("main");
    main.require_pull_request = true;
    main.required_approvals = 1;
    main.required_checks = vec!["ci".into()];
    main.merge_roles = vec![cove_api::Role::Owner];
    main.merge_users = vec!["walt".into()];
    let rules = vec![main, rule("release/*")];
    assert_eq!(put_rules(server, &server.admin_token, &rules).await?, 200);
    assert_eq!(get_rules(server, &walt).await?, rules);

    // A direct push to protected main: refused, git prints Cove's reason, nothing changes.
    let refs_before = server.disk_refs("admin/app")?;
    let events_before = events(server).await?.len();
    let runs_before = wait_runs(server, 2).await?;
    commit_file(d, "a.txt", b"a", "a").await?;
    let stderr = push_refused(d, &["origin", "main"]).await?;
    assert!(
        stderr.contains(
            "remote: cove: protected branch: changes to `main` must go through a pull request"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "! [remote rejected] main -> main (protected branch: changes to `main` must go through a pull request)"
        ),
        "{stderr}"
    );
    assert_eq!(server.disk_refs("admin/app")?, refs_before);
    assert_eq!(events(server).await?.len(), events_before);
    // The writer is refused the same way (rules apply to everyone).
    let walt_url = server.git_url("admin/app", Some(&walt));
    let stderr = push_refused(d, &[&walt_url, "main"]).await?;
    assert!(
        stderr.contains("must go through a pull request"),
        "{stderr}"
    );

    // The refused pushes are in the audit log.
    let audit: cove_api::AuditPage =
        common::api_json(server, "/audit?action=git.push&user=walt&repo=admin/app").await?;
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.result == "failed"
                && e.detail.as_deref() == Some("no ref updated (protected)")),
        "{audit:?}"
    );

    // An unprotected branch takes the push (and the same commit, pushed there, starts a run);
    // in one push with a refused ref, the other ref still goes through.
    let stderr = push_refused(d, &["origin", "main", "main:feature"]).await?;
    assert!(
        stderr.contains("[remote rejected] main -> main"),
        "{stderr}"
    );
    assert!(
        stderr.contains("* [new branch]      main -> feature"),
        "{stderr}"
    );
    let head = git_ok(d, &["rev-parse", "HEAD"]).await?;
    let refs = server.disk_refs("admin/app")?;
    assert!(
        refs.contains(&format!("refs/heads/feature {head}")),
        "{refs}"
    );
    assert!(!refs.contains(&format!("refs/heads/main {head}")), "{refs}");
    // Runs come from stored push events in order: once the run of this push exists, a run of
    // the refused pushes would exist too — there is exactly one more.
    assert_eq!(wait_runs(server, runs_before + 1).await?, runs_before + 1);

    // release/* (no pull request needed): a fast-forward is accepted ...
    git_ok(d, &["push", "-q", "origin", "HEAD:release/1"]).await?;
    // ... a force push (rewritten history) is refused and leaves the ref alone ...
    git_ok(d, &["commit", "-q", "--amend", "-m", "rewritten"]).await?;
    let before = server.disk_refs("admin/app")?;
    let stderr = push_refused(d, &["-f", "origin", "HEAD:release/1"]).await?;
    assert!(
        stderr.contains("! [remote rejected] HEAD -> release/1 (protected branch: force push to `release/1` is not allowed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote: cove: protected branch: force push"),
        "{stderr}"
    );
    assert_eq!(server.disk_refs("admin/app")?, before);
    // ... so is a rewind to an older commit ...
    let stderr = {
        let older = git_ok(d, &["rev-parse", "HEAD~1"]).await?;
        push_refused(
            d,
            &["-f", "origin", &format!("{older}:refs/heads/release/1")],
        )
        .await?
    };
    assert!(
        stderr.contains("force push to `release/1` is not allowed"),
        "{stderr}"
    );
    // ... and a deletion.
    let stderr = push_refused(d, &["origin", ":release/1"]).await?;
    assert!(
        stderr.contains(
            "! [remote rejected] release/1 (protected branch: `release/1` may not be deleted)"
        ),
        "{stderr}"
    );
    assert_eq!(server.disk_refs("admin/app")?, before);
    // Creating a new protected branch is allowed.
    git_ok(d, &["push", "-q", "origin", "HEAD:release/2"]).await?;

    // Allowed when the rule says so.
    let mut open = rule("release/*");
    open.allow_force_push = true;
    open.allow_deletion = true;
    assert_eq!(put_rules(server, &server.admin_token, &[open]).await?, 200);
    git_ok(d, &["push", "-q", "-f", "origin", "HEAD:release/1"]).await?;
    git_ok(d, &["push", "-q", "origin", ":release/2"]).await?;
    let refs = server.disk_refs("admin/app")?;
    let amended = git_ok(d, &["rev-parse", "HEAD"]).await?;
    assert!(
        refs.contains(&format!("refs/heads/release/1 {amended}")),
        "{refs}"
    );
    assert!(!refs.contains("refs/heads/release/2"), "{refs}");
    // main has no rule any more: a direct push goes through.
    git_ok(d, &["push", "-q", "-f", "origin", "HEAD:main"]).await?;

    // Secrets: a protected branch other than the default one gets every secret.
    let r = server
        .http
        .put(server.api("/repos/admin/app/secrets/DEPLOY_KEY"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"value": "value-4f1e", "all_branches": false}))
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.status());
    let names: BTreeSet<String> = ["DEPLOY_KEY".to_string()].into();
    let open_for = |branch: &'static str| {
        let names = names.clone();
        async move { cove_server::runs::open_secrets_for(&server.state, repo.id, branch, &names).await }
    };
    // Without a rule, release/1 is an ordinary branch and does not get it.
    assert_eq!(put_rules(server, &server.admin_token, &[]).await?, 200);
    assert!(get_rules(server, &server.admin_token).await?.is_empty());
    let withheld = open_for("release/1").await.unwrap_err().to_string();
    assert!(withheld.contains("`DEPLOY_KEY`"), "{withheld}");
    // Only release/* is protected now: release/1 gets it, feature does not.
    let mut secrets_rule = rule("release/*");
    secrets_rule.allow_force_push = true;
    secrets_rule.require_pull_request = true;
    assert_eq!(
        put_rules(server, &server.admin_token, &[secrets_rule]).await?,
        200
    );
    let given = open_for("release/1").await.context("protected branch")?;
    assert_eq!(
        given.get("DEPLOY_KEY").map(String::as_str),
        Some("value-4f1e")
    );
    assert!(open_for("feature").await.is_err());
    assert!(open_for("main").await.is_ok());
    // That is why, under a rule that requires pull requests, only owners create branches: a
    // writer cannot push a new release/3 (with a workflow of their own) to get the secrets.
    let before = server.disk_refs("admin/app")?;
    let stderr = push_refused(d, &[&walt_url, "HEAD:release/3"]).await?;
    assert!(
        stderr.contains("(protected branch: only the repository's owners may create `release/3`)"),
        "{stderr}"
    );
    assert_eq!(server.disk_refs("admin/app")?, before);
    git_ok(d, &["push", "-q", "origin", "HEAD:release/3"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_rules_on_push_sqlite() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    scenario(&server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_rules_on_push_postgres() -> Result<()> {
    let base = std::env::var("COVE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(base) = base else {
        let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        assert!(!ci, "CI=true but COVE_TEST_POSTGRES_URL is not set");
        return Ok(());
    };
    let url = common::create_postgres_db(&base, "cove_rules").await?;
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.database_url = Some(url);
    })
    .await?;
    scenario(&server).await
}
