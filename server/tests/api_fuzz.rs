#![allow(clippy::unwrap_used)]
//! A schema-driven API fuzzer against the real `cove-server` binary: schemathesis reads the
//! server's own OpenAPI document and sends generated requests (valid and invalid: wrong
//! types, missing and unknown fields, odd path segments and query values) to every
//! `/api/v1` operation for a bounded time, as the administrator. It fails on any 5xx, any
//! status the document does not list for the operation, a content type the document does not
//! list, a response body that breaks its schema, a schema-invalid request that is accepted
//! (`negative_data_rejection`), an operation that answers without credentials
//! (`ignored_auth`) and a method the path does not have that is not 405.
//!
//! The server is the real one (router, store on SQLite, embedded agent on the engine), in
//! process so that the test can seed an environment and a run directly in its store.
//!
//! Needs schemathesis (`python3 -m pip install schemathesis`, done by scripts/test-env.sh).
//! Without it the test fails when `CI=true` and skips (with a note) otherwise.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{commit_file, git_ok, insert_env_row, insert_run_row, TestServer, ADMIN_TOKEN};
use serde_json::json;
use tokio::process::Command;

/// Whole-run bound of the fuzzer (its own `--max-time` is less; this also covers start-up).
const HARD_LIMIT: Duration = Duration::from_secs(240);
/// The environment and run the fuzzer's `{env}` and `{run}` paths name.
const FUZZ_ENV: &str = "e0fuzzed0000";
const FUZZ_RUN: i64 = 7070;
/// The fuzzer's time budget, in seconds.
const FUZZ_SECONDS: &str = "100";

async fn schemathesis_present() -> bool {
    Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undocumented_answer() -> Result<()> {
    if !schemathesis_present().await {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is not installed (python3 -m pip install schemathesis; scripts/test-env.sh does it)"
        );
        eprintln!("SKIP: schemathesis is not installed (python3 -m pip install schemathesis)");
        return Ok(());
    }
    // The fuzzer sends wrong Basic passwords by the hundred; the login throttle (tested in
    // login_throttle.rs) would answer them 429 instead of the 401 checked here.
    let server = TestServer::start_configured(|c| {
        c.auth.free_failures_per_user = u32::MAX;
        c.auth.free_failures_per_address = u32::MAX;
        // SSH on, so that its routes (host key, WebSocket) answer as documented, not 503
        c.ssh_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await?;
    let http = server.http.clone();
    // Some data, so that handlers are reached and list answers have items for their schemas
    // to be checked against: a repository, a (stopped) environment and a finished run in it.
    let resp = http
        .post(server.api("/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "fuzzed"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    insert_env_row(&server, "admin", "fuzzed", FUZZ_ENV).await?;
    insert_run_row(&server, "admin", "fuzzed", FUZZ_RUN).await?;
    // A pull request #1 (branch `topic` into `main`), so that `{number}` routes reach it.
    let work = server.tmp.path().join("fuzz-work");
    std::fs::create_dir_all(&work)?;
    let url = server.git_url("admin/fuzzed", Some(ADMIN_TOKEN));
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    commit_file(&work, "a.txt", b"a\n", "a").await?;
    git_ok(&work, &["push", "-q", &url, "main"]).await?;
    git_ok(&work, &["checkout", "-q", "-b", "topic"]).await?;
    commit_file(&work, "a.txt", b"b\n", "b").await?;
    git_ok(&work, &["push", "-q", &url, "topic"]).await?;
    let resp = http
        .post(server.api("/repos/admin/fuzzed/pulls"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"source": "topic", "title": "fuzzed"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    // The agent protocol is fuzzed with a registered agent's token.
    let registration: cove_api::RegistrationToken = http
        .post(server.api("/agents/registration-tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let agent: cove_api::RegisteredAgent = http
        .post(server.api("/agents/register"))
        .bearer_auth(&registration.token)
        .json(&json!({"name": "fuzz-agent"}))
        .send()
        .await?
        .json()
        .await?;
    // Repository routes get the real repository's path, so that the fuzzer reaches the
    // handlers instead of the 404 of an unknown repository. Deleting the repository and
    // creating environments (containers on the engine) keep generated names.
    let config = server.tmp.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
headers = {{ Authorization = "Bearer {ADMIN_TOKEN}" }}

[parameters]
"path.owner" = "admin"
"path.name" = "fuzzed"
"path.env" = "{FUZZ_ENV}"
"path.run" = "{FUZZ_RUN}"
"path.job" = "Build"
"path.number" = "1"

[[operations]]
include-operation-id-regex = "^(delete_repos_owner_name|post_repos_owner_name_environments)$"
parameters = {{ "path.owner" = "nobody", "path.name" = "no-such-repository" }}

[[operations]]
include-path-regex = "^/api/v1/agent/(?!lease)"
headers = {{ Authorization = "Bearer {agent_token}" }}

# The lease is a long poll (up to 60 s): it is asked not to wait.
[[operations]]
include-operation-id = "post_agent_lease"
headers = {{ Authorization = "Bearer {agent_token}" }}
parameters = {{ "body.wait_ms" = 0 }}
"#,
            agent_token = agent.token
        ),
    )?;
    let tmp = tempfile::tempdir()?;
    let report = tmp.path().join("report");
    let mut fuzzer = Command::new("python3");
    fuzzer
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--max-time",
            FUZZ_SECONDS,
            "--exclude-path-regex",
            "^/git/",
            "--request-timeout",
            "30",
            "--workers",
            "2",
            "--seed",
            "20261205",
            "--report-dir",
        ])
        .arg(&report)
        .current_dir(server.tmp.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(HARD_LIMIT, fuzzer.output())
        .await
        .context("schemathesis ran past its bound")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Environments the fuzzer may have created are removed before the verdict.
    let envs: Vec<cove_api::Environment> = http
        .get(server.api("/environments"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    for env in &envs {
        let _ = http
            .delete(server.api(&format!("/environments/{}", env.id)))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
    }
    for _ in 0..120 {
        let left: Vec<cove_api::Environment> = http
            .get(server.api("/environments"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.stop().await;

    // The summary (operations, phases, warnings) for the test log.
    let summary = text.rfind("SUMMARY").map_or("", |i| &text[i..]);
    eprintln!("schemathesis:\n{summary}");
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}):\n{text}",
        output.status.code()
    );
    assert!(
        text.contains("API Operations:") && !text.contains("Tested: 0"),
        "schemathesis tested nothing:\n{text}"
    );
    Ok(())
}
