#![allow(clippy::unwrap_used)]
//! Private networks on the real engine (scripts/test-env.sh; DOCKER_HOST).
//! Every probe is one short-timeout attempt at a target this test started on
//! this machine; positive controls from a default-bridge container prove
//! each target is live, so "unreachable" means the isolation works.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;

use cove_agent::broker::PackageFormat;
use cove_agent::gateway::{
    AllowList, BoxFuture, Gateway, GatewayConfig, GatewayError, Upstream, UpstreamSource,
};
use cove_agent::private_net::{NetOptions, PrivateNetwork, LABEL_JOB, LABEL_ROLE};

const METADATA_IP: &str = "169.254.169.254";

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
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

/// Removes containers by id when the test ends, pass or fail.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

/// 169.254.169.254 on this machine's loopback for the duration of the test,
/// so the metadata probe targets a server we started (never a real IMDS).
struct LocalAddress(&'static str, bool);

impl LocalAddress {
    fn add(ip: &'static str) -> LocalAddress {
        let cidr = format!("{ip}/32");
        let out = Command::new("ip")
            .args(["addr", "add", &cidr, "dev", "lo"])
            .output()
            .unwrap();
        let existed = String::from_utf8_lossy(&out.stderr).contains("File exists");
        assert!(
            out.status.success() || existed,
            "ip addr add {cidr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LocalAddress(ip, !existed)
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
                .output();
        }
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

/// One attempt, 2 s: did an HTTP server answer at `url`?
fn reaches(container: &str, url: &str) -> bool {
    let script = format!("timeout 2 wget -q -O - {url} 2>&1; echo rc=$?");
    let out = docker_ok(&["exec", container, "sh", "-c", &script]);
    let reached = out.contains("rc=0") || out.contains("HTTP/");
    eprintln!("probe {container} -> {url}: {reached} ({out:?})");
    reached
}

fn rule_exists(spec: &[String]) -> bool {
    let mut args = vec!["-w".to_string(), "-C".into(), "INPUT".into()];
    args.extend(spec.iter().cloned());
    Command::new("iptables")
        .args(&args)
        .output()
        .unwrap()
        .status
        .success()
}

async fn engine() -> bollard::Docker {
    let d = bollard::Docker::connect_with_local_defaults().unwrap();
    d.ping().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    );
    d
}

struct NoPackages;

impl UpstreamSource for NoPackages {
    fn upstream<'a>(
        &'a self,
        format: PackageFormat,
        repository: &'a str,
    ) -> BoxFuture<'a, Result<Upstream, GatewayError>> {
        Box::pin(async move {
            Err(GatewayError::UnknownRepository {
                format,
                repository: repository.to_string(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_network_reaches_only_the_gateway() {
    let d = engine().await;
    let job = unique("pn");
    let mut net = PrivateNetwork::create(&d, &job, NetOptions::default())
        .await
        .unwrap();
    let labels = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{json .Labels}} {{.Internal}}",
        net.id(),
    ]);
    assert!(
        labels.contains(&format!("\"{LABEL_JOB}\":\"{job}\"")),
        "{labels}"
    );
    assert!(
        labels.contains(&format!("\"{LABEL_ROLE}\":\"private-net\"")),
        "{labels}"
    );
    assert!(labels.ends_with("true"), "{labels}");
    assert_eq!(net.bridge(), format!("br-{}", &net.id()[..12]));

    // The job's gateway on the bridge address, with its one exception.
    let listener = tokio::net::TcpListener::bind((net.gateway_ip(), 0))
        .await
        .unwrap();
    let gw_port = listener.local_addr().unwrap().port();
    net.allow_gateway_port(gw_port).await.unwrap();
    let gateway = Gateway::start(
        listener,
        Arc::new(NoPackages),
        GatewayConfig::new(&job, AllowList::default()),
    )
    .unwrap();
    for spec in net.rules() {
        assert!(rule_exists(spec), "{spec:?} not installed");
    }

    // Targets this test started on this machine.
    let _imds = LocalAddress::add(METADATA_IP);
    let host_port = host_server("cove-host-target");
    // The host's address on the default bridge, found as the agent finds it
    // (Debian's engine reports no IPAM gateway for it).
    let (docker0, _) = cove_agent::private_net::bridge_host_address(&d, "bridge")
        .await
        .unwrap();
    assert!(!docker0.is_unspecified(), "no host address on docker0");
    let mut containers = Containers(Vec::new());
    let peer = docker_ok(&[
        "run",
        "-d",
        "--label",
        &format!("{LABEL_JOB}={job}"),
        "cove/busybox:latest",
        "sh",
        "-c",
        "mkdir -p /www && echo cove-peer > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    containers.0.push(peer.clone());
    let peer_ip = docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &peer,
    ]);
    let control = docker_ok(&[
        "run",
        "-d",
        "--label",
        &format!("{LABEL_JOB}={job}"),
        "cove/busybox:latest",
        "sleep",
        "300",
    ]);
    containers.0.push(control.clone());
    let build = docker_ok(&[
        "run",
        "-d",
        "--network",
        net.name(),
        "--label",
        &format!("{LABEL_JOB}={job}"),
        "cove/busybox:latest",
        "sleep",
        "300",
    ]);
    containers.0.push(build.clone());

    let host_urls = [
        format!("http://{docker0}:{host_port}/"),
        format!("http://{}:{host_port}/", net.gateway_ip()),
        format!("http://{METADATA_IP}:{host_port}/"),
    ];
    let peer_url = format!("http://{peer_ip}:8080/");
    let gateway_url = format!("{}/npm/none/", gateway.url());

    // Positive controls: from the default bridge every target answers.
    for url in host_urls.iter().chain([&peer_url]) {
        assert!(reaches(&control, url), "control cannot reach {url}");
    }
    // From the private network: only the gateway.
    for url in host_urls.iter().chain([&peer_url]) {
        assert!(!reaches(&build, url), "private network reached {url}");
    }
    assert!(reaches(&build, &gateway_url), "gateway unreachable");
    // The job's gateway is the job's: a container elsewhere (here the
    // default bridge, like any other network) cannot use it; the host can.
    assert!(
        !reaches(&control, &gateway_url),
        "default bridge reached the job's gateway"
    );
    let host_side = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &gateway_url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host_side.stdout), "404");

    drop(containers);
    gateway.shutdown().await;
    let (id, rules) = (net.id().to_string(), net.rules().to_vec());
    net.remove().await.unwrap();
    for spec in &rules {
        assert!(!rule_exists(spec), "{spec:?} left behind");
    }
    assert!(!docker(&["network", "inspect", &id]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_cannot_reach_each_other() {
    let d = engine().await;
    let (a, b) = (unique("pna"), unique("pnb"));
    let net_a = PrivateNetwork::create(&d, &a, NetOptions::default())
        .await
        .unwrap();
    let net_b = PrivateNetwork::create(&d, &b, NetOptions::default())
        .await
        .unwrap();
    let mut containers = Containers(Vec::new());
    let server_b = docker_ok(&[
        "run",
        "-d",
        "--network",
        net_b.name(),
        "cove/busybox:latest",
        "sh",
        "-c",
        "mkdir -p /www && echo job-b > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    containers.0.push(server_b.clone());
    let neighbour_b = docker_ok(&[
        "run",
        "-d",
        "--network",
        net_b.name(),
        "cove/busybox:latest",
        "sleep",
        "300",
    ]);
    containers.0.push(neighbour_b.clone());
    let client_a = docker_ok(&[
        "run",
        "-d",
        "--network",
        net_a.name(),
        "cove/busybox:latest",
        "sleep",
        "300",
    ]);
    containers.0.push(client_a.clone());
    let ip_b = docker_ok(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            net_b.name()
        ),
        &server_b,
    ]);
    let url = format!("http://{ip_b}:8080/");
    assert!(reaches(&neighbour_b, &url), "same-job containers must talk");
    assert!(!reaches(&client_a, &url), "job A reached job B");
    drop(containers);
    net_a.remove().await.unwrap();
    net_b.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_guard_removes_rules_and_network() {
    let d = engine().await;
    let job = unique("pnd");
    let mut net = PrivateNetwork::create(&d, &job, NetOptions::default())
        .await
        .unwrap();
    net.allow_gateway_port(9).await.unwrap();
    let (id, rules) = (net.id().to_string(), net.rules().to_vec());
    assert_eq!(rules.len(), 4);
    assert!(rules.iter().all(|r| rule_exists(r)));
    drop(net);
    assert!(rules.iter().all(|r| !rule_exists(r)), "rules left behind");
    assert!(!docker(&["network", "inspect", &id]).status.success());

    assert!(
        PrivateNetwork::create(&d, "bad id/..", NetOptions::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphans_of_a_killed_agent_are_cleaned_up() {
    let d = engine().await;
    let job = unique("pno");
    let mut net = PrivateNetwork::create(&d, &job, NetOptions::default())
        .await
        .unwrap();
    net.allow_gateway_port(9).await.unwrap();
    let (id, rules) = (net.id().to_string(), net.rules().to_vec());
    // A killed agent runs no destructor.
    std::mem::forget(net);
    assert!(rules.iter().all(|r| rule_exists(r)));

    // Other jobs (other tests running now) count as live and are untouched.
    let cleaned =
        cove_agent::private_net::cleanup_orphans(&d, &NetOptions::default(), |j| j != job)
            .await
            .unwrap();
    assert_eq!(cleaned, vec![job.clone()]);
    assert!(rules.iter().all(|r| !rule_exists(r)), "rules left behind");
    assert!(!docker(&["network", "inspect", &id]).status.success());
    let again = cove_agent::private_net::cleanup_orphans(&d, &NetOptions::default(), |j| j != job)
        .await
        .unwrap();
    assert!(again.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn firewall_helpers_a_killed_process_left_are_removed_and_running_ones_kept() {
    let d = engine().await;
    let label = format!("{LABEL_ROLE}=firewall");
    // what a process killed while its helper ran leaves: an exited helper nobody removes
    let exited = docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "cove/busybox:latest",
        "true",
    ]);
    let running = docker_ok(&[
        "run",
        "-d",
        "--label",
        &label,
        "cove/busybox:latest",
        "sleep",
        "60",
    ]);
    let _cleanup = Containers(vec![exited.clone(), running.clone()]);
    docker_ok(&["wait", &exited]);
    let ours = |id: &str| id == exited || id == running;
    // too young: another agent may be reading its output now
    let young = cove_agent::private_net::remove_stale_helpers(
        &d,
        std::time::Duration::from_secs(3600),
        ours,
    )
    .await
    .unwrap();
    assert_eq!(young, 0);
    assert!(docker(&["inspect", &exited]).status.success());
    let removed =
        cove_agent::private_net::remove_stale_helpers(&d, std::time::Duration::ZERO, ours)
            .await
            .unwrap();
    assert_eq!(removed, 1);
    assert!(
        !docker(&["inspect", &exited]).status.success(),
        "exited helper left"
    );
    assert!(
        docker(&["inspect", &running]).status.success(),
        "running helper removed"
    );
}
