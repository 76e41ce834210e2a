//! Warm pod shells (issue 19, docs/prebuilds.md "Warm pod shells") with the real
//! `cove-server` binary (embedded agent, `[environments] warm_shells = 1`) on real Docker:
//!
//! - the first create of a shape is cold and asks for a shell; the next create of the same
//!   shape takes the ready shell's id, and its infra container is the shell's (same container
//!   id, created before the request), with the endpoint published and a command running;
//! - each shell is used once: the pool makes a new one (another id) for the next create;
//! - a graceful stop (SIGTERM) removes the ready shell; environments stay;
//! - a killed server's shell is removed when that server starts again (its agent's owner
//!   label) and its environment stays; another agent's shell goes by age only.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::{EnvState, Environment};
use serde_json::json;

/// The tests look at every shell on the engine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DEVFILE: &str = "schemaVersion: 2.2.0
metadata: {name: shellapp}
components:
  - name: main
    container:
      image: cove/busybox:latest
      endpoints:
        - {name: web, targetPort: 8080}
  - name: side
    container: {image: cove/busybox:latest}
";

struct Server {
    proc: Proc,
    http: reqwest::Client,
}

impl Server {
    async fn spawn(data_dir: &Path, config: &Path) -> Server {
        let options = SpawnOptions {
            config: Some(config),
            ready_within: Duration::from_secs(60),
            ..SpawnOptions::default()
        };
        let proc = spawn_server_with(data_dir, free_port().unwrap(), options)
            .await
            .unwrap();
        Server {
            proc,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self) -> &str {
        &self.proc.url
    }

    async fn create(&self, name: &str) -> Environment {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/repos/admin/app/environments",
                self.url()
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    async fn wait_running(&self, id: &str) -> Environment {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let e: Environment = common::admin_get(
                &self.http,
                format!("{}/api/v1/environments/{id}", self.url()),
            )
            .await;
            match e.state {
                EnvState::Running => return e,
                EnvState::Failed => panic!("environment failed: {:?}", e.reason),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "environment did not start: {:?} {:?}",
                e.state,
                e.reason
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn exec_ok(&self, id: &str) {
        let r = self
            .http
            .post(format!("{}/api/v1/environments/{id}/exec", self.url()))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "command": ["sh", "-c", "test -d /projects && hostname"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let out: cove_api::ExecResult = r.json().await.unwrap();
        assert_eq!(out.exit_code, 0, "{out:?}");
        assert_eq!(out.stdout.trim(), "shellapp");
    }
}

/// Output lines of a `docker` command.
fn docker(args: &[&str]) -> Vec<String> {
    let out = cove_tests::docker(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Environment ids of the ready shells (marker volumes) on the engine.
fn ready_shells() -> Vec<String> {
    docker(&[
        "volume",
        "ls",
        "--filter",
        "label=cove.role=shell",
        "--format",
        "{{.Label \"cove.env\"}}",
    ])
}

/// Waits until a ready shell not in `known` appears; returns its id.
async fn new_shell(known: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // the marker comes first, the started infra container last; then the agent pools it
        let made = ready_shells().into_iter().find(|s| {
            !known.contains(s)
                && docker(&[
                    "inspect",
                    "-f",
                    "{{.State.Running}}",
                    &format!("cove-{s}--infra"),
                ]) == ["true"]
        });
        if let Some(s) = made {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return s;
        }
        assert!(Instant::now() < deadline, "no warm shell was made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn infra_id(env: &str) -> String {
    docker(&["inspect", "-f", "{{.Id}}", &format!("cove-{env}--infra")])
        .pop()
        .unwrap_or_default()
}

/// A server with `warm_shells = 1` in `dir`, its repository `admin/app`, and a first (cold)
/// environment `a`, running; then the shell that create asked for, ready. Returns the server,
/// `a`, the shell's id and the shells that were there before (other tests' are never touched),
/// with cleanups of `a` and the shell.
async fn with_a_ready_shell(
    dir: &Path,
) -> (
    Server,
    Environment,
    String,
    Vec<String>,
    [cove_tests::EnvCleanup; 2],
) {
    let config = dir.join("cove.toml");
    std::fs::write(&config, "[environments]\nwarm_shells = 1\n").unwrap();
    let server = Server::spawn(&dir.join("data"), &config).await;
    common::repo_with_devfile(&server.http, server.url(), "app", DEVFILE).await;
    let before = ready_shells();
    let a = server.create("a").await;
    let ca = cove_tests::EnvCleanup(a.id.clone());
    server.wait_running(&a.id).await;
    let shell = new_shell(&before).await;
    let cs = cove_tests::EnvCleanup(shell.clone());
    (server, a, shell, before, [ca, cs])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_takes_a_warm_shell_once_and_a_graceful_stop_removes_the_rest() {
    cove_tests::require_docker();
    let _serial = SERIAL.lock().await;
    let data = tempfile::tempdir().unwrap();
    // the first create of this shape: cold, and it asks for a shell for the next one
    let (server, a, shell, before, _cleanup) = with_a_ready_shell(data.path()).await;
    assert_ne!(shell, a.id);
    let shell_infra = infra_id(&shell);
    assert!(!shell_infra.is_empty(), "the shell has no infra container");

    // the next create takes it: the shell's id, its infra container, its network
    let b = server.create("b").await;
    let _cb = cove_tests::EnvCleanup(b.id.clone());
    assert_eq!(b.id, shell, "the create did not take the ready shell");
    let b = server.wait_running(&b.id).await;
    assert_eq!(
        infra_id(&b.id),
        shell_infra,
        "the infra container was recreated"
    );
    assert!(
        !ready_shells().contains(&b.id),
        "the marker of a taken shell stays"
    );
    assert!(
        b.endpoints.iter().any(|e| e.port == 8080),
        "{:?}",
        b.endpoints
    );
    let published = docker(&["port", &format!("cove-{}--infra", b.id), "8080/tcp"]);
    assert!(
        published.iter().any(|p| p.starts_with("127.0.0.1:")),
        "{published:?}"
    );
    server.exec_ok(&b.id).await;
    let containers = docker(&["ps", "-aq", "--filter", &format!("label=cove.env={}", b.id)]);
    assert_eq!(containers.len(), 3, "infra, main and side");

    // used once: another shell (another id) for the create after
    let mut known = before.clone();
    known.push(shell.clone());
    let second = new_shell(&known).await;
    let _cs2 = cove_tests::EnvCleanup(second.clone());
    assert_ne!(second, b.id);
    let c = server.create("c").await;
    let _cc = cove_tests::EnvCleanup(c.id.clone());
    assert_eq!(c.id, second);
    server.wait_running(&c.id).await;
    server.exec_ok(&c.id).await;

    // a graceful stop removes the ready shell, and only that
    known.push(second.clone());
    let third = new_shell(&known).await;
    let _cs3 = cove_tests::EnvCleanup(third.clone());
    let pid = server.proc.child.id().unwrap().to_string();
    let mut proc = server.proc;
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::timeout(Duration::from_secs(30), proc.child.wait())
        .await
        .expect("the server did not stop")
        .unwrap();
    let label = format!("label=cove.env={third}");
    assert!(
        docker(&["ps", "-aq", "--filter", &label]).is_empty(),
        "the shell's container stays"
    );
    assert!(
        docker(&["volume", "ls", "-q", "--filter", &label]).is_empty(),
        "the shell's volumes stay"
    );
    assert!(
        docker(&["network", "ls", "-q", "--filter", &label]).is_empty(),
        "the shell's network stays"
    );
    for env in [&a.id, &b.id, &c.id] {
        let label = format!("label=cove.env={env}");
        assert!(
            !docker(&["ps", "-aq", "--filter", &label]).is_empty(),
            "{env} lost its containers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_shell_is_removed_when_it_starts_again_and_orphans_by_age() {
    cove_tests::require_docker();
    let _serial = SERIAL.lock().await;
    let data = tempfile::tempdir().unwrap();
    let (server, a, shell, _, _cleanup) = with_a_ready_shell(data.path()).await;
    let mut proc = server.proc;
    proc.child.start_kill().unwrap();
    proc.child.wait().await.unwrap();
    let label = format!("label=cove.env={shell}");
    assert!(!docker(&["ps", "-aq", "--filter", &label]).is_empty());

    // the same server (data directory) started again removes its previous process's shell
    let again = Server::spawn(&data.path().join("data"), &data.path().join("cove.toml")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["ps", "-aq", "--filter", &label]).is_empty()
        || !docker(&["volume", "ls", "-q", "--filter", &label]).is_empty()
        || !docker(&["network", "ls", "-q", "--filter", &label]).is_empty()
    {
        assert!(Instant::now() < deadline, "the killed server's shell stays");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the environment is no shell: its containers and its row stay
    let env_label = format!("label=cove.env={}", a.id);
    assert_eq!(docker(&["ps", "-aq", "--filter", &env_label]).len(), 3);
    let kept: Environment = common::admin_get(
        &again.http,
        format!("{}/api/v1/environments/{}", again.url(), a.id),
    )
    .await;
    assert_eq!(kept.id, a.id);

    // another agent's shell (another owner) is removed by age only, what every agent with
    // shells runs each minute with its limit of 10 minutes
    let rt = cove_agent::Runtime::connect().await.unwrap();
    let spec = cove_agent::pod::PodSpec::new(
        cove_agent::pod::shells::new_env_id(),
        devfiles::EnvironmentPlan::default(),
    );
    let _cf = cove_tests::EnvCleanup(spec.env_id.clone());
    rt.make_shell(&spec, "another-agent").await.unwrap();
    let theirs = spec.env_id.clone();
    let young = cove_agent::pod::shells::remove_orphans_where(&rt, Duration::from_secs(600), |e| {
        e == theirs
    })
    .await
    .unwrap();
    assert_eq!(young, 0, "a young shell of another agent was removed");
    let old = cove_agent::pod::shells::remove_orphans_where(&rt, Duration::ZERO, |e| e == theirs)
        .await
        .unwrap();
    assert_eq!(old, 1);
    let label = format!("label=cove.env={}", spec.env_id);
    assert!(docker(&["ps", "-aq", "--filter", &label]).is_empty());
    assert!(docker(&["volume", "ls", "-q", "--filter", &label]).is_empty());
    assert!(docker(&["network", "ls", "-q", "--filter", &label]).is_empty());
}

/// Warm shells on a standalone `cove-agent` (`--warm-shells 1`): the server (in process, no
/// embedded agent) asks the placed agent for a shell over the link, and the next create of
/// a shape takes that agent's ready shell, whose marker carries the agent's owner token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_agent_keeps_warm_shells_too() {
    cove_tests::require_docker();
    let _serial = SERIAL.lock().await;
    let server = common::start_for_agent_process(0).await.unwrap();
    common::repo_with_devfile(&server.http, &server.url, "app", DEVFILE).await;
    let reg_file = server.tmp.path().join("agent.reg");
    std::fs::write(&reg_file, server.registration_token(None).await.unwrap()).unwrap();
    let engine =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let mut agent =
        tokio::process::Command::new(cove_tests::cargo_bin("cove-agent", "cove-agent").unwrap())
            .args(["--server", &server.url, "--state-dir"])
            .arg(server.tmp.path().join("agent"))
            .args(["--name", "shells", "--slots", "1", "--warm-shells", "1"])
            .arg("--registration-token-file")
            .arg(&reg_file)
            .env_remove("COVE_REGISTRATION_TOKEN")
            .env_remove("COVE_AGENT_LABELS")
            .env("DOCKER_HOST", engine)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let create = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // 503 until the agent registers, 409 until its link is up
            let r = server
                .http
                .post(server.api("/repos/admin/app/environments"))
                .bearer_auth(&server.admin_token)
                .json(&json!({ "idle_timeout_secs": 0 }))
                .send()
                .await
                .unwrap();
            if r.status() == 201 {
                let e: Environment = r.json().await.unwrap();
                return e;
            }
            let (status, text) = (r.status(), r.text().await.unwrap());
            assert!(status == 409 || status == 503, "{status}: {text}");
            assert!(Instant::now() < deadline, "the agent never linked: {text}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let before = ready_shells();
    let a = create().await;
    let _ca = cove_tests::EnvCleanup(a.id.clone());
    common::envs::wait_state(&server, &a.id, EnvState::Running, Duration::from_secs(120))
        .await
        .unwrap();
    let shell = new_shell(&before).await;
    let _cs = cove_tests::EnvCleanup(shell.clone());
    assert_ne!(shell, a.id);
    let owner = docker(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=cove.env={shell}"),
        "--filter",
        "label=cove.role=shell",
        "--format",
        "{{.Label \"cove.shell.owner\"}}",
    ]);
    let agent_id = std::fs::read_to_string(server.tmp.path().join("agent/agent-id")).unwrap();
    assert_eq!(
        owner,
        [cove_agent::job_pool::token(&format!(
            "agent-{}",
            agent_id.trim()
        ))],
        "the shell's owner is not the agent"
    );
    let shell_infra = infra_id(&shell);
    let b = create().await;
    let _cb = cove_tests::EnvCleanup(b.id.clone());
    assert_eq!(
        b.id, shell,
        "the create did not take the agent's ready shell"
    );
    common::envs::wait_state(&server, &b.id, EnvState::Running, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        infra_id(&b.id),
        shell_infra,
        "the infra container was recreated"
    );
    // used once: the agent makes another; a graceful stop (SIGTERM) removes it, and only it
    let third = new_shell(&[before.clone(), vec![shell.clone()]].concat()).await;
    let _c3 = cove_tests::EnvCleanup(third.clone());
    let pid = agent.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::timeout(Duration::from_secs(40), agent.wait())
        .await
        .expect("the agent did not stop")
        .unwrap();
    let label = format!("label=cove.env={third}");
    for kind in ["ps", "volume", "network"] {
        let listed = match kind {
            "ps" => docker(&["ps", "-aq", "--filter", &label]),
            k => docker(&[k, "ls", "-q", "--filter", &label]),
        };
        assert!(
            listed.is_empty(),
            "the ready shell's {kind} objects stay: {listed:?}"
        );
    }
    for env in [&a.id, &b.id] {
        let label = format!("label=cove.env={env}");
        assert!(
            !docker(&["ps", "-aq", "--filter", &label]).is_empty(),
            "{env} lost its containers"
        );
    }
}
