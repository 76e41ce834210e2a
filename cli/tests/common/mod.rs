//! Shared harness of the CLI tests: a real in-process `cove-server` on 127.0.0.1:0 with a
//! known admin token, the real `cove` binary, the real `git` client, and the API calls that
//! set up users, tokens, repositories and members.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use cove_api::CreatedToken;
use cove_server::{AppState, Config, Server};
use serde_json::json;
use tempfile::TempDir;

/// The admin token of every server these tests start.
pub const ADMIN_TOKEN: &str = "cove_cli_tests_admin_token_0123456789abcdef012345";

/// A server serving on 127.0.0.1:0 until this is dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// A fresh `XDG_CONFIG_HOME` for the `cove` binary.
    pub home: TempDir,
    /// The server's data directory.
    pub data: TempDir,
    pub state: AppState,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    /// `url` + `/api/v1` + `path`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// GET API `path` (after `/api/v1`) as the admin; the decoded JSON of a 2xx answer.
    pub async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(self.api(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Starts a server on a new data directory with [`ADMIN_TOKEN`], its configuration changed by
/// `change` first.
pub async fn serve(change: impl FnOnce(&mut Config)) -> Served {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::new(data.path());
    config.admin_token = Some(ADMIN_TOKEN.into());
    change(&mut config);
    let server = Server::new(config).await.unwrap();
    let state = server.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    Served {
        url,
        home: tempfile::tempdir().unwrap(),
        data,
        state,
        http: reqwest::Client::new(),
        _stop: tx,
    }
}

/// Whether a Docker engine is configured. Without one the caller skips (prints SKIP), except
/// in CI where this fails.
pub fn docker_or_skip() -> bool {
    if std::env::var_os("DOCKER_HOST").is_none() && !Path::new("/var/run/docker.sock").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: a Docker engine must answer (set DOCKER_HOST); tests never skip in CI"
        );
        eprintln!("SKIP: no Docker engine (set DOCKER_HOST)");
        return false;
    }
    true
}

/// [`serve`], and a Docker engine answered its embedded agent.
pub async fn serve_with_engine(change: impl FnOnce(&mut Config)) -> Served {
    let s = serve(change).await;
    assert!(
        s.state.envs().has_agent(),
        "no Docker engine answered: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    s
}

/// A server whose embedded agent runs jobs in `cove/busybox` on the Docker engine (agent
/// heartbeat 500 ms), its configuration changed by `change` after that; `None` (SKIP) without
/// an engine, outside CI.
pub async fn serve_jobs(change: impl FnOnce(&mut Config)) -> Option<Served> {
    if !docker_or_skip() {
        return None;
    }
    Some(
        serve(|config| {
            config.runs.default_image = "cove/busybox:latest".into();
            config.runs.heartbeat = std::time::Duration::from_millis(500);
            change(config);
        })
        .await,
    )
}

/// The real `cove` binary with config home `home`, talking to `url` as the holder of `token`
/// (`COVE_URL`, `COVE_TOKEN`).
pub fn cove_command(home: &Path, url: &str, token: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cove"));
    cmd.env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", token);
    cmd
}

/// The real `cove` binary with config home `home` and no `COVE_URL` / `COVE_TOKEN`: what
/// `cove login` wrote there is all it knows.
pub fn logged_in_command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cove"));
    cmd.env("XDG_CONFIG_HOME", home)
        .env_remove("COVE_URL")
        .env_remove("COVE_TOKEN");
    cmd
}

/// Runs `cove args` against `url` as the holder of `token`.
pub fn cove(home: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    cove_command(home, url, token).args(args).output().unwrap()
}

/// Runs `cove args` with what `cove login` stored in `home`.
pub fn cove_logged_in(home: &Path, args: &[&str]) -> Output {
    logged_in_command(home).args(args).output().unwrap()
}

/// [`cove`] on a blocking thread, for async tests.
pub async fn cove_async(home: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    let mut cmd = cove_command(home, url, token);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// [`cove_logged_in`] on a blocking thread, for async tests.
pub async fn cove_logged_in_async(home: &Path, args: &[&str]) -> Output {
    let mut cmd = logged_in_command(home);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The stdout of a `cove` that succeeded; fails with its exit code, stdout and stderr otherwise.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cove failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the real `git` in `dir` with no prompts, no user or system configuration and a fixed
/// author; whatever it did.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap()
}

/// [`git_output`] that must succeed (fails with git's stderr); its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`git`] on a blocking thread, for async tests.
pub async fn git_async(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git(&dir, &args)
    })
    .await
    .unwrap()
}

/// The admin's push URL of `admin/<repo>` on the server at `url`.
pub fn admin_git_url(url: &str, repo: &str) -> String {
    format!(
        "http://cove:{ADMIN_TOKEN}@{}/git/admin/{repo}.git",
        url.trim_start_matches("http://")
    )
}

/// Creates user `name` with `password` as the admin (201).
pub async fn create_user(http: &reqwest::Client, url: &str, name: &str, password: &str) {
    let r = http
        .post(format!("{url}/api/v1/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Creates token `token_name` with `scopes` for user `name`, signing in with `password` (201).
pub async fn create_token(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    password: &str,
    token_name: &str,
    scopes: &[&str],
) -> CreatedToken {
    let r = http
        .post(format!("{url}/api/v1/tokens"))
        .basic_auth(name, Some(password))
        .json(&json!({"name": token_name, "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<CreatedToken>().await.unwrap()
}

/// Creates repository `name` as the holder of `token` (201).
pub async fn create_repo(http: &reqwest::Client, url: &str, token: &str, name: &str) {
    let r = http
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Makes user `name` a member of `repo` (`owner/name`) with `role`, as the admin; the answer
/// is the caller's to check.
pub async fn put_member(
    http: &reqwest::Client,
    url: &str,
    repo: &str,
    name: &str,
    role: &str,
) -> reqwest::Response {
    http.put(format!("{url}/api/v1/repos/{repo}/members/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"role": role}))
        .send()
        .await
        .unwrap()
}
