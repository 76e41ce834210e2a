#![allow(clippy::unwrap_used)]
//! What an environment can reach, its capabilities and its resource caps,
//! on the real engine (scripts/test-env.sh; DOCKER_HOST; root for iptables,
//! `ip netns` and the loopback alias). Every probe is one short attempt at
//! a target this test started on this machine, and every "unreachable" has
//! a positive control proving the target answers from elsewhere.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use cove_agent::env_net::{self, EnvNetSettings, EnvNetwork};
use cove_agent::pod::LABEL_ENV;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};

const METADATA_IP: &str = "169.254.169.254";

fn plan(yaml: &str) -> devfiles::EnvironmentPlan {
    devfiles::load_str("test.yaml", yaml, &NoParents, &LoadOptions::default())
        .unwrap_or_else(|r| panic!("{r}"))
        .plan(&PlanOptions {
            repo: Some("repo".into()),
        })
        .0
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n:x}", std::process::id())
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap()
}

fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn runtime() -> Runtime {
    Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    )
}

/// Removes the environment (containers, volumes, network, rules) even when
/// the test fails.
struct Cleanup(Runtime, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (rt, env) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { rt.delete(&env).await.ok() });
        })
        .join()
        .ok();
    }
}

/// Removes plain containers when the test ends.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = run("docker", &["rm", "-f", id]);
        }
    }
}

/// 169.254.169.254 on this machine's loopback for the duration of the test,
/// so the metadata probe targets a server the test started (never a real
/// metadata service).
struct LocalAddress(&'static str, bool);

impl LocalAddress {
    fn add(ip: &'static str) -> LocalAddress {
        let cidr = format!("{ip}/32");
        let out = run("ip", &["addr", "add", &cidr, "dev", "lo"]);
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
            let _ = run(
                "ip",
                &["addr", "del", &format!("{}/32", self.0), "dev", "lo"],
            );
        }
    }
}

/// A machine that is not the host: a network namespace behind a veth pair
/// (host side `.1`, namespace side `.2` of a /30 in 198.18.0.0/15), with an
/// HTTP server on `.2:8080` answering `ext-ok`. Environments reach it the
/// way they reach the internet: forwarded and masqueraded by the host.
struct ExternalHost {
    ns: String,
    ip: String,
    server: std::process::Child,
    dir: std::path::PathBuf,
}

impl ExternalHost {
    fn start() -> ExternalHost {
        let pid = std::process::id();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!("{:x}", (pid ^ n) & 0xfffff);
        let ns = format!("cove-ext-{tag}");
        let (host_if, ns_if) = (format!("cvx{tag}h"), format!("cvx{tag}n"));
        let (b, c) = (18 + (n >> 16) % 2, (n >> 8) % 256);
        let d = (n % 64) * 4;
        let (host_ip, ip) = (
            format!("198.{b}.{c}.{}", d + 1),
            format!("198.{b}.{c}.{}", d + 2),
        );
        run_ok("ip", &["netns", "add", &ns]);
        run_ok(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
        );
        run_ok("ip", &["link", "set", &ns_if, "netns", &ns]);
        run_ok(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host_if],
        );
        run_ok("ip", &["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.as_str()];
            all.extend_from_slice(args);
            run_ok("ip", &all);
        };
        in_ns(&["ip", "addr", "add", &format!("{ip}/30"), "dev", &ns_if]);
        in_ns(&["ip", "link", "set", &ns_if, "up"]);
        in_ns(&["ip", "link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "ext-ok\n").unwrap();
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p"])
            .arg(format!("{ip}:8080"))
            .arg("-h")
            .arg(&dir)
            .spawn()
            .unwrap();
        ExternalHost {
            ns,
            ip,
            server,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}:8080/", self.ip)
    }

    fn cidr(&self) -> String {
        format!("{}/32", self.ip)
    }
}

impl Drop for ExternalHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // deleting the namespace deletes the veth pair
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP server on 0.0.0.0 (every host address) answering `marker`.
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

const WGET: &str = "timeout 2 wget -q -O - \"$0\" 2>&1; echo rc=$?";

/// One attempt, 2 s, from an environment's `main`: did an HTTP server answer?
async fn env_reaches(rt: &Runtime, env: &str, url: &str) -> bool {
    let out = rt
        .exec(env, "main", &["sh", "-c", WGET, url], &[], None)
        .await
        .unwrap();
    let reached = out.stdout.contains("rc=0");
    eprintln!("probe env {env} -> {url}: {reached} ({:?})", out.stdout);
    reached
}

/// The same from a plain container on the default bridge.
fn container_reaches(container: &str, url: &str) -> bool {
    let out = run_ok("docker", &["exec", container, "sh", "-c", WGET, url]);
    let reached = out.contains("rc=0");
    eprintln!("probe {container} -> {url}: {reached} ({out:?})");
    reached
}

fn curl(url: &str) -> String {
    let out = run("curl", &["-s", "-m", "5", url]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The host's global IPv4 addresses other than Docker's bridges and veths
/// (eth0 and the like).
fn other_host_addresses() -> Vec<String> {
    run_ok("ip", &["-4", "-o", "addr", "show", "scope", "global"])
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let (name, addr) = (words.get(1)?, words.get(3)?);
            let skip = ["lo", "br-", "docker", "veth", "cvx"];
            (!skip.iter().any(|p| name.starts_with(p)))
                .then(|| addr.split('/').next().unwrap_or_default().to_string())
        })
        .collect()
}

/// `cove.env=<env>` rules in INPUT and DOCKER-USER.
fn env_rules(env: &str) -> Vec<String> {
    let mut rules = Vec::new();
    for chain in ["INPUT", "DOCKER-USER"] {
        let listing = run_ok("iptables", &["-w", "-S", chain]);
        rules.extend(
            listing
                .lines()
                .filter(|l| {
                    let tag = format!("{LABEL_ENV}={env}");
                    l.contains(&format!("{tag} ")) || l.contains(&format!("{tag}\""))
                })
                .map(str::to_string),
        );
    }
    rules
}

fn network_exists(env: &str) -> bool {
    run(
        "docker",
        &["network", "inspect", &env_net::network_name(env)],
    )
    .status
    .success()
}

fn infra_ip(env: &str) -> String {
    run_ok(
        "docker",
        &[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &format!("cove-{env}--infra"),
        ],
    )
}

const WITH_SERVER: &str = r#"
schemaVersion: 2.2.0
components:
  - name: main
    container:
      image: cove/busybox:latest
      endpoints: [{name: web, targetPort: 8080}]
  - name: side
    container:
      image: cove/busybox:latest
      mountSources: false
      command: ["/bin/sh", "-c"]
      args: ["mkdir -p /www && echo MARKER > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

fn server_plan(marker: &str) -> devfiles::EnvironmentPlan {
    plan(&WITH_SERVER.replace("MARKER", marker))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environment_reaches_neither_host_nor_other_environments_nor_metadata() {
    let rt = runtime().await;
    let docker = rt.docker().clone();
    let (a, b, c) = (unique("t-isoa"), unique("t-isob"), unique("t-isoc"));
    let _clean_a = Cleanup(rt.clone(), a.clone());
    let _clean_b = Cleanup(rt.clone(), b.clone());
    // C blocks one more destination: the external host.
    let ext = ExternalHost::start();
    let rt_c = rt.clone().with_network(EnvNetwork {
        settings: EnvNetSettings {
            isolate: true,
            blocked: vec!["169.254.0.0/16".into(), ext.cidr()],
        },
        ..Default::default()
    });
    let _clean_c = Cleanup(rt_c.clone(), c.clone());
    let st_a = rt
        .create(&PodSpec::new(&a, server_plan("env-a")))
        .await
        .unwrap();
    let st_b = rt
        .create(&PodSpec::new(&b, server_plan("env-b")))
        .await
        .unwrap();
    rt_c.create(&PodSpec::new(&c, plan("schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n")))
        .await
        .unwrap();
    assert!(st_a.running() && st_b.running(), "{st_a:?} {st_b:?}");

    // Each environment is on its own labelled network, not the default bridge.
    for env in [&a, &b, &c] {
        let labels = run_ok(
            "docker",
            &[
                "network",
                "inspect",
                "-f",
                "{{json .Labels}}",
                &env_net::network_name(env),
            ],
        );
        assert!(
            labels.contains(&format!("\"{LABEL_ENV}\":\"{env}\"")),
            "{labels}"
        );
        assert_eq!(env_rules(env).len(), if *env == c { 3 } else { 2 }, "{env}");
    }

    // Targets this test started on this machine.
    let _imds = LocalAddress::add(METADATA_IP);
    let port = host_server("cove-host-target");
    let own_bridge = env_net::host_address(&docker, &a).await.unwrap();
    let (docker0, _) = cove_agent::private_net::bridge_host_address(&docker, "bridge")
        .await
        .unwrap();
    let others = other_host_addresses();
    assert!(
        !others.is_empty(),
        "no host address besides Docker's bridges"
    );
    let mut host_urls = vec![
        format!("http://{own_bridge}:{port}/"),
        format!("http://{docker0}:{port}/"),
        format!("http://{METADATA_IP}:{port}/"),
    ];
    host_urls.extend(others.iter().map(|ip| format!("http://{ip}:{port}/")));
    let b_url = format!("http://{}:8080/", infra_ip(&b));

    // Positive controls: a default-bridge container reaches every host
    // target, the host and B itself reach B.
    let mut containers = Containers(Vec::new());
    let control = run_ok(
        "docker",
        &[
            "run",
            "-d",
            "--label",
            &format!("{LABEL_ENV}-test={a}"),
            "cove/busybox:latest",
            "sleep",
            "300",
        ],
    );
    containers.0.push(control.clone());
    for url in &host_urls {
        assert!(
            container_reaches(&control, url),
            "control cannot reach {url}"
        );
    }
    assert_eq!(curl(&b_url), "env-b", "the host cannot reach B at {b_url}");
    assert!(env_reaches(&rt, &b, &b_url).await, "B cannot reach itself");

    // From A: no host address, not B, not the metadata address.
    for url in host_urls.iter().chain([&b_url]) {
        assert!(
            !env_reaches(&rt, &a, url).await,
            "environment A reached {url}"
        );
    }

    // What an environment needs still works: its own loopback, the engine's
    // DNS, a machine that is not the host (the way out to the internet).
    assert!(env_reaches(&rt, &a, "http://localhost:8080/").await);
    let dns = rt
        .exec(
            &a,
            "main",
            &["nslookup", &format!("cove-{a}--infra")],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(dns.exit_code, 0, "{dns:?}");
    assert!(env_reaches(&rt, &a, &ext.url()).await, "no way out");
    // ... and a configured blocked CIDR stops forwarded traffic (what keeps
    // a metadata service off the host out of reach).
    assert!(
        !env_reaches(&rt_c, &c, &ext.url()).await,
        "C reached a blocked CIDR"
    );

    // The published endpoint still answers on the host (the engine's proxy
    // connects into the environment; its replies are let through).
    for (st, marker) in [(&st_a, "env-a"), (&st_b, "env-b")] {
        let ep = st
            .endpoints
            .iter()
            .find(|e| e.port == 8080)
            .expect("published");
        assert_eq!(curl(&format!("http://127.0.0.1:{}/", ep.host_port)), marker);
    }
    // An interactive terminal still opens and runs.
    let mut tty = rt
        .exec_tty(
            &a,
            "main",
            vec!["sh".into(), "-c".into(), "echo tty-$((40+2))".into()],
            80,
            24,
        )
        .await
        .unwrap();
    let mut seen = String::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::StreamExt::next(&mut tty.output),
    )
    .await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    assert!(seen.contains("tty-42"), "{seen:?}");

    // Delete removes the network and every rule.
    drop(containers);
    for (runtime, env) in [(&rt, &a), (&rt, &b), (&rt_c, &c)] {
        runtime.delete(env).await.unwrap();
        assert!(!network_exists(env), "network of {env} left behind");
        assert!(env_rules(env).is_empty(), "rules of {env} left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_containers_lack_raw_sockets_and_new_privileges() {
    let rt = runtime().await;
    let env = unique("t-caps");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    rt.create(&PodSpec::new(&env, plan("schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n")))
        .await
        .unwrap();
    let status = rt
        .exec(
            &env,
            "main",
            &[
                "sh",
                "-c",
                "id -u; grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
    let text = status.stdout;
    assert!(text.starts_with("0\n"), "runs as root: {text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    let bnd = text
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    const CHOWN: u64 = 1 << 0;
    const NET_BIND_SERVICE: u64 = 1 << 10;
    const NET_RAW: u64 = 1 << 13;
    const MKNOD: u64 = 1 << 27;
    const AUDIT_WRITE: u64 = 1 << 29;
    const SETFCAP: u64 = 1 << 31;
    assert_eq!(
        bnd & (NET_RAW | MKNOD | AUDIT_WRITE | SETFCAP),
        0,
        "CapBnd {bnd:x}"
    );
    assert_eq!(
        bnd & (CHOWN | NET_BIND_SERVICE),
        CHOWN | NET_BIND_SERVICE,
        "CapBnd {bnd:x}"
    );
    // Root cannot open a raw socket.
    let ping = rt
        .exec(
            &env,
            "main",
            &["ping", "-c", "1", "-W", "1", "127.0.0.1"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_ne!(ping.exit_code, 0, "{ping:?}");
    assert!(ping.stderr.contains("permission denied"), "{ping:?}");
    // The infra container keeps no capability at all.
    let infra = run_ok(
        "docker",
        &[
            "exec",
            &format!("cove-{env}--infra"),
            "grep",
            "-E",
            "^(CapBnd|NoNewPrivs)",
            "/proc/self/status",
        ],
    );
    assert!(infra.contains("CapBnd:\t0000000000000000"), "{infra}");
    assert!(infra.contains("NoNewPrivs:\t1"), "{infra}");
}

fn nano_cpus_and_memory(env: &str, component: &str) -> String {
    run_ok(
        "docker",
        &[
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            &format!("cove-{env}-{component}"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_limits_are_capped_and_kept_across_restarts() {
    let rt = runtime().await;
    let env = unique("t-lim");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let asking = |cpu: &str, memory: &str| {
        plan(&format!(
            "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {{image: cove/busybox:latest, cpuLimit: '{cpu}', memoryLimit: {memory}}}\n  - name: free\n    attributes: {{cove/entrypoint: keep-alive}}\n    container: {{image: cove/busybox:latest, mountSources: false}}\n"
        ))
    };
    let capped = |p: devfiles::EnvironmentPlan| PodSpec {
        max_cpu_millis: Some(1000),
        max_memory_bytes: Some(512 << 20),
        ..PodSpec::new(&env, p)
    };
    // Over the server's maximum: refused with what was asked and allowed,
    // before anything is created.
    let err = rt
        .create(&capped(asking("64", "256Mi")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "component `main` asks for cpuLimit 64 CPUs; this server allows at most 1 CPU"
        ),
        "{err}"
    );
    let err = rt
        .create(&capped(asking("500m", "1Ti")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("memoryLimit 1Ti") && err.contains("at most 512Mi"),
        "{err}"
    );
    // With no configured maximum the engine's capacity is the maximum.
    let err = rt
        .create(&PodSpec::new(&env, asking("64", "1Ti")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("asks for cpuLimit 64 CPUs"), "{err}");
    assert!(
        rt.status(&env).await.unwrap().is_none(),
        "containers left behind"
    );
    assert!(!network_exists(&env), "network left behind");

    // Within it: the devfile's limits; a container without limits gets the maximum.
    let spec = capped(asking("500m", "256Mi"));
    rt.create(&spec).await.unwrap();
    let want_main = format!("500000000 {}", 256u64 << 20);
    let want_free = format!("1000000000 {}", 512u64 << 20);
    assert_eq!(nano_cpus_and_memory(&env, "main"), want_main);
    assert_eq!(nano_cpus_and_memory(&env, "free"), want_free);

    // Restart (containers recreated from the plan) keeps them; so do stop/start.
    let st = cove_agent::environment::restart(&rt, &spec.plan, &spec)
        .await
        .unwrap();
    assert!(st.running());
    assert_eq!(nano_cpus_and_memory(&env, "main"), want_main);
    assert_eq!(nano_cpus_and_memory(&env, "free"), want_free);
    rt.stop(&env).await.unwrap();
    rt.start(&env).await.unwrap();
    assert_eq!(nano_cpus_and_memory(&env, "main"), want_main);
    assert_eq!(env_rules(&env).len(), 2, "start must not duplicate rules");

    // A restart into a plan over the maximum is refused and leaves the
    // environment running as it was.
    let err = cove_agent::environment::restart(&rt, &spec.plan, &capped(asking("2", "256Mi")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 1 CPU"), "{err}");
    assert!(rt.status(&env).await.unwrap().unwrap().running());
    assert_eq!(nano_cpus_and_memory(&env, "main"), want_main);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_rules_left_by_a_killed_agent_are_cleaned_up() {
    let rt = runtime().await;
    let (gone, bare) = (unique("t-orpha"), unique("t-orphb"));
    let _c1 = Cleanup(rt.clone(), gone.clone());
    let _c2 = Cleanup(rt.clone(), bare.clone());
    let one = "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n";
    for env in [&gone, &bare] {
        rt.create(&PodSpec::new(env, plan(one))).await.unwrap();
        // the agent dies; someone removes the containers by hand
        let ids = run_ok(
            "docker",
            &["ps", "-aq", "--filter", &format!("label={LABEL_ENV}={env}")],
        );
        for id in ids.lines() {
            run_ok("docker", &["rm", "-f", id]);
        }
        assert!(network_exists(env));
        assert_eq!(env_rules(env).len(), 2);
    }
    // ... and the network of the second one too: only its rules are left.
    run_ok("docker", &["network", "rm", &env_net::network_name(&bare)]);

    let mine = |e: &str| e == gone || e == bare;
    let cleaned = env_net::cleanup_orphans_where(rt.docker(), rt.network(), Duration::ZERO, mine)
        .await
        .unwrap();
    assert_eq!(cleaned.len(), 2, "{cleaned:?}");
    for env in [&gone, &bare] {
        assert!(!network_exists(env), "network of {env} left behind");
        assert!(env_rules(env).is_empty(), "rules of {env} left behind");
    }
    // A stopped environment (containers still there) is not an orphan.
    let kept = unique("t-orphc");
    let _c3 = Cleanup(rt.clone(), kept.clone());
    rt.create(&PodSpec::new(&kept, plan(one))).await.unwrap();
    rt.stop(&kept).await.unwrap();
    let cleaned =
        env_net::cleanup_orphans_where(rt.docker(), rt.network(), Duration::ZERO, |e| e == kept)
            .await
            .unwrap();
    assert!(cleaned.is_empty(), "{cleaned:?}");
    assert!(network_exists(&kept));
    rt.start(&kept).await.unwrap();
    assert!(rt.status(&kept).await.unwrap().unwrap().running());

    // Rules of another engine's environment on this host (no network here, its bridge
    // exists: `lo` stands for it) are not this agent's: kept.
    let other = unique("t-orphd");
    let rule = [
        "INPUT",
        "-i",
        "lo",
        "-m",
        "comment",
        "--comment",
        &format!("{LABEL_ENV}={other}"),
        "-j",
        "RETURN",
    ];
    run_ok("iptables", &[&["-w", "-A"][..], &rule[..]].concat());
    let cleaned =
        env_net::cleanup_orphans_where(rt.docker(), rt.network(), Duration::ZERO, |e| e == other)
            .await
            .unwrap();
    let left = env_rules(&other).len();
    run_ok("iptables", &[&["-w", "-D"][..], &rule[..]].concat());
    assert!(cleaned.is_empty(), "{cleaned:?}");
    assert_eq!(left, 1, "another engine's rule was removed");
}
