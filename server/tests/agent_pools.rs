#![allow(clippy::unwrap_used)]
//! Agent pools, labels and placement at the API (issue 20, docs/agents.md): a pooled agent's
//! lease never hands it another repository's job or secrets; a `Compute.Fleet: gpu` job goes
//! only to the gpu pool's agents and, while none may run it, says why on the run; labels and
//! capacity are reported and listed; bad input is refused and changes nothing. On SQLite and
//! PostgreSQL. (The same with real `cove-agent` processes: tests/agent_pools_e2e.rs.)

mod common;

use std::path::Path;

use anyhow::{bail, Result};
use common::{commit_file, git_ok, TestServer};
use cove_api::{AgentInfo, AgentPool, JobLease, JobState, RegisteredAgent, Run};
use reqwest::Method as M;
use serde_json::{json, Value};

const OTHER_WF: &str = "Name: other\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo ${Secrets.deploy_key}\n";
const GPU_WF: &str = "Name: gpu\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nCompute:\n  Type: EC2\n  Fleet: gpu\nActions:\n  Train:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo ${Secrets.gpu_key}\n";

async fn call(
    server: &TestServer,
    method: M,
    path: &str,
    token: &str,
    body: Value,
) -> Result<(u16, String)> {
    let resp = server
        .http
        .request(method, server.api(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn set_secret(server: &TestServer, repo: &str, name: &str, value: &str) -> Result<()> {
    let (s, body) = call(
        server,
        M::PUT,
        &format!("/repos/admin/{repo}/secrets/{name}"),
        &server.admin_token,
        json!({"value": value}),
    )
    .await?;
    if s >= 300 {
        bail!("secret {name}: {s} {body}");
    }
    Ok(())
}

/// Registers an agent with a registration token (for `pool` when given) and labels.
async fn register(
    server: &TestServer,
    name: &str,
    pool: Option<&str>,
    labels: Value,
) -> Result<RegisteredAgent> {
    let body = match pool {
        Some(p) => json!({ "pool": p }),
        None => json!({}),
    };
    let (s, text) = call(
        server,
        M::POST,
        "/agents/registration-tokens",
        &server.admin_token,
        body,
    )
    .await?;
    if s != 201 {
        bail!("registration token: {s} {text}");
    }
    let reg: cove_api::RegistrationToken = serde_json::from_str(&text)?;
    let (s, text) = call(
        server,
        M::POST,
        "/agents/register",
        &reg.token,
        json!({"name": name, "labels": labels, "capacity": {"max_jobs": 2}}),
    )
    .await?;
    if s != 201 {
        bail!("register {name}: {s} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// One lease poll: the lease, or `None` on 204.
async fn lease(server: &TestServer, token: &str, wait_ms: u64) -> Result<Option<JobLease>> {
    let (s, text) = call(
        server,
        M::POST,
        "/agent/lease",
        token,
        json!({ "wait_ms": wait_ms }),
    )
    .await?;
    match s {
        200 => Ok(Some(serde_json::from_str(&text)?)),
        204 => Ok(None),
        _ => bail!("lease: {s} {text}"),
    }
}

async fn runs(server: &TestServer, repo: &str) -> Result<Vec<Run>> {
    let (s, text) = call(
        server,
        M::GET,
        &format!("/repos/admin/{repo}/runs"),
        &server.admin_token,
        json!(null),
    )
    .await?;
    if s != 200 {
        bail!("runs: {s} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// The first run of `repo`, once its jobs exist.
async fn first_run(server: &TestServer, repo: &str) -> Result<Run> {
    for _ in 0..100 {
        if let Some(r) = runs(server, repo).await?.into_iter().next() {
            return Ok(r);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("no run of {repo}")
}

async fn agents(server: &TestServer) -> Result<Vec<AgentInfo>> {
    let (s, text) = call(server, M::GET, "/agents", &server.admin_token, json!(null)).await?;
    assert_eq!(s, 200, "{text}");
    Ok(serde_json::from_str(&text)?)
}

async fn scenario(server: TestServer) -> Result<()> {
    let (w1, w2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // A repository outside the pool, with a secret its job uses.
    server.create_repo(&server.admin_token, "other").await?;
    set_secret(&server, "other", "deploy_key", "other-secret-value").await?;
    server.create_repo(&server.admin_token, "pooled").await?;
    set_secret(&server, "pooled", "gpu_key", "gpu-secret-value").await?;

    // Bad input: refused, nothing written.
    let bob = server.create_user("bob").await?;
    let (s, _) = call(
        &server,
        M::POST,
        "/agent-pools",
        &bob,
        json!({"name": "gpu", "repos": ["admin/pooled"]}),
    )
    .await?;
    assert_eq!(s, 403, "administrators only");
    for (body, want) in [
        (json!({"name": "gpu pool", "repos": ["admin/pooled"]}), 400),
        (json!({"name": "gpu"}), 400),
        (json!({"name": "gpu", "repos": ["admin/nope"]}), 404),
        (json!({"name": "gpu", "repos": ["pooled"]}), 400),
    ] {
        let (s, text) = call(
            &server,
            M::POST,
            "/agent-pools",
            &server.admin_token,
            body.clone(),
        )
        .await?;
        assert_eq!(s, want, "{body}: {text}");
    }
    let (s, text) = call(
        &server,
        M::GET,
        "/agent-pools",
        &server.admin_token,
        json!(null),
    )
    .await?;
    assert_eq!((s, text.as_str()), (200, "[]"));
    let (s, text) = call(
        &server,
        M::POST,
        "/agents/registration-tokens",
        &server.admin_token,
        json!({"pool": "gpu"}),
    )
    .await?;
    assert_eq!(s, 404, "a token for a pool that does not exist: {text}");

    // An unpooled agent with labels; one that claims `pool=gpu` for itself.
    let plain = register(&server, "plain-1", None, json!({"region": "us"})).await?;
    let claimer = register(&server, "claims-gpu", None, json!({"pool": "gpu"})).await?;
    let bad = call(
        &server,
        M::POST,
        "/agent/status",
        &plain.token,
        json!({"labels": {"Bad Key": "x"}}),
    )
    .await?;
    assert_eq!(bad.0, 400, "{}", bad.1);

    // The pool: the gpu agents serve admin/pooled only.
    let (s, text) = call(
        &server,
        M::POST,
        "/agent-pools",
        &server.admin_token,
        json!({"name": "gpu", "repos": ["admin/pooled"]}),
    )
    .await?;
    assert_eq!(s, 201, "{text}");
    let pool: AgentPool = serde_json::from_str(&text)?;
    assert_eq!(pool.repos, vec!["admin/pooled".to_string()]);
    let (s, _) = call(
        &server,
        M::POST,
        "/agent-pools",
        &server.admin_token,
        json!({"name": "gpu", "owners": ["admin"]}),
    )
    .await?;
    assert_eq!(s, 409, "the name is taken");

    // The gpu job waits with its reason while no agent may run it: the claimer's own
    // `pool=gpu` does not count once an administrator's pool has that name.
    push_existing(&server, w2.path(), "pooled", GPU_WF).await?;
    let run = first_run(&server, "pooled").await?;
    assert_eq!(
        run.jobs[0].labels.get("pool").map(String::as_str),
        Some("gpu")
    );
    assert_eq!(
        run.jobs[0].waiting.as_deref(),
        Some("no agent matches labels pool=gpu"),
        "{run:#?}"
    );
    assert!(lease(&server, &claimer.token, 300).await?.is_none());

    // The pool's agent: registered with a token for the pool.
    let gpu = register(
        &server,
        "gpu-1",
        Some("gpu"),
        json!({"region": "eu", "pool": "whatever"}),
    )
    .await?;
    let run = first_run(&server, "pooled").await?;
    assert_eq!(
        run.jobs[0].waiting, None,
        "an online gpu agent may run it: {run:#?}"
    );

    // The pooled agent never receives the other repository's job or its secret; the plain
    // agent takes it (with the secret).
    let taken = lease(&server, &gpu.token, 2000)
        .await?
        .expect("the gpu job");
    assert_eq!(taken.run_id, run.id);
    assert_eq!(taken.secrets.len(), 1);
    assert!(taken.secrets.iter().any(|(_, v)| v == "gpu-secret-value"));
    push_existing(&server, w1.path(), "other", OTHER_WF).await?;
    let none = lease(&server, &gpu.token, 500).await?;
    assert!(
        none.is_none(),
        "the pooled agent got another repository's job: {none:?}"
    );
    let other_run = first_run(&server, "other").await?;
    assert_eq!(
        other_run.jobs[0].state,
        JobState::Pending,
        "still waiting for an agent that may run it"
    );
    assert_eq!(other_run.jobs[0].waiting, None, "plain-1 may run it");
    let plain_lease = lease(&server, &plain.token, 2000)
        .await?
        .expect("the other job");
    assert_eq!(plain_lease.run_id, other_run.id);
    assert!(plain_lease
        .secrets
        .iter()
        .any(|(_, v)| v == "other-secret-value"));

    // Runs say which agent runs what.
    let run = first_run(&server, "pooled").await?;
    assert_eq!(run.jobs[0].agent.as_deref(), Some("gpu-1"));
    assert_eq!(
        first_run(&server, "other").await?.jobs[0].agent.as_deref(),
        Some("plain-1")
    );

    // Status reports update capacity; the list shows pool, labels (pool from the pool, not
    // the agent's own claim), capacity, backend and running jobs.
    let (s, text) = call(
        &server,
        M::POST,
        "/agent/status",
        &gpu.token,
        json!({"labels": {"region": "eu", "backend": "docker"}, "capacity": {"cpus": 8, "memory_bytes": 1u64 << 34, "max_jobs": 2, "running_jobs": 1}}),
    )
    .await?;
    assert_eq!(s, 204, "{text}");
    let listed = agents(&server).await?;
    let g = listed.iter().find(|a| a.name == "gpu-1").unwrap();
    assert_eq!(g.pool.as_deref(), Some("gpu"));
    assert_eq!(g.labels.get("pool").map(String::as_str), Some("gpu"));
    assert_eq!(g.labels.get("region").map(String::as_str), Some("eu"));
    assert_eq!(
        (g.capacity.cpus, g.capacity.running_jobs, g.backend.as_str()),
        (8, 1, "docker")
    );
    assert_eq!(g.current_jobs, vec![taken.job_id]);
    let c = listed.iter().find(|a| a.name == "claims-gpu").unwrap();
    assert!(!c.labels.contains_key("pool"), "{c:?}");
    let text = serde_json::to_string(&listed)?;
    assert!(!text.contains(&gpu.token) && !text.contains("secret-value"));

    // A pool with agents cannot be deleted; the pools list names its agents.
    let (s, _) = call(
        &server,
        M::DELETE,
        "/agent-pools/gpu",
        &server.admin_token,
        json!(null),
    )
    .await?;
    assert_eq!(s, 409);
    let (_, text) = call(
        &server,
        M::GET,
        "/agent-pools",
        &server.admin_token,
        json!(null),
    )
    .await?;
    let pools: Vec<AgentPool> = serde_json::from_str(&text)?;
    assert_eq!(pools[0].agents, vec!["gpu-1".to_string()]);
    server.stop().await;
    Ok(())
}

/// Pushes `wf` to the existing repository `repo` from a new work tree in `dir`.
async fn push_existing(server: &TestServer, dir: &Path, repo: &str, wf: &str) -> Result<()> {
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(dir, ".codecatalyst/workflows/wf.yaml", wf.as_bytes(), "wf").await?;
    let url = server.git_url(&format!("admin/{repo}"), Some(&server.admin_token));
    git_ok(dir, &["push", "-q", &url, "main"]).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_fence_leases_and_secrets_on_sqlite() -> Result<()> {
    scenario(TestServer::start_configured(|c| c.embedded_agent = false).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_fence_leases_and_secrets_on_postgres() -> Result<()> {
    let Some(url) = common::postgres_db_or_skip("cove_pools").await? else {
        return Ok(());
    };
    scenario(
        TestServer::start_configured(|c| {
            c.embedded_agent = false;
            c.database_url = Some(url);
        })
        .await?,
    )
    .await
}
