//! Environments against hostile workspaces, crashes and deletes, with the real
//! `cove-server` binary (embedded agent), real Docker and real git:
//!
//! - create refuses a missing branch (404) and an existing `new_branch` (409)
//!   before anything starts: no row, no container;
//! - a workspace devfile that is `/dev/zero` does not raise the server's RSS
//!   by more than a few MiB, and other environments are still watched; `/exec`
//!   output is capped with a note and a command past the timeout is abandoned;
//! - SIGKILL while an environment is in postStart: after the restart it is
//!   failed (never running), and its containers belong to it (no orphan);
//! - deleting a repository removes its environments' containers and volumes;
//! - a delete is accepted in whatever state the environment is in, also while it is being
//!   created and when several deletes of it race (each answers 202): nothing remains.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::{EnvEvent, EnvState, Environment, ExecResult};
use serde_json::json;
use tokio::process::Child;

struct Server {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Server {
    /// The real binary on `data_dir` and `port`, with `envs` set.
    async fn spawn(data_dir: &Path, port: u16, envs: &[(&str, &str)]) -> Server {
        let options = SpawnOptions {
            envs,
            ready_within: Duration::from_secs(60),
            ..SpawnOptions::default()
        };
        let Proc { child, url } = spawn_server_with(data_dir, port, options).await.unwrap();
        Server {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Creates `admin/<name>` with `devfile` committed on `main`.
    async fn repo_with_devfile(&self, name: &str, devfile: &str) {
        common::repo_with_devfile(&self.http, &self.url, name, devfile).await;
    }

    async fn create(&self, repo: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/api/v1/repos/admin/{repo}/environments",
                self.url
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn env(&self, id: &str) -> Environment {
        common::admin_get(&self.http, format!("{}/api/v1/environments/{id}", self.url)).await
    }

    async fn list(&self) -> Vec<Environment> {
        common::admin_get(&self.http, format!("{}/api/v1/environments", self.url)).await
    }

    async fn wait_running(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let e = self.env(id).await;
            match e.state {
                EnvState::Running => return,
                EnvState::Failed => panic!("environment failed: {:?}", e.reason),
                _ => {}
            }
            assert!(Instant::now() < deadline, "environment did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn exec(&self, id: &str, command: &[&str]) -> ExecResult {
        let r = self
            .http
            .post(format!("{}/api/v1/environments/{id}/exec", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "command": command }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn events(&self, id: &str) -> Vec<EnvEvent> {
        common::admin_get(
            &self.http,
            format!("{}/api/v1/environments/{id}/events", self.url),
        )
        .await
    }

    async fn delete_env(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/api/v1/environments/{id}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

/// Docker objects (`ps -a` or `volume ls`) carrying `label`.
fn labelled(kind: &str, label: &str) -> Vec<String> {
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-aq", "--filter"],
        _ => vec!["volume", "ls", "-q", "--filter"],
    };
    let out = std::process::Command::new("docker")
        .args(args)
        .arg(format!("label={label}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {kind} listing failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

async fn wait_gone(env_id: &str) {
    let label = format!("cove.env={env_id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !labelled("container", &label).is_empty() || !labelled("volume", &label).is_empty() {
        assert!(
            Instant::now() < deadline,
            "containers or volumes of {env_id} remain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{:x}", nanos % 0xffff_ffff)
}

fn devfile(component: &str, extra: &str) -> String {
    format!(
        "schemaVersion: 2.2.0\ncomponents:\n  - name: {component}\n    container: {{image: cove/busybox:latest}}\n{extra}"
    )
}

/// Resident memory of process `pid` in bytes.
fn rss(pid: u32) -> u64 {
    common::rss(pid).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_a_missing_branch_and_an_existing_new_branch_before_anything_starts() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), free_port().unwrap(), &[]).await;
    // a component name no one else uses: every container of this devfile carries it
    let probe = unique("probe");
    server
        .repo_with_devfile("branches", &devfile(&probe, ""))
        .await;
    let label = format!("cove.component={probe}");

    for (body, status) in [
        (json!({"branch": "no-such-branch"}), 404),
        (
            json!({"from": "no-such-branch", "new_branch": "topic"}),
            404,
        ),
        (json!({"new_branch": "main"}), 409),
        (json!({"branch": "main", "new_branch": "main"}), 409),
    ] {
        let r = server.create("branches", body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("branch"),
            "the error names the branch: {text}"
        );
    }
    assert!(server.list().await.is_empty(), "no environment row");
    assert!(
        labelled("container", &label).is_empty(),
        "no container was started for a refused create"
    );

    // the same devfile on an existing branch does start containers with that label
    let r = server
        .create("branches", json!({"new_branch": "topic"}))
        .await;
    assert_eq!(r.status(), 201);
    let env: Environment = r.json().await.unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    server.wait_running(&env.id).await;
    assert!(!labelled("container", &label).is_empty());
    server.delete_env(&env.id).await;
    wait_gone(&env.id).await;
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_zero_devfile_keeps_server_memory_flat_and_other_environments_watched() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        data.path(),
        free_port().unwrap(),
        &[("COVE_EXEC_TIMEOUT_SECS", "3")],
    )
    .await;
    server
        .repo_with_devfile("watched", &devfile("main", ""))
        .await;
    let mut ids = Vec::new();
    let mut cleanups = Vec::new();
    for name in ["zero", "other"] {
        let r = server.create("watched", json!({ "name": name })).await;
        assert_eq!(r.status(), 201);
        let env: Environment = r.json().await.unwrap();
        cleanups.push(cove_tests::EnvCleanup(env.id.clone()));
        ids.push(env.id);
    }
    for id in &ids {
        server.wait_running(id).await;
    }
    let (zero, other) = (&ids[0], &ids[1]);

    // /exec: 3 MB of output keeps 1 MiB and says how much was dropped
    let out = server
        .exec(
            zero,
            &["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"],
        )
        .await;
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.len() <= (1 << 20) + 100, "{}", out.stdout.len());
    assert!(
        out.stdout.ends_with(&format!(
            "[cove: {} bytes of output dropped]\n",
            3_000_000 - (1 << 20)
        )),
        "{}",
        &out.stdout[out.stdout.len() - 80..]
    );
    // a command past the timeout (3 s here) is abandoned with exit code 124
    let started = Instant::now();
    let out = server.exec(zero, &["sleep", "60"]).await;
    assert_eq!(out.exit_code, 124, "{out:?}");
    assert!(out.stderr.contains("did not finish within 3 s"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // logs keep the last 1 MiB with a note (3 MB written to the container's own stdout)
    let out = server
        .exec(
            zero,
            &[
                "sh",
                "-c",
                "head -c 3000000 /dev/zero | tr '\\0' y > /proc/1/fd/1",
            ],
        )
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let logs = server
        .http
        .get(format!(
            "{}/api/v1/environments/{zero}/logs?tail=100000000",
            server.url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.len() <= (1 << 20) + 100, "{}", logs.len());
    assert!(
        logs.starts_with("[cove: ") && logs.contains("bytes of earlier output dropped]"),
        "{}",
        &logs[..80.min(logs.len())]
    );
    assert!(logs.ends_with("yyyy"));

    // let the watcher settle, then measure
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = rss(server.pid());
    let out = server
        .exec(
            zero,
            &["ln", "-sf", "/dev/zero", "/projects/watched/devfile.yaml"],
        )
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    // several watcher passes over the endless devfile
    tokio::time::sleep(Duration::from_secs(8)).await;
    let out = server
        .exec(
            other,
            &[
                "sh",
                "-c",
                "echo '# a change' >> /projects/watched/devfile.yaml",
            ],
        )
        .await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak = rss(server.pid());
    while !server.env(other).await.restart_required {
        assert!(
            Instant::now() < deadline,
            "the other environment's devfile change was not noticed"
        );
        peak = peak.max(rss(server.pid()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..20 {
        peak = peak.max(rss(server.pid()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let grew = peak.saturating_sub(before);
    eprintln!(
        "server RSS before {} KiB, peak {} KiB, grew {} KiB",
        before / 1024,
        peak / 1024,
        grew / 1024
    );
    assert!(
        grew <= 16 << 20,
        "server RSS grew by {} KiB while watching /dev/zero",
        grew / 1024
    );
    assert!(
        server
            .env(other)
            .await
            .devfile_changes
            .unwrap()
            .contains("+ # a change"),
        "the diff shows the change"
    );
    assert!(!server.env(zero).await.restart_required);

    for id in &ids {
        server.delete_env(id).await;
    }
    for id in &ids {
        wait_gone(id).await;
    }
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_post_start_leaves_the_environment_failed_not_running() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let server = Server::spawn(data.path(), port, &[]).await;
    server
        .repo_with_devfile(
            "slow",
            &devfile(
                "main",
                "commands:\n  - id: settle\n    exec: {component: main, commandLine: 'sleep 60 && touch /projects/settled'}\nevents:\n  postStart: [settle]\n",
            ),
        )
        .await;
    let r = server.create("slow", json!({"name": "slow-dev"})).await;
    assert_eq!(r.status(), 201);
    let env: Environment = r.json().await.unwrap();
    let id = env.id.clone();
    let _cleanup = cove_tests::EnvCleanup(id.clone());
    // wait until postStart runs: containers up, sources cloned, the environment still creating
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = server.events(&id).await;
        if events.iter().any(|e| e.message.starts_with("postStart")) {
            break;
        }
        assert!(Instant::now() < deadline, "postStart never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.env(&id).await.state, EnvState::Creating);
    let label = format!("cove.env={id}");
    assert!(!labelled("container", &label).is_empty());
    server.kill().await;

    let server = Server::spawn(data.path(), port, &[]).await;
    let env = server.env(&id).await;
    assert_eq!(
        env.state,
        EnvState::Failed,
        "an environment killed in creating is failed after the restart: {env:?}"
    );
    assert!(
        env.reason
            .as_deref()
            .unwrap_or_default()
            .contains("being created"),
        "{env:?}"
    );
    // still failed a little later (no stale report or loop revives it)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(server.env(&id).await.state, EnvState::Failed);
    // its containers are accounted for: not orphans, and removed by deleting it
    let orphans: Vec<String> = common::admin_get(
        &server.http,
        format!("{}/api/v1/environments/orphans", server.url),
    )
    .await;
    assert!(!orphans.contains(&id), "{orphans:?}");
    server.delete_env(&id).await;
    wait_gone(&id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.list().await.iter().any(|e| e.id == id) {
        assert!(Instant::now() < deadline, "the row was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_repository_removes_its_environments() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), free_port().unwrap(), &[]).await;
    server
        .repo_with_devfile("doomed", &devfile("main", ""))
        .await;
    let r = server.create("doomed", json!({"name": "doomed-dev"})).await;
    assert_eq!(r.status(), 201);
    let env: Environment = r.json().await.unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    server.wait_running(&env.id).await;
    let label = format!("cove.env={}", env.id);
    assert!(!labelled("container", &label).is_empty());
    assert!(!labelled("volume", &label).is_empty());

    let r = server
        .http
        .delete(format!("{}/api/v1/repos/admin/doomed", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    // removed before the answer: nothing with the environment's label remains
    assert!(
        labelled("container", &label).is_empty(),
        "containers remain"
    );
    assert!(labelled("volume", &label).is_empty(), "volumes remain");
    assert!(server.list().await.is_empty());
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_racing_a_create_and_each_other_are_all_accepted() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path(), free_port().unwrap(), &[]).await;
    server.repo_with_devfile("racy", &devfile("main", "")).await;
    let r = server.create("racy", json!({"name": "racy-dev"})).await;
    assert_eq!(r.status(), 201);
    let env: Environment = r.json().await.unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    // while it is being created (the agent moves it to running meanwhile): four deletes at once
    let deletes = (0..4).map(|_| server.delete_env(&env.id));
    futures_util::future::join_all(deletes).await;
    wait_gone(&env.id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.list().await.iter().any(|e| e.id == env.id) {
        assert!(Instant::now() < deadline, "the row was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let label = format!("cove.env={}", env.id);
    assert!(
        labelled("container", &label).is_empty(),
        "containers remain"
    );
    assert!(labelled("volume", &label).is_empty(), "volumes remain");
    server.kill().await;
}
