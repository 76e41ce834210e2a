//! Workflow jobs as Pods on a real cluster (`scripts/k8s-cluster.sh`, cove/busybox imported),
//! driven by a client with only the agent's Role (deploy/kubernetes/rbac.yaml):
//!
//! * a two-step job runs as one Pod: its lines arrive in order, a secret variable (from the
//!   job's Secret, which exists while the Pod runs and is owned by it, never in the Pod's
//!   spec) is masked, an output artifact comes back;
//! * from inside the Pod, through the agent's gateway (`HTTP_PROXY`, bound on the node's
//!   address), an allow-listed local endpoint answers and another is refused by the
//!   gateway; directly (no proxy) both are out of reach: the NetworkPolicy allows the
//!   gateway's port only;
//! * a failing step fails the job with its exit status, later steps do not run;
//! * a cancelled job ends as cancelled;
//! * after each job nothing labelled with it remains (Pod, Secret, NetworkPolicy);
//! * the agent's job loop (`job_worker::run` with `KubernetesJobs`) leases a job and runs it
//!   as a Pod: its sandbox is the gateway on the node's address with the agent's egress
//!   allow-list (`HTTP_PROXY` set), the lease's secret is masked, the report comes back, and
//!   the loop's stop leaves nothing of it; a job Pod of the same agent's previous life is
//!   removed when the loop starts;
//! * `npm install` through the CodeArtifact double and the gateway's package route runs in a
//!   fenced cove/universal job Pod (moto and the double beside the cluster).
//!
//! Ignored in the workspace run (no cluster then): `scripts/k8s-test.sh` runs it with
//! `--ignored`; a missing cluster fails it in CI (`CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cove_agent::backend::kubernetes::jobs::{job_object_name, job_selector, LABEL_JOB};
use cove_agent::backend::kubernetes::{KubernetesBackend, KubernetesConfig};
use cove_agent::backend::Backend;
use cove_agent::gateway::{proxy_env, AllowList, Gateway, GatewayConfig, NoUpstream};
use cove_agent::jobs::{ArtifactSpec, CancellationToken, JobResult, JobSpec, JobStatus, Script};
use cove_agent::mask::{LogLine, LogSink, LogStream};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "k8s/cluster.rs"]
mod cluster;
#[path = "../../tests/codeartifact_double/harness.rs"]
mod harness;
#[path = "common/job_queue.rs"]
mod job_queue;
use cluster::{agent_client, cluster_ready, kubectl, unique, NAMESPACE};

const SECRET: &str = "k8s-s3cret-value-7f3a";

fn backend(client: kube::Client) -> KubernetesBackend {
    let mut config = KubernetesConfig::new(NAMESPACE);
    config.image_pull_policy = "Never".into();
    config.ready_timeout_secs = 120;
    // jobs without a gateway are probed from here too
    config.job_gateway_address = Some(node_ip());
    KubernetesBackend::with_client(client, config)
}

/// The node's address: where Pods reach the agent beside the cluster.
fn node_ip() -> IpAddr {
    let out = kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A tiny HTTP endpoint on `ip` answering `body` to every request.
async fn serve(ip: IpAddr, body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).await.ok();
                conn.shutdown().await.ok();
            });
        }
    });
    addr
}

async fn run(
    b: &KubernetesBackend,
    job: &JobSpec,
    cancel: CancellationToken,
) -> (JobResult, Vec<LogLine>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        lines
    });
    let mut sink = LogSink::new(tx);
    let result = b
        .run_job(job, &mut sink, &cancel)
        .await
        .unwrap_or_else(|e| panic!("job {}: {e}", job.job_id));
    drop(sink);
    let lines = collector.await.unwrap();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.seq, i as u64, "sequence numbers are gap-free");
    }
    (result, lines)
}

fn text(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn output(lines: &[LogLine]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream != LogStream::System)
        .map(|l| l.text.as_str())
        .collect()
}

/// Everything labelled with the job, by kind.
async fn labelled(client: &kube::Client, job: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&job_selector(job));
    let mut left = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for p in pods.list(&lp).await.unwrap() {
        left.push(format!("pod/{}", p.metadata.name.unwrap_or_default()));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    for s in secrets.list(&lp).await.unwrap() {
        left.push(format!("secret/{}", s.metadata.name.unwrap_or_default()));
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    for p in policies.list(&lp).await.unwrap() {
        left.push(format!(
            "networkpolicy/{}",
            p.metadata.name.unwrap_or_default()
        ));
    }
    left
}

/// What the API server showed while the job's Pod existed.
#[derive(Debug, Default)]
struct Seen {
    pod: bool,
    /// The Pod's JSON (spec and status) holds the secret's value.
    secret_in_pod: bool,
    /// The job's Secret existed, owned by the Pod.
    secret_owned: bool,
    policy: bool,
}

/// Poll the API server for the job's objects until `stop`.
fn watch(
    client: kube::Client,
    name: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        let policies: Api<NetworkPolicy> = Api::namespaced(client, NAMESPACE);
        let mut seen = Seen::default();
        while !stop.is_cancelled() {
            if let Ok(Some(p)) = pods.get_opt(&name).await {
                seen.pod = true;
                let json = serde_json::to_string(&p).unwrap();
                seen.secret_in_pod |= json.contains(SECRET);
                if let Ok(Some(s)) = secrets.get_opt(&name).await {
                    let owners = s.metadata.owner_references.unwrap_or_default();
                    seen.secret_owned |= owners
                        .iter()
                        .any(|o| o.kind == "Pod" && Some(&o.uid) == p.metadata.uid.as_ref());
                }
                seen.policy |= matches!(policies.get_opt(&name).await, Ok(Some(_)));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        seen
    })
}

async fn assert_nothing_left(client: &kube::Client, job: &str) {
    let left = labelled(client, job).await;
    assert!(left.is_empty(), "left behind by job {job}: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run by scripts/k8s-test.sh (scripts/test.sh's Kubernetes step) with --ignored"]
async fn jobs_run_as_fenced_pods_with_only_the_agents_role() {
    if !cluster_ready() {
        return;
    }
    let tokens = tempfile::tempdir().unwrap();
    let client = agent_client(tokens.path()).await;
    let b = backend(client.clone());
    let ip = node_ip();

    // the gateway beside the cluster, on the node's address; one allow-listed endpoint
    let allowed = serve(ip, "allowed-endpoint").await;
    let other = serve(ip, "other-endpoint").await;
    let job_id = unique("kj");
    let gateway = Gateway::start(
        tokio::net::TcpListener::bind((ip, 0)).await.unwrap(),
        Arc::new(NoUpstream),
        GatewayConfig::new(
            job_id.clone(),
            AllowList::parse(&[allowed.to_string()]).unwrap(),
        ),
    )
    .unwrap();

    // 1. two steps, a secret, the gateway, an artifact
    let mut job = JobSpec::new(
        job_id.clone(),
        Script::Steps(vec![
            format!(
                "echo \"first $CATALYST_SECRETS_token\"; mkdir -p dist && echo built > dist/a.txt; sleep 2"
            ),
            format!(
                "echo \"second $CATALYST_SECRETS_token\"\n\
                 echo \"gateway: $(wget -q -T 10 -O - http://{allowed}/ || echo failed)\"\n\
                 if wget -q -T 10 -O - http://{other}/ >/dev/null 2>&1; then echo proxy-let-other-through; else echo proxy-refused-other; fi\n\
                 if wget -Y off -q -T 3 -O - http://{other}/ >/dev/null 2>&1; then echo direct-reached-other; else echo direct-other-blocked; fi\n\
                 if wget -Y off -q -T 3 -O - http://{allowed}/ >/dev/null 2>&1; then echo direct-reached-allowed; else echo direct-allowed-blocked; fi"
            ),
        ]),
    );
    job.image = "cove/busybox:latest".into();
    job.gateway = Some(gateway.local_addr());
    job.env = proxy_env(&gateway.url());
    job.secrets = vec![("CATALYST_SECRETS_token".into(), SECRET.into())];
    job.outputs = vec![ArtifactSpec {
        name: "dist".into(),
        files: vec!["dist/**/*".into()],
        ..Default::default()
    }];
    job.timeout = Duration::from_secs(300);
    let stop = CancellationToken::new();
    let watcher = watch(client.clone(), job_object_name(&job), stop.clone());
    let (result, lines) = run(&b, &job, CancellationToken::new()).await;
    stop.cancel();
    let seen = watcher.await.unwrap();
    let log = text(&lines);
    assert_eq!(result.status, JobStatus::Succeeded, "{log}");
    assert_eq!(
        result
            .commands
            .iter()
            .map(|c| c.exit_code)
            .collect::<Vec<_>>(),
        [Some(0), Some(0)],
        "{log}"
    );
    assert!(
        !log.contains(SECRET),
        "the secret leaked into the log: {log}"
    );
    let out = output(&lines);
    assert!(out.contains(&"first ***"), "{log}");
    assert!(
        out.contains(&"second ***"),
        "carried to the next step: {log}"
    );
    assert!(out.contains(&"gateway: allowed-endpoint"), "{log}");
    assert!(out.contains(&"proxy-refused-other"), "{log}");
    assert!(out.contains(&"direct-other-blocked"), "{log}");
    assert!(out.contains(&"direct-allowed-blocked"), "{log}");
    // lines arrive in the order they were written: the first step's before the second's
    let first = out.iter().position(|l| *l == "first ***").unwrap();
    let second = out.iter().position(|l| *l == "second ***").unwrap();
    assert!(first < second, "{log}");
    assert_eq!(result.artifacts.len(), 1, "{log}");
    let art = &result.artifacts[0];
    assert_eq!(art.name, "dist");
    let mut files = BTreeMap::new();
    let tar = art.tar.read().unwrap();
    for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        files.insert(e.path().unwrap().display().to_string(), s);
    }
    assert_eq!(
        files,
        BTreeMap::from([("dist/a.txt".to_string(), "built\n".to_string())])
    );
    assert!(seen.pod && seen.policy, "{seen:?}");
    assert!(
        seen.secret_owned,
        "the job's Secret, owned by its Pod: {seen:?}"
    );
    assert!(
        !seen.secret_in_pod,
        "the secret's value is in the Pod object"
    );
    assert_nothing_left(&client, &job_id).await;

    // 2. a failing step fails the job; the next does not run; no egress at all
    let failing_id = unique("kjf");
    let mut failing = JobSpec::new(
        failing_id.clone(),
        Script::Steps(vec![
            "echo before".into(),
            "exit 7".into(),
            "echo never".into(),
        ]),
    );
    failing.image = "cove/busybox:latest".into();
    let (result, lines) = run(&b, &failing, CancellationToken::new()).await;
    let log = text(&lines);
    assert_eq!(result.status, JobStatus::Failed, "{log}");
    assert_eq!(
        result
            .commands
            .iter()
            .map(|c| c.exit_code)
            .collect::<Vec<_>>(),
        [Some(0), Some(7)],
        "{log}"
    );
    assert!(log.contains("[cove] exit status 7"), "{log}");
    assert!(!output(&lines).contains(&"never"), "{log}");
    assert_nothing_left(&client, &failing_id).await;

    // 3. cancel: the running step is stopped, the job ends as cancelled
    let cancel_id = unique("kjc");
    let mut long = JobSpec::new(
        cancel_id.clone(),
        Script::Steps(vec!["echo started; sleep 600".into(), "echo never".into()]),
    );
    long.image = "cove/busybox:latest".into();
    long.grace = Duration::from_secs(2);
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(64);
    let b2 = b.clone();
    let (long2, cancel2) = (long.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        let mut sink = LogSink::new(tx);
        b2.run_job(&long2, &mut sink, &cancel2).await
    });
    let mut lines = Vec::new();
    while let Some(l) = rx.recv().await {
        let started = l.text == "started";
        lines.push(l);
        if started {
            cancel.cancel();
        }
    }
    let result = task.await.unwrap().expect("cancelled job");
    let log = text(&lines);
    assert_eq!(result.status, JobStatus::Cancelled, "{log}");
    assert!(!output(&lines).contains(&"never"), "{log}");
    // SIGTERM reached the step's process group (an exec is a session leader under runc, as
    // on Docker): the step ended within the grace period, no SIGKILL was needed
    assert!(log.contains("[cove] cancelled: sending SIGTERM"), "{log}");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert_nothing_left(&client, &cancel_id).await;

    // the label the test selected by is the one the backend sets
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let any = pods
        .list(&ListParams::default().labels(LABEL_JOB))
        .await
        .unwrap();
    assert!(
        any.items.iter().all(|p| {
            let l = p.metadata.labels.as_ref().unwrap();
            ![&job_id, &failing_id, &cancel_id].contains(&&l[LABEL_JOB])
        }),
        "a job Pod is left"
    );
    gateway.shutdown().await;
}

/// The acceptance's "npm install through the CodeArtifact double as a Pod that cannot reach
/// anything but the gateway": moto (STS) and the double beside the cluster, the broker, the
/// job's gateway on the node's address with the package routes (token-free: the Pod's
/// `.npmrc` names the gateway, never a token), `npm install` in a cove/universal job Pod whose
/// NetworkPolicy allows only the gateway (checked enforced before the step starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run by scripts/k8s-test.sh (scripts/test.sh's Kubernetes step) with --ignored"]
async fn an_npm_install_through_the_codeartifact_double_runs_in_a_fenced_pod() {
    use cove_agent::broker::{
        Broker, BrokerConfig, BrokerOptions, JobRef, Mode, PackageFormat, RepositoryRef,
        SystemClock,
    };
    use cove_agent::gateway::BrokerSource;
    use cove_agent::jobs::JobFile;

    if !cluster_ready() {
        return;
    }
    // the broker's base credentials: moto accepts any
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCOVEK8SJOBTEST01");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "k8s-job-base-secret-0123456789");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cove-test-config");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/cove-test-creds",
    );
    let tokens = tempfile::tempdir().unwrap();
    let client = agent_client(tokens.path()).await;
    let b = backend(client.clone());
    let ip = node_ip();

    let moto = harness::Moto::start();
    let double = harness::Double::start_on("127.0.0.2:0", &[]);
    let broker = Arc::new(
        Broker::from_default_chain(
            "us-east-1",
            Arc::new(SystemClock),
            BrokerOptions {
                max_attempts: 1,
                ..BrokerOptions::default()
            },
        )
        .await,
    );
    let cfg = BrokerConfig {
        role_arn: "arn:aws:iam::123456789012:role/cove-build".into(),
        region: "us-east-1".into(),
        domain: "acme".into(),
        domain_owner: "123456789012".into(),
        repositories: vec![RepositoryRef {
            name: "npm-store".into(),
            format: PackageFormat::Npm,
        }],
        sts_endpoint: Some(moto.url()),
        codeartifact_endpoint: Some(double.url()),
        max_session_secs: None,
    };
    let job_id = unique("kjnpm");
    let job_ref = JobRef {
        run_id: "run-1".into(),
        job_id: job_id.clone(),
        timeout: Duration::from_secs(1800),
    };
    let gateway = Gateway::start(
        tokio::net::TcpListener::bind((ip, 0)).await.unwrap(),
        Arc::new(BrokerSource {
            broker: broker.clone(),
            config: cfg.clone(),
            job: job_ref.clone(),
        }),
        GatewayConfig::new(job_id.clone(), AllowList::parse::<&str>(&[]).unwrap()),
    )
    .unwrap();
    let creds = broker
        .job_credentials(&cfg, &job_ref, Mode::TokenFree)
        .await
        .expect("credentials from moto and the double");
    let token = creds.token.token.expose().to_string();
    let inj = creds.token_free(std::path::Path::new("/root"), &gateway.url());

    let mut job = JobSpec::new(
        job_id.clone(),
        Script::Steps(vec![
            "cat /root/.npmrc".into(),
            "set -e; mkdir -p /tmp/p && cd /tmp/p && npm init -y >/dev/null && \
             npm install --no-audit --no-fund --loglevel=error @acme/hello >/dev/null && \
             node -e 'console.log(require(\"@acme/hello\"))'"
                .into(),
        ]),
    );
    job.image = "cove/universal:latest".into();
    job.gateway = Some(gateway.local_addr());
    job.env = inj
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    job.secrets = inj
        .secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    job.files = inj
        .files
        .iter()
        .map(|f| JobFile {
            path: f.path.to_string_lossy().into_owned(),
            contents: f.contents.clone().into_bytes(),
            mode: f.mode,
        })
        .collect();
    job.mask = vec![token.clone()];
    job.timeout = Duration::from_secs(600);
    let (result, lines) = run(&b, &job, CancellationToken::new()).await;
    let log = text(&lines);
    assert_eq!(result.status, JobStatus::Succeeded, "{log}");
    assert!(output(&lines).contains(&"hello from @acme/hello"), "{log}");
    let npmrc = format!("registry={}/npm/npm-store/", gateway.url());
    assert!(output(&lines).contains(&npmrc.as_str()), "{log}");
    assert!(!log.contains(&token), "the token reached the job's log");
    // the gateway added the token upstream; the build never had it
    assert_eq!(double.stats()["last_data_auth_scheme"], "bearer");
    assert_nothing_left(&client, &job_id).await;
    gateway.shutdown().await;
}

/// `cove-agent` with jobs on Kubernetes: the job loop leases, builds the job's sandbox without
/// a network (the gateway on the node's address, the agent's allow-list), runs the job
/// through `Backend::run_job` and reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run by scripts/k8s-test.sh (scripts/test.sh's Kubernetes step) with --ignored"]
async fn the_job_loop_runs_leased_jobs_as_pods() {
    use cove_agent::job_worker::{self, KubernetesJobs, WorkerConfig};
    use cove_api::{JobOutcome, JobScript};

    if !cluster_ready() {
        return;
    }
    let tokens = tempfile::tempdir().unwrap();
    let client = agent_client(tokens.path()).await;
    let b = backend(client.clone());
    let ip = node_ip();
    let allowed = serve(ip, "allowed-by-the-agent").await;

    let queue = Arc::new(job_queue::Queue::default());
    let stop = CancellationToken::new();
    let owner = unique("k8s-agent");
    // a job Pod of this agent's previous life (it died mid-job): removed when the loop starts
    let mut orphan_spec = JobSpec::new(unique("kjorphan"), Script::Steps(vec![]));
    orphan_spec.image = "cove/busybox:latest".into();
    orphan_spec.owner = Some(owner.clone());
    let orphan = cove_agent::backend::kubernetes::jobs::job_pod(&orphan_spec, b.config(), false);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.create(&Default::default(), &orphan).await.unwrap();
    let mut config = WorkerConfig {
        slots: 1,
        lease_wait: Duration::from_millis(200),
        owner: Some(owner.clone()),
        kubernetes: Some(KubernetesJobs {
            backend: b.clone(),
            gateway_address: ip,
        }),
        ..Default::default()
    };
    config.sandbox.egress_allow = vec![allowed.to_string()];
    let worker = tokio::spawn(job_worker::run(
        bollard::Docker::connect_with_local_defaults().unwrap(),
        queue.clone(),
        config,
        stop.clone(),
    ));
    let job: i64 = 4_200_000 + i64::from(std::process::id() % 100_000);
    let mut lease = job_queue::lease(job, "cove/busybox:latest", &[]);
    lease.script = JobScript::Steps(vec![
        "echo \"token $CATALYST_SECRETS_t\"".into(),
        "echo \"via: $(wget -q -T 10 -O - http://$ALLOWED/ || echo failed)\"".into(),
    ]);
    lease.env = vec![("ALLOWED".into(), allowed.to_string())];
    queue.push(lease);
    let (report, lines) = queue.wait(job).await;
    let log = lines.join("\n");
    assert!(
        pods.get_opt(&job_object_name(&orphan_spec))
            .await
            .unwrap()
            .is_none(),
        "the orphaned job Pod of the agent is still there"
    );
    assert_eq!(report.outcome, JobOutcome::Succeeded, "{report:?}\n{log}");
    assert!(lines.iter().any(|l| l == "token ***"), "{log}");
    assert!(!log.contains("s3cr3t-value-xyz"), "{log}");
    assert!(
        lines.iter().any(|l| l == "via: allowed-by-the-agent"),
        "{log}"
    );
    assert_nothing_left(&client, &job.to_string()).await;
    stop.cancel();
    worker.await.unwrap();
}
