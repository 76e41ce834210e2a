#![allow(clippy::unwrap_used)]
//! Issue 14: a run from a branch other than the default branch gets no repository secret
//! unless the secret is marked for all branches. A real push of `main` and of a `feature`
//! branch, the embedded agent on the real Docker engine: on `main` both secrets are given
//! (masked in the log); on `feature` the all-branches secret is given and the action that
//! uses the default-branch secret fails before it starts, with an error naming the secret and
//! the reason — never with an empty value.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git_ok, runs_of, TestServer};
use cove_api::{JobState, Run, SecretInfo};

const DEFAULT_ONLY_VALUE: &str = "default-only-3f9a1c7e55";
const EVERYWHERE_VALUE: &str = "everywhere-8b2d4e6f10";

const WORKFLOW: &str = r#"Name: secrets
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main, feature]
Actions:
  UsesEverywhere:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: test -n "${Secrets.EVERYWHERE}" && echo "everywhere=${Secrets.EVERYWHERE} len=$(printf %s "${Secrets.EVERYWHERE}" | wc -c | tr -d " ")"
  UsesDefaultOnly:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: test -n "${Secrets.DEFAULT_ONLY}" && echo "default_only=${Secrets.DEFAULT_ONLY} len=$(printf %s "${Secrets.DEFAULT_ONLY}" | wc -c | tr -d " ")"
"#;

async fn set_secret(server: &TestServer, name: &str, value: &str, all: bool) -> Result<SecretInfo> {
    let resp = server
        .http
        .put(server.api(&format!("/repos/admin/app/secrets/{name}")))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({"value": value, "all_branches": all}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "PUT secret {name}: {} {}",
            resp.status(),
            resp.text().await?
        );
    }
    Ok(resp.json().await?)
}

async fn wait_run_of_branch(server: &TestServer, branch: &str) -> Result<Run> {
    let start = Instant::now();
    loop {
        let runs = runs_of(server, "admin/app").await?;
        if let Some(run) = runs.iter().find(|r| r.branch == branch) {
            if run.state.is_terminal() {
                return Ok(run.clone());
            }
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("the run of {branch} did not end: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn job<'a>(run: &'a Run, action: &str) -> &'a cove_api::Job {
    run.jobs.iter().find(|j| j.action == action).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_default_branch_gets_only_secrets_marked_for_all_branches() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    cove_tests::require_image("cove/busybox:latest");
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(10);
        c.runs.reap_interval = Duration::from_millis(500);
    })
    .await?;
    server.create_repo(&server.admin_token, "app").await?;
    let d = set_secret(&server, "DEFAULT_ONLY", DEFAULT_ONLY_VALUE, false).await?;
    let e = set_secret(&server, "EVERYWHERE", EVERYWHERE_VALUE, true).await?;
    assert!(!d.all_branches && e.all_branches, "{d:?} {e:?}");
    let listed: Vec<SecretInfo> = common::api_json(&server, "/repos/admin/app/secrets").await?;
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.name.as_str(), s.all_branches))
            .collect::<Vec<_>>(),
        vec![("DEFAULT_ONLY", false), ("EVERYWHERE", true)]
    );

    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git_ok(d, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(d, &["remote", "add", "origin", &url]).await?;
    std::fs::create_dir_all(d.join(".codecatalyst/workflows"))?;
    commit_file(
        d,
        ".codecatalyst/workflows/secrets.yaml",
        WORKFLOW.as_bytes(),
        "workflow",
    )
    .await?;
    git_ok(d, &["push", "-q", "origin", "main"]).await?;
    let main = wait_run_of_branch(&server, "main").await?;

    git_ok(d, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(d, "feature.txt", b"feature\n", "feature work").await?;
    git_ok(d, &["push", "-q", "origin", "feature"]).await?;
    let feature = wait_run_of_branch(&server, "feature").await?;

    // The default branch gets both secrets (their values masked in the log).
    for (action, var, len) in [
        ("UsesEverywhere", "everywhere", EVERYWHERE_VALUE.len()),
        ("UsesDefaultOnly", "default_only", DEFAULT_ONLY_VALUE.len()),
    ] {
        let log = common::log_text(&server, main.id, action).await?;
        let j = job(&main, action);
        assert_eq!(
            j.state,
            JobState::Succeeded,
            "{action}: {:?}\n{log}",
            j.error
        );
        assert!(log.contains(&format!("{var}=*** len={len}")), "{log}");
    }

    // Another branch: the all-branches secret is given ...
    let log = common::log_text(&server, feature.id, "UsesEverywhere").await?;
    let j = job(&feature, "UsesEverywhere");
    assert_eq!(j.state, JobState::Succeeded, "{:?}\n{log}", j.error);
    assert!(
        log.contains(&format!("everywhere=*** len={}", EVERYWHERE_VALUE.len())),
        "{log}"
    );
    // ... the default-branch secret is not: the action fails, naming it and why.
    let j = job(&feature, "UsesDefaultOnly");
    let log = common::log_text(&server, feature.id, "UsesDefaultOnly").await?;
    assert_eq!(j.state, JobState::Failed, "{:?}\n{log}", j.error);
    let error = j.error.clone().unwrap_or_default();
    for needle in [
        "secret `DEFAULT_ONLY`",
        "default branch `main`",
        "branch `feature`",
        "--all-branches",
    ] {
        assert!(error.contains(needle), "{needle} not in {error}");
        assert!(log.contains(needle), "{needle} not in the log: {log}");
    }
    assert!(!log.contains("default_only="), "the step never ran: {log}");
    for run in [&main, &feature] {
        for j in &run.jobs {
            let log = common::log_text(&server, run.id, &j.action).await?;
            assert!(
                !log.contains(DEFAULT_ONLY_VALUE) && !log.contains(EVERYWHERE_VALUE),
                "a secret value in the log of {}: {log}",
                j.action
            );
        }
    }
    Ok(())
}
