//! The real `cove-server` binary (with its embedded agent) is SIGKILLed while
//! an environment runs: the environment's containers keep running, and after
//! the server restarts on the same data directory the environment is
//! reconciled and listed as running — nothing deleted, nothing restarted.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{free_port, repo_with_devfile, spawn_server, Proc, ADMIN_TOKEN};
use cove_api::{EnvState, Environment};
use serde_json::json;

async fn env_state(http: &reqwest::Client, url: &str, id: &str) -> Environment {
    common::admin_get(http, format!("{url}/api/v1/environments/{id}")).await
}

fn running_containers(env_id: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=cove.env={env_id}"),
            "--filter",
            "status=running",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_survives_sigkill_of_the_server() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let Proc {
        child: mut server,
        url,
    } = spawn_server(data.path(), port).await.unwrap();
    let http = reqwest::Client::new();
    repo_with_devfile(
        &http,
        &url,
        "svc",
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n",
    )
    .await;

    let created: Environment = http
        .post(format!("{url}/api/v1/repos/admin/svc/environments"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "svc-dev"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created.id.clone();
    let _cleanup = cove_tests::EnvCleanup(id.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while env_state(&http, &url, &id).await.state != EnvState::Running {
        assert!(
            Instant::now() < deadline,
            "environment did not reach running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = running_containers(&id);
    assert_eq!(before, 2, "infra + main");

    // SIGKILL: containers keep running
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        running_containers(&id),
        before,
        "containers must survive the server"
    );

    // restart on the same data dir: reconciled as running, exec works
    let Proc {
        child: mut server,
        url,
    } = spawn_server(data.path(), port).await.unwrap();
    let mut env = env_state(&http, &url, &id).await;
    for _ in 0..50 {
        if env.state == EnvState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        env = env_state(&http, &url, &id).await;
    }
    assert_eq!(env.state, EnvState::Running);
    let listed: Vec<Environment> =
        common::admin_get(&http, format!("{url}/api/v1/environments")).await;
    assert!(listed
        .iter()
        .any(|e| e.id == id && e.state == EnvState::Running));
    let out: cove_api::ExecResult = http
        .post(format!("{url}/api/v1/environments/{id}/exec"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"command": ["echo", "still here"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out.stdout, "still here\n");

    // clean up through the API
    let r = http
        .delete(format!("{url}/api/v1/environments/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // gone from the API only once the agent removed containers, volumes and network: the
    // server is killed after that, so nothing of the environment stays on the engine
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{url}/api/v1/environments/{id}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delete did not finish: {} containers running",
            running_containers(&id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        running_containers(&id),
        0,
        "delete did not remove the containers"
    );
    server.start_kill().ok();
}
