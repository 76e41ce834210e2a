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
use common::envs::{exec_request as exec, wait_state};
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
    let mut cmd = tokio::process::Command::new(bin);
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

async fn create(server: &TestServer, pool: &str) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api("/repos/admin/remote/environments"))
        .bearer_auth(&server.admin_token)
        .json(&json!({ "labels": { "pool": pool }, "idle_timeout_secs": 0 }))
        .send()
        .await?)
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
    let engine1 =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let engine2 =
        tokio::task::spawn_blocking(|| ExtraDockerd::start(&["cove/busybox:latest"])).await??;
    let agent_bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    repo_with_devfile(&server.http, &server.url, "remote", DEVFILE).await;
    let tmp = tempfile::tempdir()?;
    let reg_a = server.registration_token(None).await?;
    let reg_b = server.registration_token(None).await?;
    let _a = spawn_agent(
        &agent_bin,
        &server,
        &tmp.path().join("a"),
        "agent-a",
        "pool=a",
        Some(&reg_a),
        &engine1,
    )?;
    let mut b = spawn_agent(
        &agent_bin,
        &server,
        &tmp.path().join("b"),
        "agent-b",
        "pool=b",
        Some(&reg_b),
        &engine2.host,
    )?;

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
    let r = server
        .http
        .delete(server.api(&format!("/environments/{}", by_attr.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert!(r.status().is_success());

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

    let r = server
        .http
        .delete(server.api(&format!("/environments/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert!(r.status().is_success());
    Ok(())
}
