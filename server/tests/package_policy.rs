#![allow(clippy::unwrap_used)]
//! Issue 14: package endpoints and roles come only from the administrator's `[packages]`
//! settings; nothing a repository owner types reaches the agent's AWS credentials or widens a
//! build's egress.
//!
//! Real moto (STS) and the CodeArtifact double, the embedded agent on the real Docker engine,
//! a private job network whose only way out is the gateway:
//! - an owner's configuration naming its own `sts_endpoint`/`codeartifact_endpoint`, an
//!   unknown endpoint profile or a role outside the allowed patterns gets 422 naming the field,
//!   and nothing is stored;
//! - a build of the allowed configuration that runs the AWS CLI (so the CodeArtifact API is on
//!   its allow-list) reaches the administrator's endpoint through the gateway, and the gateway
//!   refuses the host the owner tried to set;
//! - a configuration stored before the upgrade with raw endpoints fails its job before it
//!   starts, naming the field; the host it names never sees a connection.

mod common;

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git_ok, runs_of, TestServer};
use cove_api::{JobState, PackageConfigEntry, Run};
use harness::{Double, Moto};

const OWNER: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/cove-build";

/// A TCP server that counts connections: the host a repository owner tries to point
/// credentials and egress at.
struct Target {
    addr: String,
    hits: Arc<AtomicUsize>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                h.fetch_add(1, Ordering::SeqCst);
                use std::io::Write;
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 7\r\n\r\nreached");
            }
        });
        Target { addr, hits }
    }
}

fn config(extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "role_arn": ROLE, "region": "us-east-1", "domain": "acme", "domain_owner": OWNER,
        "repositories": [{"name": "npm-store", "format": "npm"}],
        "mode": "token-free",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn put(server: &TestServer, body: serde_json::Value) -> Result<(u16, String)> {
    let resp = server
        .http
        .put(server.api("/repos/admin/app/packages"))
        .bearer_auth(&server.admin_token)
        .json(&body)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

fn workflow(outsider: &str) -> String {
    format!(
        r#"Name: packages
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Allowed:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo "a build that runs aws codeartifact gets the API endpoint $AWS_ENDPOINT_URL_CODEARTIFACT"
        - Run: echo "owner-host [$(curl -s -m 5 -x "$HTTP_PROXY" --noproxy '' http://{outsider}/)]"
        - Run: echo "admin-host [$(curl -s -m 5 -x "$HTTP_PROXY" --noproxy '' "$AWS_ENDPOINT_URL_CODEARTIFACT/__double/stats")]"
  Legacy:
    Identifier: aws/build@v1
    Environment:
      Name: legacy
    Configuration:
      Steps:
        - Run: echo "legacy ran, aws codeartifact"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn package_endpoints_and_roles_come_only_from_the_administrator() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    cove_tests::require_image("cove/universal:latest");
    // The embedded agent's base credentials come from the standard chain.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAPOLICYTESTKEY001");
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        "policyTestSecretKey/0123456789abcdefghij",
    );
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let moto = Moto::start();
    let double = Double::start(&[]);
    let outsider = Target::start();
    let policy = format!(
        "role_arn_patterns = [\"arn:aws:iam::{OWNER}:role/cove-*\"]\n\
         [endpoints.test]\nsts = \"{}\"\ncodeartifact = \"{}\"\n",
        moto.url(),
        double.url()
    );
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/universal:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(20);
        c.runs.packages = toml::from_str(&policy).unwrap();
    })
    .await?;
    server.create_repo(&server.admin_token, "app").await?;
    let owner_url = format!("http://{}", outsider.addr);

    // Refused by field: raw endpoints, an unknown profile, a role outside the patterns.
    for (extra, field) in [
        (
            serde_json::json!({"sts_endpoint": owner_url}),
            "sts_endpoint",
        ),
        (
            serde_json::json!({"codeartifact_endpoint": owner_url}),
            "codeartifact_endpoint",
        ),
        (serde_json::json!({"endpoints": "elsewhere"}), "endpoints"),
        (
            serde_json::json!({"role_arn": "arn:aws:iam::999999999999:role/cove-build"}),
            "role_arn",
        ),
        (
            serde_json::json!({"role_arn": "arn:aws:iam::123456789012:role/admin"}),
            "role_arn",
        ),
    ] {
        let (status, body) = put(
            &server,
            serde_json::json!({"config": config(extra.clone())}),
        )
        .await?;
        assert_eq!(status, 422, "{extra}: {body}");
        assert!(body.contains(field), "{field} not named: {body}");
    }
    let stored: Vec<PackageConfigEntry> =
        common::api_json(&server, "/repos/admin/app/packages").await?;
    assert!(stored.is_empty(), "nothing stored: {stored:?}");

    // What the owner may choose: the administrator's profile and an allowed role.
    let (status, body) = put(
        &server,
        serde_json::json!({"config": config(serde_json::json!({"endpoints": "test"}))}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    // A configuration stored before the upgrade, with an owner's raw endpoints.
    let legacy = config(serde_json::json!({
        "sts_endpoint": owner_url, "codeartifact_endpoint": owner_url,
    }));
    let repo = server.state.store().repo("admin", "app").await?.unwrap();
    server
        .state
        .store()
        .put_package_config(repo.id, "legacy", &legacy.to_string(), 0)
        .await?;

    let dir = tempfile::tempdir()?;
    let d = dir.path();
    git_ok(d, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(d, &["remote", "add", "origin", &url]).await?;
    std::fs::create_dir_all(d.join(".codecatalyst/workflows"))?;
    commit_file(
        d,
        ".codecatalyst/workflows/packages.yaml",
        workflow(&outsider.addr).as_bytes(),
        "workflow",
    )
    .await?;
    git_ok(d, &["push", "-q", "origin", "main"]).await?;
    let start = Instant::now();
    let run: Run = loop {
        let runs = runs_of(&server, "admin/app").await?;
        if let Some(run) = runs.first().filter(|r| r.state.is_terminal()) {
            break run.clone();
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("the run did not end: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let job = |action: &str| {
        run.jobs
            .iter()
            .find(|j| j.action == action)
            .unwrap()
            .clone()
    };

    // The allowed configuration: the build reaches the administrator's CodeArtifact endpoint
    // through the gateway; the host the owner tried is not on its allow-list.
    let allowed = job("Allowed");
    let log = common::log_text(&server, run.id, "Allowed").await?;
    assert_eq!(
        allowed.state,
        JobState::Succeeded,
        "{:?}\n{log}",
        allowed.error
    );
    assert!(log.contains(&double.url()), "the admin's endpoint: {log}");
    assert!(
        log.contains(&format!(
            "owner-host [cove gateway: {} is not on this job's allow-list]",
            outsider.addr
        )),
        "{log}"
    );
    assert!(
        log.contains("admin-host [{") && log.contains("\"authorization_token\""),
        "{log}"
    );
    assert!(
        double.count("sts_assume_role") == 0,
        "STS is moto, not the double"
    );

    // The legacy configuration: refused before the job starts, by field.
    let legacy_job = job("Legacy");
    let error = legacy_job.error.clone().unwrap_or_default();
    assert_eq!(legacy_job.state, JobState::Failed, "{error}");
    for needle in [
        "environment legacy",
        "no longer allowed",
        "sts_endpoint",
        "codeartifact_endpoint",
        "cove repo packages set",
    ] {
        assert!(error.contains(needle), "{needle} not in {error}");
    }
    let log = common::log_text(&server, run.id, "Legacy").await?;
    assert!(!log.contains("legacy ran"), "{log}");

    // Neither the agent's credentials nor any build ever reached the owner's host.
    assert_eq!(outsider.hits.load(Ordering::SeqCst), 0);
    Ok(())
}
