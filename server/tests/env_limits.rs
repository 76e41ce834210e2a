//! Environment resource limits through the server (in-process server, embedded agent, real
//! Docker and git): the size's limits survive `restart` (which re-plans from the workspace
//! devfile), and a devfile asking for more than the server's maximum is refused with a
//! clear reason, leaving nothing behind. docs/security.md "What an environment can reach".

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, ADMIN_TOKEN};
use cove_api::{EnvState, Environment};
use serde_json::json;

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `NanoCpus Memory` of a component container.
fn limits_of(env: &str, component: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
        &format!("cove-{env}-{component}"),
    ])
}

async fn create(server: &TestServer, repo: &str) -> Environment {
    let r = server
        .http
        .post(server.api(&format!("/repos/admin/{repo}/environments")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn env(server: &TestServer, id: &str) -> Environment {
    common::admin_get(&server.http, server.api(&format!("/environments/{id}"))).await
}

/// Waits until the environment is running or failed (and returns it).
async fn settled(server: &TestServer, id: &str) -> Environment {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = env(server, id).await;
        if matches!(e.state, EnvState::Running | EnvState::Failed) {
            return e;
        }
        assert!(Instant::now() < deadline, "environment did not settle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_size_limits_and_over_limit_devfiles_are_refused() {
    let server = TestServer::start().await.unwrap();
    assert!(
        common::docker_available().await,
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    common::repo_with_devfile(
        &server.http,
        &server.url,
        "sized",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n",
    )
    .await;
    let e = create(&server, "sized").await;
    let _cleanup = cove_tests::EnvCleanup(e.id.clone());
    assert_eq!(settled(&server, &e.id).await.state, EnvState::Running);
    // size "medium" (the default): 2 CPUs, 4 GiB
    let medium = format!("2000000000 {}", 4u64 << 30);
    assert_eq!(limits_of(&e.id, "main"), medium);

    let r = server
        .http
        .post(server.api(&format!("/environments/{}/restart", e.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let after = settled(&server, &e.id).await;
    assert_eq!(after.state, EnvState::Running, "{:?}", after.reason);
    assert_eq!(limits_of(&e.id, "main"), medium, "restart lost the limits");

    // 64 CPUs: refused (the default maximum is the engine's CPU count), nothing left.
    common::repo_with_devfile(
        &server.http,
        &server.url,
        "greedy",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest, cpuLimit: '64'}\n",
    )
    .await;
    let g = create(&server, "greedy").await;
    let _cleanup_g = cove_tests::EnvCleanup(g.id.clone());
    let failed = settled(&server, &g.id).await;
    assert_eq!(failed.state, EnvState::Failed);
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("component `main` asks for cpuLimit 64 CPUs; this server allows at most"),
        "{reason}"
    );
    let filter = format!("label=cove.env={}", g.id);
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "");
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &filter]), "");
    server.stop().await;
}
