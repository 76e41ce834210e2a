#![allow(clippy::unwrap_used)]
//! End to end, issue 6: a `git push` runs builds on a **separate `cove-agent`
//! in its own container** on an internal network that reaches only the
//! server and the endpoints (STS from moto, the CodeArtifact double). Each
//! job runs on its own private network whose only way out is the agent's
//! endpoint gateway.
//!
//! - npm and pip install a package that exists only in the double, in
//!   token-free mode (default) and compatible mode (a workflow environment),
//!   from CodeCatalyst `Packages.NpmConfiguration` and from a buildspec that
//!   runs `aws codeartifact login`;
//! - from inside a build: the host's addresses, 169.254.169.254 and a
//!   server that is not allow-listed are unreachable (the target counts
//!   connections: zero), and the gateway logs the denied destination;
//! - STS denying the role fails the job with a reason naming the role;
//! - a token the double expired is refreshed, not reused;
//! - no token or secret in stored logs, artifacts, env dumps, errors, the
//!   server's data directory or the agent's log; token-free builds see none.

mod common;

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{commit_file, git_ok, TestServer};
use cove_api::{JobState, Run, RunState};
use harness::{Double, Moto};

const ROLE: &str = "arn:aws:iam::123456789012:role/cove-build";
const DENIED_ROLE: &str = "arn:aws:iam::123456789012:role/cove-denied";
const OWNER: &str = "123456789012";
/// The agent's base credentials ("standard chain": environment).
const BASE_KEY: &str = "AKIAE2EBASEKEY000001";
const BASE_SECRET: &str = "e2eBaseSecretKey/NeverInLogs0123456789abc";

/// The host's address on a Docker network, as the agent finds it (the engine
/// may report no IPAM gateway, as Debian's 20.10 does for the default bridge).
async fn host_address(network: &str) -> String {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let (addr, _) = cove_agent::private_net::bridge_host_address(&docker, network)
        .await
        .unwrap();
    assert!(
        !addr.is_unspecified(),
        "no host address on network {network}"
    );
    addr.to_string()
}

fn docker(args: &[&str]) -> std::process::Output {
    cove_tests::docker(args).output().unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host side of the agent's network: an internal network whose bridge
/// may reach only the listed host ports (INPUT ACCEPT for each, then DROP).
struct AgentNet {
    name: String,
    bridge: String,
    gateway: String,
    rules: Vec<Vec<String>>,
}

impl AgentNet {
    async fn create() -> AgentNet {
        let name = cove_tests::unique_name("cove-e2e-agentnet");
        let id = docker_ok(&[
            "network",
            "create",
            "--internal",
            "--label",
            "cove.test=private-subnet-e2e",
            &name,
        ]);
        let gateway = host_address(&name).await;
        AgentNet {
            name,
            bridge: format!("br-{}", &id[..12]),
            gateway,
            rules: Vec::new(),
        }
    }

    fn iptables(args: &[String]) {
        let out = Command::new("iptables").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Only these host ports; everything else from the bridge is dropped.
    fn only(&mut self, ports: &[u16]) {
        let mut specs = vec![vec![
            "-i".to_string(),
            self.bridge.clone(),
            "-j".into(),
            "DROP".into(),
        ]];
        for p in ports {
            specs.push(
                [
                    "-i",
                    &self.bridge,
                    "-d",
                    &self.gateway,
                    "-p",
                    "tcp",
                    "--dport",
                    &p.to_string(),
                    "-j",
                    "ACCEPT",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        for spec in specs {
            let mut args = vec!["-w".to_string(), "-I".into(), "INPUT".into()];
            args.extend(spec.iter().cloned());
            Self::iptables(&args);
            self.rules.push(spec);
        }
    }
}

impl Drop for AgentNet {
    fn drop(&mut self) {
        for spec in self.rules.iter().rev() {
            let mut args = vec!["-w".to_string(), "-D".into(), "INPUT".into()];
            args.extend(spec.iter().cloned());
            let _ = Command::new("iptables").args(&args).output();
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// A TCP server that counts connections: a target the builds must not reach.
struct Target {
    addr: String,
    hits: Arc<AtomicUsize>,
}

impl Target {
    fn start(bind: &str) -> Target {
        let listener = TcpListener::bind(bind).unwrap();
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

/// 169.254.169.254 on the host's loopback for the test (the private_net
/// tests do the same), with a server behind it the host itself can reach.
struct Metadata {
    added: bool,
    target: Target,
}

impl Metadata {
    fn start() -> Metadata {
        let added = Command::new("ip")
            .args(["addr", "add", "169.254.169.254/32", "dev", "lo"])
            .status()
            .unwrap()
            .success();
        let target = Target::start("169.254.169.254:0");
        Metadata { added, target }
    }
}

impl Drop for Metadata {
    fn drop(&mut self) {
        if self.added {
            let _ = Command::new("ip")
                .args(["addr", "del", "169.254.169.254/32", "dev", "lo"])
                .status();
        }
    }
}

/// The agent's container, removed (with what it left) on drop.
struct AgentContainer {
    name: String,
}

impl AgentContainer {
    fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for AgentContainer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        // Job containers and networks of an interrupted test.
        let ids = docker(&["ps", "-aq", "--filter", "label=cove.role=job"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

fn docker_socket() -> String {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    host.strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock")
        .to_string()
}

const PACKAGE_JSON: &str = r#"{"name":"app","version":"1.0.0","private":true,"dependencies":{"@acme/hello":"1.0.0"}}
"#;
const INDEX_JS: &str = "console.log('node says: ' + require('@acme/hello'));\n";
const APP_PY: &str = "import acme_hello\nprint('python says: ' + acme_hello.GREETING)\n";

/// Dumps what a build can see into out/ (an artifact the test searches).
const DUMP: &str = "mkdir -p out && env | sort > out/env.txt && for f in ~/.npmrc ~/.config/pip/pip.conf ~/.pypirc package-lock.json; do [ -f \"$f\" ] && cp \"$f\" out/ || true; done";

fn workflow(probes: &str) -> String {
    format!(
        r#"Name: packages
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  NpmTokenFree:
    Identifier: aws/build@v1
    Inputs:
      Sources: [WorkflowSource]
    Packages:
      NpmConfiguration:
        PackageRegistries:
          - PackagesRepository: npm-store
    Outputs:
      Artifacts:
        - Name: npmtf
          Files: [out/**]
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: npm install --no-audit --no-fund
        - Run: node index.js
        - Run: {DUMP}
  PipTokenFree:
    Identifier: aws/build@v1
    Inputs:
      Sources: [WorkflowSource]
    Outputs:
      Artifacts:
        - Name: piptf
          Files: [out/**]
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: pip install -q --no-cache-dir --target deps acme-hello
        - Run: PYTHONPATH=deps python3 app.py
        - Run: {DUMP}
  NpmCompatible:
    Identifier: aws/build@v1
    Environment:
      Name: compat
    Inputs:
      Sources: [WorkflowSource]
    Packages:
      NpmConfiguration:
        PackageRegistries:
          - PackagesRepository: npm-store
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: npm install --no-audit --no-fund
        - Run: node index.js
        - Run: echo "token in the build is $CODEARTIFACT_AUTH_TOKEN"
  PipCompatible:
    Identifier: aws/build@v1
    Environment:
      Name: compat
    Inputs:
      Sources: [WorkflowSource]
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: pip install -q --no-cache-dir --target deps acme-hello
        - Run: PYTHONPATH=deps python3 app.py
  LeakyArtifact:
    Identifier: aws/build@v1
    Environment:
      Name: compat
    Outputs:
      Artifacts:
        - Name: leaky
          Files: [out/**]
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: mkdir -p out && cp ~/.npmrc out/npmrc
  Probes:
    Identifier: aws/build@v1
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: {probes}
  Denied:
    Identifier: aws/build@v1
    Environment:
      Name: denied
    Packages:
      NpmConfiguration:
        PackageRegistries:
          - PackagesRepository: npm-store
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/busybox:latest
      Steps:
        - Run: echo this never runs
"#
    )
}

/// Manual only (no Triggers): started after the double expired its tokens.
const REFRESH: &str = r#"Name: refresh
SchemaVersion: "1.0"
Actions:
  NpmAgain:
    Identifier: aws/build@v1
    Inputs:
      Sources: [WorkflowSource]
    Configuration:
      Container:
        Registry: CODECATALYST
        Image: cove/universal:latest
      Steps:
        - Run: npm install --no-audit --no-fund --cache /tmp/empty-cache
        - Run: node index.js
"#;

const BUILDSPEC: &str = r#"version: 0.2
phases:
  install:
    commands:
      - aws codeartifact login --tool npm --domain acme --domain-owner 123456789012 --repository npm-store
  build:
    commands:
      - npm install --no-audit --no-fund
      - node index.js
      - echo "session secret is $AWS_SECRET_ACCESS_KEY"
"#;

/// `git init` in `dir` with the server's repository `admin/<name>` as origin.
async fn init_repo(server: &TestServer, dir: &Path, name: &str) -> Result<()> {
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url(&format!("admin/{name}"), Some(&server.admin_token));
    git_ok(dir, &["remote", "add", "origin", &url]).await?;
    Ok(())
}

async fn api_json<T: serde::de::DeserializeOwned>(server: &TestServer, path: &str) -> Result<T> {
    Ok(serde_json::from_slice(&api_bytes(server, path).await?)?)
}

async fn api_bytes(server: &TestServer, path: &str) -> Result<Vec<u8>> {
    Ok(server
        .http
        .get(server.api(path))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?
        .to_vec())
}

async fn put_packages(server: &TestServer, repo: &str, body: serde_json::Value) -> Result<()> {
    let resp = server
        .http
        .put(server.api(&format!("/repos/admin/{repo}/packages")))
        .bearer_auth(&server.admin_token)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("PUT packages: {} {}", resp.status(), resp.text().await?);
    }
    Ok(())
}

async fn wait_run(server: &TestServer, id: i64, limit: Duration) -> Result<Run> {
    let start = Instant::now();
    loop {
        let run: Run = api_json(server, &format!("/runs/{id}")).await?;
        if run.state.is_terminal() {
            return Ok(run);
        }
        if start.elapsed() > limit {
            bail!("run {id} did not end in {limit:?}: {run:#?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn runs_of(server: &TestServer, repo: &str) -> Result<Vec<Run>> {
    api_json(server, &format!("/repos/admin/{repo}/runs")).await
}

fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, data));
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_agent_builds_with_codeartifact_packages_in_a_private_subnet() -> Result<()> {
    cove_tests::require_docker();
    cove_tests::require_image("cove/universal:latest");
    cove_tests::require_image("cove/agent:latest");
    let agent_bin = cove_tests::cargo_bin("cove-agent", "cove-agent")?;

    let mut net = AgentNet::create().await;
    let g = net.gateway.clone();
    let moto = Moto::start_on(&g);
    let double = Double::start_on(&format!("{g}:0"), &["--deny-role", DENIED_ROLE]);
    // The administrator's endpoint profiles and allowed roles (issue 14).
    let policy = format!(
        "role_arn_patterns = [\"arn:aws:iam::{OWNER}:role/cove-*\"]\n\
         [endpoints.moto]\nsts = \"{}\"\ncodeartifact = \"{}\"\n\
         [endpoints.double]\nsts = \"{}/sts/\"\ncodeartifact = \"{}\"\n",
        moto.url(),
        double.url(),
        double.url(),
        double.url()
    );
    let server = TestServer::start_on(&g, |c| {
        c.runs.embedded_slots = 0;
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(20);
        c.runs.packages = toml::from_str(&policy).unwrap();
    })
    .await?;
    let server_port: u16 = server.url.rsplit(':').next().unwrap().parse()?;
    let outsider = Target::start(&format!("{g}:0"));
    let metadata = Metadata::start();
    // The host reaches both targets (so "unreachable from the build" means something).
    assert!(std::net::TcpStream::connect(&outsider.addr).is_ok());
    assert!(std::net::TcpStream::connect(&metadata.target.addr).is_ok());
    // (wait until the accept threads counted those, then start from zero)
    let t0 = Instant::now();
    while (outsider.hits.load(Ordering::SeqCst) < 1
        || metadata.target.hits.load(Ordering::SeqCst) < 1)
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    outsider.hits.store(0, Ordering::SeqCst);
    metadata.target.hits.store(0, Ordering::SeqCst);
    net.only(&[server_port, double.port, moto.port]);

    // Repository, package configuration: default token-free, `compat`
    // compatible, `denied` with a role STS refuses.
    server.create_repo(&server.admin_token, "app").await?;
    let repos = |mode: &str, role: &str, endpoints: &str| {
        serde_json::json!({
            "role_arn": role, "region": "us-east-1", "domain": "acme", "domain_owner": OWNER,
            "repositories": [{"name": "npm-store", "format": "npm"}, {"name": "pypi-store", "format": "pypi"}],
            "mode": mode, "endpoints": endpoints,
        })
    };
    server.create_repo(&server.admin_token, "bs").await?;
    for repo in ["app", "bs"] {
        put_packages(
            &server,
            repo,
            serde_json::json!({"config": repos("token-free", ROLE, "moto")}),
        )
        .await?;
    }
    put_packages(
        &server,
        "app",
        serde_json::json!({"environment": "compat", "config": repos("compatible", ROLE, "moto")}),
    )
    .await?;
    put_packages(
        &server,
        "app",
        serde_json::json!({"environment": "denied", "config": repos("token-free", DENIED_ROLE, "double")}),
    )
    .await?;

    // The agent: registration token → container on the agent network.
    let reg: serde_json::Value = server
        .http
        .post(server.api("/agents/registration-tokens"))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let reg_token = reg["token"]
        .as_str()
        .context("registration token")?
        .to_string();
    let conf = tempfile::tempdir()?;
    let state_dir = tempfile::tempdir()?;
    std::fs::write(
        conf.path().join("agent.yaml"),
        format!(
            "server: http://{g}:{server_port}\nname: e2e-agent\nslots: 2\nstate_dir: /state\nsandbox:\n  egress_allow: [\"{g}:{server_port}\"]\n"
        ),
    )?;
    let agent = AgentContainer {
        name: cove_tests::unique_name("cove-e2e-agent"),
    };
    let socket = docker_socket();
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &agent.name,
        "--network",
        &net.name,
        "--label",
        "cove.test=private-subnet-e2e",
        "-v",
        &format!("{socket}:/var/run/docker.sock"),
        "-v",
        &format!("{}:/usr/local/bin/cove-agent:ro", agent_bin.display()),
        "-v",
        &format!("{}:/etc/cove:ro", conf.path().display()),
        "-v",
        &format!("{}:/state", state_dir.path().display()),
        "-e",
        "DOCKER_HOST=unix:///var/run/docker.sock",
        "-e",
        &format!("COVE_AGENT_CONTAINER={}", agent.name),
        "-e",
        &format!("COVE_REGISTRATION_TOKEN={reg_token}"),
        "-e",
        &format!("AWS_ACCESS_KEY_ID={BASE_KEY}"),
        "-e",
        &format!("AWS_SECRET_ACCESS_KEY={BASE_SECRET}"),
        "-e",
        "AWS_EC2_METADATA_DISABLED=true",
        "-e",
        "RUST_LOG=info",
        "cove/agent:latest",
        "cove-agent",
        "--config",
        "/etc/cove/agent.yaml",
    ]);

    // The push: a Node project and a Python app with the workflows; a
    // buildspec repository beside it (its buildspec runs when it has no workflows).
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    init_repo(&server, d, "app").await?;
    let docker0 = host_address("bridge").await;
    // One attempt each, 2 s; the job fails if any target answers.
    let probes = format!(
        "for t in http://{outsider}/ http://{meta}/ http://169.254.169.254/ http://{docker0}:{server_port}/ http://{g}:{server_port}/api/v1/health http://$(ip route | awk '/default/ {{print $3}}'):{server_port}/; do if curl -s -o /dev/null --noproxy '*' -m 2 \"$t\"; then echo \"REACHED $t\"; exit 1; else echo \"blocked $t\"; fi; done; if curl -sf -o /dev/null -m 2 http://{outsider}/; then echo 'REACHED via proxy'; exit 1; else echo 'proxy refused {outsider}'; fi",
        outsider = outsider.addr,
        meta = metadata.target.addr,
    );
    for (file, content) in [
        ("package.json", PACKAGE_JSON.to_string()),
        ("index.js", INDEX_JS.to_string()),
        ("app.py", APP_PY.to_string()),
        (".codecatalyst/workflows/packages.yaml", workflow(&probes)),
        (".codecatalyst/workflows/refresh.yaml", REFRESH.to_string()),
    ] {
        if let Some(parent) = Path::new(file).parent() {
            std::fs::create_dir_all(d.join(parent))?;
        }
        commit_file(d, file, content.as_bytes(), file).await?;
    }
    git_ok(d, &["push", "-q", "origin", "main"]).await?;
    let bs_dir = tempfile::tempdir()?;
    let b = bs_dir.path();
    init_repo(&server, b, "bs").await?;
    for (file, content) in [
        ("package.json", PACKAGE_JSON),
        ("index.js", INDEX_JS),
        ("buildspec.yml", BUILDSPEC),
    ] {
        commit_file(b, file, content.as_bytes(), file).await?;
    }
    git_ok(b, &["push", "-q", "origin", "main"]).await?;

    // Both runs (workflow + buildspec) end.
    let started = Instant::now();
    let (wf, bs) = loop {
        let runs = runs_of(&server, "app").await?;
        let bs_runs = runs_of(&server, "bs").await?;
        if let (Some(wf), Some(bs)) = (runs.first(), bs_runs.first()) {
            if wf.state.is_terminal() && bs.state.is_terminal() {
                break (wf.clone(), bs.clone());
            }
        }
        if started.elapsed() > Duration::from_secs(400) {
            bail!(
                "runs did not end: {runs:#?} {bs_runs:#?}\nagent log:\n{}",
                agent.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (wf, bs) = (&wf, &bs);
    let agent_log = agent.logs();
    let mut logs: Vec<(String, String)> = Vec::new();
    for run in [wf, bs] {
        for job in &run.jobs {
            let text = String::from_utf8(
                api_bytes(
                    &server,
                    &format!("/runs/{}/jobs/{}/logs", run.id, job.action),
                )
                .await?,
            )?;
            logs.push((job.action.clone(), text));
        }
    }
    let log = |action: &str| {
        logs.iter()
            .find(|(a, _)| a == action)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let state = |run: &Run, action: &str| {
        run.jobs
            .iter()
            .find(|j| j.action == action)
            .map(|j| (j.state, j.error.clone()))
            .unwrap()
    };
    for action in [
        "NpmTokenFree",
        "PipTokenFree",
        "NpmCompatible",
        "PipCompatible",
        "Probes",
    ] {
        assert_eq!(
            state(wf, action).0,
            JobState::Succeeded,
            "{action}: {:?}\n{}\nagent log:\n{agent_log}",
            state(wf, action).1,
            log(action)
        );
    }
    for action in ["NpmTokenFree", "NpmCompatible"] {
        assert!(
            log(action).contains("node says: hello from @acme/hello"),
            "{}",
            log(action)
        );
    }
    for action in ["PipTokenFree", "PipCompatible"] {
        assert!(
            log(action).contains("python says: hello from acme-hello"),
            "{}",
            log(action)
        );
    }
    // The buildspec's `aws codeartifact login` (compatible mode, the CLI
    // pointed at the CodeArtifact endpoint) then npm.
    let bs_job = &bs.jobs[0];
    assert_eq!(
        bs_job.state,
        JobState::Succeeded,
        "{:?}\n{}\nagent log:\n{agent_log}",
        bs_job.error,
        log(&bs_job.action)
    );
    let bs_log = log(&bs_job.action);
    assert!(
        bs_log.contains("node says: hello from @acme/hello"),
        "{bs_log}"
    );
    assert!(bs_log.contains("session secret is ***"), "{bs_log}");

    // An artifact holding the token is refused, not stored.
    let (leaky_state, leaky_error) = state(wf, "LeakyArtifact");
    assert_eq!(leaky_state, JobState::Failed);
    assert!(leaky_error
        .unwrap_or_default()
        .contains("artifact `leaky` contains a secret value and was not uploaded"));
    // STS denied the role: the job failed, the reason names the role.
    let (denied_state, denied_error) = state(wf, "Denied");
    assert_eq!(denied_state, JobState::Failed);
    let denied_error = denied_error.unwrap_or_default();
    assert!(
        denied_error.contains(DENIED_ROLE) && denied_error.contains("AssumeRole"),
        "{denied_error}"
    );
    assert_eq!(wf.state, RunState::Failed);

    // Nothing reachable from inside a build; the targets saw nothing.
    let probes_log = log("Probes");
    assert_eq!(
        probes_log.matches("blocked http").count(),
        6,
        "{probes_log}"
    );
    assert!(probes_log.contains("proxy refused"), "{probes_log}");
    assert_eq!(outsider.hits.load(Ordering::SeqCst), 0);
    assert_eq!(metadata.target.hits.load(Ordering::SeqCst), 0);
    assert!(
        agent_log.contains("gateway denied egress") && agent_log.contains(&outsider.addr),
        "the denied destination is logged:\n{agent_log}"
    );

    // Token-free builds saw gateway URLs only.
    let tf_npm = untar(
        &api_bytes(
            &server,
            &format!("/runs/{}/jobs/NpmTokenFree/artifacts/npmtf", wf.id),
        )
        .await?,
    );
    let npmrc = tf_npm
        .iter()
        .find(|(p, _)| p.ends_with(".npmrc"))
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .unwrap();
    assert!(
        npmrc.contains("/npm/npm-store/") && !npmrc.contains("_authToken"),
        "{npmrc}"
    );
    let lock = tf_npm
        .iter()
        .find(|(p, _)| p.ends_with("package-lock.json"))
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .unwrap();
    assert!(
        !lock.contains(&double.url()),
        "the lockfile names the gateway, not the endpoint"
    );

    // The expired token is refreshed, not reused.
    let minted = double.count("authorization_token");
    double.expire_tokens();
    let resp = server
        .http
        .post(server.api("/repos/admin/app/runs"))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({"workflow": "refresh"}))
        .send()
        .await?
        .error_for_status()?;
    let refresh: Run = resp.json().await?;
    let refresh = wait_run(&server, refresh.id, Duration::from_secs(180)).await?;
    let again_log = String::from_utf8(
        api_bytes(&server, &format!("/runs/{}/jobs/NpmAgain/logs", refresh.id)).await?,
    )?;
    assert_eq!(refresh.state, RunState::Succeeded, "{again_log}");
    assert!(again_log.contains("hello from @acme/hello"));
    assert!(
        double.count("authorization_token") > minted,
        "a new token was minted after the double expired the old ones"
    );

    // No token or secret anywhere: logs, artifacts, errors, the data
    // directory (database, artifacts, logs), the agent's log and state.
    let mut secrets = double.tokens();
    assert!(secrets.len() >= 2, "tokens issued: {}", secrets.len());
    secrets.push(BASE_SECRET.to_string());
    secrets.push(reg_token.clone());
    if let Ok(t) = std::fs::read_to_string(state_dir.path().join("agent-token")) {
        secrets.push(t.trim().to_string());
    }
    let mut haystacks: Vec<(String, Vec<u8>)> = logs
        .iter()
        .map(|(a, t)| (format!("log of {a}"), t.clone().into_bytes()))
        .collect();
    haystacks.push(("agent log".into(), agent_log.clone().into_bytes()));
    for run in [wf, bs, &refresh] {
        haystacks.push((format!("run {}", run.id), serde_json::to_vec(run)?));
        for job in &run.jobs {
            for a in &job.artifacts {
                let tar = api_bytes(
                    &server,
                    &format!("/runs/{}/jobs/{}/artifacts/{a}", run.id, job.action),
                )
                .await?;
                for (path, data) in untar(&tar) {
                    haystacks.push((format!("artifact {a}/{path}"), data));
                }
            }
        }
    }
    let mut files = Vec::new();
    files_under(&server.data_dir, &mut files);
    assert!(!files.is_empty());
    for f in files {
        if let Ok(data) = std::fs::read(&f) {
            haystacks.push((f.display().to_string(), data));
        }
    }
    let token_free_dump = tf_npm
        .iter()
        .chain(&untar(
            &api_bytes(
                &server,
                &format!("/runs/{}/jobs/PipTokenFree/artifacts/piptf", wf.id),
            )
            .await?,
        ))
        .map(|(p, d)| (p.clone(), d.clone()))
        .collect::<Vec<_>>();
    assert!(token_free_dump.iter().any(|(p, _)| p.ends_with("env.txt")));
    for secret in &secrets {
        for (what, hay) in &haystacks {
            assert!(!contains(hay, secret), "a secret is in {what}");
        }
    }
    // The compatible build did have the token (and the log masked it).
    assert!(log("NpmCompatible").contains("token in the build is ***"));

    drop(agent);
    server.stop().await;
    Ok(())
}
