//! Environment resource limits through the server (in-process server, embedded agent, real
//! Docker and git): the size's limits survive `restart` (which re-plans from the workspace
//! devfile); a devfile asking for more than the server's maximum is refused (422) at create
//! and at restart, leaving nothing behind and the running environment as it was; a size is
//! trimmed to a configured maximum. docs/security.md "What an environment can reach".

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

/// POST a new environment of `admin/<repo>` as the admin; the answer.
async fn post_env(server: &TestServer, repo: &str) -> reqwest::Response {
    server
        .http
        .post(server.api(&format!("/repos/admin/{repo}/environments")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

async fn create(server: &TestServer, repo: &str) -> Environment {
    let r = post_env(server, repo).await;
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

    // The workspace devfile now asks for 64 CPUs: the restart is refused (422) before
    // anything changes, and the environment keeps running with its limits.
    let devfile = "/projects/sized/devfile.yaml";
    let r = server
        .http
        .post(server.api(&format!("/environments/{}/exec", e.id)))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "command": ["sh", "-c", format!("echo \"    container: {{image: cove/busybox:latest, cpuLimit: '64'}}\" > /tmp/l && sed -i '$d' {devfile} && cat /tmp/l >> {devfile} && cat {devfile}")] }))
        .send()
        .await
        .unwrap();
    let out: cove_api::ExecResult = r.json().await.unwrap();
    assert!(out.stdout.contains("cpuLimit: '64'"), "{out:?}");
    let r = server
        .http
        .post(server.api(&format!("/environments/{}/restart", e.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("devfile.yaml:1:1: error: component `main` asks for cpuLimit 64 CPUs; this server allows at most"),
        "{body}"
    );
    assert_eq!(env(&server, &e.id).await.state, EnvState::Running);
    assert_eq!(limits_of(&e.id, "main"), medium);

    // 64 CPUs in the repository's devfile: refused at create (the default maximum is the
    // engine's CPU count), nothing stored, nothing started.
    common::repo_with_devfile(
        &server.http,
        &server.url,
        "greedy",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest, cpuLimit: '64'}\n",
    )
    .await;
    let r = post_env(&server, "greedy").await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("devfile.yaml:1:1: error: component `main` asks for cpuLimit 64 CPUs; this server allows at most"),
        "{body}"
    );
    let all: Vec<Environment> = common::admin_get(&server.http, server.api("/environments")).await;
    assert_eq!(all.len(), 1, "{all:?}");
    // 1 TiB against a configured maximum: the same, and a size is trimmed to the maximum.
    let capped = TestServer::start_configured(|c| {
        c.limits.environments.max_memory_bytes = Some(1 << 30);
        c.limits.environments.max_cpu_millis = Some(500);
    })
    .await
    .unwrap();
    common::repo_with_devfile(
        &capped.http,
        &capped.url,
        "huge",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest, memoryLimit: 1Ti}\n",
    )
    .await;
    let r = post_env(&capped, "huge").await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("asks for memoryLimit 1Ti; this server allows at most 1Gi"),
        "{body}"
    );
    common::repo_with_devfile(
        &capped.http,
        &capped.url,
        "plain",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n",
    )
    .await;
    let p = create(&capped, "plain").await;
    let _cleanup_p = cove_tests::EnvCleanup(p.id.clone());
    assert_eq!(settled(&capped, &p.id).await.state, EnvState::Running);
    assert_eq!(
        limits_of(&p.id, "main"),
        format!("500000000 {}", 1u64 << 30)
    );
    capped.stop().await;
    server.stop().await;
}
