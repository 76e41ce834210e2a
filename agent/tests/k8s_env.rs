//! The Kubernetes backend against a real cluster: a real API server, kubelet and
//! containerd from `scripts/k8s-cluster.sh start` (KUBECONFIG from its output), with
//! cove/busybox and cove/echo-server imported (`scripts/k8s-cluster.sh import …`).
//!
//! The agent's client is built from a ServiceAccount token with ONLY the Role of
//! deploy/kubernetes/rbac.yaml (applied by the test with the admin kubeconfig): one
//! environment of agent/tests/k8s/two-containers.yaml is created, exec'd into (exit codes,
//! stdin, the sidecar on localhost, the Service), written to, stopped, started (the claims
//! keep /projects and the persistent volume, the emptyDir is new), deleted — and nothing
//! labelled with it remains. A Pod whose image is not on the node fails with the reason
//! and leaves nothing.
//!
//! Ignored in the workspace run (no cluster then): `scripts/k8s-test.sh` starts the cluster,
//! imports the images and runs it with `--ignored`. Run that way, a missing cluster fails
//! the test in CI (`CI=true`); elsewhere it prints SKIP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::time::Duration;

use cove_agent::backend::kubernetes::manifest::{env_selector, LABEL_ENV, LABEL_MANAGED_BY};
use cove_agent::backend::kubernetes::{KubernetesBackend, KubernetesConfig};
use cove_agent::backend::{Backend, BackendError};
use cove_agent::PodSpec;
use devfiles::{LoadOptions, PlanOptions};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "k8s/cluster.rs"]
mod cluster;
use cluster::{agent_client, cluster_ready, repo, unique, NAMESPACE};

fn plan() -> devfiles::EnvironmentPlan {
    let path = repo().join("agent/tests/k8s/two-containers.yaml");
    devfile_fs::load_file(&path, &LoadOptions::default(), &devfile_fs::FsResolver)
        .unwrap_or_else(|r| panic!("{r}"))
        .plan(&PlanOptions {
            repo: Some("repo".into()),
        })
        .0
}

fn backend(client: kube::Client) -> KubernetesBackend {
    let mut config = KubernetesConfig::new(NAMESPACE);
    config.storage_class = Some("cove-hostpath".into());
    config.image_pull_policy = "Never".into();
    config.ready_timeout_secs = 120;
    KubernetesBackend::with_client(client, config)
}

/// Everything labelled with the environment, by kind.
async fn labelled(client: &kube::Client, env: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&env_selector(env));
    let mut left = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for p in pods.list(&lp).await.unwrap() {
        left.push(format!("pod/{}", p.metadata.name.unwrap_or_default()));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    for c in claims.list(&lp).await.unwrap() {
        left.push(format!("pvc/{}", c.metadata.name.unwrap_or_default()));
    }
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    for s in services.list(&lp).await.unwrap() {
        left.push(format!("service/{}", s.metadata.name.unwrap_or_default()));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    for s in secrets.list(&lp).await.unwrap() {
        left.push(format!("secret/{}", s.metadata.name.unwrap_or_default()));
    }
    left.sort();
    left
}

async fn sh(b: &KubernetesBackend, env: &str, component: &str, script: &str) -> (i64, String) {
    let out = b
        .exec(env, component, &["/bin/sh", "-c", script], &[], None)
        .await
        .unwrap_or_else(|e| panic!("exec `{script}`: {e}"));
    (out.exit_code, format!("{}{}", out.stdout, out.stderr))
}

/// Deletes the environment even when the test fails.
struct Cleanup(KubernetesBackend, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (b, env) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move { b.delete(&env).await.ok() });
        })
        .join()
        .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: run by scripts/k8s-test.sh (scripts/test.sh's Kubernetes step) with --ignored"]
async fn an_environment_lives_as_one_pod_with_only_the_agents_role() {
    if !cluster_ready() {
        return;
    }
    let tokens = tempfile::tempdir().unwrap();
    let client = agent_client(tokens.path()).await;

    // the token has the namespace's rights and nothing cluster-wide
    let other: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    match other.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("listing kube-system pods must be forbidden: {other:?}"),
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.list(&ListParams::default()).await.is_err(),
        "the agent must not list namespaces"
    );

    let b = backend(client.clone());
    let env = unique("k8s");
    let _cleanup = Cleanup(b.clone(), env.clone());
    let spec = PodSpec::new(env.clone(), plan());

    // create: one Pod, both containers running
    let st = b.create(&spec).await.expect("create");
    assert!(st.running(), "{st:?}");
    let names: Vec<_> = st.containers.iter().map(|c| c.component.as_str()).collect();
    assert_eq!(names, ["app", "web"]);
    assert_eq!(st.endpoints.len(), 1, "{st:?}");
    assert_eq!(st.endpoints[0].port, 8080);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = pods.get(&format!("cove-env-{env}")).await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels[LABEL_MANAGED_BY], "cove");
    assert_eq!(labels[LABEL_ENV], env);
    let app = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        app.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        (256u64 << 20).to_string()
    );
    assert_eq!(app.image_pull_policy.as_deref(), Some("Never"));

    // exec: output, environment, exit codes, a working directory
    let (code, out) = sh(&b, &env, "app", "echo $GREETING").await;
    assert_eq!((code, out.trim()), (0, "hello-from-devfile"));
    let (code, _) = sh(&b, &env, "app", "exit 3").await;
    assert_eq!(code, 3);
    let out = b
        .exec(
            &env,
            "app",
            &["sh", "-c", "echo \"$A:$(pwd)\""],
            &[("A".into(), "1".into())],
            Some("/scratch"),
        )
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.stdout.trim()), (0, "1:/scratch"));
    match b.exec(&env, "nope", &["true"], &[], None).await {
        Err(BackendError::Pod(cove_agent::PodError::NoComponent { .. })) => {}
        other => panic!(
            "an unknown component must be refused: {:?}",
            other.map(|_| ())
        ),
    }

    // the sidecar kept its image's entrypoint and answers on localhost
    let (code, out) = sh(&b, &env, "app", "wget -q -O - http://localhost:8080/").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("echo-server"), "{out}");
    // the Service reaches it too (kube-proxy programs a new Service within a second or so)
    let ip = st.endpoints[0].host_ip.clone();
    let (code, out) = sh(
        &b,
        &env,
        "app",
        &format!(
            "i=0; while [ $i -lt 30 ]; do wget -q -T 2 -O - http://{ip}:8080/ 2>/dev/null | grep echo-server && exit 0; i=$((i+1)); sleep 1; done; exit 1"
        ),
    )
    .await;
    assert_eq!(code, 0, "Service {ip}:8080: {out}");

    // stdin and stdout streams
    let mut streams = b
        .exec_streams(&env, "app", vec!["cat".into()], None)
        .await
        .unwrap();
    streams
        .stdin
        .write_all(b"ping through the API server\n")
        .await
        .unwrap();
    streams.stdin.shutdown().await.unwrap();
    let mut echoed = String::new();
    streams.stdout.read_to_string(&mut echoed).await.unwrap();
    assert_eq!(echoed, "ping through the API server\n");
    assert_eq!(streams.exit.await.unwrap(), Some(0));

    // files: /projects, the persistent and the ephemeral volume, a tar upload
    let (code, out) = sh(
        &b,
        &env,
        "app",
        "echo kept > /projects/note.txt && echo cached > /cache/c.txt && echo gone > /scratch/s.txt",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"uploaded\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "up/u.txt", &body[..]).unwrap();
    b.upload_tar(&env, "app", "/projects", tar.into_inner().unwrap())
        .await
        .expect("upload");
    assert_eq!(
        b.read_file(&env, "app", "/projects/up/u.txt", 1024)
            .await
            .unwrap()
            .as_deref(),
        Some("uploaded\n")
    );
    assert!(b.logs(&env, "web", 10).await.is_ok());

    // stop: the Pod goes, the claims, Service and stored plan stay
    b.stop(&env).await.expect("stop");
    let st = b
        .status(&env)
        .await
        .unwrap()
        .expect("a stopped environment");
    assert!(
        !st.running() && st.containers.iter().all(|c| !c.running),
        "{st:?}"
    );
    assert!(pods
        .get_opt(&format!("cove-env-{env}"))
        .await
        .unwrap()
        .is_none());
    let kept = labelled(&client, &env).await;
    assert_eq!(
        kept,
        [
            format!("pvc/cove-env-{env}-projects"),
            format!("pvc/cove-env-{env}-vol-cache"),
            format!("secret/cove-env-{env}-plan"),
            format!("service/cove-env-{env}"),
        ],
        "{kept:?}"
    );
    assert_eq!(b.list().await.unwrap().len(), 1);
    assert!(b.exec(&env, "app", &["true"], &[], None).await.is_err());

    // start: the same Pod again; /projects and the claim kept, the emptyDir new
    let st = b.start(&env).await.expect("start");
    assert!(st.running(), "{st:?}");
    assert_eq!(
        b.read_file(&env, "app", "/projects/note.txt", 1024)
            .await
            .unwrap()
            .as_deref(),
        Some("kept\n")
    );
    assert_eq!(
        b.read_file(&env, "app", "/cache/c.txt", 1024)
            .await
            .unwrap()
            .as_deref(),
        Some("cached\n")
    );
    assert_eq!(
        b.read_file(&env, "app", "/scratch/s.txt", 1024)
            .await
            .unwrap(),
        None
    );
    let (code, out) = sh(&b, &env, "app", "wget -q -O - http://localhost:8080/").await;
    assert!(code == 0 && out.contains("echo-server"), "{out}");

    // recreate (a restart with a changed devfile): the new plan runs, /projects is kept
    let mut changed = plan();
    for e in changed.containers[0]
        .env
        .iter_mut()
        .filter(|e| e.name == "GREETING")
    {
        e.value = "hello-again".into();
    }
    let st = b
        .recreate(&PodSpec::new(env.clone(), changed))
        .await
        .expect("recreate");
    assert!(st.running(), "{st:?}");
    let (code, out) = sh(&b, &env, "app", "echo $GREETING; cat /projects/note.txt").await;
    assert_eq!((code, out.as_str()), (0, "hello-again\nkept\n"));
    // and the stored plan is the new one: a stop/start keeps it
    b.stop(&env).await.expect("stop");
    b.start(&env).await.expect("start");
    let (_, out) = sh(&b, &env, "app", "echo $GREETING").await;
    assert_eq!(out.trim(), "hello-again");

    // delete: nothing labelled with the environment remains
    b.delete(&env).await.expect("delete");
    assert_eq!(labelled(&client, &env).await, Vec::<String>::new());
    assert!(b.status(&env).await.unwrap().is_none());

    // an image the node does not have: a clear reason, nothing left behind
    let bad_env = unique("k8sbad");
    let _cleanup_bad = Cleanup(b.clone(), bad_env.clone());
    let mut bad = plan();
    bad.containers[1].image = "cove/not-imported:latest".into();
    match b.create(&PodSpec::new(bad_env.clone(), bad)).await {
        Err(BackendError::NotStarted { reason, .. }) => {
            assert!(reason.contains("ErrImageNeverPull"), "{reason}");
            assert!(reason.contains("`web`"), "{reason}");
        }
        other => panic!("must fail: {:?}", other.map(|_| ())),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = labelled(&client, &bad_env).await;
        if left.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "left: {left:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
