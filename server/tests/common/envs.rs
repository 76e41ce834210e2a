//! Environments as the REST API shows them, for the tests that drive them on agents.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cove_api::{EnvState, Environment, ExecResult};

use super::TestServer;

/// Environment `id` as the administrator sees it.
pub async fn env(server: &TestServer, id: &str) -> Result<Environment> {
    super::api_json(server, &format!("/environments/{id}")).await
}

/// `sh -c SCRIPT` in environment `id` through the exec route, as the administrator: the answer
/// whatever its status.
pub async fn exec_request(
    server: &TestServer,
    id: &str,
    script: &str,
) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api(&format!("/environments/{id}/exec")))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({ "command": ["sh", "-c", script] }))
        .send()
        .await?)
}

/// [`exec_request`] that must succeed: its result.
pub async fn exec(server: &TestServer, id: &str, script: &str) -> Result<ExecResult> {
    let r = exec_request(server, id, script).await?;
    if r.status() != 200 {
        bail!("exec {script:?}: {} {}", r.status(), r.text().await?);
    }
    Ok(r.json().await?)
}

/// Waits up to `within` until environment `id` is `want`; an environment that fails on the
/// way is an error with its reason.
pub async fn wait_state(
    server: &TestServer,
    id: &str,
    want: EnvState,
    within: Duration,
) -> Result<Environment> {
    let deadline = Instant::now() + within;
    loop {
        let e = env(server, id).await?;
        if e.state == want {
            return Ok(e);
        }
        if e.state == EnvState::Failed && want != EnvState::Failed {
            bail!("environment failed: {:?}", e.reason);
        }
        if Instant::now() > deadline {
            bail!(
                "environment is {:?} ({:?}), not {want:?}",
                e.state,
                e.reason
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes environment `id` as the administrator and waits up to `within` until it is gone
/// (the agent has removed its containers, volumes and network), so that a test that stops
/// its agents right after leaves nothing on the engine.
pub async fn delete_and_wait(server: &TestServer, id: &str, within: Duration) -> Result<()> {
    let r = server
        .http
        .delete(server.api(&format!("/environments/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("delete {id}: {} {}", r.status(), r.text().await?);
    }
    let deadline = Instant::now() + within;
    loop {
        let r = server
            .http
            .get(server.api(&format!("/environments/{id}")))
            .bearer_auth(&server.admin_token)
            .send()
            .await?;
        if r.status() == 404 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("environment {id} still there: {}", r.text().await?);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
