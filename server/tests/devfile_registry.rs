//! Environments whose devfile has a `parent.id` parent from a devfile
//! registry (in-process server, embedded agent, real Docker and git, an HTTP
//! registry served by the test on 127.0.0.1): the parent is fetched through
//! the SSRF guard and the environment runs it; a loopback registry needs
//! `devfile_registry_allow_private`; an unreachable one is "cannot reach
//! registry URL …" (422, nothing created).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use axum::extract::Path as UrlPath;
use axum::routing::get;
use axum::Router;
use common::{TestServer, ADMIN_TOKEN};
use cove_api::{EnvState, Environment};
use serde_json::json;

/// The registry's only stack: a busybox container whose env says which version it is.
fn stack(version: &str) -> String {
    format!(
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container:\n      image: cove/busybox:latest\n      env: [{{name: STACK_VERSION, value: '{version}'}}]\n"
    )
}

async fn registry() -> String {
    let app = Router::new()
        .route(
            "/index",
            get(|| async {
                axum::Json(json!([{"name": "tiny", "versions": [
                    {"version": "1.0.0", "default": true}, {"version": "1.1.0"}]}]))
            }),
        )
        .route(
            "/devfiles/{id}/{version}",
            get(
                |UrlPath((_id, version)): UrlPath<(String, String)>| async move { stack(&version) },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

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

fn child(url: &str, version: &str) -> String {
    format!(
        "schemaVersion: 2.2.0\nparent:\n  id: tiny\n  registryUrl: {url}\n  version: {version}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_runs_a_parent_from_a_devfile_registry() {
    let url = registry().await;
    let server = TestServer::start_configured(|c| {
        c.limits.environments.devfile_registry_allow = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    .unwrap();
    assert!(
        common::docker_available().await,
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    common::repo_with_devfile(&server.http, &server.url, "reg", &child(&url, "1.1.0")).await;
    let r = post_env(&server, "reg").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let env: Environment = r.json().await.unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.components, ["main"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e: Environment = common::admin_get(
            &server.http,
            server.api(&format!("/environments/{}", env.id)),
        )
        .await;
        if e.state == EnvState::Running {
            break;
        }
        assert_ne!(e.state, EnvState::Failed, "{e:?}");
        assert!(Instant::now() < deadline, "environment did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            &format!("cove-{}-main", env.id),
            "sh",
            "-c",
            "echo $STACK_VERSION",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.1.0");

    // restart re-plans from the workspace devfile: the server fetches its
    // registry parent for the agent
    let r = server
        .http
        .post(server.api(&format!("/environments/{}/restart", env.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());

    // a registry that does not answer: "cannot reach registry URL …"
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    common::repo_with_devfile(&server.http, &server.url, "gone", &child(&closed, "latest")).await;
    let r = post_env(&server, "gone").await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("devfile.yaml:3:7: error: cannot read parent `tiny` from a devfile registry: cannot reach registry URL {closed}")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_registry_is_refused_unless_allowed() {
    let url = registry().await;
    let server = TestServer::start().await.unwrap();
    common::repo_with_devfile(&server.http, &server.url, "private", &child(&url, "1.0.0")).await;
    let r = post_env(&server, "private").await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("a loopback, private or link-local address")
            && body.contains("[environments] devfile_registry_allow_private"),
        "{body}"
    );
    let all: Vec<Environment> = common::admin_get(&server.http, server.api("/environments")).await;
    assert!(all.is_empty(), "{all:?}");
    server.stop().await;
}
