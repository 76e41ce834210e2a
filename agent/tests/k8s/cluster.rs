//! What the tests on the real cluster share (`#[path = "k8s/cluster.rs"] mod cluster;`):
//! the namespace, kubectl, whether a cluster answers (its absence fails in CI), and a client
//! with only the agent's Role of deploy/kubernetes/rbac.yaml.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const NAMESPACE: &str = "cove";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new(kubectl_bin())
        .args(args)
        .output()
        .expect("run kubectl")
}

/// kubectl from PATH, else the cluster script's cache.
pub fn kubectl_bin() -> PathBuf {
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

/// Whether a cluster answers; in CI its absence is a failure.
pub fn cluster_ready() -> bool {
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
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no Kubernetes cluster: {why}");
    }
    eprintln!("SKIP: no Kubernetes cluster: {why}");
    false
}

pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{n:x}")
}

/// Apply deploy/kubernetes/rbac.yaml as the administrator and build a client that has
/// only the agent's ServiceAccount token (kept in a file, as a kubeconfig `tokenFile`).
pub async fn agent_client(token_dir: &Path) -> kube::Client {
    let rbac = repo().join("deploy/kubernetes/rbac.yaml");
    let out = kubectl(&["apply", "-f", rbac.to_str().unwrap()]);
    assert!(out.status.success(), "apply rbac.yaml: {out:?}");
    // Pods of a new namespace need its `default` ServiceAccount, which the controller-manager
    // makes shortly after the namespace
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !kubectl(&["-n", NAMESPACE, "get", "serviceaccount", "default"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no default ServiceAccount in {NAMESPACE}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "token",
        "cove-agent",
        "--duration",
        "1h",
    ]);
    assert!(out.status.success(), "create token: {out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let token_file = token_dir.join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    // the cluster's address and CA from the admin kubeconfig, the credential replaced
    let mut config = kube::Config::infer().await.expect("kubeconfig");
    config.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.to_str().unwrap().to_string()),
        ..Default::default()
    };
    config.default_namespace = NAMESPACE.into();
    kube::Client::try_from(config).expect("client")
}
