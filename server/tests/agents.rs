#![allow(clippy::unwrap_used)]
//! Registered agents (issue 6): one-time registration tokens, agent tokens as their own
//! principal (403 outside the agent protocol, and user tokens get 403 inside it), refusals
//! that write nothing, revocation, and the real `cove-agent` process end to end.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{commit_file, git_ok, runs_of, TestServer};
use cove_api::{AgentInfo, JobLease, JobState, RegisteredAgent, Run, RunState};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<(StatusCode, String)> {
    let mut req = server.http.request(method, server.api(path)).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if let Some(token) = token {
        assert!(!text.contains(token), "{path}: token echoed: {text}");
    }
    Ok((status, text))
}

async fn register(server: &TestServer, token: &str, name: &str) -> Result<(StatusCode, String)> {
    call(
        server,
        reqwest::Method::POST,
        "/agents/register",
        Some(token),
        json!({ "name": name }),
    )
    .await
}

async fn agents(server: &TestServer) -> Result<Vec<AgentInfo>> {
    Ok(server
        .http
        .get(server.api("/agents"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_agent_tokens_on_sqlite() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    registration_scenario(&server).await?;
    // The database (and its WAL) hold hashes only.
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_agent_tokens_on_postgres() -> Result<()> {
    let Some(url) = common::postgres_db_or_skip("cove_agents").await? else {
        return Ok(());
    };
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.database_url = Some(url);
    })
    .await?;
    registration_scenario(&server).await?;
    server.stop().await;
    Ok(())
}

async fn registration_scenario(server: &TestServer) -> Result<()> {
    use reqwest::Method as M;
    server.create_repo(&server.admin_token, "r").await?;
    let bob = server.create_user("bob").await?;

    // Only administrators create registration tokens; lifetimes are bounded.
    let (s, _) = call(
        server,
        M::POST,
        "/agents/registration-tokens",
        Some(&bob),
        json!({}),
    )
    .await?;
    assert_eq!(s, 403);
    for bad in [json!({"ttl_secs": 0}), json!({"ttl_secs": 8 * 24 * 3600})] {
        let (s, body) = call(
            server,
            M::POST,
            "/agents/registration-tokens",
            Some(&server.admin_token),
            bad,
        )
        .await?;
        assert_eq!(s, 400, "{body}");
    }
    let (s, body) = call(
        server,
        M::POST,
        "/agents/registration-tokens",
        Some(&server.admin_token),
        json!({}),
    )
    .await?;
    assert_eq!(s, 201, "{body}");
    let created: cove_api::RegistrationToken = serde_json::from_str(&body)?;
    let reg = created.token;
    assert!(reg.starts_with("cove_reg_"), "distinct prefix");
    let now = cove_server::store::now_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&created.expires_at),
        "default TTL 1 h"
    );

    // Registering takes the registration token and nothing else.
    let (s, _) = call(
        server,
        M::POST,
        "/agents/register",
        None,
        json!({"name": "a"}),
    )
    .await?;
    assert_eq!(s, 401);
    for user in [&server.admin_token, &bob] {
        let (s, body) = register(server, user, "a").await?;
        assert_eq!(s, 403, "{body}");
    }
    assert!(agents(server).await?.is_empty(), "nothing written");

    // A bad name is refused without consuming the token.
    let (s, _) = register(server, &reg, "").await?;
    assert_eq!(s, 400);

    let (s, body) = register(server, &reg, "build-1").await?;
    assert_eq!(s, 201, "{body}");
    let agent: RegisteredAgent = serde_json::from_str(&body)?;
    assert!(agent.token.starts_with("cove_agt_"));

    // Second use: 401 with a clear message, nothing written.
    let (s, body) = register(server, &reg, "build-2").await?;
    assert_eq!(s, 401);
    assert!(body.contains("already used"), "{body}");
    assert_eq!(agents(server).await?.len(), 1, "nothing written");

    // Expired: 401, nothing written, the token stays unused.
    let short = server.registration_token(Some(1)).await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, body) = register(server, &short, "late").await?;
    assert_eq!(s, 401);
    assert!(body.contains("expired"), "{body}");
    assert_eq!(agents(server).await?.len(), 1, "nothing written");
    let row = server
        .state
        .store()
        .registration_token_by_hash(&cove_server::auth::hash_token(&short))
        .await?
        .expect("stored");
    assert_eq!((row.used_at, row.used_by_agent), (None, None));
    // An unknown registration token.
    let (s, _) = register(server, &format!("cove_reg_{}", "0".repeat(64)), "x").await?;
    assert_eq!(s, 401);

    // The agent token opens the agent protocol…
    let (s, body) = call(server, M::GET, "/agent/self", Some(&agent.token), json!({})).await?;
    assert_eq!(s, 200, "{body}");
    let me: cove_api::AgentIdentity = serde_json::from_str(&body)?;
    assert_eq!((me.agent_id, me.name.as_str()), (agent.agent_id, "build-1"));
    let (s, _) = call(
        server,
        M::POST,
        "/agent/lease",
        Some(&agent.token),
        json!({"wait_ms": 0}),
    )
    .await?;
    assert_eq!(s, 204);
    // …and nothing else: users, repositories, tokens, environments, agents, git.
    for (method, path) in [
        (M::GET, "/user"),
        (M::GET, "/repos"),
        (M::GET, "/repos/admin/r"),
        (M::POST, "/repos"),
        (M::GET, "/tokens"),
        (M::POST, "/tokens"),
        (M::GET, "/environments"),
        (M::GET, "/users"),
        (M::GET, "/agents"),
        (M::POST, "/agents/registration-tokens"),
        (M::POST, "/agents/register"),
    ] {
        let (s, body) = call(server, method.clone(), path, Some(&agent.token), json!({})).await?;
        assert_eq!(s, 403, "{method} {path}: {body}");
    }
    let git = server
        .http
        .get(format!(
            "{}/git/admin/r.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .basic_auth("agent", Some(&agent.token))
        .send()
        .await?;
    assert_eq!(git.status(), 403, "git with an agent token");
    // Registration tokens open nothing but registration.
    let spare = server.registration_token(None).await?;
    for (method, path) in [
        (M::GET, "/user"),
        (M::GET, "/agent/self"),
        (M::POST, "/agent/lease"),
    ] {
        let (s, _) = call(
            server,
            method.clone(),
            path,
            Some(&spare),
            json!({"wait_ms": 0}),
        )
        .await?;
        assert_eq!(s, 403, "{method} {path} with a registration token");
    }
    // User tokens, administrators' too, get 403 on the agent protocol.
    for user in [&server.admin_token, &bob] {
        let (s, _) = call(
            server,
            M::POST,
            "/agent/lease",
            Some(user),
            json!({"wait_ms": 0}),
        )
        .await?;
        assert_eq!(s, 403);
    }

    // Listing (administrators only).
    let (s, _) = call(server, M::GET, "/agents", Some(&bob), json!({})).await?;
    assert_eq!(s, 403);
    let list = agents(server).await?;
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id, list[0].name.as_str()),
        (agent.agent_id, "build-1")
    );
    assert!(!list[0].revoked && list[0].last_seen_at.is_some());
    assert!(!serde_json::to_string(&list)?.contains(&agent.token));

    // Revocation: the agent's next call is 401 with what to do.
    let (s, _) = call(
        server,
        M::DELETE,
        &format!("/agents/{}", agent.agent_id),
        Some(&bob),
        json!({}),
    )
    .await?;
    assert_eq!(s, 403);
    let (s, _) = call(
        server,
        M::DELETE,
        &format!("/agents/{}", agent.agent_id),
        Some(&server.admin_token),
        json!({}),
    )
    .await?;
    assert_eq!(s, 204);
    let (s, body) = call(server, M::GET, "/agent/self", Some(&agent.token), json!({})).await?;
    assert_eq!(s, 401);
    assert!(body.contains("revoked or is unknown"), "{body}");
    let (s, _) = call(
        server,
        M::POST,
        "/agent/lease",
        Some(&agent.token),
        json!({"wait_ms": 0}),
    )
    .await?;
    assert_eq!(s, 401);
    assert!(agents(server).await?[0].revoked);
    let (s, _) = call(
        server,
        M::DELETE,
        "/agents/12345",
        Some(&server.admin_token),
        json!({}),
    )
    .await?;
    assert_eq!(s, 404);

    // Only hashes are stored (SQLite: the database file and its WAL).
    for file in ["cove.db", "cove.db-wal"] {
        let bytes = std::fs::read(server.data_dir.join(file)).unwrap_or_default();
        for token in [&reg, &short, &agent.token] {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{file} holds a token"
            );
        }
    }
    Ok(())
}

const WORKFLOW: &str = "Name: one\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Only:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi from the agent\n";

async fn push_workflow(server: &TestServer, dir: &Path, repo: &str) -> Result<()> {
    common::push_workflow(server, dir, repo, WORKFLOW).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_ends_its_leases_like_a_lost_agent_and_others_cannot_report() -> Result<()>
{
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.runs.reap_interval = Duration::from_secs(3600);
        c.runs.retry_on_agent_lost = 0;
    })
    .await?;
    let work = tempfile::tempdir()?;
    push_workflow(&server, work.path(), "app").await?;
    let (id, token) = server.register_agent("holder").await?;
    let (_, other) = server.register_agent("other").await?;
    let resp = server
        .http
        .post(server.api("/agent/lease"))
        .bearer_auth(&token)
        .json(&json!({"wait_ms": 5000}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let lease: JobLease = resp.json().await?;
    // The job records its agent: in the run's job details and the agent list.
    let run = runs_of(&server, "admin/app").await?.remove(0);
    assert_eq!(run.jobs[0].agent_id, Some(id));
    let listed = agents(&server).await?;
    let holder = listed.iter().find(|a| a.id == id).unwrap();
    assert_eq!(holder.current_jobs, vec![lease.job_id]);
    // Another agent cannot report on it.
    let (s, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("/agent/jobs/{}/heartbeat", lease.job_id),
        Some(&other),
        json!({"attempt": lease.attempt}),
    )
    .await?;
    assert_eq!(s, 409, "{body}");
    // Revoked: the lease expires now and the reaper ends the job like a lost agent's.
    let resp = server
        .http
        .delete(server.api(&format!("/agents/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    server
        .state
        .runs()
        .clock()
        .advance(Duration::from_millis(10));
    cove_server::runs::reap_expired(&server.state).await?;
    let run = runs_of(&server, "admin/app").await?.remove(0);
    assert_eq!(run.jobs[0].state, JobState::AgentLost, "{run:#?}");
    let (s, _) = call(
        &server,
        reqwest::Method::POST,
        &format!("/agent/jobs/{}/heartbeat", lease.job_id),
        Some(&token),
        json!({"attempt": lease.attempt}),
    )
    .await?;
    assert_eq!(s, 401);

    // Revoked while its long poll waits: the job it then leases is not kept (401, lease
    // expired at once, ended like a lost agent's by the next reaper pass).
    let (poller_id, poller) = server.register_agent("poller").await?;
    let poll = {
        let (http, url) = (server.http.clone(), server.api("/agent/lease"));
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(poller)
                .json(&json!({"wait_ms": 20_000}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = server
        .http
        .delete(server.api(&format!("/agents/{poller_id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    commit_file(work.path(), "two.txt", b"2", "two").await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(work.path(), &["push", "-q", &url, "main"]).await?;
    assert_eq!(poll.await??, 401);
    server
        .state
        .runs()
        .clock()
        .advance(Duration::from_millis(10));
    cove_server::runs::reap_expired(&server.state).await?;
    let run = runs_of(&server, "admin/app").await?.remove(0);
    assert_eq!(run.jobs[0].state, JobState::AgentLost, "{run:#?}");
    assert_eq!(run.jobs[0].agent_id, Some(poller_id));
    server.stop().await;
    Ok(())
}

/// The real `cove-agent` process; killed on drop.
struct AgentProc(tokio::process::Child);

async fn wait_for_run(server: &TestServer, repo: &str, count: usize) -> Result<Run> {
    let start = Instant::now();
    loop {
        let all = runs_of(server, repo).await?;
        if all.len() == count && all[0].state.is_terminal() {
            return Ok(all[0].clone());
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{all:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_cove_agent_process_runs_pushed_jobs_and_reuses_its_token() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let agent_bin = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let cli_bin = cove_tests::cargo_bin("cove", "cove")?;
    // The server runs no jobs itself.
    let server = TestServer::start_configured(|c| {
        c.runs.embedded_slots = 0;
        c.runs.default_image = "cove/busybox:latest".into();
    })
    .await?;
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;

    // The registration token comes from the CLI, printed once on stdout.
    let out = tokio::process::Command::new(&cli_bin)
        .args(["agent", "registration-token", "--ttl", "10m"])
        .env("HOME", &home)
        .env("COVE_URL", &server.url)
        .env("COVE_TOKEN", &server.admin_token)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registration = String::from_utf8(out.stdout)?.trim().to_string();
    assert!(registration.starts_with("cove_reg_"));
    let reg_file = tmp.path().join("registration-token");
    std::fs::write(&reg_file, &registration)?;

    // The agent's configuration file; flags give the server and the registration token file.
    let state_dir = tmp.path().join("state");
    let config = tmp.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "name: e2e-agent\nslots: 1\nstate_dir: {}\nsandbox:\n  private_network: false\n",
            state_dir.display()
        ),
    )?;
    let spawn = |with_registration: bool| -> Result<AgentProc> {
        let mut cmd = tokio::process::Command::new(&agent_bin);
        cmd.arg("--config")
            .arg(&config)
            .arg("--server")
            .arg(&server.url)
            .env_remove("COVE_REGISTRATION_TOKEN")
            .env("RUST_LOG", "debug,hyper=info,bollard=info,h2=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if with_registration {
            cmd.arg("--registration-token-file").arg(&reg_file);
        }
        Ok(AgentProc(cmd.spawn()?))
    };

    let work = tempfile::tempdir()?;
    let agent = spawn(true)?;
    push_workflow(&server, work.path(), "app").await?;
    let run = wait_for_run(&server, "admin/app", 1).await?;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    // Registered agents first; the embedded agent (environments) is listed last.
    let listed: Vec<AgentInfo> = agents(&server)
        .await?
        .into_iter()
        .filter(|a| !a.embedded)
        .collect();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].name, "e2e-agent");
    assert_eq!(
        run.jobs[0].agent_id,
        Some(listed[0].id),
        "ran on the registered agent"
    );
    let logs = server
        .http
        .get(server.api(&format!("/runs/{}/jobs/Only/logs", run.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?;
    assert!(logs.contains("\nhi from the agent\n"), "{logs}");

    // The token file is 0600 (the directory 0700) and holds the agent token.
    let token_file = state_dir.join("agent-token");
    let mode = std::fs::metadata(&token_file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let dir_mode = std::fs::metadata(&state_dir)?.permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "{dir_mode:o}");
    let agent_token = std::fs::read_to_string(&token_file)?.trim().to_string();
    assert!(agent_token.starts_with("cove_agt_"));
    assert_eq!(
        std::fs::read_to_string(state_dir.join("agent-id"))?.trim(),
        listed[0].id.to_string()
    );
    let stderr1 = stop(agent).await?;

    // Restart: the stored token is reused (no registration token given, no second agent).
    let agent = spawn(false)?;
    commit_file(work.path(), "again.txt", b"again", "again").await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(work.path(), &["push", "-q", &url, "main"]).await?;
    let run = wait_for_run(&server, "admin/app", 2).await?;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(
        agents(&server)
            .await?
            .iter()
            .filter(|a| !a.embedded)
            .count(),
        1,
        "no second registration"
    );
    let stderr2 = stop(agent).await?;

    // Neither token ever reaches the agent's log, even at debug level.
    for (i, text) in [&stderr1, &stderr2].into_iter().enumerate() {
        assert!(!text.is_empty(), "agent {i} logged nothing");
        for token in [&registration, &agent_token] {
            assert!(
                !text.contains(token.as_str()),
                "a token in agent {i}'s stderr:\n{text}"
            );
        }
        assert!(
            !text.contains("cove_reg_") && !text.contains("cove_agt_"),
            "{text}"
        );
    }

    // `cove agent list` shows it; `cove agent revoke` revokes it.
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(&cli_bin);
        cmd.args(args)
            .env("HOME", &home)
            .env("COVE_URL", &server.url)
            .env("COVE_TOKEN", &server.admin_token);
        cmd
    };
    let out = cli(&["agent", "list"]).output().await?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("e2e-agent") && text.contains("active"),
        "{text}"
    );
    let out = cli(&["agent", "list", "--output", "json"]).output().await?;
    let json: Vec<AgentInfo> = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json[0].id, listed[0].id);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&agent_token));
    let out = cli(&["agent", "revoke", &listed[0].id.to_string()])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["agent", "list"]).output().await?;
    assert!(String::from_utf8(out.stdout)?.contains("revoked"));

    // Revoked: the next start fails with what to do.
    let out = tokio::process::Command::new(&agent_bin)
        .arg("--config")
        .arg(&config)
        .arg("--server")
        .arg(&server.url)
        .env_remove("COVE_REGISTRATION_TOKEN")
        .output()
        .await?;
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("the agent token was revoked or is unknown; register again with a new registration token (cove agent registration-token)"),
        "{text}"
    );
    assert!(!text.contains(&agent_token));
    server.stop().await;
    Ok(())
}

/// Stops the agent (SIGKILL) and returns what it wrote to stderr.
async fn stop(mut agent: AgentProc) -> Result<String> {
    use tokio::io::AsyncReadExt;
    agent.0.start_kill()?;
    let mut stderr = agent.0.stderr.take().context("stderr piped")?;
    let mut text = String::new();
    stderr.read_to_string(&mut text).await?;
    agent.0.wait().await?;
    Ok(text)
}

/// Outstanding registration tokens are capped: the 101st unused, unexpired one is a 429 with
/// a JSON error that says why, and using one (registering an agent) frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_registration_tokens_are_capped() -> Result<()> {
    let server = TestServer::start().await?;
    let cap = cove_server::agents::MAX_OUTSTANDING_REGISTRATION_TOKENS;
    let mut tokens = Vec::new();
    for _ in 0..cap {
        tokens.push(server.registration_token(Some(600)).await?);
    }
    let (status, text) = call(
        &server,
        reqwest::Method::POST,
        "/agents/registration-tokens",
        Some(&server.admin_token),
        json!({}),
    )
    .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let error: cove_api::ErrorBody = serde_json::from_str(&text)?;
    assert_eq!(error.error, "too_many");
    assert!(error.message.contains("outstanding"), "{text}");

    let (status, text) = call(
        &server,
        reqwest::Method::POST,
        "/agents/register",
        Some(&tokens[0]),
        json!({"name": "frees-a-place"}),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    server.registration_token(Some(600)).await?;
    server.stop().await;
    Ok(())
}
