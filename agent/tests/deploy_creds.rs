#![allow(clippy::unwrap_used)]
//! Deploy credentials (issue 21) against real components: the broker assumes the deploy role
//! at moto's STS, the job's gateway serves it with the container-credentials protocol, and a
//! real AWS SDK (boto3, whose container provider is what the AWS CLI uses) picks it up from
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`, sees the
//! assumed role and writes to a moto bucket. Requests without the job's token are refused;
//! credentials are cached and refreshed before expiry (a `ManualClock`, no sleeping).

#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;

use std::process::Command;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use cove_agent::broker::{Broker, BrokerOptions, Clock, ManualClock};
use cove_agent::creds::DeployCredentials;
use cove_agent::gateway::{AllowList, Gateway, GatewayConfig, NoUpstream};
use cove_api::JobDeploy;
use harness::Moto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROLE: &str = "arn:aws:iam::123456789012:role/deploy-prod";

fn base_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCOVEBASEDEPLOY01");
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            "base-secret-deploy-never-leaks-0001",
        );
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cove-test-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cove-test-creds",
        );
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

fn deploy(sts: &str) -> JobDeploy {
    JobDeploy {
        environment: "prod".into(),
        connection: "prod-account".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        role_arn: ROLE.into(),
        session_name: "cove-acme_app-7-DeployProd".into(),
        duration_secs: 3900,
        tags: vec![
            ("repository".into(), "acme/app".into()),
            ("branch".into(), "main".into()),
            ("environment".into(), "prod".into()),
        ],
        sts_endpoint: Some(sts.into()),
    }
}

async fn setup(clock: Arc<dyn Clock>) -> (Moto, Arc<DeployCredentials>, Gateway) {
    base_env();
    let moto = Moto::start();
    let options = BrokerOptions {
        max_attempts: 1,
        ..BrokerOptions::default()
    };
    let broker = Arc::new(Broker::from_default_chain("us-east-1", clock, options).await);
    let creds = Arc::new(DeployCredentials::new(broker, &deploy(&moto.url())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = GatewayConfig::new("job-deploy", AllowList::default());
    config.credentials = Some(creds.clone());
    let gateway = Gateway::start(listener, Arc::new(NoUpstream), config).unwrap();
    (moto, creds, gateway)
}

/// A raw GET of the credentials path with `authorization`: status and body.
async fn get(gateway: &Gateway, authorization: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gateway.local_addr())
        .await
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET /cove/credentials HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Runs python3 with boto3 configured only through the container-credentials variables.
fn boto3(gateway: &Gateway, token: &str, moto: &str, script: &str) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/cove/credentials", gateway.url()),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("MOTO", moto)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_gets_the_deploy_role_from_the_gateway_and_writes_to_a_bucket() {
    let (moto, creds, gateway) = setup(Arc::new(cove_agent::broker::SystemClock)).await;
    let token = creds.token().expose().to_string();

    // No token, a wrong token: refused, nothing assumed.
    assert_eq!(get(&gateway, None).await.0, 401);
    assert_eq!(get(&gateway, Some("wrong")).await.0, 401);
    assert_eq!(
        get(&gateway, Some(&format!("{token}x"))).await.0,
        401,
        "a longer token is not the token"
    );
    assert_eq!(
        creds.secrets().len(),
        1,
        "only the token: nothing was assumed yet"
    );

    let script = r#"
import os, boto3
moto = os.environ["MOTO"]
sts = boto3.client("sts", endpoint_url=moto)
print("ARN", sts.get_caller_identity()["Arn"])
s3 = boto3.client("s3", endpoint_url=moto)
s3.create_bucket(Bucket="prod-bucket")
s3.put_object(Bucket="prod-bucket", Key="release.txt", Body=b"v1")
print("KEYS", [o["Key"] for o in s3.list_objects_v2(Bucket="prod-bucket")["Contents"]])
"#;
    let out = boto3(&gateway, &token, &moto.url(), script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "ARN arn:aws:sts::123456789012:assumed-role/deploy-prod/cove-acme_app-7-DeployProd"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("KEYS ['release.txt']"), "{stdout}");

    // The same SDK with a wrong token gets nothing.
    let out = boto3(&gateway, "not-the-token", &moto.url(), script);
    assert!(!out.status.success());

    // Every credential string handed out is in the mask set; none in the Debug output.
    let (c, cached) = creds.credentials().await.unwrap();
    assert!(cached, "served from the cache");
    let secrets: Vec<String> = creds
        .secrets()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    for s in [
        c.access_key_id.as_str(),
        c.secret_access_key.expose(),
        c.session_token.expose(),
        token.as_str(),
    ] {
        assert!(secrets.iter().any(|x| x == s));
        assert!(!format!("{creds:?}").contains(s));
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_cached_and_refreshed_before_expiry() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let (_moto, creds, gateway) = setup(clock.clone()).await;
    let token = creds.token().expose().to_string();
    let (status, first) = get(&gateway, Some(&token)).await;
    assert_eq!(status, 200, "{first}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let key = first["AccessKeyId"].as_str().unwrap().to_string();
    assert!(key.starts_with("ASIA"), "{key}");
    for field in ["SecretAccessKey", "Token", "Expiration"] {
        assert!(
            first[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    assert_eq!(first["RoleArn"], ROLE);
    let (_, again) = get(&gateway, Some(&token)).await;
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["AccessKeyId"], first["AccessKeyId"], "a cache hit");
    // Five minutes before the session ends, it is refreshed.
    clock.advance(Duration::from_secs(3900 - 299));
    let (_, later) = get(&gateway, Some(&token)).await;
    let later: serde_json::Value = serde_json::from_str(&later).unwrap();
    assert_ne!(later["AccessKeyId"], first["AccessKeyId"], "refreshed");
    // The refreshed strings join the mask set of the running job (its log shipper holds the
    // same live list), not only the ones issued at the start.
    let late = creds.late_secrets();
    for field in ["AccessKeyId", "SecretAccessKey", "Token"] {
        let value = later[field].as_str().unwrap();
        let line = format!("leak: {value} end");
        let masked = late.mask_str(&line);
        assert!(
            !masked.contains(value),
            "{field} of the refreshed session is masked: {masked}"
        );
    }
    gateway.shutdown().await;
}

// ---------- a job's containers on real Docker ----------

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

/// Removes the test's containers even when an assertion fails.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = docker(&["rm", "-f", c]);
        }
    }
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

/// A job sandbox with a deploy role (moto on 127.0.0.2, reached through the gateway's
/// forward proxy) and a cove/universal container on it: the AWS CLI inside finds the role
/// through `AWS_CONTAINER_CREDENTIALS_FULL_URI` (169.254.170.2, redirected to this job's
/// gateway) and writes to a bucket; a container on another job's network, and one on this
/// network without the token, get nothing; no credential string is in the container's
/// configuration.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_container_uses_the_deploy_role_and_nothing_else_can() {
    use cove_agent::private_net::{GatewayAt, JobSandbox, NetOptions, SandboxSpec, LABEL_JOB};
    base_env();
    let moto = Moto::start_on("127.0.0.2");
    let options = BrokerOptions {
        max_attempts: 1,
        ..BrokerOptions::default()
    };
    let broker = Arc::new(
        Broker::from_default_chain(
            "us-east-1",
            Arc::new(cove_agent::broker::SystemClock),
            options,
        )
        .await,
    );
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    let suffix = format!(
        "{}-{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut containers = Containers(Vec::new());
    let mut sandboxes = Vec::new();
    for which in ["deploy", "other"] {
        let creds = Arc::new(DeployCredentials::new(broker.clone(), &deploy(&moto.url())).unwrap());
        let job_id = format!("dc-{which}-{suffix}");
        let sandbox = JobSandbox::start(
            &d,
            broker.clone(),
            SandboxSpec {
                job: cove_agent::broker::JobRef {
                    run_id: "run-1".into(),
                    job_id: job_id.clone(),
                    timeout: Duration::from_secs(600),
                },
                codeartifact: None,
                mode: cove_agent::broker::Mode::TokenFree,
                allow: AllowList::parse(&[format!("127.0.0.2:{}", moto.port)]).unwrap(),
                home: "/root".into(),
                net: NetOptions::default(),
                gateway_at: GatewayAt::HostBridge,
                deploy: (which == "deploy").then(|| creds.clone()),
            },
        )
        .await
        .unwrap();
        let id = docker_ok(&[
            "run",
            "-d",
            "--network",
            sandbox.network_name(),
            "--label",
            &format!("{LABEL_JOB}={job_id}"),
            "cove/universal:latest",
            "sleep",
            "600",
        ]);
        containers.0.push(id.clone());
        sandboxes.push((sandbox, id, creds));
    }
    let (deploy_box, deploy_ctr, creds) = &sandboxes[0];
    let (_, other_ctr, _) = &sandboxes[1];
    let inj = deploy_box.injection();
    let mut env: Vec<(String, String)> = inj.env.clone().into_iter().collect();
    env.extend(inj.secret_env.clone());
    assert!(env
        .iter()
        .any(|(k, v)| k == "AWS_CONTAINER_CREDENTIALS_FULL_URI"
            && v == "http://169.254.170.2/cove/credentials"));
    let endpoint = moto.url();
    let (ok, out) = exec(
        deploy_ctr,
        &env,
        &format!(
            "aws --endpoint-url {endpoint} sts get-caller-identity --query Arn --output text && \
             aws --endpoint-url {endpoint} s3 mb s3://prod-bucket && \
             echo v1 > /tmp/r.txt && aws --endpoint-url {endpoint} s3 cp /tmp/r.txt s3://prod-bucket/r.txt && \
             aws --endpoint-url {endpoint} s3 ls s3://prod-bucket/"
        ),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("assumed-role/deploy-prod/cove-acme_app-7-DeployProd"),
        "{out}"
    );
    assert!(out.contains("r.txt"), "{out}");

    // Without the token: 401 from the same container.
    let (_, out) = exec(
        deploy_ctr,
        &[],
        "curl -s -o /dev/null -w '%{http_code}' -m 5 http://169.254.170.2/cove/credentials",
    );
    assert_eq!(out.trim(), "401", "{out}");
    // Another job's container, even with the token, reaches no credentials endpoint of this
    // job: its own redirect does not exist and this job's gateway port is not reachable.
    let token = creds.token().expose().to_string();
    let url = format!("{}/cove/credentials", deploy_box.gateway_url());
    for target in ["http://169.254.170.2/cove/credentials", url.as_str()] {
        let (_, out) = exec(
            other_ctr,
            &[],
            &format!("curl -s -m 5 -H 'Authorization: {token}' {target}; echo \" rc=$?\""),
        );
        assert!(!out.contains("AccessKeyId"), "{target}: {out}");
    }
    // No credential string in the container's configuration (docker inspect).
    let inspect = docker_ok(&["inspect", deploy_ctr]);
    for s in creds.secrets() {
        assert!(
            !inspect.contains(s.expose()),
            "a credential in docker inspect"
        );
    }
    drop(containers);
    for (sandbox, _, _) in sandboxes {
        sandbox.teardown().await.unwrap();
    }
}

// ---------- bench (scripts/bench-deploy-creds.sh) ----------

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn report(what: &str, v: Vec<Duration>) {
    let n = v.len();
    println!(
        "BENCH | {what} | n={n} median {:.3} ms, p95 {:.3} ms |",
        pct(v.clone(), 0.5).as_secs_f64() * 1e3,
        pct(v, 0.95).as_secs_f64() * 1e3
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench-deploy-creds.sh"]
async fn bench_deploy_creds() {
    let (moto, creds, gateway) = setup(Arc::new(cove_agent::broker::SystemClock)).await;
    let token = creds.token().expose().to_string();
    // Baseline: a raw AssumeRole with the SDK against moto.
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&conf)
            .endpoint_url(moto.url())
            .build(),
    );
    let mut raw = Vec::new();
    for i in 0..200 {
        let t = std::time::Instant::now();
        sts.assume_role()
            .role_arn(ROLE)
            .role_session_name(format!("raw-{i}"))
            .send()
            .await
            .unwrap();
        raw.push(t.elapsed());
    }
    report("raw SDK AssumeRole against moto (baseline)", raw);
    // First AssumeRole of a job: a new DeployCredentials each time (cache miss).
    let broker = Arc::new(
        Broker::from_default_chain(
            "us-east-1",
            Arc::new(cove_agent::broker::SystemClock),
            BrokerOptions {
                max_attempts: 1,
                ..BrokerOptions::default()
            },
        )
        .await,
    );
    let mut first = Vec::new();
    for _ in 0..200 {
        let c = DeployCredentials::new(broker.clone(), &deploy(&moto.url())).unwrap();
        let t = std::time::Instant::now();
        c.credentials().await.unwrap();
        first.push(t.elapsed());
    }
    report(
        "first AssumeRole of a job (broker, tags, against moto)",
        first,
    );
    // The endpoint on a cache hit: one HTTP request through the gateway (new connection each).
    get(&gateway, Some(&token)).await;
    let mut hits = Vec::new();
    for _ in 0..500 {
        let t = std::time::Instant::now();
        let (status, _) = get(&gateway, Some(&token)).await;
        hits.push(t.elapsed());
        assert_eq!(status, 200);
    }
    report(
        "credentials endpoint, cache hit (GET over a new TCP connection)",
        hits,
    );
    gateway.shutdown().await;
    report(
        "credentials endpoint from a job container, cache hit (169.254.170.2 redirect)",
        from_a_job(broker, &moto).await,
    );
}

/// Times 300 GETs of the credentials endpoint as a job sees it: python3's http.client in a
/// cove/universal container on a deploy job's network, through `AWS_CONTAINER_CREDENTIALS_FULL_URI`
/// (169.254.170.2, NAT-redirected to the job's gateway), a new TCP connection each, after one
/// warm-up request (the role is assumed before the job starts: every timed GET is a cache hit).
async fn from_a_job(broker: Arc<Broker>, moto: &Moto) -> Vec<Duration> {
    use cove_agent::private_net::{GatewayAt, JobSandbox, NetOptions, SandboxSpec, LABEL_JOB};
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    let job_id = format!("dc-bench-{}", std::process::id());
    let creds = Arc::new(DeployCredentials::new(broker.clone(), &deploy(&moto.url())).unwrap());
    let sandbox = JobSandbox::start(
        &d,
        broker,
        SandboxSpec {
            job: cove_agent::broker::JobRef {
                run_id: "run-bench".into(),
                job_id: job_id.clone(),
                timeout: Duration::from_secs(600),
            },
            codeartifact: None,
            mode: cove_agent::broker::Mode::TokenFree,
            allow: AllowList::default(),
            home: "/root".into(),
            net: NetOptions::default(),
            gateway_at: GatewayAt::HostBridge,
            deploy: Some(creds),
        },
    )
    .await
    .unwrap();
    let id = docker_ok(&[
        "run",
        "-d",
        "--network",
        sandbox.network_name(),
        "--label",
        &format!("{LABEL_JOB}={job_id}"),
        "cove/universal:latest",
        "sleep",
        "600",
    ]);
    let containers = Containers(vec![id.clone()]);
    let inj = sandbox.injection();
    let mut env: Vec<(String, String)> = inj.env.clone().into_iter().collect();
    env.extend(inj.secret_env.clone());
    let (ok, out) = exec(
        &id,
        &env,
        r#"python3 - <<'EOF'
import http.client, json, os, time, urllib.parse
url = urllib.parse.urlsplit(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
out = []
for i in range(301):
    t = time.perf_counter()
    c = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5)
    c.request("GET", url.path, headers={"Authorization": token})
    r = c.getresponse()
    body = r.read()
    c.close()
    dt = time.perf_counter() - t
    assert r.status == 200 and b"AccessKeyId" in body, r.status
    if i:
        out.append(dt)
print("SAMPLES " + json.dumps(out))
EOF"#,
    );
    assert!(ok, "{out}");
    let samples: Vec<f64> = out
        .lines()
        .find_map(|l| l.strip_prefix("SAMPLES "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no samples: {out}"));
    drop(containers);
    sandbox.teardown().await.unwrap();
    samples.into_iter().map(Duration::from_secs_f64).collect()
}
