#![allow(clippy::unwrap_used)]
//! Environments on standalone agents (issue 20, docs/agents.md "Environments on agents"),
//! with two real Docker engines: the server (in process, SQLite, no embedded agent) and two
//! `cove-agent` processes — `agent-a` (`pool=a`) on the main test engine and `agent-b`
//! (`pool=b`) on a second dockerd this test starts (`common::dockerd`). An environment asking
//! for `pool=b` lands on agent-b (its containers exist on engine 2, not on engine 1); exec and
//! a terminal stream work through the link; stop/start keeps /projects; `kill -9` of agent-b
//! shows `agent_unreachable` and commands get a clear error; agent-b restarted reconciles it
//! to running; `pool=x` is a clear 409.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::dockerd::ExtraDockerd;
use common::envs::{delete_and_wait, exec_request as exec, wait_state};
use common::{repo_with_devfile, TestServer};
use cove_api::{EnvState, Environment, ExecResult};
use serde_json::json;

const DEVFILE: &str = "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n";

fn spawn_agent(
    bin: &Path,
    server: &TestServer,
    state: &Path,
    name: &str,
    label: &str,
    registration: Option<&str>,
    docker_host: &str,
) -> Result<tokio::process::Child> {
    spawn_agent_with(
        bin,
        server,
        state,
        name,
        label,
        registration,
        docker_host,
        &[],
    )
}

/// [`spawn_agent`] with more flags.
#[allow(clippy::too_many_arguments)]
fn spawn_agent_with(
    bin: &Path,
    server: &TestServer,
    state: &Path,
    name: &str,
    label: &str,
    registration: Option<&str>,
    docker_host: &str,
    extra: &[&str],
) -> Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(extra);
    cmd.arg("--server")
        .arg(&server.url)
        .arg("--state-dir")
        .arg(state)
        .args(["--name", name, "--slots", "1", "--label", label])
        .env_remove("COVE_REGISTRATION_TOKEN")
        .env_remove("COVE_AGENT_LABELS")
        .env("DOCKER_HOST", docker_host)
        // COVE_TEST_AGENT_LOG=info shows what the agents do
        .env(
            "RUST_LOG",
            std::env::var("COVE_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(reg) = registration {
        let reg_file = state.with_extension("reg");
        std::fs::write(&reg_file, reg)?;
        cmd.arg("--registration-token-file").arg(&reg_file);
    }
    Ok(cmd.spawn()?)
}

/// The main test engine with `agent-a` (`pool=a`) and a second dockerd with `agent-b`
/// (`pool=b`), both registered to `server`.
struct TwoAgents {
    engine1: String,
    engine2: ExtraDockerd,
    agent_bin: PathBuf,
    tmp: tempfile::TempDir,
    a: tokio::process::Child,
    b: tokio::process::Child,
}

impl TwoAgents {
    async fn start(server: &TestServer) -> Result<TwoAgents> {
        let engine1 =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let engine2 =
            tokio::task::spawn_blocking(|| ExtraDockerd::start(&["cove/busybox:latest"])).await??;
        let agent_bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
        let tmp = tempfile::tempdir()?;
        let reg_a = server.registration_token(None).await?;
        let reg_b = server.registration_token(None).await?;
        let a = spawn_agent(
            &agent_bin,
            server,
            &tmp.path().join("a"),
            "agent-a",
            "pool=a",
            Some(&reg_a),
            &engine1,
        )?;
        let b = spawn_agent(
            &agent_bin,
            server,
            &tmp.path().join("b"),
            "agent-b",
            "pool=b",
            Some(&reg_b),
            &engine2.host,
        )?;
        Ok(TwoAgents {
            engine1,
            engine2,
            agent_bin,
            tmp,
            a,
            b,
        })
    }
}

async fn create(server: &TestServer, pool: &str) -> Result<reqwest::Response> {
    create_in(server, "remote", pool).await
}

async fn create_in(server: &TestServer, repo: &str, pool: &str) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api(&format!("/repos/admin/{repo}/environments")))
        .bearer_auth(&server.admin_token)
        .json(&json!({ "labels": { "pool": pool }, "idle_timeout_secs": 0 }))
        .send()
        .await?)
}

/// Creates an environment of `repo` on an agent of `pool` once that agent's link is up (409
/// until then, never a hang) and waits until it runs.
async fn running_in(server: &TestServer, repo: &str, pool: &str) -> Result<Environment> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let created: Environment = loop {
        let r = create_in(server, repo, pool).await?;
        if r.status() == 201 {
            break r.json().await?;
        }
        let (status, text) = (r.status(), r.text().await?);
        assert_eq!(status, 409, "{text}");
        if Instant::now() > deadline {
            bail!("no agent of pool {pool} linked: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    wait_state(
        server,
        &created.id,
        EnvState::Running,
        Duration::from_secs(120),
    )
    .await
}

/// `POST /api/v1/environments/{id}/{action}` with `body` as the admin.
async fn post(
    server: &TestServer,
    id: &str,
    action: &str,
    body: serde_json::Value,
) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api(&format!("/environments/{id}/{action}")))
        .bearer_auth(&server.admin_token)
        .json(&body)
        .send()
        .await?)
}

fn volumes_of(docker_host: &str, env_id: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["-H", docker_host, "volume", "ls", "-q", "--filter"])
        .arg(format!("label=cove.env={env_id}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn containers_of(docker_host: &str, env_id: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["-H", docker_host, "ps", "-aq", "--filter"])
        .arg(format!("label=cove.env={env_id}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bytes through a terminal (a WebSocket to the server, a stream over the link to agent-b).
async fn terminal_round_trip(server: &TestServer, id: &str) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let cmd = serde_json::to_string(&["sh", "-c", "stty -echo; echo READY; exec cat"])?;
    let url = format!(
        "{}/environments/{id}/terminal?cmd={}",
        server.api("").replace("http://", "ws://"),
        urlencode(&cmd)
    );
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.admin_token).parse()?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("READY") {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            ws.next(),
        )
        .await;
        match next {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => bail!("terminal ended early ({other:?}); got {} bytes", got.len()),
        }
    }
    // more than one credit window (256 KiB) back from `cat`, so credit has to flow
    let line = "round-trip-0123456789abcdef".repeat(40);
    let lines = 300;
    got.clear();
    let sender = {
        let (mut sink, stream) = ws.split();
        let line = line.clone();
        let task = tokio::spawn(async move {
            for _ in 0..lines {
                sink.send(Message::binary(format!("{line}\n").into_bytes()))
                    .await?;
            }
            Ok::<_, anyhow::Error>(sink)
        });
        (task, stream)
    };
    let (task, mut stream) = sender;
    while String::from_utf8_lossy(&got).matches(line.as_str()).count() < lines {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.next(),
        )
        .await;
        match next {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => bail!("terminal ended early ({other:?}); got {} bytes", got.len()),
        }
    }
    let sink = task.await??;
    let mut ws = sink.reunite(stream)?;
    let _ = ws.close(None).await;
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environments_land_by_label_on_their_engine_and_survive_agent_loss() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let TwoAgents {
        engine1,
        engine2,
        agent_bin,
        tmp,
        a: _a,
        mut b,
    } = TwoAgents::start(&server).await?;
    repo_with_devfile(&server.http, &server.url, "remote", DEVFILE).await;

    // placement: pool=b once agent-b's link is up (409 until then, never a hang)
    let deadline = Instant::now() + Duration::from_secs(60);
    let created: Environment = loop {
        let r = create(&server, "b").await?;
        if r.status() == 201 {
            break r.json().await?;
        }
        let (status, text) = (r.status(), r.text().await?);
        assert_eq!(status, 409, "{text}");
        if Instant::now() > deadline {
            bail!("agent-b never linked: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let id = created.id.clone();
    assert_eq!(created.agent.as_deref(), Some("agent-b"));
    let why = created.placement.clone().unwrap_or_default();
    assert!(why.contains("labels pool=b"), "{why}");
    let running = wait_state(&server, &id, EnvState::Running, Duration::from_secs(120)).await?;
    assert_eq!(running.agent.as_deref(), Some("agent-b"));
    assert!(
        !containers_of(&engine2.host, &id).is_empty(),
        "no containers on engine 2"
    );
    assert!(
        containers_of(&engine1, &id).is_empty(),
        "containers on engine 1"
    );

    // the devfile's pool attribute places too (agent-a has fewer environments, so without it
    // the environment would go there)
    repo_with_devfile(
        &server.http,
        &server.url,
        "attr",
        &format!("attributes:\n  cove.dev/pool: b\n{DEVFILE}"),
    )
    .await;
    let r = server
        .http
        .post(server.api("/repos/admin/attr/environments"))
        .bearer_auth(&server.admin_token)
        .json(&json!({ "idle_timeout_secs": 0 }))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let by_attr: Environment = r.json().await?;
    assert_eq!(
        by_attr.agent.as_deref(),
        Some("agent-b"),
        "{:?}",
        by_attr.placement
    );
    wait_state(
        &server,
        &by_attr.id,
        EnvState::Running,
        Duration::from_secs(120),
    )
    .await?;
    delete_and_wait(&server, &by_attr.id, Duration::from_secs(60)).await?;

    // exec and a stream through the link
    let r = exec(
        &server,
        &id,
        "echo kept > /projects/marker && cat /projects/marker",
    )
    .await?;
    assert_eq!(r.status(), 200);
    let out: ExecResult = r.json().await?;
    assert_eq!(out.stdout.trim(), "kept", "{out:?}");
    terminal_round_trip(&server, &id).await?;

    // stop/start keeps /projects, on the same agent
    for (action, want) in [("stop", EnvState::Stopped), ("start", EnvState::Running)] {
        let r = server
            .http
            .post(server.api(&format!("/environments/{id}/{action}")))
            .bearer_auth(&server.admin_token)
            .send()
            .await?;
        assert!(r.status().is_success(), "{action}: {}", r.text().await?);
        wait_state(&server, &id, want, Duration::from_secs(60)).await?;
    }
    let out: ExecResult = exec(&server, &id, "cat /projects/marker")
        .await?
        .json()
        .await?;
    assert_eq!(out.stdout.trim(), "kept");

    // agent loss: kill -9, then the environment is agent_unreachable, commands refused
    b.start_kill()?;
    b.wait().await?;
    let lost = wait_state(
        &server,
        &id,
        EnvState::AgentUnreachable,
        Duration::from_secs(30),
    )
    .await?;
    assert!(lost.reason.unwrap_or_default().contains("agent-b"));
    let r = exec(&server, &id, "true").await?;
    assert_eq!(r.status(), 409);
    let text = r.text().await?;
    assert!(text.contains("agent_unreachable"), "{text}");

    // agent-b back (its stored token): reconciled to running, /projects intact
    let _b2 = spawn_agent(
        &agent_bin,
        &server,
        &tmp.path().join("b"),
        "agent-b",
        "pool=b",
        None,
        &engine2.host,
    )?;
    wait_state(&server, &id, EnvState::Running, Duration::from_secs(60)).await?;
    let out: ExecResult = exec(&server, &id, "cat /projects/marker")
        .await?
        .json()
        .await?;
    assert_eq!(out.stdout.trim(), "kept");

    // no agent with pool=x: a clear 409, nothing created
    let r = create(&server, "x").await?;
    assert_eq!(r.status(), 409);
    let text = r.text().await?;
    assert!(text.contains("no agent matches labels pool=x"), "{text}");

    delete_and_wait(&server, &id, Duration::from_secs(60)).await?;
    Ok(())
}

/// `cove env move` (docs/agents.md "Moving an environment"): a stopped environment on agent-b
/// moves to agent-a with /projects and its devfile volume (contents, owners, modes), runs
/// there, and nothing of it is left on engine 2; the refusals change nothing; a move whose
/// start fails on the new agent (its engine lacks the image) puts the environment back on
/// its agent, stopped, with its data, and leaves nothing on the other engine; an environment
/// deleted while it moves leaves nothing on either engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_moves_to_another_agent_with_its_volumes() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let agents = TwoAgents::start(&server).await?;
    let (engine1, engine2) = (agents.engine1.as_str(), agents.engine2.host.as_str());
    let with_volume = "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container:\n      image: cove/busybox:latest\n      volumeMounts: [{name: cache, path: /cache}]\n  - name: cache\n    volume: {size: 1Gi}\n";
    repo_with_devfile(&server.http, &server.url, "moving", with_volume).await;
    let env = running_in(&server, "moving", "b").await?;
    let id = env.id.clone();
    assert_eq!(env.agent.as_deref(), Some("agent-b"));
    let out: ExecResult = exec(
        &server,
        &id,
        "echo moved > /projects/m && mkdir -p /projects/sub && echo deep > /projects/sub/f && chown 1234:1234 /projects/sub/f && chmod 640 /projects/sub/f && echo vol > /cache/v && echo ok",
    )
    .await?
    .json()
    .await?;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");

    // refused, nothing changes: running; no place said; its own pool (its own agent); both
    let r = post(&server, &id, "move", json!({"labels": {"pool": "a"}})).await?;
    assert_eq!(r.status(), 409);
    assert!(r.text().await?.contains("stop it before moving it"));
    post(&server, &id, "stop", json!({})).await?;
    wait_state(&server, &id, EnvState::Stopped, Duration::from_secs(60)).await?;
    let r = post(&server, &id, "move", json!({})).await?;
    assert_eq!(r.status(), 400);
    let r = post(&server, &id, "move", json!({"labels": {"pool": "b"}})).await?;
    assert_eq!(r.status(), 409);
    let text = r.text().await?;
    assert!(
        text.contains("other than the environment's own agent"),
        "{text}"
    );
    let r = post(&server, &id, "move", json!({"agent": "agent-b"})).await?;
    assert_eq!(r.status(), 409);
    let r = post(&server, &id, "move", json!({"agent": "nobody"})).await?;
    assert_eq!(r.status(), 409);

    // the move with the CLI, from running (it stops it first): running on agent-a with
    // everything it had
    post(&server, &id, "start", json!({})).await?;
    wait_state(&server, &id, EnvState::Running, Duration::from_secs(60)).await?;
    let out = tokio::process::Command::new(cove_tests::cargo_bin("cove", "cove")?)
        .args(["env", "move", &id, "--pool", "a"])
        .env("HOME", agents.tmp.path())
        .env("COVE_URL", &server.url)
        .env("COVE_TOKEN", &server.admin_token)
        .output()
        .await?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(
        stderr.contains("moving from agent-b to agent-a"),
        "{stderr}"
    );
    let moved = wait_state(&server, &id, EnvState::Running, Duration::from_secs(5)).await?;
    assert_eq!(moved.agent.as_deref(), Some("agent-a"));
    let why = moved.placement.unwrap_or_default();
    assert!(why.contains("moved from agent-b"), "{why}");
    let out: ExecResult = exec(
        &server,
        &id,
        "cat /projects/m /projects/sub/f /cache/v && stat -c '%u:%g %a' /projects/sub/f",
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["moved", "deep", "vol", "1234:1234", "640"],
        "{out:?}"
    );
    assert!(!containers_of(engine1, &id).is_empty());
    // the old copy goes once it runs on the new agent
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(containers_of(engine2, &id).is_empty() && volumes_of(engine2, &id).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "left on engine 2: {} / {}",
            containers_of(engine2, &id),
            volumes_of(engine2, &id)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // a move that cannot start on the other agent: engine 2 has no cove/base image
    let base = "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: 'cove/base:bookworm', command: [sleep, infinity]}\n";
    repo_with_devfile(&server.http, &server.url, "stays", base).await;
    let stays = running_in(&server, "stays", "a").await?;
    let out: ExecResult = exec(&server, &stays.id, "echo here > /projects/h && echo ok")
        .await?
        .json()
        .await?;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");
    post(&server, &stays.id, "stop", json!({})).await?;
    wait_state(
        &server,
        &stays.id,
        EnvState::Stopped,
        Duration::from_secs(60),
    )
    .await?;
    let r = post(&server, &stays.id, "move", json!({"agent": "agent-b"})).await?;
    assert_eq!(r.status(), 202, "{}", r.text().await?);
    let deadline = Instant::now() + Duration::from_secs(120);
    let back = loop {
        let e: Environment = server
            .http
            .get(server.api(&format!("/environments/{}", stays.id)))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .json()
            .await?;
        if e.state == EnvState::Stopped {
            break e;
        }
        assert!(Instant::now() < deadline, "still {:?}", e.state);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let reason = back.reason.unwrap_or_default();
    assert!(
        reason.contains("the move to agent-b failed and the environment stayed on agent-a"),
        "{reason}"
    );
    assert_eq!(back.agent.as_deref(), Some("agent-a"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(containers_of(engine2, &stays.id).is_empty()
        && volumes_of(engine2, &stays.id).is_empty())
    {
        assert!(Instant::now() < deadline, "left on engine 2");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    post(&server, &stays.id, "start", json!({})).await?;
    wait_state(
        &server,
        &stays.id,
        EnvState::Running,
        Duration::from_secs(60),
    )
    .await?;
    let out: ExecResult = exec(&server, &stays.id, "cat /projects/h")
        .await?
        .json()
        .await?;
    assert_eq!(out.stdout.trim(), "here");

    delete_and_wait(&server, &stays.id, Duration::from_secs(60)).await?;

    // deleted while it moves (agent-a → agent-b): gone, and nothing of it on either engine
    post(&server, &id, "stop", json!({})).await?;
    wait_state(&server, &id, EnvState::Stopped, Duration::from_secs(60)).await?;
    let r = post(&server, &id, "move", json!({"labels": {"pool": "b"}})).await?;
    assert_eq!(r.status(), 202, "{}", r.text().await?);
    delete_and_wait(&server, &id, Duration::from_secs(90)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = [engine1, engine2]
            .iter()
            .flat_map(|e| [containers_of(e, &id), volumes_of(e, &id)])
            .filter(|s| !s.is_empty())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after a delete during a move: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// Room (docs/agents.md "Room"): the embedded agent with `[environments] max_running = 1` and
/// a standalone agent started with `--max-environments 1` each take one running environment;
/// the next is a clear 409 naming who is full (never a wait), a stopped environment does not
/// count, starting it again on a full agent is refused, and `GET /agents` shows the room and
/// which environments run where.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_take_environments_only_while_they_have_room() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server =
        TestServer::start_configured(|c| c.limits.environments.max_running = Some(1)).await?;
    let engine =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let tmp = tempfile::tempdir()?;
    let reg = server.registration_token(None).await?;
    let _agent = spawn_agent_with(
        &cove_tests::cargo_bin("cove-agent", "cove-agent")?,
        &server,
        &tmp.path().join("r"),
        "agent-r",
        "pool=r",
        Some(&reg),
        &engine,
        &["--max-environments", "1"],
    )?;
    repo_with_devfile(&server.http, &server.url, "roomy", DEVFILE).await;
    let unlabelled = || async {
        server
            .http
            .post(server.api("/repos/admin/roomy/environments"))
            .bearer_auth(&server.admin_token)
            .json(&json!({ "idle_timeout_secs": 0 }))
            .send()
            .await
    };
    let within = Duration::from_secs(120);

    // the embedded agent: one running environment, the next refused with the reason
    let r = unlabelled().await?;
    assert_eq!(r.status(), 201);
    let first: Environment = r.json().await?;
    assert_eq!(first.agent.as_deref(), Some("embedded"));
    wait_state(&server, &first.id, EnvState::Running, within).await?;
    let r = unlabelled().await?;
    let (status, text) = (r.status(), r.text().await?);
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("no room on the server's embedded agent: it runs 1 of 1 environments"),
        "{text}"
    );
    // a stopped environment leaves room; starting it again while the other runs is refused
    assert_eq!(
        post(&server, &first.id, "stop", json!({})).await?.status(),
        200
    );
    wait_state(&server, &first.id, EnvState::Stopped, within).await?;
    let r = unlabelled().await?;
    assert_eq!(r.status(), 201);
    let second: Environment = r.json().await?;
    wait_state(&server, &second.id, EnvState::Running, within).await?;
    let r = post(&server, &first.id, "start", json!({})).await?;
    let (status, text) = (r.status(), r.text().await?);
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("no room on agent embedded: it runs 1 of 1 environments"),
        "{text}"
    );

    // a standalone agent with --max-environments 1
    let third = running_in(&server, "roomy", "r").await?;
    assert_eq!(third.agent.as_deref(), Some("agent-r"));
    let r = create_in(&server, "roomy", "r").await?;
    let (status, text) = (r.status(), r.text().await?);
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("no agent matches labels pool=r with room: agent-r runs 1 of 1 environments"),
        "{text}"
    );

    // what runs where, and the room, as `cove agent list` shows it
    let agents: Vec<cove_api::AgentInfo> = server
        .http
        .get(server.api("/agents"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let by_name = |n: &str| agents.iter().find(|a| a.name == n).unwrap();
    let r_agent = by_name("agent-r");
    assert_eq!(r_agent.current_environments, vec![third.id.clone()]);
    assert_eq!(r_agent.capacity.max_environments, 1);
    assert_eq!(r_agent.capacity.running_environments, 1);
    let embedded = by_name("embedded");
    assert_eq!(embedded.current_environments, vec![second.id.clone()]);
    assert_eq!(embedded.capacity.max_environments, 1);

    for e in [&first, &second, &third] {
        delete_and_wait(&server, &e.id, within).await?;
    }
    Ok(())
}
