#![allow(clippy::unwrap_used)]
//! PULLREQUEST triggers on a real server with real git (issue 15): the events OPEN / REVISION /
//! CLOSED, the destination-branch filter (`Branches`, `[]` = all) and `FilesChanged` against
//! the merge base, with CodeCatalyst semantics (the workflow file and the run's sources come
//! from the pull request's source revision); the pull request's checks
//! (`GET …/pulls/{number}/checks`), and a branch rule's required check blocking the merge
//! while the run is queued or running and allowing it once it succeeded (embedded agent on
//! the real Docker engine).

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git_ok, runs_of, TestServer};
use cove_api::{PullCheck, Run, RunState};
use serde_json::{json, Value};

const REPO: &str = "admin/prt";

async fn call(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = server
        .http
        .request(method.parse()?, server.api(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// A repository `admin/prt` with `main` pushed, alice a writer; the working copy.
async fn setup(server: &TestServer) -> Result<(String, std::path::PathBuf)> {
    let alice = server.create_user("alice").await?;
    server.create_repo(&server.admin_token, "prt").await?;
    let (status, body) = call(
        server,
        &server.admin_token,
        "PUT",
        &format!("/repos/{REPO}/members/alice"),
        Some(json!({ "role": "writer" })),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let work = server.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    commit_file(&work, "README.md", b"hello\n", "base").await?;
    push(server, &alice, &work, "main").await?;
    Ok((alice, work))
}

async fn push(
    server: &TestServer,
    token: &str,
    work: &std::path::Path,
    branch: &str,
) -> Result<()> {
    let url = server.git_url(REPO, Some(token));
    git_ok(work, &["push", "-q", "-f", &url, branch]).await?;
    Ok(())
}

async fn put_rule_requiring(server: &TestServer, check: &str) -> Result<()> {
    let (status, body) = call(
        server,
        &server.admin_token,
        "PUT",
        &format!("/repos/{REPO}/branch-rules"),
        Some(json!({ "rules": [{
            "pattern": "main",
            "require_pull_request": true,
            "required_approvals": 0,
            "required_checks": [check],
            "merge_roles": [],
            "merge_users": [],
            "allow_force_push": false,
            "allow_deletion": false,
        }] })),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

async fn open_pull(server: &TestServer, token: &str, source: &str) -> Result<Value> {
    let (status, pr) = call(
        server,
        token,
        "POST",
        &format!("/repos/{REPO}/pulls"),
        Some(json!({ "source": source, "title": format!("Change {source}") })),
    )
    .await?;
    assert_eq!(status, 201, "{pr}");
    Ok(pr)
}

/// Waits (up to 60 s) for at least `count` runs of the repository; newest first.
async fn wait_runs(server: &TestServer, count: usize) -> Result<Vec<Run>> {
    let start = Instant::now();
    loop {
        let runs = runs_of(server, REPO).await?;
        if runs.len() >= count {
            return Ok(runs);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{count} runs expected, got {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn checks(server: &TestServer, token: &str, number: i64) -> Result<Vec<PullCheck>> {
    let (status, body) = call(
        server,
        token,
        "GET",
        &format!("/repos/{REPO}/pulls/{number}/checks"),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(serde_json::from_value(body)?)
}

fn names(runs: &[Run]) -> Vec<String> {
    let mut n: Vec<String> = runs.iter().map(|r| r.workflow.clone()).collect();
    n.sort();
    n
}

const ON_OPEN: &str = "Name: on-open\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [OPEN]\n    Branches: [main]\n    FilesChanged: ['src/.*']\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n";
const ON_REVISION: &str = "Name: on-revision\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [REVISION]\n    Branches: []\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n";
const ON_CLOSE: &str = "Name: on-close\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [CLOSED]\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n";
const RELEASE_ONLY: &str = "Name: release-only\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [OPEN, REVISION, CLOSED]\n    Branches: ['release-.*']\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n";
const DOCS_ONLY: &str = "Name: docs-only\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [OPEN, REVISION]\n    FilesChanged: ['docs/.*']\nActions:\n  A: {Identifier: aws/build@v1, Configuration: {Steps: [{Run: 'true'}]}}\n";

/// Events, destination filter and FilesChanged; runs of the source revision; the checks; a
/// required check that is queued blocks the merge. No agent: runs stay queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_events_start_the_matching_workflows() -> Result<()> {
    let mut backends = vec![None];
    if let Some(base) = std::env::var("COVE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        backends.push(Some(
            common::create_postgres_db(&base, "cove_prtrig").await?,
        ));
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but COVE_TEST_POSTGRES_URL is not set"
        );
    }
    for database_url in backends {
        events_on(database_url).await?;
    }
    Ok(())
}

async fn events_on(database_url: Option<String>) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.database_url = database_url;
    })
    .await?;
    let (alice, w) = setup(&server).await?;
    // The workflows exist only on the source branch (CodeCatalyst reads them there).
    git_ok(&w, &["checkout", "-q", "-b", "feature"]).await?;
    for (file, text) in [
        ("on-open", ON_OPEN),
        ("on-revision", ON_REVISION),
        ("on-close", ON_CLOSE),
        ("release-only", RELEASE_ONLY),
        ("docs-only", DOCS_ONLY),
    ] {
        let path = format!(".codecatalyst/workflows/{file}.yaml");
        commit_file(&w, &path, text.as_bytes(), file).await?;
    }
    let head1 = commit_file(&w, "src/lib.rs", b"fn a() {}\n", "code").await?;
    push(&server, &alice, &w, "feature").await?;
    put_rule_requiring(&server, "on-revision").await?;
    assert!(
        runs_of(&server, REPO).await?.is_empty(),
        "no PUSH trigger anywhere"
    );

    // OPEN: on-open (src/ changed, into main) and on-revision (REVISION includes the opening).
    let pr = open_pull(&server, &alice, "feature").await?;
    let number = pr["number"].as_i64().unwrap();
    let runs = wait_runs(&server, 2).await?;
    assert_eq!(names(&runs), ["on-open", "on-revision"], "{runs:#?}");
    for run in &runs {
        assert_eq!(run.trigger, "pullrequest");
        assert_eq!(run.branch, "feature", "the run is of the source branch");
        assert_eq!(run.commit, head1.trim(), "the source revision");
        assert_eq!(run.state, RunState::Queued);
    }
    let c = checks(&server, &alice, number).await?;
    assert_eq!(c.len(), 2, "{c:#?}");
    for check in &c {
        let run = runs.iter().find(|r| r.workflow == check.name).unwrap();
        assert_eq!(check.run_number, run.number);
        assert_eq!(check.run_id, run.id);
        assert_eq!(check.state, RunState::Queued);
        assert_eq!(check.commit, head1.trim());
    }
    // The commit's status shows the same runs.
    let (status, commit) = call(
        &server,
        &alice,
        "GET",
        &format!("/repos/{REPO}/commits/{}/status", head1.trim()),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{commit}");
    assert_eq!(commit["state"], "queued", "{commit}");
    let on_commit = commit["runs"].as_array().unwrap();
    assert_eq!(on_commit.len(), 2, "{commit}");
    assert!(on_commit.iter().all(|r| r["trigger"] == "pullrequest"));
    // The required check is queued: the merge is refused and says so.
    let (status, refused) = call(
        &server,
        &alice,
        "POST",
        &format!("/repos/{REPO}/pulls/{number}/merge"),
        Some(json!({ "method": "merge" })),
    )
    .await?;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("`on-revision` is queued"),
        "{refused}"
    );

    // REVISION (a README change): on-revision only — on-open is OPEN only; docs-only wants
    // docs/ changed; release-only wants another destination.
    let head2 = commit_file(&w, "README.md", b"hello again\n", "readme").await?;
    push(&server, &alice, &w, "feature").await?;
    let runs = wait_runs(&server, 3).await?;
    let newest = &runs[0];
    assert_eq!(newest.workflow, "on-revision");
    assert_eq!(newest.commit, head2.trim());
    let c = checks(&server, &alice, number).await?;
    let got: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(got, ["on-revision"], "checks are of the new head");

    // FilesChanged is the whole pull request against the merge base: a revision touching
    // docs/ fires docs-only, whose pattern the first revisions did not match.
    let head3 = commit_file(&w, "docs/x.md", b"doc\n", "docs").await?;
    push(&server, &alice, &w, "feature").await?;
    let runs = wait_runs(&server, 5).await?;
    let at3: Vec<Run> = runs
        .iter()
        .filter(|r| r.commit == head3.trim())
        .cloned()
        .collect();
    assert_eq!(names(&at3), ["docs-only", "on-revision"], "{runs:#?}");

    // CLOSED: on-close, at the recorded head.
    let (status, body) = call(
        &server,
        &alice,
        "POST",
        &format!("/repos/{REPO}/pulls/{number}/close"),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let runs = wait_runs(&server, 6).await?;
    assert_eq!(runs[0].workflow, "on-close");
    assert_eq!(runs[0].commit, head3.trim());
    // Settle: nothing else fires (release-only never: its destination filter).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = runs_of(&server, REPO).await?;
    assert_eq!(runs.len(), 6, "{runs:#?}");
    assert!(runs.iter().all(|r| r.workflow != "release-only"));
    assert!(runs.iter().all(|r| r.trigger == "pullrequest"));
    server.stop().await;
    Ok(())
}

const CHECK: &str = "Name: check\nSchemaVersion: '1.0'\nTriggers:\n  - Type: PULLREQUEST\n    Events: [OPEN, REVISION]\n    Branches: [main]\nActions:\n  Test:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: sleep 8\n        - Run: test -f src/lib.rs\n";

/// The whole path on Docker: the PULLREQUEST workflow runs on the embedded agent with the
/// source revision's files; the PR shows the check; the merge is refused while it is queued or
/// running under a rule requiring it, and allowed once it succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_pull_request_check_blocks_the_merge_until_green() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(10);
        c.runs.reap_interval = Duration::from_millis(500);
    })
    .await?;
    let (alice, w) = setup(&server).await?;
    put_rule_requiring(&server, "check").await?;
    git_ok(&w, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(
        &w,
        ".codecatalyst/workflows/check.yaml",
        CHECK.as_bytes(),
        "ci",
    )
    .await?;
    let head = commit_file(&w, "src/lib.rs", b"fn a() {}\n", "code").await?;
    push(&server, &alice, &w, "feature").await?;
    let pr = open_pull(&server, &alice, "feature").await?;
    let number = pr["number"].as_i64().unwrap();
    let merge_path = format!("/repos/{REPO}/pulls/{number}/merge");
    let merge = || {
        call(
            &server,
            &alice,
            "POST",
            &merge_path,
            Some(json!({ "method": "merge" })),
        )
    };
    // The run appears; while it has not ended (read *after* the refusal, so it had not ended
    // when the merge was refused either) the merge is refused with the check's state.
    let start = Instant::now();
    let mut refused_while_pending = false;
    loop {
        let c = checks(&server, &alice, number).await?;
        if let Some(check) = c.iter().find(|c| c.name == "check") {
            assert_eq!(check.trigger, "pullrequest");
            assert_eq!(check.commit, head.trim());
            let (status, refused) = merge().await?;
            let after = checks(&server, &alice, number).await?;
            if !after[0].state.is_terminal() {
                assert_eq!(status, 409, "{refused}");
                let text = refused.to_string();
                assert!(
                    text.contains("`check` is queued") || text.contains("`check` is running"),
                    "{text}"
                );
                refused_while_pending = true;
            }
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("no check appeared: {c:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_while_pending,
        "the run (a step sleeps 8 s) ended before the first merge attempt"
    );
    // Green: the check says so and the merge goes through.
    let start = Instant::now();
    let check = loop {
        let c = checks(&server, &alice, number).await?;
        if c[0].state.is_terminal() {
            break c[0].clone();
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("the check did not end: {c:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(check.state, RunState::Succeeded, "{check:#?}");
    let (status, merged) = merge().await?;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["state"], "merged", "{merged}");
    server.stop().await;
    Ok(())
}

/// A pull request event stored just before a crash (its runs not created) starts its runs at
/// the next start: `pr_events.runs_pending` is the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_runs_were_not_created_gets_them_at_start() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let (alice, w) = setup(&server).await?;
    git_ok(&w, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(
        &w,
        ".codecatalyst/workflows/on-revision.yaml",
        ON_REVISION.as_bytes(),
        "ci",
    )
    .await?;
    let head = commit_file(&w, "src/lib.rs", b"fn a() {}\n", "code").await?;
    push(&server, &alice, &w, "feature").await?;
    open_pull(&server, &alice, "feature").await?;
    let runs = wait_runs(&server, 1).await?;
    assert_eq!(runs[0].workflow, "on-revision");
    // The crash: the event is stored, its run is not.
    sqlx::any::install_default_drivers();
    let db = format!("sqlite://{}", server.data_dir.join("cove.db").display());
    let pool = sqlx::AnyPool::connect(&db).await?;
    sqlx::query("DELETE FROM jobs WHERE run_id IN (SELECT id FROM runs WHERE pr_number = 1)")
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM runs WHERE pr_number = 1")
        .execute(&pool)
        .await?;
    let marked = sqlx::query("UPDATE pr_events SET runs_pending = 1 WHERE kind = 'pr_opened'")
        .execute(&pool)
        .await?;
    assert_eq!(marked.rows_affected(), 1);
    pool.close().await;
    assert!(runs_of(&server, REPO).await?.is_empty());
    let server = server.restart().await?;
    let runs = wait_runs(&server, 1).await?;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].workflow, "on-revision");
    assert_eq!(runs[0].trigger, "pullrequest");
    assert_eq!(runs[0].commit, head.trim());
    // Once: a second start creates nothing more.
    let server = server.restart().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs_of(&server, REPO).await?.len(), 1);
    server.stop().await;
    Ok(())
}
