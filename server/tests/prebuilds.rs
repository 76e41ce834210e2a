//! Prebuilds (issue 19, docs/prebuilds.md) with the real `cove-server` binary (embedded
//! agent), real Docker and real git:
//!
//! - a push to the default branch queues a prebuild that runs the devfile's build command and
//!   snapshots the result; a create of that commit is "prebuilt from <sha>", has the files the
//!   build wrote (in the container and in /projects) and the branch head it claims; the
//!   prebuild's pod is gone afterwards;
//! - after a push that no prebuild follows, the next create is cold (never the stale snapshot):
//!   the build's files are absent and the new commit is there;
//! - a failed prebuild leaves no container and no image, and create is cold and works;
//! - a warm pool hands out a running environment of the prebuild (the prebuild's files, the
//!   head it claims, the claimer's git identity), is refilled, and after a push never hands
//!   out the old commit: its environments are deleted, containers and all;
//! - a server killed (SIGKILL) while its pool fills leaves no container, network or volume of
//!   a half-made pooled environment after it restarts.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::{EnvState, Environment, ExecResult, Prebuild, PrebuildState};
use serde_json::json;
use tokio::process::Child;

struct Server {
    _child: Child,
    url: String,
    http: reqwest::Client,
}

impl Server {
    async fn spawn(data_dir: &Path) -> Server {
        let options = SpawnOptions {
            ready_within: Duration::from_secs(60),
            ..SpawnOptions::default()
        };
        let Proc { child, url } = spawn_server_with(data_dir, free_port().unwrap(), options)
            .await
            .unwrap();
        Server {
            _child: child,
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        common::admin_get(&self.http, format!("{}/api/v1{path}", self.url)).await
    }

    async fn put(&self, path: &str, body: serde_json::Value) {
        let r = self
            .http
            .put(format!("{}/api/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// Waits until the repository has a finished prebuild of `sha` and returns it.
    async fn prebuild_of(&self, repo: &str, sha: &str) -> Prebuild {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let list: Vec<Prebuild> = self.get(&format!("/repos/admin/{repo}/prebuilds")).await;
            if let Some(p) = list.iter().find(|p| {
                p.sha == sha && matches!(p.state, PrebuildState::Succeeded | PrebuildState::Failed)
            }) {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no finished prebuild of {sha}: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The create's answer (201), before waiting for anything.
    async fn create_now(&self, repo: &str) -> Environment {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/repos/admin/{repo}/environments",
                self.url
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Waits until `repo`'s prebuild `id` has `ready` pooled environments running and none
    /// being created.
    async fn pool_settled(&self, repo: &str, id: i64, ready: u32) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let list: Vec<Prebuild> = self.get(&format!("/repos/admin/{repo}/prebuilds")).await;
            let p = list.iter().find(|p| p.id == id).unwrap();
            if p.pool_ready == ready && p.pool_creating == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "pool of {id} not settled: {p:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create(&self, repo: &str) -> Environment {
        let e = self.create_now(repo).await;
        self.wait_running(&e.id).await
    }

    async fn wait_running(&self, id: &str) -> Environment {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let e: Environment = self.get(&format!("/environments/{id}")).await;
            match e.state {
                EnvState::Running => return e,
                EnvState::Failed => panic!("environment failed: {:?}", e.reason),
                _ => {}
            }
            assert!(Instant::now() < deadline, "environment did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn sh(&self, id: &str, line: &str) -> ExecResult {
        let r = self
            .http
            .post(format!("{}/api/v1/environments/{id}/exec", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "command": ["sh", "-c", line] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
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
        // until it is gone: a test that ended (and dropped its server) during the deletion
        // would leave the environment's infra container and volume on the shared engine
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self
                .http
                .get(format!("{}/api/v1/environments/{id}", self.url))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            if r.status() == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "environment {id} not deleted after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn docker(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Containers of the prebuild's pod (and its snapshot container), and its images.
fn leftovers(prebuild: i64) -> (Vec<String>, Vec<String>) {
    (
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=cove.env=pb{prebuild}"),
        ]),
        docker(&[
            "images",
            "-q",
            "--filter",
            &format!("label=cove.prebuild={prebuild}"),
        ]),
    )
}

/// What the engine still has of environment `env`: containers, networks, volumes.
fn env_leftovers(env: &str) -> Vec<String> {
    let label = format!("label=cove.env={env}");
    let mut all = docker(&["ps", "-aq", "--filter", &label]);
    all.extend(docker(&["network", "ls", "-q", "--filter", &label]));
    all.extend(docker(&["volume", "ls", "-q", "--filter", &label]));
    all
}

/// The pooled environments in the server's store (SQLite in its data directory): (id, prebuild,
/// state). No route shows them: they are no one's until claimed.
async fn pooled(data: &Path) -> Vec<(String, i64, EnvState)> {
    let url = format!("sqlite://{}?mode=rwc", data.join("cove.db").display());
    let store = cove_server::store::Store::open(&url).await.unwrap();
    let rows = store.pooled_envs().await.unwrap();
    store.close().await;
    rows.into_iter()
        .map(|e| (e.id, e.pooled.unwrap(), e.state))
        .collect()
}

/// Waits until no environment of prebuild `id` is pooled any more and none of `ids` has a
/// container, network or volume left.
async fn pool_gone(data: &Path, id: i64, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<_> = pooled(data)
            .await
            .into_iter()
            .filter(|p| p.1 == id)
            .collect();
        let engine: Vec<String> = ids.iter().flat_map(|e| env_leftovers(e)).collect();
        if left.is_empty() && engine.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool of {id} not gone: rows {left:?}, engine {engine:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn remove_images(prebuild: i64) {
    for id in leftovers(prebuild).1 {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &id])
            .output();
    }
}

/// A busybox devfile whose build command writes a file into the container and one into the
/// sources (`status` is the build's exit code).
fn devfile(status: u8) -> String {
    format!(
        r#"schemaVersion: 2.2.0
components:
  - name: main
    container:
      image: cove/busybox:latest
      mountSources: true
commands:
  - id: build
    exec:
      component: main
      commandLine: echo built > /tmp/cove-built.txt && echo in-sources > built-marker.txt && exit {status}
      workingDir: ${{PROJECT_SOURCE}}
      group:
        kind: build
        isDefault: true
"#
    )
}

async fn push_repo(server: &Server, name: &str, devfile: &str) -> (tempfile::TempDir, String) {
    common::create_repo_http(&server.http, &server.url, name).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::git_blocking(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("devfile.yaml"), devfile).unwrap();
    let sha = commit_and_push(server, dir, name, "devfile").await;
    (work, sha)
}

async fn commit_and_push(server: &Server, dir: &Path, name: &str, message: &str) -> String {
    common::git_blocking(dir, &["add", "."]);
    common::git_blocking(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
    common::git_blocking(
        dir,
        &[
            "push",
            "-q",
            &common::admin_git_url(&server.url, name),
            "main",
        ],
    );
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prebuilt_environment_has_the_build_and_the_head_it_claims_and_a_later_push_is_cold() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path()).await;
    let (work, sha) = push_repo(&server, "pre", &devfile(0)).await;

    let pb = server.prebuild_of("pre", &sha).await;
    assert_eq!(pb.state, PrebuildState::Succeeded, "{pb:?}");
    assert_eq!(pb.branch, "main");
    assert_eq!(pb.images, vec![format!("cove-prebuild/p{}:main", pb.id)]);
    let (containers, images) = leftovers(pb.id);
    assert!(
        containers.is_empty(),
        "the prebuild's pod remains: {containers:?}"
    );
    assert_eq!(images.len(), 1, "one snapshot image: {images:?}");
    let log: cove_api::PrebuildLog = server
        .get(&format!("/repos/admin/pre/prebuilds/{}/logs", pb.id))
        .await;
    assert!(log.log.contains("build"), "{}", log.log);

    // a create of the prebuilt commit starts from the snapshot
    let env = server.create("pre").await;
    assert_eq!(env.prebuilt_from.as_deref(), Some(sha.as_str()));
    let built = server.sh(&env.id, "cat /tmp/cove-built.txt").await;
    assert_eq!(built.stdout.trim(), "built", "{built:?}");
    let marker = server
        .sh(&env.id, "cat /projects/pre/built-marker.txt")
        .await;
    assert_eq!(marker.stdout.trim(), "in-sources", "{marker:?}");
    let head = server
        .sh(&env.id, "cat /projects/pre/.git/refs/heads/main")
        .await;
    assert_eq!(head.stdout.trim(), sha, "{head:?}");
    // the snapshot is used by this environment only: a file written here is not in the next
    server
        .sh(&env.id, "echo mine > /projects/pre/mine.txt")
        .await;
    let second = server.create("pre").await;
    assert_eq!(second.prebuilt_from.as_deref(), Some(sha.as_str()));
    let mine = server
        .sh(&second.id, "test -e /projects/pre/mine.txt; echo $?")
        .await;
    assert_eq!(mine.stdout.trim(), "1", "{mine:?}");

    // a push that no prebuild follows: the next create is cold, never the old snapshot
    server
        .put(
            "/repos/admin/pre/prebuilds/settings",
            json!({"enabled": false, "branches": [], "keep": 3}),
        )
        .await;
    std::fs::write(work.path().join("new.txt"), "second commit\n").unwrap();
    let sha2 = commit_and_push(&server, work.path(), "pre", "second").await;
    let cold = server.create("pre").await;
    assert_eq!(cold.prebuilt_from, None, "{cold:?}");
    let files = server
        .sh(
            &cold.id,
            "cat /projects/pre/new.txt; test -e /tmp/cove-built.txt; echo built=$?; test -e /projects/pre/built-marker.txt; echo marker=$?",
        )
        .await;
    assert!(files.stdout.contains("second commit"), "{files:?}");
    assert!(files.stdout.contains("built=1"), "{files:?}");
    assert!(files.stdout.contains("marker=1"), "{files:?}");
    let head = server
        .sh(&cold.id, "cat /projects/pre/.git/refs/heads/main")
        .await;
    assert_eq!(head.stdout.trim(), sha2);

    for e in [&env, &second, &cold] {
        server.delete_env(&e.id).await;
    }
    remove_images(pb.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prebuild_leaves_nothing_and_create_is_cold() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path()).await;
    let (_work, sha) = push_repo(&server, "bad", &devfile(3)).await;

    let pb = server.prebuild_of("bad", &sha).await;
    assert_eq!(pb.state, PrebuildState::Failed, "{pb:?}");
    assert!(
        pb.reason.as_deref().unwrap_or("").contains("exited with 3"),
        "{pb:?}"
    );
    let log: cove_api::PrebuildLog = server
        .get(&format!("/repos/admin/bad/prebuilds/{}/logs", pb.id))
        .await;
    assert!(log.log.contains("prebuild failed"), "{}", log.log);
    let (containers, images) = leftovers(pb.id);
    assert!(containers.is_empty(), "containers remain: {containers:?}");
    assert!(images.is_empty(), "images remain: {images:?}");

    let env = server.create("bad").await;
    assert_eq!(env.prebuilt_from, None);
    let head = server
        .sh(&env.id, "cat /projects/bad/.git/refs/heads/main")
        .await;
    assert_eq!(head.stdout.trim(), sha);
    server.delete_env(&env.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_hands_out_ready_environments_of_the_head_and_never_a_stale_one() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let server = Server::spawn(data.path()).await;
    let (work, sha) = push_repo(&server, "warm", &devfile(0)).await;
    let pb = server.prebuild_of("warm", &sha).await;
    assert_eq!(pb.state, PrebuildState::Succeeded, "{pb:?}");
    server
        .put(
            "/repos/admin/warm/prebuilds/settings",
            json!({"enabled": true, "branches": [], "keep": 3, "warm": 1}),
        )
        .await;
    server.pool_settled("warm", pb.id, 1).await;
    // a pooled environment is no one's: not listed
    let listed: Vec<Environment> = server.get("/environments").await;
    assert!(listed.is_empty(), "{listed:?}");
    let first_pool: Vec<String> = pooled(data.path()).await.into_iter().map(|p| p.0).collect();
    assert_eq!(first_pool.len(), 1);

    // claimed: running in the create's own answer, the prebuild's files and head, the
    // claimer's identity in the clone (the prebuild's clone named "Cove prebuild")
    let env = server.create_now("warm").await;
    assert_eq!(env.state, EnvState::Running, "{env:?}");
    assert_eq!(env.id, first_pool[0]);
    assert_eq!(env.prebuilt_from.as_deref(), Some(sha.as_str()));
    let files = server
        .sh(
            &env.id,
            "cat /tmp/cove-built.txt /projects/warm/built-marker.txt /projects/warm/.git/refs/heads/main",
        )
        .await;
    assert_eq!(
        files.stdout.split_whitespace().collect::<Vec<_>>(),
        vec!["built", "in-sources", sha.as_str()],
        "{files:?}"
    );
    // (busybox has no git: the config is read as text)
    let config = server.sh(&env.id, "cat /projects/warm/.git/config").await;
    let config: String = config.stdout.split_whitespace().collect();
    assert!(
        config.contains("name=admin") && config.contains("email=admin@users.noreply.cove"),
        "{config}"
    );
    assert!(!config.contains("Coveprebuild"), "{config}");
    let listed: Vec<Environment> = server.get("/environments").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    // refilled with another environment, never the claimed one again
    server.pool_settled("warm", pb.id, 1).await;
    let second_pool: Vec<String> = pooled(data.path()).await.into_iter().map(|p| p.0).collect();
    assert_eq!(second_pool.len(), 1);
    assert_ne!(second_pool[0], env.id);

    // a push: the old commit's pool is deleted, containers and all, and a create is cold (or
    // from the new prebuild), never the old snapshot
    std::fs::write(work.path().join("new.txt"), "second commit\n").unwrap();
    let sha2 = commit_and_push(&server, work.path(), "warm", "second").await;
    let after = server.create("warm").await;
    assert_ne!(
        after.prebuilt_from.as_deref(),
        Some(sha.as_str()),
        "{after:?}"
    );
    let head = server
        .sh(&after.id, "cat /projects/warm/.git/refs/heads/main")
        .await;
    assert_eq!(head.stdout.trim(), sha2);
    pool_gone(data.path(), pb.id, &second_pool).await;
    // the new head's prebuild fills the pool again, and a create claims from it
    let pb2 = server.prebuild_of("warm", &sha2).await;
    assert_eq!(pb2.state, PrebuildState::Succeeded, "{pb2:?}");
    server.pool_settled("warm", pb2.id, 1).await;
    let third = server.create_now("warm").await;
    assert_eq!(third.state, EnvState::Running, "{third:?}");
    assert_eq!(third.prebuilt_from.as_deref(), Some(sha2.as_str()));

    // warm 0: the pool drains
    let last_pool: Vec<String> = {
        server.pool_settled("warm", pb2.id, 1).await;
        pooled(data.path()).await.into_iter().map(|p| p.0).collect()
    };
    server
        .put(
            "/repos/admin/warm/prebuilds/settings",
            json!({"enabled": true, "branches": [], "keep": 3, "warm": 0}),
        )
        .await;
    pool_gone(data.path(), pb2.id, &last_pool).await;
    for e in [&env, &after, &third] {
        server.delete_env(&e.id).await;
    }
    remove_images(pb.id);
    remove_images(pb2.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_its_pool_fills_leaves_nothing_half_made() {
    cove_tests::require_docker();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(data.path()).await;
    let (_work, sha) = push_repo(&server, "kill", &devfile(0)).await;
    let pb = server.prebuild_of("kill", &sha).await;
    assert_eq!(pb.state, PrebuildState::Succeeded, "{pb:?}");
    server
        .put(
            "/repos/admin/kill/prebuilds/settings",
            json!({"enabled": true, "branches": [], "keep": 3, "warm": 2}),
        )
        .await;
    // SIGKILL while a pooled environment is being created
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught = loop {
        let rows = pooled(data.path()).await;
        if rows.iter().any(|r| r.2 == EnvState::Creating) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no pooled environment being created: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server._child.kill().await.unwrap();
    let seen: Vec<String> = pooled(data.path()).await.into_iter().map(|p| p.0).collect();
    assert!(!seen.is_empty(), "{caught:?}");

    // restarted: the half-made ones are deleted, the pool is filled anew
    let mut server = Server::spawn(data.path()).await;
    let interrupted: Vec<&String> = caught
        .iter()
        .filter(|r| r.2 == EnvState::Creating)
        .map(|r| &r.0)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = pooled(data.path()).await;
        if !rows.iter().any(|r| interrupted.contains(&&r.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caught creating and still pooled: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The engine finishes requests the killed server had under way, possibly after the
    // restarted one deleted the environment: what such a late request makes (here a network
    // and a container of the environment, made by hand just after the delete) is removed by
    // the sweeps that follow the delete of an interrupted create. The sweeps are stored: the
    // restarted server is killed too, at once, and the next one goes on sweeping.
    let late = interrupted[0];
    let label = format!("cove.env={late}");
    docker(&[
        "network",
        "create",
        "--label",
        &label,
        &format!("cove-{late}--net"),
    ]);
    docker(&["create", "--label", &label, "cove/busybox:latest", "true"]);
    server._child.kill().await.unwrap();
    let seen_again: Vec<String> = pooled(data.path()).await.into_iter().map(|p| p.0).collect();
    let server = Server::spawn(data.path()).await;
    server.pool_settled("kill", pb.id, 2).await;
    let now: Vec<String> = pooled(data.path()).await.into_iter().map(|p| p.0).collect();
    for id in &interrupted {
        assert!(
            !now.contains(id),
            "{id} was caught creating and is pooled again"
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = env_leftovers(id);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} left on the engine: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // and draining it leaves nothing of any of them
    server
        .put(
            "/repos/admin/kill/prebuilds/settings",
            json!({"enabled": true, "branches": [], "keep": 3, "warm": 0}),
        )
        .await;
    let all: Vec<String> = seen.into_iter().chain(seen_again).chain(now).collect();
    pool_gone(data.path(), pb.id, &all).await;
    remove_images(pb.id);
}
