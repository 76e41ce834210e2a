//! Environments as the REST API shows them, for the tests that drive them on agents.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use cove_api::{EnvState, Environment};

use super::TestServer;

/// Environment `id` as the administrator sees it.
pub async fn env(server: &TestServer, id: &str) -> Result<Environment> {
    Ok(server
        .http
        .get(server.api(&format!("/environments/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
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
