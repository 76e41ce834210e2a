//! Pods on the real Docker engine (start it with scripts/test-env.sh; the
//! tests fail, never skip, when no engine answers).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cove_agent::pod::LABEL_ENV;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, NoParents, PlanOptions};

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

async fn runtime() -> Runtime {
    Runtime::connect().await.expect(
        "a Docker engine must answer: run `bash scripts/test-env.sh` and export DOCKER_HOST",
    )
}

/// Removes the environment even when the test fails.
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

const TWO_CONTAINERS: &str = r#"
schemaVersion: 2.2.0
components:
  - name: main
    container:
      image: cove/busybox:latest
      env: [{name: GREETING, value: hello}]
      volumeMounts: [{name: data, path: /data}]
      endpoints: [{name: web, targetPort: 8080}]
  - name: side
    container:
      image: cove/busybox:latest
      mountSources: false
      command: ["/bin/sh", "-c"]
      args: ["mkdir -p /www && echo side-says-hi > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: data
    volume: {}
"#;

#[tokio::test]
async fn pod_shares_localhost_publishes_endpoints_and_keeps_data() {
    let rt = runtime().await;
    let env = unique("t-pod");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let spec = PodSpec::new(&env, plan(TWO_CONTAINERS));
    let status = rt.create(&spec).await.unwrap();
    assert!(status.running(), "{status:?}");
    assert_eq!(status.containers.len(), 2);

    // the sidecar's port 8080 answers on localhost inside `main`
    let mut out = rt.exec(&env, "main", &["sh", "-c", "for i in $(seq 50); do wget -q -O - http://localhost:8080/ && exit 0; sleep 0.1; done; exit 1"], &[], None).await.unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "side-says-hi");

    // env from the devfile plus PROJECTS_ROOT/PROJECT_SOURCE
    out = rt
        .exec(
            &env,
            "main",
            &[
                "sh",
                "-c",
                "echo $GREETING $PROJECTS_ROOT $PROJECT_SOURCE; pwd",
            ],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "hello /projects /projects/repo\n/projects\n");

    // the endpoint is published on 127.0.0.1 with an ephemeral host port
    let ep = status
        .endpoints
        .iter()
        .find(|e| e.port == 8080)
        .expect("published");
    assert_eq!(ep.host_ip, "127.0.0.1");
    let body = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{}/", ep.host_port),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&body.stdout).trim(), "side-says-hi");

    // data in /projects and in a devfile volume survives stop/start and recreate
    rt.exec(
        &env,
        "main",
        &[
            "sh",
            "-c",
            "echo src > /projects/keep.txt && echo vol > /data/keep.txt",
        ],
        &[],
        None,
    )
    .await
    .unwrap();
    rt.stop(&env).await.unwrap();
    assert!(!rt.status(&env).await.unwrap().unwrap().running());
    rt.start(&env).await.unwrap();
    for _ in 0..3 {
        let st = rt.recreate(&spec).await.unwrap();
        assert!(st.running());
    }
    out = rt
        .exec(
            &env,
            "main",
            &["cat", "/projects/keep.txt", "/data/keep.txt"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "src\nvol\n");

    // isolation: no privileges gained, pids limited
    out = rt
        .exec(
            &env,
            "main",
            &["sh", "-c", "grep NoNewPrivs /proc/self/status"],
            &[],
            None,
        )
        .await
        .unwrap();
    assert!(out.stdout.contains('1'), "{out:?}");

    // delete leaves nothing labelled behind
    rt.delete(&env).await.unwrap();
    assert!(rt.status(&env).await.unwrap().is_none());
    let leftovers = std::process::Command::new("docker")
        .args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label={LABEL_ENV}={env}"),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&leftovers.stdout).trim().is_empty());
}

#[tokio::test]
async fn failed_create_leaves_nothing_behind() {
    let rt = runtime().await;
    let env = unique("t-fail");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    let bad = plan("schemaVersion: 2.2.0\ncomponents:\n  - name: ok\n    container: {image: cove/busybox:latest}\n  - name: broken\n    container: {image: cove/does-not-exist:1}\n");
    let err = rt.create(&PodSpec::new(&env, bad)).await.unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
    assert!(
        rt.status(&env).await.unwrap().is_none(),
        "containers left behind"
    );
}

#[tokio::test]
async fn list_finds_environments_by_label() {
    let rt = runtime().await;
    let env = unique("t-list");
    let _cleanup = Cleanup(rt.clone(), env.clone());
    rt.create(&PodSpec::new(&env, plan("schemaVersion: 2.2.0\ncomponents:\n  - name: a\n    container: {image: cove/busybox:latest}\n"))).await.unwrap();
    let all = rt.list().await.unwrap();
    assert!(all.iter().any(|s| s.env_id == env && s.running()));
    let st = rt.wait_running(&env, Duration::from_secs(5)).await.unwrap();
    assert!(st.running());
}

#[tokio::test]
async fn deletes_of_one_environment_at_once_all_succeed() {
    // Two removals of one container at once: Docker answers the later one 409 "removal …
    // already in progress". A delete waits for that removal instead of failing (a create's
    // clean-up racing a delete, two agents on one engine).
    let rt = runtime().await;
    for round in 0..3 {
        let env = unique(&format!("t-race{round}"));
        let _cleanup = Cleanup(rt.clone(), env.clone());
        rt.create(&PodSpec::new(&env, plan(TWO_CONTAINERS)))
            .await
            .unwrap();
        let (a, b, c) = tokio::join!(rt.delete(&env), rt.delete(&env), rt.delete(&env));
        for r in [a, b, c] {
            r.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert!(rt.status(&env).await.unwrap().is_none(), "round {round}");
        let label = format!("{LABEL_ENV}={env}");
        let left = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label={label}")])
            .output()
            .unwrap();
        assert!(left.stdout.is_empty(), "round {round}: containers left");
    }
}
