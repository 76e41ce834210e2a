#![allow(clippy::unwrap_used)]
//! The agent's job sandbox pool (job_pool.rs) on the real engine (scripts/test-env.sh;
//! DOCKER_HOST, root for the firewall rules): the job loop of [`job_worker::run`] with a
//! transport in this file that hands out leases and records what comes back.
//!
//! - a pooled sandbox is used by one job only: two jobs get different containers and
//!   networks, a file the first wrote is absent in the second, and both are gone after;
//! - a job whose image is not the pool's runs on the cold path;
//! - the private network's rules hold for a pooled job (host, peers on the default bridge
//!   unreachable; a control container on the default bridge reaches them);
//! - SIGKILL of an agent while its pool fills leaves nothing once the agent starts again.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_agent::job_pool::{slot_prefix, token, LABEL_POOL};
use cove_agent::job_worker::{self, WorkerConfig};
use cove_api::JobOutcome;
use tokio_util::sync::CancellationToken;

#[path = "common/job_queue.rs"]
mod job_queue;
use job_queue::{lease, Queue};

const POOL_IMAGE: &str = "cove/busybox:latest";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
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

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

async fn engine() -> bollard::Docker {
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    d.ping().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    );
    d
}

/// Running containers of `owner`'s pool that no job claimed yet: id → network.
fn pooled(owner: &str) -> Vec<(String, String)> {
    let ids = docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={LABEL_POOL}={}", token(owner)),
        "--filter",
        "name=cove-pool-",
    ]);
    ids.split_whitespace()
        .map(|id| {
            let net = docker_ok(&[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
                id,
            ]);
            (id.to_string(), net)
        })
        .collect()
}

async fn wait_pool(owner: &str, n: usize) -> Vec<(String, String)> {
    let t = Instant::now();
    loop {
        let p = pooled(owner);
        if p.len() >= n {
            return p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the pool never had {n} sandboxes: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes what an owner's agent left if a test fails half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=cove.owner={}", self.0),
        ]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        let nets = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=cove-job-{}", slot_prefix(&self.0)),
        ]);
        for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
            let _ = docker(&["network", "rm", id]);
        }
    }
}

struct Agent {
    queue: Arc<Queue>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn agent(owner: &str, pool: usize) -> Agent {
    let queue = Arc::new(Queue::default());
    let stop = CancellationToken::new();
    let config = WorkerConfig {
        slots: 1,
        lease_wait: Duration::from_millis(200),
        owner: Some(owner.to_string()),
        pool,
        pool_image: POOL_IMAGE.into(),
        ..Default::default()
    };
    let task = tokio::spawn(job_worker::run(
        bollard::Docker::connect_with_local_defaults().unwrap(),
        queue.clone(),
        config,
        stop.clone(),
    ));
    Agent { queue, stop, task }
}

fn gone(kind: &str, id: &str) -> bool {
    !docker(&[kind, "inspect", id]).status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooled_sandbox_serves_one_job_and_other_images_start_cold() {
    engine().await;
    let owner = unique("pool-once");
    let _cleanup = Cleanup(owner.clone());
    let a = agent(&owner, 2);
    let ready: Vec<(String, String)> = wait_pool(&owner, 2).await;
    let ids: BTreeSet<&str> = ready.iter().map(|(id, _)| id.as_str()).collect();

    // `hostname` is the container's short id.
    let probe = "hostname; if [ -e /tmp/left ]; then echo LEFT-FOUND; else echo LEFT-ABSENT; fi; echo x > /tmp/left";
    a.queue.push(lease(101, POOL_IMAGE, &[probe]));
    let (r1, out1) = a.queue.wait(101).await;
    a.queue.push(lease(102, POOL_IMAGE, &[probe]));
    let (r2, out2) = a.queue.wait(102).await;
    assert_eq!(r1.outcome, JobOutcome::Succeeded, "{r1:?} {out1:?}");
    assert_eq!(r2.outcome, JobOutcome::Succeeded, "{r2:?} {out2:?}");
    let host = |out: &[String]| -> String {
        out.iter()
            .find(|l| l.len() == 12 && l.chars().all(|c| c.is_ascii_hexdigit()))
            .cloned()
            .unwrap_or_else(|| panic!("no hostname in {out:?}"))
    };
    let (h1, h2) = (host(&out1), host(&out2));
    let pooled_one = |h: &str| ready.iter().find(|(id, _)| id.starts_with(h)).cloned();
    let (c1, n1) =
        pooled_one(&h1).unwrap_or_else(|| panic!("job 1 ran in {h1}, not in the pool {ids:?}"));
    let (c2, n2) =
        pooled_one(&h2).unwrap_or_else(|| panic!("job 2 ran in {h2}, not in the pool {ids:?}"));
    assert_ne!(c1, c2, "two jobs ran in one pooled container");
    assert_ne!(n1, n2, "two jobs ran on one pooled network");
    assert!(n1.starts_with("cove-job-pool-"), "{n1}");
    assert!(out1.iter().any(|l| l == "LEFT-ABSENT"), "{out1:?}");
    assert!(
        out2.iter().any(|l| l == "LEFT-ABSENT"),
        "the second job saw the first job's file: {out2:?}"
    );
    // Used once: the container and network of each job are gone after it.
    for (c, n) in [(&c1, &n1), (&c2, &n2)] {
        assert!(gone("container", c), "{c} left after its job");
        assert!(gone("network", n), "{n} left after its job");
    }
    // The pool refills with new sandboxes, never the used ones.
    let refilled = wait_pool(&owner, 2).await;
    for (c, n) in &refilled {
        assert!(*c != c1 && *c != c2 && *n != n1 && *n != n2, "{refilled:?}");
    }

    // Another image: the cold path (a container created for the job, not a pooled one).
    a.queue
        .push(lease(103, "cove/base:bookworm", &["hostname"]));
    let (r3, out3) = a.queue.wait(103).await;
    assert_eq!(r3.outcome, JobOutcome::Succeeded, "{r3:?} {out3:?}");
    let h3 = host(&out3);
    let now: Vec<(String, String)> = pooled(&owner);
    assert!(
        !ready
            .iter()
            .chain(&refilled)
            .chain(&now)
            .any(|(id, _)| id.starts_with(&h3)),
        "a job in another image ran in a pooled container"
    );
    assert_eq!(
        pooled(&owner).len(),
        2,
        "the cold job took a pooled sandbox"
    );

    // A graceful stop removes the pool.
    a.stop.cancel();
    a.task.await.unwrap();
    for (c, n) in pooled(&owner).iter().chain(&refilled) {
        assert!(gone("container", c), "{c} left after the agent stopped");
        assert!(gone("network", n), "{n} left after the agent stopped");
    }
}

/// An HTTP server on 0.0.0.0 (all host addresses) answering `marker`.
fn host_server(marker: &'static str) -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{marker}",
                marker.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pooled_job_is_on_a_private_network() {
    let d = engine().await;
    let owner = unique("pool-net");
    let cleanup = Cleanup(owner.clone());
    let a = agent(&owner, 1);
    let ready = wait_pool(&owner, 1).await;

    let host_port = host_server("cove-host-target");
    let (docker0, _) = cove_agent::private_net::bridge_host_address(&d, "bridge")
        .await
        .unwrap();
    let peer = docker_ok(&[
        "run",
        "-d",
        "--label",
        &format!("cove.owner={}", cleanup.0),
        "cove/busybox:latest",
        "sh",
        "-c",
        "mkdir -p /www && echo cove-peer > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    let peer_ip = docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &peer,
    ]);
    let targets = [
        format!("http://{docker0}:{host_port}/"),
        format!("http://{peer_ip}:8080/"),
    ];
    let probe = |urls: &[String]| {
        urls.iter()
            .map(|u| {
                format!(
                    "if timeout 3 wget -q -O - {u} >/dev/null 2>&1; then echo REACHED {u}; else echo BLOCKED {u}; fi"
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Positive control: from the default bridge every target answers.
    let control = docker_ok(&[
        "run",
        "--rm",
        "--label",
        &format!("cove.owner={}", cleanup.0),
        "cove/busybox:latest",
        "sh",
        "-c",
        &probe(&targets),
    ]);
    for u in &targets {
        assert!(
            control.contains(&format!("REACHED {u}")),
            "control: {control}"
        );
    }
    let script = format!("hostname; {}", probe(&targets));
    a.queue.push(lease(201, POOL_IMAGE, &[&script]));
    let (r, out) = a.queue.wait(201).await;
    assert_eq!(r.outcome, JobOutcome::Succeeded, "{r:?} {out:?}");
    assert!(
        ready.iter().any(|(id, _)| out
            .iter()
            .any(|l| l.len() == 12 && id.starts_with(l.as_str()))),
        "the job did not run in the pooled sandbox {ready:?}: {out:?}"
    );
    for u in &targets {
        assert!(
            out.iter().any(|l| *l == format!("BLOCKED {u}")),
            "a pooled job reached {u}: {out:?}"
        );
    }
    a.stop.cancel();
    a.task.await.unwrap();
}

/// Child mode of [`killing_the_agent_while_its_pool_fills_leaves_nothing_after_restart`].
const CHILD_OWNER: &str = "COVE_TEST_POOL_CHILD_OWNER";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_agent_while_its_pool_fills_leaves_nothing_after_restart() {
    if let Ok(owner) = std::env::var(CHILD_OWNER) {
        // The agent that gets killed: fills a pool of 4 and waits for leases forever.
        let a = agent(&owner, 4);
        a.task.await.unwrap();
        return;
    }
    engine().await;
    let owner = unique("pool-kill");
    let _cleanup = Cleanup(owner.clone());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killing_the_agent_while_its_pool_fills_leaves_nothing_after_restart",
            "--nocapture",
        ])
        .env(CHILD_OWNER, &owner)
        .spawn()
        .unwrap();
    // Killed while the pool fills: one sandbox ready, more being made.
    wait_pool(&owner, 1).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let prefix = slot_prefix(&owner);
    let leftovers = || {
        let containers = docker_ok(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL_POOL}={}", token(&owner)),
        ]);
        let networks = docker_ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=cove-job-{prefix}"),
        ]);
        let rules = String::from_utf8_lossy(
            &Command::new("iptables")
                .args(["-w", "-S", "INPUT"])
                .output()
                .unwrap()
                .stdout,
        )
        .lines()
        .filter(|l| l.contains(&prefix))
        .count();
        (
            containers.split_whitespace().count(),
            networks.split_whitespace().count(),
            rules,
        )
    };
    let (c, n, r) = leftovers();
    assert!(
        c >= 1 && n >= 1 && r >= 1,
        "the kill left nothing to clean up: {c} {n} {r}"
    );

    // The agent starts again (no pool this time) and stops at its first lease request.
    let started = CancellationToken::new();
    let queue = Arc::new(Queue {
        on_lease: Some(started.clone()),
        ..Default::default()
    });
    let config = WorkerConfig {
        slots: 1,
        lease_wait: Duration::from_millis(200),
        owner: Some(owner.clone()),
        pool: 0,
        pool_image: POOL_IMAGE.into(),
        ..Default::default()
    };
    job_worker::run(
        bollard::Docker::connect_with_local_defaults().unwrap(),
        queue,
        config,
        started,
    )
    .await;
    assert_eq!(
        leftovers(),
        (0, 0, 0),
        "the killed agent's pool was left behind"
    );
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Lease handed out → the first step's start line (the agent's side of push → first step),
/// with the pool off and with a pool of 2, one job at a time. Prints p50/p95; asserts nothing
/// about time. `cargo test -p cove-agent --test job_pool bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run by hand (docs/benchmarks.md)"]
async fn bench_lease_to_first_step_pooled_and_cold() {
    engine().await;
    let samples: usize = std::env::var("COVE_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for pool in [0, 2] {
        let owner = unique("pool-bench");
        let _cleanup = Cleanup(owner.clone());
        let a = agent(&owner, pool);
        if pool > 0 {
            wait_pool(&owner, pool).await;
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let mut lat = Vec::new();
        for i in 0..samples {
            let job = 900 + i as i64;
            let t0 = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            a.queue.push(lease(job, POOL_IMAGE, &["echo first"]));
            let (r, _) = a.queue.wait(job).await;
            assert_eq!(r.outcome, JobOutcome::Succeeded);
            let first = a
                .queue
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(j, l)| *j == job && l.text.contains("$ echo first"))
                .map(|(_, l)| l.ts as i64)
                .unwrap();
            lat.push((first - t0) as f64);
            // Back-to-back jobs like pushes a second apart: the refill runs in between.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!(
            "lease → first step over {samples} jobs, pool {}: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            if pool == 0 { "off".to_string() } else { pool.to_string() },
            pct(lat.clone(), 0.5),
            pct(lat.clone(), 0.95),
            pct(lat, 1.0)
        );
        a.stop.cancel();
        a.task.await.unwrap();
    }
}
