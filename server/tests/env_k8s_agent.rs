#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Environments on Kubernetes through a standalone agent (issue 20 §2; docs/kubernetes.md
//! "Environments through an agent"), on the real one-node cluster of
//! `scripts/k8s-cluster.sh` (KUBECONFIG from its output; cove/busybox and cove/echo-server
//! imported): the server in process (no embedded agent), a `cove-agent --environments`
//! process with `backend: kubernetes` in its agent.yaml, `--label pool=k8s`, a kubeconfig
//! holding ONLY the ServiceAccount token of deploy/kubernetes/rbac.yaml, and no Docker
//! engine at all (DOCKER_HOST points nowhere, so nothing can run on Docker).
//!
//! `POST …/environments {labels: {pool: k8s}}` (what `cove env create --pool k8s` sends) of a
//! devfile with an app and a sidecar listening on localhost:8080 → running on that agent, the
//! DTO says agent and backend; one Pod with both containers; exec in the app reaches the
//! sidecar on localhost; a terminal and a port tunnel (pods/portforward) work through the link; a file in /projects survives
//! stop (no Pod, claims kept) and start; delete removes the Pod, Service, claims and plan
//! Secret.
//!
//! Ignored in the workspace run (no cluster then): `scripts/k8s-test.sh` runs it with
//! `--ignored`. Without a reachable cluster it fails in CI (`CI=true`), prints SKIP elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::envs::{delete_and_wait, env, exec, wait_state};
use common::{repo_with_devfile, TestServer};
use cove_api::{EnvState, Environment};
use serde_json::json;

const NAMESPACE: &str = "cove";

const DEVFILE: &str = "schemaVersion: 2.2.0
metadata:
  name: k8s-link
components:
  - name: app
    container:
      image: cove/busybox:latest
      mountSources: true
      memoryLimit: 256Mi
  - name: web
    container:
      image: cove/echo-server:latest
      mountSources: false
      memoryLimit: 64Mi
      endpoints:
        - name: web
          targetPort: 8080
          exposure: internal
";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// kubectl from COVE_KUBECTL, else the cluster script's cache, else PATH.
fn kubectl_bin() -> PathBuf {
    if let Ok(p) = std::env::var("COVE_KUBECTL") {
        return p.into();
    }
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/cove/k8s/v1.34.4/bin/kubectl"))
        .ok();
    match cached {
        Some(p) if p.exists() => p,
        _ => "kubectl".into(),
    }
}

/// kubectl as the cluster's administrator (KUBECONFIG).
fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new(kubectl_bin())
        .args(args)
        .output()
        .expect("run kubectl")
}

fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a cluster answers; in CI its absence is a failure.
fn cluster_ready() -> bool {
    let why = if std::env::var_os("KUBECONFIG").is_none() {
        "KUBECONFIG is not set (run `scripts/k8s-cluster.sh start`)".to_string()
    } else {
        match Command::new(kubectl_bin())
            .args(["get", "--raw", "/readyz"])
            .output()
        {
            Ok(o) if o.status.success() => return true,
            Ok(o) => format!(
                "the API server does not answer: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("kubectl cannot run: {e}"),
        }
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no Kubernetes cluster: {why}"
    );
    eprintln!("SKIP: no Kubernetes cluster: {why}");
    false
}

/// Applies deploy/kubernetes/rbac.yaml and writes a kubeconfig for the agent with the
/// cluster's address and CA and only the `cove-agent` ServiceAccount's token.
fn agent_kubeconfig(dir: &Path) -> Result<PathBuf> {
    let rbac = repo_root().join("deploy/kubernetes/rbac.yaml");
    kubectl_ok(&["apply", "-f", rbac.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl(&["-n", NAMESPACE, "get", "serviceaccount", "default"])
        .status
        .success()
    {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount in {NAMESPACE}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let token = kubectl_ok(&[
        "-n",
        NAMESPACE,
        "create",
        "token",
        "cove-agent",
        "--duration",
        "1h",
    ]);
    let admin: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "--flatten",
        "-o",
        "json",
    ]))?;
    let cluster = &admin["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().context("cluster server")?;
    let ca = cluster["certificate-authority-data"]
        .as_str()
        .context("cluster CA data")?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cove", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "cove-agent", "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "cove", "user": "cove-agent", "namespace": NAMESPACE}}],
        "current-context": "agent",
    });
    let path = dir.join("agent.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    Ok(path)
}

async fn action(server: &TestServer, id: &str, what: &str) -> Result<()> {
    let r = server
        .http
        .post(server.api(&format!("/environments/{id}/{what}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("{what}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// Names of the objects of kind `kind` labelled with environment `id`.
fn objects(kind: &str, id: &str) -> String {
    kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        kind,
        "-l",
        &format!("app.kubernetes.io/managed-by=cove,cove.dev/env={id}"),
        "-o",
        "name",
    ])
}

/// `cove-agent --environments` with `backend: kubernetes` in its agent.yaml, `--label
/// pool=k8s`, the ServiceAccount's kubeconfig and no Docker engine.
async fn spawn_agent(
    server: &TestServer,
    dir: &Path,
    kubeconfig: &Path,
) -> Result<tokio::process::Child> {
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {}\nname: k8s-agent\nbackend: kubernetes\nkubernetes:\n  namespace: {NAMESPACE}\n  \
             storage_class: cove-hostpath\n  image_pull_policy: Never\n  volume_size: 64Mi\n",
            server.url
        ),
    )?;
    let registration = dir.join("registration");
    std::fs::write(&registration, server.registration_token(None).await?)?;
    let agent_bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let agent = tokio::process::Command::new(agent_bin)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--registration-token-file")
        .arg(&registration)
        .args(["--label", "pool=k8s"])
        .env_remove("COVE_REGISTRATION_TOKEN")
        .env_remove("COVE_AGENT_LABELS")
        .env("KUBECONFIG", kubeconfig)
        // no Docker engine: everything of the environment must go through Kubernetes
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;

    Ok(agent)
}

/// `POST …/environments {labels: {pool: k8s}}` of `admin/<repo>` (what `cove env create
/// --pool k8s` sends): 409 until the agent's link is up, then 201.
async fn create_on_k8s(server: &TestServer, repo: &str) -> Result<Environment> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .http
            .post(server.api(&format!("/repos/admin/{repo}/environments")))
            .bearer_auth(&server.admin_token)
            .json(&json!({ "labels": { "pool": "k8s" }, "idle_timeout_secs": 0 }))
            .send()
            .await?;
        if r.status() == 201 {
            return Ok(r.json().await?);
        }
        let (status, text) = (r.status(), r.text().await?);
        assert_eq!(status, 409, "{text}");
        if Instant::now() > deadline {
            bail!("k8s-agent never linked: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes the environment: its row goes once the agent removed everything, and nothing
/// labelled with it is left in the namespace.
async fn delete_and_check(server: &TestServer, id: &str) -> Result<()> {
    delete_and_wait(server, id, Duration::from_secs(180)).await?;
    for kind in ["pods", "services", "persistentvolumeclaims", "secrets"] {
        assert_eq!(objects(kind, id), "", "{kind} of {id} left after delete");
    }
    Ok(())
}

/// A terminal (WebSocket to the server → a stream over the link → `pods/exec` with a TTY):
/// what is typed comes back through the shell.
async fn terminal_echo(server: &TestServer, id: &str) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/environments/{id}/terminal",
        server.api("").replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.admin_token).parse()?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    // the shell computes it, so an echo of the typed line alone does not pass
    ws.send(Message::binary(b"echo term-$((40+2)) $TERM\n".to_vec()))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("term-42 xterm-256color") {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            ws.next(),
        )
        .await;
        match next {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => bail!(
                "terminal ended early ({other:?}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// A port tunnel (`cove env port-forward`): the server's relay over the link, served by the
/// agent through `pods/portforward`, answers an HTTP request with a page containing `expect`.
async fn tunnel_get(server: &TestServer, id: &str, port: u16, expect: &str) -> Result<String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/environments/{id}/ports/{port}/tunnel",
        server.api("").replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", server.admin_token).parse()?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::binary(b"GET / HTTP/1.0\r\n\r\n".to_vec()))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(expect) {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            ws.next(),
        )
        .await;
        match next {
            Ok(Some(Ok(Message::Binary(b)))) => got.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => bail!(
                "tunnel ended early ({other:?}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let _ = ws.close(None).await;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster of scripts/k8s-cluster.sh (scripts/k8s-test.sh runs it)"]
async fn an_environment_runs_on_kubernetes_through_a_standalone_agent() -> Result<()> {
    if !cluster_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let kubeconfig = agent_kubeconfig(tmp.path())?;
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    repo_with_devfile(&server.http, &server.url, "k8s", DEVFILE).await;

    let _agent = spawn_agent(&server, tmp.path(), &kubeconfig).await?;

    // the agent reports backend=kubernetes
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let agents: Vec<cove_api::AgentInfo> = server
            .http
            .get(server.api("/agents"))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .json()
            .await?;
        if let Some(a) = agents.iter().find(|a| a.name == "k8s-agent") {
            assert_eq!(a.backend, "kubernetes", "{a:?}");
            assert_eq!(
                a.labels.get("pool").map(String::as_str),
                Some("k8s"),
                "{a:?}"
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("k8s-agent never registered: {agents:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // `cove env create --pool k8s`: 409 until the agent's link is up, then placed there
    let created = create_on_k8s(&server, "k8s").await?;
    let id = created.id.clone();
    assert_eq!(created.agent.as_deref(), Some("k8s-agent"));
    let running = wait_state(&server, &id, EnvState::Running, Duration::from_secs(240)).await?;
    assert_eq!(running.agent.as_deref(), Some("k8s-agent"));
    assert_eq!(running.backend.as_deref(), Some("kubernetes"));
    assert!(
        running
            .placement
            .as_deref()
            .unwrap_or_default()
            .contains("pool=k8s"),
        "{:?}",
        running.placement
    );

    // one Pod with both components as its containers
    let containers = kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "pod",
        &format!("cove-env-{id}"),
        "-o",
        "jsonpath={.spec.containers[*].name}",
    ]);
    assert_eq!(containers, "app web");

    // exec in the app: the sidecar on localhost, the sources cloned into /projects
    let out = exec(&server, &id, "wget -q -O - http://localhost:8080/").await?;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("echo-server"), "{out:?}");
    let out = exec(&server, &id, "find /projects -name devfile.yaml").await?;
    assert!(out.stdout.contains("devfile.yaml"), "{out:?}");
    let out = exec(&server, &id, "echo kept > /projects/marker; exit 3").await?;
    assert_eq!(out.exit_code, 3, "{out:?}");
    terminal_echo(&server, &id).await?;
    let page = tunnel_get(&server, &id, 8080, "echo-server").await?;
    assert!(page.starts_with("HTTP/1."), "{page}");

    // stop: no Pod, the claim of /projects stays; start: the file is back
    action(&server, &id, "stop").await?;
    wait_state(&server, &id, EnvState::Stopped, Duration::from_secs(120)).await?;
    assert_eq!(objects("pods", &id), "");
    assert!(
        objects("persistentvolumeclaims", &id).contains("projects"),
        "the /projects claim is gone after stop"
    );
    action(&server, &id, "start").await?;
    wait_state(&server, &id, EnvState::Running, Duration::from_secs(180)).await?;
    let out = exec(&server, &id, "cat /projects/marker").await?;
    assert_eq!(out.stdout.trim(), "kept", "{out:?}");
    let out = exec(&server, &id, "wget -q -O - http://localhost:8080/").await?;
    assert!(out.stdout.contains("echo-server"), "{out:?}");

    // the devfile changed in the workspace: the watcher reads it through the agent
    // (restart_required), and a restart replaces the Pod with the new limit, /projects kept
    let out = exec(
        &server,
        &id,
        "f=$(find /projects -maxdepth 2 -name devfile.yaml | head -n 1); \
         sed -i 's/memoryLimit: 256Mi/memoryLimit: 300Mi/' \"$f\" && grep -c 300Mi \"$f\"",
    )
    .await?;
    assert_eq!(out.stdout.trim(), "1", "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env(&server, &id).await?.restart_required {
        if Instant::now() > deadline {
            bail!("restart_required never set");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    action(&server, &id, "restart").await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let e = env(&server, &id).await?;
        if e.state == EnvState::Running && !e.restart_required {
            break;
        }
        if e.state == EnvState::Failed || Instant::now() > deadline {
            bail!("restart: {:?} {:?}", e.state, e.reason);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let limit = kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "pod",
        &format!("cove-env-{id}"),
        "-o",
        "jsonpath={.spec.containers[0].resources.limits.memory}",
    ]);
    assert_eq!(limit, (300u64 << 20).to_string());
    let out = exec(&server, &id, "cat /projects/marker").await?;
    assert_eq!(out.stdout.trim(), "kept", "{out:?}");
    let r = server
        .http
        .get(server.api(&format!("/environments/{id}/logs?component=web")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "logs: {}", r.text().await?);

    // delete: the row goes once the agent removed everything labelled with it
    delete_and_check(&server, &id).await?;
    Ok(())
}

/// `POST …/environments/{id}/move` with `body`: 202.
async fn move_to(server: &TestServer, id: &str, body: serde_json::Value) -> Result<()> {
    let r = server
        .http
        .post(server.api(&format!("/environments/{id}/move")))
        .bearer_auth(&server.admin_token)
        .json(&body)
        .send()
        .await?;
    if r.status() != 202 {
        bail!("move: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// `cove env move` between backends (docs/agents.md "Moving an environment"): an environment
/// on the server's embedded Docker agent, with a file owned by 1234:1234 mode 640 in
/// /projects and a file in a persistent devfile volume, moves to the Kubernetes agent (its
/// claims made from the Docker volumes' archives by a helper Pod) and runs there with both
/// files, owner and mode; nothing of it is left on the engine; then it moves back to the
/// embedded agent with a file written on the cluster, and nothing of it is left in the
/// namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster of scripts/k8s-cluster.sh (scripts/k8s-test.sh runs it)"]
async fn an_environment_moves_between_docker_and_kubernetes() -> Result<()> {
    if !cluster_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let kubeconfig = agent_kubeconfig(tmp.path())?;
    // the embedded agent on the test's Docker engine, and the Kubernetes agent
    let server = TestServer::start().await?;
    let devfile = "schemaVersion: 2.2.0
components:
  - name: app
    container:
      image: cove/busybox:latest
      mountSources: true
      memoryLimit: 128Mi
      volumeMounts:
        - name: cache
          path: /cache
  - name: cache
    volume:
      size: 64Mi
";
    repo_with_devfile(&server.http, &server.url, "mover", devfile).await;
    let _agent = spawn_agent(&server, tmp.path(), &kubeconfig).await?;
    let docker_host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let on_docker = |id: &str| {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &docker_host)
            .args(["ps", "-aq", "--filter", &format!("label=cove.env={id}")])
            .output()
            .expect("docker ps");
        let vols = Command::new("docker")
            .env("DOCKER_HOST", &docker_host)
            .args([
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=cove.env={id}"),
            ])
            .output()
            .expect("docker volume ls");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&vols.stdout).trim()
        )
    };

    let r = server
        .http
        .post(server.api("/repos/admin/mover/environments"))
        .bearer_auth(&server.admin_token)
        .json(&json!({ "idle_timeout_secs": 0 }))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let created: Environment = r.json().await?;
    let id = created.id.clone();
    assert_eq!(created.agent.as_deref(), Some("embedded"));
    wait_state(&server, &id, EnvState::Running, Duration::from_secs(120)).await?;
    let out = exec(
        &server,
        &id,
        "mkdir -p /projects/sub && echo deep > /projects/sub/f && chown 1234:1234 /projects/sub/f \
         && chmod 640 /projects/sub/f && echo vol > /cache/v && echo ok",
    )
    .await?;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");
    action(&server, &id, "stop").await?;
    wait_state(&server, &id, EnvState::Stopped, Duration::from_secs(60)).await?;

    // to the cluster (409 until the agent's link is up)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .http
            .post(server.api(&format!("/environments/{id}/move")))
            .bearer_auth(&server.admin_token)
            .json(&json!({"labels": {"pool": "k8s"}}))
            .send()
            .await?;
        if r.status() == 202 {
            break;
        }
        let (status, text) = (r.status(), r.text().await?);
        assert_eq!(status, 409, "{text}");
        if Instant::now() > deadline {
            bail!("k8s-agent never linked: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let moved = wait_state(&server, &id, EnvState::Running, Duration::from_secs(240)).await?;
    assert_eq!(moved.agent.as_deref(), Some("k8s-agent"));
    assert_eq!(moved.backend.as_deref(), Some("kubernetes"));
    let out = exec(
        &server,
        &id,
        "stat -c '%u:%g %a' /projects/sub/f && cat /projects/sub/f /cache/v",
    )
    .await?;
    assert_eq!(out.stdout, "1234:1234 640\ndeep\nvol\n", "{out:?}");
    assert!(
        objects("persistentvolumeclaims", &id).contains("vol-cache"),
        "{}",
        objects("persistentvolumeclaims", &id)
    );
    // the engine's copy goes once it runs on the cluster
    let deadline = Instant::now() + Duration::from_secs(60);
    while !on_docker(&id).is_empty() {
        if Instant::now() > deadline {
            bail!("left on the Docker engine: {}", on_docker(&id));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        objects("pods", &id),
        format!("pod/cove-env-{id}"),
        "no helper left"
    );

    // and back, with what was written on the cluster
    let out = exec(&server, &id, "echo k8s > /projects/from-k8s && echo ok").await?;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");
    action(&server, &id, "stop").await?;
    wait_state(&server, &id, EnvState::Stopped, Duration::from_secs(120)).await?;
    move_to(&server, &id, json!({"agent": "embedded"})).await?;
    let back = wait_state(&server, &id, EnvState::Running, Duration::from_secs(240)).await?;
    assert_eq!(back.agent.as_deref(), Some("embedded"));
    let out = exec(
        &server,
        &id,
        "stat -c '%u:%g %a' /projects/sub/f && cat /projects/from-k8s /cache/v",
    )
    .await?;
    assert_eq!(out.stdout, "1234:1234 640\nk8s\nvol\n", "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<String> = ["pods", "persistentvolumeclaims", "secrets", "services"]
            .iter()
            .map(|k| objects(k, &id))
            .filter(|o| !o.is_empty())
            .collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("left in the namespace after the move back: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    delete_and_wait(&server, &id, Duration::from_secs(120)).await?;
    assert_eq!(on_docker(&id), "");
    Ok(())
}

const TEST_PY: &str = r#"import os, boto3

def test_items_roundtrip_on_local_dynamodb():
    assert os.environ["IS_LOCAL"] == "true"
    db = boto3.resource("dynamodb", endpoint_url="http://localhost:8000", region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")
    name = "todos-" + str(os.getpid())
    table = db.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
    table.wait_until_exists()
    table.put_item(Item={"id": "1", "title": "write tests"})
    assert table.get_item(Key={"id": "1"})["Item"]["title"] == "write tests"
"#;

/// The example devfile devfiles/examples/app-with-dynamodb.yaml (cove/universal + the
/// cove/dynamodb-local sidecar, both imported into the node) on the cluster through the agent:
/// postStart's pytest and a boto3 round trip against the sidecar on localhost pass inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster of scripts/k8s-cluster.sh with cove/universal and cove/dynamodb-local imported (scripts/k8s-test.sh runs it)"]
async fn the_app_with_dynamodb_example_runs_on_kubernetes() -> Result<()> {
    if !cluster_ready() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let kubeconfig = agent_kubeconfig(tmp.path())?;
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    common::create_repo_http(&server.http, &server.url, "todo").await;
    let work = tmp.path().join("todo");
    std::fs::create_dir_all(&work)?;
    let devfile =
        std::fs::read_to_string(repo_root().join("devfiles/examples/app-with-dynamodb.yaml"))?;
    std::fs::write(work.join("devfile.yaml"), devfile)?;
    std::fs::write(work.join("test_app.py"), TEST_PY)?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "app",
        ],
        &[
            "push",
            "-q",
            &common::admin_git_url(&server.url, "todo"),
            "main",
        ],
    ] {
        common::git_blocking(&work, args);
    }
    let _agent = spawn_agent(&server, tmp.path(), &kubeconfig).await?;

    let created = create_on_k8s(&server, "todo").await?;
    let id = created.id.clone();
    let running = wait_state(&server, &id, EnvState::Running, Duration::from_secs(300)).await?;
    assert_eq!(running.backend.as_deref(), Some("kubernetes"));
    assert_eq!(running.components, ["app", "dynamodb"]);
    // postStart ran the test (its outcome is an event of the environment)
    let events = server
        .http
        .get(server.api(&format!("/environments/{id}/events")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        events.contains("postStart command test succeeded") && events.contains("1 passed"),
        "postStart: {events}"
    );
    let out = exec(
        &server,
        &id,
        "cd /projects/todo && python3 -m pytest -q -p no:cacheprovider",
    )
    .await?;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.stdout.contains("1 passed"), "{out:?}");
    // a port tunnel to the database: the app's image (cove/universal) has no `nc`, so this
    // goes through the API server's port-forward, not a relay command in the Pod
    let out = exec(&server, &id, "command -v nc || echo no-nc").await?;
    assert_eq!(out.stdout.trim(), "no-nc", "{out:?}");
    let page = tunnel_get(&server, &id, 8000, "HTTP/1.").await?;
    assert!(page.starts_with("HTTP/1."), "{page}");
    delete_and_check(&server, &id).await?;
    Ok(())
}

/// Replaces `from` by `to` in every string of `v`.
fn rename(v: &mut serde_json::Value, from: &str, to: &str) {
    match v {
        serde_json::Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| rename(x, from, to)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| rename(x, from, to)),
        _ => {}
    }
}

/// The objects Cove made for environment `id` (Pod, Service, claims, the plan's Secret) as a
/// manifest `kubectl apply` can create again under the name `to`: what the server and the
/// API server filled in (uid, versions, status, the bound volume, the cluster IP, the node,
/// the service account token volume) removed.
fn same_objects_as(id: &str, to: &str) -> Result<serde_json::Value> {
    let mut list: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "persistentvolumeclaims,secrets,services,pods",
        "-l",
        &format!("app.kubernetes.io/managed-by=cove,cove.dev/env={id}"),
        "-o",
        "json",
    ]))?;
    let items = list["items"].as_array_mut().context("items")?;
    for item in items.iter_mut() {
        let o = item.as_object_mut().context("object")?;
        o.remove("status");
        let meta = o["metadata"].as_object_mut().context("metadata")?;
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "ownerReferences",
            "finalizers",
            "annotations",
            "generation",
        ] {
            meta.remove(k);
        }
        if let Some(spec) = o.get_mut("spec").and_then(|s| s.as_object_mut()) {
            for k in ["volumeName", "clusterIP", "clusterIPs", "nodeName"] {
                spec.remove(k);
            }
            if let Some(vols) = spec.get_mut("volumes").and_then(|v| v.as_array_mut()) {
                vols.retain(|v| {
                    !v["name"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("kube-api-access-")
                });
            }
            for list in ["containers", "initContainers"] {
                for c in spec
                    .get_mut(list)
                    .and_then(|v| v.as_array_mut())
                    .into_iter()
                    .flatten()
                {
                    if let Some(m) = c.get_mut("volumeMounts").and_then(|m| m.as_array_mut()) {
                        m.retain(|m| {
                            !m["name"]
                                .as_str()
                                .unwrap_or_default()
                                .starts_with("kube-api-access-")
                        });
                    }
                }
            }
        }
    }
    rename(&mut list, id, to);
    Ok(list)
}

/// `POST …/environments` with pool=k8s, then polled (20 ms) until running: how long, and
/// its id.
async fn cove_create_running(server: &TestServer) -> Result<(Duration, String)> {
    let t0 = Instant::now();
    let created = create_on_k8s(server, "k8s").await?;
    loop {
        let e = env(server, &created.id).await?;
        match e.state {
            EnvState::Running => break,
            EnvState::Failed => bail!("failed: {:?}", e.reason),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Ok((t0.elapsed(), created.id))
}

/// Benchmark (issue 20), not a test: `scripts/bench-k8s.sh` runs it. Create → running of the
/// same environment through Cove (`POST …/environments` with pool=k8s → the standalone
/// agent's Kubernetes backend → running) beside `kubectl apply` of the very objects Cove made
/// (claims, Secret, Service, Pod; renamed) → `kubectl wait --for=condition=Ready`, each round
/// right after Cove's environment is deleted. Target: Cove ≤ 1.3× kubectl (p50).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: scripts/bench-k8s.sh"]
async fn bench_create_on_kubernetes_vs_kubectl_apply() -> Result<()> {
    if !cluster_ready() {
        return Ok(());
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir()?;
    let kubeconfig = agent_kubeconfig(tmp.path())?;
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    repo_with_devfile(&server.http, &server.url, "k8s", DEVFILE).await;
    let _agent = spawn_agent(&server, tmp.path(), &kubeconfig).await?;

    // warm-up: the first Pod pays for the images' first start
    let (_, warm) = cove_create_running(&server).await?;
    let manifest_of = |id: &str, n: usize| -> Result<PathBuf> {
        let path = tmp.path().join(format!("k{n}.json"));
        std::fs::write(
            &path,
            serde_json::to_string(&same_objects_as(id, &format!("kb{n:02}"))?)?,
        )?;
        Ok(path)
    };
    let kubectl_once = |path: PathBuf, pod: String| async move {
        tokio::task::spawn_blocking(move || -> Result<Duration> {
            let t0 = Instant::now();
            kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
            kubectl_ok(&[
                "-n",
                NAMESPACE,
                "wait",
                "--for=condition=Ready",
                &format!("pod/{pod}"),
                "--timeout=240s",
            ]);
            let took = t0.elapsed();
            kubectl_ok(&["delete", "--wait=true", "-f", path.to_str().unwrap()]);
            Ok(took)
        })
        .await?
    };
    let pod_of = |manifest: &PathBuf| -> Result<String> {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest)?)?;
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["kind"] == "Pod")
            .and_then(|p| p["metadata"]["name"].as_str())
            .map(str::to_string)
            .context("no Pod in the manifest")
    };
    let warm_manifest = manifest_of(&warm, 0)?;
    let warm_pod = pod_of(&warm_manifest)?;
    kubectl_once(warm_manifest, warm_pod).await?;
    delete_and_check(&server, &warm).await?;

    let (mut cove, mut raw) = (Vec::new(), Vec::new());
    for n in 1..=rounds {
        // the manifest comes from this round's Cove environment, so Cove goes first and
        // kubectl applies the same objects right after Cove's are deleted
        let (took, id) = cove_create_running(&server).await?;
        cove.push(took);
        let manifest = manifest_of(&id, n)?;
        let pod = pod_of(&manifest)?;
        delete_and_check(&server, &id).await?;
        raw.push(kubectl_once(manifest, pod).await?);
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let pct = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        ms(&v[i])
    };
    let (c50, c95, r50, r95) = (
        pct(&mut cove, 0.5),
        pct(&mut cove, 0.95),
        pct(&mut raw, 0.5),
        pct(&mut raw, 0.95),
    );
    println!("k8s create → running, {rounds} rounds (after one warm-up each)");
    println!("| what | p50 ms | p95 ms | min ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `kubectl apply` of the same objects → `kubectl wait --for=condition=Ready` — the baseline | {r50:.0} | {r95:.0} | {:.0} | {:.0} |",
        ms(&raw[0]),
        ms(raw.last().unwrap())
    );
    println!(
        "| Cove: `POST …/environments` pool=k8s → running (standalone agent, Kubernetes backend) | {c50:.0} | {c95:.0} | {:.0} | {:.0} |",
        ms(&cove[0]),
        ms(cove.last().unwrap())
    );
    println!("Cove / kubectl at p50: {:.2}x (target <= 1.3x)", c50 / r50);
    Ok(())
}
