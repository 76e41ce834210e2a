#![allow(clippy::unwrap_used)]
//! Endpoint gateway end to end: moto (STS) + the CodeArtifact double on the
//! host, the broker, a per-job private network with the gateway on its
//! bridge address, and real `npm install` / `pip install` in cove/universal
//! containers on that network. Needs the engine from scripts/test-env.sh.

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, SystemTime};

use cove_agent::broker::{
    Broker, BrokerConfig, BrokerOptions, BuildInjection, Clock, JobRef, ManualClock, Mode,
    PackageFormat, RepositoryRef,
};
use cove_agent::gateway::AllowList;
use cove_agent::private_net::{GatewayAt, JobSandbox, NetOptions, SandboxSpec, LABEL_JOB};
use harness::{Double, Moto};

// ---------- log capture: the gateway's tracing events, process-wide ----------

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Buf(buf.clone());
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

// ---------- environment ----------

fn base_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCOVEGATEWAYTEST1");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "gateway-base-secret-0123456789");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cove-test-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cove-test-creds",
        );
    });
}

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Everything one job needs: services, broker and the job's sandbox
/// (private network + gateway + what the build gets).
struct Job {
    double: Double,
    _moto: Moto,
    broker: Arc<Broker>,
    clock: Arc<ManualClock>,
    cfg: BrokerConfig,
    job: JobRef,
    sandbox: Option<JobSandbox>,
    containers: Vec<String>,
}

impl Job {
    /// `allow_double`: put the double on the forward proxy's allow-list.
    async fn start(mode: Mode, allow_double: bool) -> Job {
        logs();
        base_env();
        let moto = Moto::start();
        // Not 127.0.0.1: builds get NO_PROXY=localhost,127.0.0.1, and in
        // compatible mode they must reach the double through the gateway.
        let double = Double::start_on("127.0.0.2:0", &[]);
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let options = BrokerOptions {
            max_attempts: 1,
            ..BrokerOptions::default()
        };
        let broker = Arc::new(
            Broker::from_default_chain("us-east-1", clock.clone() as Arc<dyn Clock>, options).await,
        );
        let cfg = BrokerConfig {
            role_arn: "arn:aws:iam::123456789012:role/cove-build".into(),
            region: "us-east-1".into(),
            domain: "acme".into(),
            domain_owner: "123456789012".into(),
            repositories: vec![
                RepositoryRef {
                    name: "npm-store".into(),
                    format: PackageFormat::Npm,
                },
                RepositoryRef {
                    name: "py-store".into(),
                    format: PackageFormat::Pypi,
                },
            ],
            sts_endpoint: Some(moto.url()),
            codeartifact_endpoint: Some(double.url()),
            max_session_secs: None,
        };
        let id = unique("gw");
        let job = JobRef {
            run_id: "run-1".into(),
            job_id: id.clone(),
            timeout: Duration::from_secs(1800),
        };
        let d = bollard::Docker::connect_with_local_defaults().unwrap();
        let sandbox = JobSandbox::start(
            &d,
            broker.clone(),
            SandboxSpec {
                job: job.clone(),
                codeartifact: Some(cfg.clone()),
                mode,
                allow: AllowList::parse(&if allow_double {
                    vec![double.addr()]
                } else {
                    vec![]
                })
                .unwrap(),
                home: "/root".into(),
                net: NetOptions::default(),
                gateway_at: GatewayAt::HostBridge,
                deploy: None,
            },
        )
        .await
        .unwrap();
        Job {
            double,
            _moto: moto,
            broker,
            clock,
            cfg,
            job,
            sandbox: Some(sandbox),
            containers: Vec::new(),
        }
    }

    fn sandbox(&self) -> &JobSandbox {
        self.sandbox.as_ref().unwrap()
    }

    fn gateway_url(&self) -> String {
        self.sandbox().gateway_url()
    }

    /// A build container on the job's network with the sandbox's files
    /// copied in (as the job runner will); its env is passed per exec.
    fn container(&mut self, image: &str) -> String {
        let net = self.sandbox().network_name().to_string();
        let id = docker_ok(&[
            "run",
            "-d",
            "--network",
            &net,
            "--label",
            &format!("{LABEL_JOB}={}", self.job.job_id),
            image,
            "sleep",
            "600",
        ]);
        self.containers.push(id.clone());
        inject(&id, self.sandbox().injection());
        id
    }

    async fn shutdown(mut self) {
        for c in self.containers.drain(..) {
            let _ = docker(&["rm", "-f", &c]);
        }
        if let Some(s) = self.sandbox.take() {
            s.teardown().await.unwrap();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
    }
}

/// Copy the injection's files into the container (a tar through `docker cp -`).
fn inject(container: &str, inj: &BuildInjection) {
    let mut tar = tar::Builder::new(Vec::new());
    for f in &inj.files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.contents.len() as u64);
        h.set_mode(f.mode);
        h.set_mtime(0);
        h.set_cksum();
        let rel = f.path.strip_prefix("/").unwrap();
        tar.append_data(&mut h, rel, f.contents.as_bytes()).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let mut child = Command::new("docker")
        .args(["cp", "-", &format!("{container}:/")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(child.wait().unwrap().success());
}

fn exec(container: &str, env: &[(String, String)], script: &str) -> (bool, String) {
    let mut args: Vec<String> = vec!["exec".into()];
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([
        container.to_string(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let out = Command::new("docker").args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn env_of(inj: &BuildInjection) -> Vec<(String, String)> {
    inj.env
        .iter()
        .chain(&inj.secret_env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

const NPM_INSTALL: &str = "set -e; mkdir -p /tmp/p && cd /tmp/p && npm init -y >/dev/null && \
    npm install --no-audit --no-fund --loglevel=error @acme/hello >/dev/null && \
    node -e 'console.log(require(\"@acme/hello\"))'";
const PIP_INSTALL: &str =
    "set -e; pip install --no-cache-dir --disable-pip-version-check -q acme-hello && \
    python3 -c 'import acme_hello; print(acme_hello.GREETING)'";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_free_npm_and_pip_install_through_the_gateway() {
    let mut j = Job::start(Mode::TokenFree, false).await;
    let creds = j.sandbox().credentials().unwrap();
    let token = creds.token.token.expose().to_string();
    let inj = j.sandbox().injection().clone();
    assert!(inj.secrets.is_empty());
    assert!(
        !inj.env.contains_key("HTTP_PROXY"),
        "no allow-list, no proxy"
    );
    let c = j.container("cove/universal:latest");
    let env = env_of(&inj);

    let (ok, out) = exec(&c, &env, NPM_INSTALL);
    assert!(ok, "npm install through the gateway failed:\n{out}");
    assert!(out.contains("hello from @acme/hello"), "{out}");
    assert_eq!(j.double.stats()["last_data_auth_scheme"], "bearer");

    let (ok, out) = exec(&c, &env, PIP_INSTALL);
    assert!(ok, "pip install through the gateway failed:\n{out}");
    assert!(out.contains("hello from acme-hello"), "{out}");
    assert_eq!(j.double.stats()["last_data_auth_scheme"], "basic");

    // The token is nowhere in the build: not in its env, files, lockfile
    // (tarball URLs point at the gateway) or installed packages.
    let (_, found) = exec(
        &c,
        &env,
        &format!(
            "env; grep -rl '{token}' /root /tmp/p /usr/local/lib 2>/dev/null | sed 's/^/LEAK: /'; \
             grep -o '\"resolved\": \"[^\"]*\"' /tmp/p/package-lock.json"
        ),
    );
    assert!(
        !found.contains(&token) && !found.contains("LEAK: "),
        "token leaked into the build:\n{found}"
    );
    assert!(
        found.contains(&format!(
            "\"resolved\": \"{}/npm/npm-store/",
            j.gateway_url()
        )),
        "{found}"
    );
    // Unconfigured repositories are not proxied.
    let (_, out) = exec(
        &c,
        &[],
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' {}/npm/other-repo/x",
            j.gateway_url()
        ),
    );
    assert_eq!(out.trim(), "404");
    j.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compatible_mode_npm_and_pip_install_with_the_brokers_files() {
    // Compatible mode: the build holds the token and talks to the
    // repository endpoint itself, through the gateway's forward proxy (the
    // only way out of the private network), which allows the double.
    // The sandbox adds the repository endpoints to the allow-list and the
    // proxy variables to the env.
    let mut j = Job::start(Mode::Compatible, false).await;
    let creds = j.sandbox().credentials().unwrap().clone();
    let inj = j.sandbox().injection().clone();
    assert_eq!(inj.env["HTTP_PROXY"], j.gateway_url());
    assert_eq!(
        inj.secret_env["CODEARTIFACT_AUTH_TOKEN"],
        creds.token.token.expose()
    );
    assert_eq!(j.sandbox().secrets().len(), 3);
    let c = j.container("cove/universal:latest");
    let env = env_of(&inj);
    let (_, mode) = exec(&c, &[], "stat -c %a /root/.npmrc /root/.pypirc");
    assert_eq!(mode.split_whitespace().collect::<Vec<_>>(), ["600", "600"]);

    let (ok, out) = exec(&c, &env, NPM_INSTALL);
    assert!(ok, "npm install (compatible) failed:\n{out}");
    assert!(out.contains("hello from @acme/hello"), "{out}");
    let (ok, out) = exec(&c, &env, PIP_INSTALL);
    assert!(ok, "pip install (compatible) failed:\n{out}");
    assert!(out.contains("hello from acme-hello"), "{out}");
    assert_eq!(j.double.count("data_unauthorized"), 0);

    // Without the files the double refuses (the token is what works).
    let (ok, out) = exec(
        &c,
        &[("http_proxy".into(), j.gateway_url())],
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' {}",
            creds.endpoints[0].url.clone() + "@acme%2fhello"
        ),
    );
    assert!(ok);
    assert_eq!(out.trim(), "401");
    j.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_proxy_denies_and_logs_destinations_not_on_the_allow_list() {
    let mut j = Job::start(Mode::TokenFree, true).await;
    let c = j.container("cove/busybox:latest");
    let gw = j.gateway_url();
    // An HTTP server this test started, on a port that is not allow-listed.
    let other = harness::Double::start(&[]);
    let denied_http = format!("http://127.0.0.1:{}/__double/stats", other.port);
    let proxy = [("http_proxy".to_string(), gw.clone())];
    let (_, out) = exec(
        &c,
        &proxy,
        &format!("timeout 5 wget -q -O - {denied_http} 2>&1; true"),
    );
    assert!(out.contains("403"), "{out}");
    // CONNECT to a name that is not allow-listed: refused before any lookup.
    let host: std::net::SocketAddr = j
        .gateway_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (_, out) = exec(
        &c,
        &[],
        &format!(
            "(printf 'CONNECT denied.invalid:443 HTTP/1.1\\r\\nHost: denied.invalid:443\\r\\n\\r\\n'; sleep 3) \
             | timeout 5 nc {} {} | head -1",
            host.ip(),
            host.port()
        ),
    );
    assert!(out.contains("403"), "{out}");
    // The allow-listed double passes (absolute-URI request).
    let (_, out) = exec(
        &c,
        &proxy,
        &format!("timeout 5 wget -q -O - {}/__double/stats", j.double.url()),
    );
    assert!(out.contains("authorization_token"), "{out}");
    assert_eq!(other.count("data_ok") + other.count("data_unauthorized"), 0);
    // With the proxy variables set (the sandbox sets them when the
    // allow-list is not empty), package routes still work: an absolute URI
    // naming the gateway itself is served locally, not denied.
    assert!(j.sandbox().injection().env.contains_key("HTTP_PROXY"));
    let (_, out) = exec(
        &c,
        &proxy,
        &format!("timeout 5 wget -q -O - {gw}/npm/npm-store/@acme%2fhello"),
    );
    assert!(out.contains("dist-tags"), "{out}");

    let logs = log_text();
    let denied: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("gateway denied egress") && l.contains(&j.job.job_id))
        .collect();
    assert!(
        denied
            .iter()
            .any(|l| l.contains(&format!("destination=\"127.0.0.1:{}\"", other.port))),
        "{logs}"
    );
    assert!(
        denied
            .iter()
            .any(|l| l.contains("destination=\"denied.invalid:443\"")),
        "{logs}"
    );
    // Both refusals are counted in the agent's metrics (served on `metrics_listen`).
    let metrics = cove_agent::metrics::global().encode();
    let denials: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cove_agent_gateway_denials_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(denials >= 2.0, "{metrics}");
    j.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_rewrites_links_and_refreshes_tokens_mid_job() {
    let j = Job::start(Mode::TokenFree, false).await;
    let gw = j.gateway_url();
    let url = format!("{gw}/npm/npm-store/@acme%2fhello");
    let (status, body) = harness::http_get(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Tarball links point back at the gateway.
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let tarball = doc["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap();
    assert_eq!(
        tarball,
        format!("{gw}/npm/npm-store/@acme/hello/-/hello-1.0.0.tgz")
    );
    let (status, tgz) = harness::http_get(tarball);
    assert_eq!(status, 200);
    assert_eq!(&tgz[..2], &[0x1f, 0x8b]);
    assert_eq!(j.double.count("authorization_token"), 1);

    // Simple pages are rewritten too.
    let (status, page) = harness::http_get(&format!("{gw}/pypi/py-store/simple/acme-hello/"));
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains(&format!(
            "href=\"{gw}/pypi/py-store/simple/acme-hello/1.0.0/"
        )),
        "{page}"
    );
    assert!(!page.contains(&j.double.url()), "{page}");

    // No climbing out of the repository's path with the gateway's token.
    for bad in [
        "../py-store/simple/",
        "%2e%2e/%2e%2e/v1/",
        "..%2fpy-store/simple/",
    ] {
        let (status, _) = harness::http_get(&format!("{gw}/npm/npm-store/{bad}"));
        assert_eq!(status, 400, "{bad}");
    }

    // A job longer than the token: past expiry (on the broker's clock) the
    // gateway gets a new one before asking upstream — no 401 on the way.
    j.clock.advance(Duration::from_secs(13 * 3600));
    j.double.expire_tokens();
    let refused_before = j.double.count("data_unauthorized");
    let (status, _) = harness::http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(j.double.count("authorization_token"), 2);
    assert_eq!(j.double.count("data_unauthorized"), refused_before);

    // Upstream refuses a token the broker still thinks valid (clock skew,
    // early expiry): the gateway drops it, gets a new one, retries once.
    j.double.expire_tokens();
    let (status, _) = harness::http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(j.double.count("authorization_token"), 3);
    assert_eq!(j.double.count("data_unauthorized"), refused_before + 1);
    j.shutdown().await;
}

/// `scripts/bench-broker.sh`: `npm install @acme/hello` (empty npm cache
/// each run, timed inside the container) through the gateway from the
/// private network vs straight at the double from a host-network container.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run by scripts/bench-broker.sh"]
async fn bench_npm_install_gateway_vs_direct() {
    let runs = 10;
    let mut j = Job::start(Mode::TokenFree, false).await;
    let creds = j
        .broker
        .job_credentials(&j.cfg, &j.job, Mode::Compatible)
        .await
        .unwrap();
    let gated = j.container("cove/universal:latest");
    let direct = docker_ok(&[
        "run",
        "-d",
        "--network",
        "host",
        "--label",
        &format!("{LABEL_JOB}={}", j.job.job_id),
        "cove/universal:latest",
        "sleep",
        "600",
    ]);
    j.containers.push(direct.clone());
    inject(&direct, &creds.compatible(Path::new("/root")));
    let script = |i: usize| {
        format!(
            "set -e; mkdir -p /tmp/b{i} && cd /tmp/b{i} && npm init -y >/dev/null; \
             s=$(date +%s%N); npm install --cache /tmp/cache{i} --no-audit --no-fund --loglevel=error @acme/hello >/dev/null; \
             e=$(date +%s%N); echo $(( (e - s) / 1000000 ))"
        )
    };
    let modes = [
        ("gateway (token-free, private network)", &gated),
        ("direct to the double (compatible, host network)", &direct),
    ];
    // One warm-up run each (npm's own startup caches), then the modes
    // alternate so load from elsewhere on the machine hits both alike.
    for (_, c) in modes {
        let (ok, out) = exec(c, &[], &script(100));
        assert!(ok, "{out}");
    }
    let mut ms: Vec<Vec<u64>> = vec![Vec::new(); modes.len()];
    for i in 0..runs {
        for (m, (_, c)) in modes.iter().enumerate() {
            let (ok, out) = exec(c, &[], &script(i));
            assert!(ok, "{out}");
            ms[m].push(out.trim().lines().last().unwrap().parse().unwrap());
        }
    }
    let mut results = Vec::new();
    for ((name, _), mut v) in modes.iter().zip(ms) {
        v.sort();
        results.push(format!(
            "BENCH npm install @acme/hello via {name}: median {} ms, min {} ms, max {} ms ({runs} runs, empty cache)",
            v[runs / 2],
            v[0],
            v[runs - 1]
        ));
    }
    for r in results {
        println!("{r}");
    }
    j.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_streams_bodies_instead_of_buffering_them() {
    use std::io::Read;
    let j = Job::start(Mode::TokenFree, false).await;
    let addr = j.gateway_url().trim_start_matches("http://").to_string();
    let double_url = j.double.url();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        // If the gateway buffered the body, the first half would never
        // arrive: the double holds the second half until released.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /npm/npm-store/__stream/blob HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let half = 256 * 1024;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let body_len = |b: &[u8]| {
            b.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| b.len() - i - 4)
        };
        while body_len(&buf).is_none_or(|n| n < half) {
            let n = s
                .read(&mut chunk)
                .expect("first half must arrive before release");
            assert!(n > 0, "connection closed early");
            buf.extend_from_slice(&chunk[..n]);
        }
        let (status, _) =
            harness::http_request("POST", &format!("{double_url}/__double/release"), &[]);
        assert_eq!(status, 200);
        s.read_to_end(&mut buf).unwrap();
        buf
    });
    let buf = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let (status, body) = harness::parse_response(&buf);
    assert_eq!(status, 200);
    assert_eq!(body.len(), 512 * 1024);
    j.shutdown().await;
}
