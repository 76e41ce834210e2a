//! `parent.id` parents from a devfile registry, through the real `cove`
//! binary: an HTTP registry served by the test on 127.0.0.1 (index + devfiles,
//! from devfiles/tests/fidelity/registry), a local directory registry,
//! version selection, the on-disk cache and the offline error.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

fn fidelity() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfiles/tests/fidelity")
}

fn registry_dir() -> PathBuf {
    fidelity().join("registry")
}

/// `cove` with its own cache directory.
fn cove(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("COVE_DEVFILE_REGISTRY")
        .output()
        .expect("run cove");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

type Hits = Arc<AtomicUsize>;

async fn index(State(hits): State<Hits>) -> Json<serde_json::Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    Json(serde_json::json!([
        {"name": "other", "versions": [{"version": "1.0.0", "default": true}]},
        {"name": "nodejs", "versions": [
            {"version": "2.0.0", "default": true},
            {"version": "2.1.0"}
        ]}
    ]))
}

async fn devfile(
    State(hits): State<Hits>,
    UrlPath((id, version)): UrlPath<(String, String)>,
) -> Result<String, StatusCode> {
    hits.fetch_add(1, Ordering::SeqCst);
    std::fs::read_to_string(registry_dir().join(id).join(version).join("devfile.yaml"))
        .map_err(|_| StatusCode::NOT_FOUND)
}

/// A devfile registry on 127.0.0.1; dropped with its runtime.
struct Registry {
    url: String,
    hits: Hits,
    _rt: tokio::runtime::Runtime,
}

fn serve() -> Registry {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route("/index", get(index))
        .route("/devfiles/{id}/{version}", get(devfile))
        .with_state(hits.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    Registry { url, hits, _rt: rt }
}

fn image(plan_json: &str) -> String {
    let plan: serde_json::Value = serde_json::from_str(plan_json).expect("JSON plan");
    plan["containers"][0]["image"].as_str().unwrap().to_string()
}

#[test]
fn parent_by_id_from_an_http_registry_with_versions_cache_and_offline_error() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let reg = serve();

    // default registry, no version: the registry's default version
    let child = fidelity().join("registry-child.yaml").display().to_string();
    let (code, out, err) = cove(
        cache.path(),
        &["devfile", "plan", &child, "--registry", &reg.url],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(image(&out), "cove/universal:nodejs-2.0.0");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["containers"][0]["memory_limit_bytes"], 1u64 << 30);

    // registryUrl and version in the file; `latest` is the highest
    let pinned = work.path().join("pinned.yaml");
    let write = |version: &str, url: &str| {
        std::fs::write(
            &pinned,
            format!("schemaVersion: 2.2.0\nparent:\n  id: nodejs\n  registryUrl: {url}\n  version: {version}\n"),
        )
        .unwrap();
    };
    write("2.1.0", &reg.url);
    let p = pinned.display().to_string();
    let (code, out, err) = cove(cache.path(), &["devfile", "plan", &p]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(image(&out), "cove/universal:nodejs-2.1.0");
    write("latest", &reg.url);
    let (_, out, _) = cove(cache.path(), &["devfile", "plan", &p]);
    assert_eq!(image(&out), "cove/universal:nodejs-2.1.0");
    write("9.9.9", &reg.url);
    let (code, out, _) = cove(cache.path(), &["devfile", "validate", &p]);
    assert_eq!(code, 1);
    assert!(
        out.contains("stack `nodejs` has no version 9.9.9 (available: 2.0.0, 2.1.0)"),
        "{out}"
    );

    // the registry goes away: the pinned version comes from the cache, an
    // unpinned one is "cannot reach registry URL …"
    let url = reg.url.clone();
    let before = reg.hits.load(Ordering::SeqCst);
    drop(reg);
    write("2.1.0", &url);
    let (code, out, err) = cove(cache.path(), &["devfile", "plan", &p]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(image(&out), "cove/universal:nodejs-2.1.0");
    assert!(before > 0);
    write("latest", &url);
    let (code, out, _) = cove(cache.path(), &["devfile", "validate", &p]);
    assert_eq!(code, 1);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{p}:3:7: error: cannot read parent `nodejs` from a devfile registry: cannot reach registry URL {url}")),
        "{first}"
    );
}

#[test]
fn parent_by_id_from_a_local_directory_registry() {
    let cache = tempfile::tempdir().unwrap();
    let child = fidelity().join("registry-child.yaml").display().to_string();
    let dir = registry_dir().display().to_string();
    // no default in a directory: the highest version
    let (code, out, err) = cove(
        cache.path(),
        &["devfile", "plan", &child, "--registry", &dir],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(image(&out), "cove/universal:nodejs-2.1.0");
    // no registry at all: the error says what to give
    let (code, out, _) = cove(cache.path(), &["devfile", "validate", &child]);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "`parent.id` needs `parent.registryUrl`, `--registry URL|DIR` or COVE_DEVFILE_REGISTRY"
        ),
        "{out}"
    );
}
