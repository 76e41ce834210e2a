//! Shared test harness: an in-process server on 127.0.0.1:0 with a temporary data directory,
//! an HTTP client, and a wrapper around the real `git` CLI.
#![allow(dead_code, clippy::unwrap_used)]

pub mod dockerd;
pub mod envs;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_api::{CreatedToken, Repo, Scope};
use cove_server::{AppState, Config, Server};
use serde_json::json;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "cove_test_admin_token_0123456789abcdef0123456789";

pub struct TestServer {
    pub url: String,
    pub admin_token: String,
    pub data_dir: PathBuf,
    pub state: AppState,
    pub http: reqwest::Client,
    pub tmp: TempDir,
    config: Config,
    /// An agent registered on first use by [`TestServer::agent_token`].
    agent: tokio::sync::OnceCell<String>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Result<TestServer> {
        Self::start_with(None).await
    }

    pub async fn start_with(database_url: Option<String>) -> Result<TestServer> {
        Self::start_configured(|c| c.database_url = database_url).await
    }

    /// Starts with the test defaults changed by `change`.
    pub async fn start_configured(change: impl FnOnce(&mut Config)) -> Result<TestServer> {
        let tmp = tempfile::tempdir()?;
        let mut config = Config::new(tmp.path().join("data"));
        config.admin_token = Some(ADMIN_TOKEN.to_string());
        change(&mut config);
        Self::start_in(tmp, config).await
    }

    /// Like [`TestServer::start_configured`], listening on `host` (port 0).
    pub async fn start_on(host: &str, change: impl FnOnce(&mut Config)) -> Result<TestServer> {
        let tmp = tempfile::tempdir()?;
        let mut config = Config::new(tmp.path().join("data"));
        config.admin_token = Some(ADMIN_TOKEN.to_string());
        config.listen = format!("{host}:0").parse()?;
        change(&mut config);
        Self::start_in(tmp, config).await
    }

    /// Stops the server and starts a new one on the same data directory (new port).
    pub async fn restart(mut self) -> Result<TestServer> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
        let tmp = std::mem::replace(&mut self.tmp, tempfile::tempdir()?);
        Self::start_in(tmp, self.config.clone()).await
    }

    async fn start_in(tmp: TempDir, config: Config) -> Result<TestServer> {
        let data_dir = config.data_dir.clone();
        let server = Server::new(config.clone()).await?;
        let state = server.state().clone();
        let host = if config.listen.ip().is_loopback() || config.listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            config.listen.ip().to_string()
        };
        let listener = tokio::net::TcpListener::bind(format!("{host}:0")).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = server
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(TestServer {
            url,
            admin_token: ADMIN_TOKEN.to_string(),
            data_dir: data_dir.canonicalize()?,
            state,
            http: reqwest::Client::new(),
            tmp,
            config,
            agent: tokio::sync::OnceCell::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    pub async fn create_repo(&self, token: &str, name: &str) -> Result<Repo> {
        let resp = self
            .http
            .post(self.api("/repos"))
            .bearer_auth(token)
            .json(&json!({ "name": name }))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!(
                "create repo {name}: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(resp.json().await?)
    }

    pub async fn create_token(&self, token: &str, scopes: &[Scope]) -> Result<CreatedToken> {
        let resp = self
            .http
            .post(self.api("/tokens"))
            .bearer_auth(token)
            .json(&json!({ "name": "test", "scopes": scopes }))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("create token: {} {}", resp.status(), resp.text().await?);
        }
        Ok(resp.json().await?)
    }

    /// Creates a user and returns a token with all its scopes.
    pub async fn create_user(&self, username: &str) -> Result<String> {
        let resp = self
            .http
            .post(self.api("/users"))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "username": username, "password": "correct horse battery" }))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("create user: {} {}", resp.status(), resp.text().await?);
        }
        let resp = self
            .http
            .post(self.api("/tokens"))
            .basic_auth(username, Some("correct horse battery"))
            .json(&json!({ "name": "t", "scopes": ["read", "write"] }))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("user token: {} {}", resp.status(), resp.text().await?);
        }
        let created: CreatedToken = resp.json().await?;
        Ok(created.token)
    }

    /// Logs `user` in with `password` (201); returns (`name=value` for the Cookie header, the
    /// full Set-Cookie, the session).
    pub async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(String, String, cove_api::SessionInfo)> {
        let resp = self
            .http
            .post(self.api("/session"))
            .basic_auth(user, Some(password))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("login {user}: {} {}", resp.status(), resp.text().await?);
        }
        let set_cookie = resp
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .context("no Set-Cookie")?
            .to_str()?
            .to_string();
        let pair = set_cookie.split(';').next().unwrap().trim().to_string();
        Ok((pair, set_cookie, resp.json().await?))
    }

    /// Makes `user` a member of `repo` (`owner/name`) with `role`, as the admin; the answer
    /// is the caller's to check.
    pub async fn put_member(
        &self,
        repo: &str,
        user: &str,
        role: &str,
    ) -> Result<reqwest::Response> {
        self.put_member_as(&self.admin_token, repo, user, role)
            .await
    }

    /// [`TestServer::put_member`] as the holder of `token`.
    pub async fn put_member_as(
        &self,
        token: &str,
        repo: &str,
        user: &str,
        role: &str,
    ) -> Result<reqwest::Response> {
        Ok(self
            .http
            .put(self.api(&format!("/repos/{repo}/members/{user}")))
            .bearer_auth(token)
            .json(&json!({ "role": role }))
            .send()
            .await?)
    }

    /// A new one-time agent registration token (`ttl_secs` default: the server's).
    pub async fn registration_token(&self, ttl_secs: Option<u64>) -> Result<String> {
        self.registration_token_for(match ttl_secs {
            Some(t) => json!({ "ttl_secs": t }),
            None => json!({}),
        })
        .await
    }

    /// A new one-time agent registration token for the request `body` (`ttl_secs`, `pool`).
    pub async fn registration_token_for(&self, body: serde_json::Value) -> Result<String> {
        let resp = self
            .http
            .post(self.api("/agents/registration-tokens"))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await?;
        if resp.status() != 201 {
            bail!(
                "registration token: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(resp.json::<cove_api::RegistrationToken>().await?.token)
    }

    /// Registers an agent named `name`: `(agent id, agent token)`.
    pub async fn register_agent(&self, name: &str) -> Result<(i64, String)> {
        let agent = self.register_agent_in(name, None, json!({})).await?;
        Ok((agent.agent_id, agent.token))
    }

    /// Registers an agent named `name` into agent pool `pool` (if any) with `labels` (a JSON
    /// object).
    pub async fn register_agent_in(
        &self,
        name: &str,
        pool: Option<&str>,
        labels: serde_json::Value,
    ) -> Result<cove_api::RegisteredAgent> {
        let registration = self
            .registration_token_for(match pool {
                Some(p) => json!({ "pool": p }),
                None => json!({}),
            })
            .await?;
        let resp = self
            .http
            .post(self.api("/agents/register"))
            .bearer_auth(&registration)
            .json(&json!({ "name": name, "labels": labels }))
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("register: {} {}", resp.status(), resp.text().await?);
        }
        Ok(resp.json().await?)
    }

    /// The token of an agent registered on first use (for tests that play the agent).
    pub async fn agent_token(&self) -> Result<String> {
        self.agent
            .get_or_try_init(|| async { Ok(self.register_agent("test-agent").await?.1) })
            .await
            .cloned()
    }

    /// Clone URL with the token as Basic password.
    pub fn git_url(&self, repo: &str, token: Option<&str>) -> String {
        let host = self.url.trim_start_matches("http://");
        match token {
            Some(t) => format!("http://cove:{t}@{host}/git/{repo}.git"),
            None => format!("http://{host}/git/{repo}.git"),
        }
    }

    /// All refs of a hosted repository, read straight from disk.
    pub fn disk_refs(&self, repo: &str) -> Result<String> {
        let path = self.data_dir.join("repos").join(format!("{repo}.git"));
        let out = std::process::Command::new("git")
            .args(["for-each-ref", "--format=%(refname) %(objectname)"])
            .current_dir(&path)
            .env("GIT_DIR", &path)
            .output()?;
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// Runs real `git` in `dir` with no prompts and no user/system config.
pub async fn git(dir: &Path, args: &[&str]) -> Result<Output> {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .output()
        .await
        .with_context(|| format!("running git {args:?}"))?;
    Ok(out)
}

/// Runs `git` and fails with its stderr unless it succeeded; returns trimmed stdout.
pub async fn git_ok(dir: &Path, args: &[&str]) -> Result<String> {
    let out = git(dir, args).await?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Clones `url` into `parent/name` and returns its path.
pub async fn clone(parent: &Path, url: &str, name: &str, extra: &[&str]) -> Result<PathBuf> {
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["clone", "-q", url, name]);
    git_ok(parent, &args).await?;
    Ok(parent.join(name))
}

/// Writes `content` to `file` in `dir`, commits it and returns the commit id.
pub async fn commit_file(dir: &Path, file: &str, content: &[u8], message: &str) -> Result<String> {
    if let Some(parent) = Path::new(file).parent() {
        std::fs::create_dir_all(dir.join(parent))?;
    }
    std::fs::write(dir.join(file), content)?;
    git_ok(dir, &["add", file]).await?;
    git_ok(dir, &["commit", "-q", "-m", message]).await?;
    git_ok(dir, &["rev-parse", "HEAD"]).await
}

/// The real `cove-server` binary, started on `port` with `data_dir`.
pub struct Proc {
    pub child: Child,
    pub url: String,
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start the real binary and wait (up to 30 s) until it answers.
pub async fn spawn_server(data_dir: &Path, port: u16) -> Result<Proc> {
    spawn_server_with(data_dir, port, SpawnOptions::default()).await
}

/// How [`spawn_server_with`] starts the real binary.
pub struct SpawnOptions<'a> {
    /// `--config` file, if any.
    pub config: Option<&'a Path>,
    /// Extra environment variables.
    pub envs: &'a [(&'a str, &'a str)],
    /// Pass the server's stderr through to the test's (default: discarded).
    pub inherit_stderr: bool,
    /// How long the server may take to answer.
    pub ready_within: Duration,
}

impl Default for SpawnOptions<'_> {
    fn default() -> Self {
        SpawnOptions {
            config: None,
            envs: &[],
            inherit_stderr: false,
            ready_within: Duration::from_secs(30),
        }
    }
}

/// Start the real binary as `options` say and wait until it answers.
pub async fn spawn_server_with(
    data_dir: &Path,
    port: u16,
    options: SpawnOptions<'_>,
) -> Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cove-server"));
    if let Some(config) = options.config {
        cmd.arg("--config").arg(config);
    }
    let child = cmd
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("COVE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .envs(options.envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(if options.inherit_stderr {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + options.ready_within;
    loop {
        let ready = http
            .get(format!("{url}/api/v1/user"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ready {
            return Ok(Proc { child, url });
        }
        if Instant::now() > deadline {
            bail!("cove-server did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `admin/<repo>`, commits `workflow` as `.codecatalyst/workflows/one.yaml` in a new
/// repository at `dir` and pushes it to `main`.
pub async fn push_workflow(
    server: &TestServer,
    dir: &Path,
    repo: &str,
    workflow: &str,
) -> Result<()> {
    server.create_repo(&server.admin_token, repo).await?;
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/one.yaml",
        workflow.as_bytes(),
        "wf",
    )
    .await?;
    let url = server.git_url(&format!("admin/{repo}"), Some(&server.admin_token));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    Ok(())
}

/// A stopped environment row `id` (default devfile's plan) in `owner/name`, written to the
/// store directly, so that environment routes have something to act on.
pub async fn insert_env_row(server: &TestServer, owner: &str, name: &str, id: &str) -> Result<()> {
    let repo = server
        .state
        .store()
        .repo(owner, name)
        .await?
        .context("repository exists")?;
    let row = cove_server::store::EnvRow {
        id: id.into(),
        name: "route-test".into(),
        repo_id: repo.id,
        owner_id: repo.owner_id,
        branch: "main".into(),
        devfile_path: None,
        state: cove_api::EnvState::Stopped,
        reason: None,
        plan_json: serde_json::to_string(&devfiles::default_devfile().plan(&Default::default()).0)?,
        devfile_text: None,
        restart_required: false,
        devfile_changes: None,
        endpoints_json: "[]".into(),
        idle_timeout_secs: 0,
        last_activity_ms: 0,
        created_at: 0,
        agent_id: None,
        placement: None,
        pooled: None,
    };
    server.state.store().create_env(&row).await?;
    Ok(())
}

/// A failed run `run_id` with one failed job `Build` (id `run_id + 1`) in `owner/name`, written
/// to the store directly.
pub async fn insert_run_row(
    server: &TestServer,
    owner: &str,
    name: &str,
    run_id: i64,
) -> Result<()> {
    use cove_server::store::{JobRow, RunRow};
    let repo = server
        .state
        .store()
        .repo(owner, name)
        .await?
        .context("repository exists")?;
    let run = RunRow {
        id: run_id,
        workflow_file: ".codecatalyst/workflows/wf.yaml".into(),
        run_mode: "QUEUED".into(),
        trigger_kind: "manual".into(),
        state: cove_api::RunState::Failed,
        finished_at_ms: Some(0),
        ..RunRow::queued(repo.id, "wf", 0)
    };
    let job = JobRow {
        id: run_id + 1,
        state: cove_api::JobState::Failed,
        attempt: 1,
        timeout_ms: 1000,
        ..JobRow::pending(run_id, 0, "Build")
    };
    server.state.store().create_run(&run, &[job]).await?;
    Ok(())
}

/// `git` run synchronously in `dir`; panics unless it succeeds.
pub fn git_blocking(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

/// The admin's push URL of `admin/<name>` on the server at `url`.
pub fn admin_git_url(url: &str, name: &str) -> String {
    url.replace("http://", &format!("http://admin:{ADMIN_TOKEN}@"))
        + &format!("/git/admin/{name}.git")
}

/// Creates `admin/<name>` through the API of the server at `url` (201).
pub async fn create_repo_http(http: &reqwest::Client, url: &str, name: &str) {
    let r = http
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Creates `admin/<name>` with `devfile` committed on `main`.
pub async fn repo_with_devfile(http: &reqwest::Client, url: &str, name: &str, devfile: &str) {
    create_repo_http(http, url, name).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    git_blocking(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("devfile.yaml"), devfile).unwrap();
    git_blocking(dir, &["add", "."]);
    git_blocking(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "devfile",
        ],
    );
    git_blocking(dir, &["push", "-q", &admin_git_url(url, name), "main"]);
}

/// (VmRSS, VmHWM) of process `pid`, in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Whether a Docker engine answers within 5 s.
pub async fn docker_available() -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), cove_agent::Runtime::connect()).await,
        Ok(Ok(_))
    )
}

/// Whether a Docker engine answers within 5 s. Without one the caller skips (prints SKIP),
/// except in CI where this fails.
pub async fn docker_engine_or_skip() -> bool {
    if docker_available().await {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: a Docker engine must answer (set DOCKER_HOST); tests never skip in CI"
    );
    eprintln!("SKIP: no Docker engine (set DOCKER_HOST)");
    false
}

/// The PostgreSQL cluster of the tests (`COVE_TEST_POSTGRES_URL`, set by
/// `eval "$(bash scripts/setup-postgres.sh)"`), if set.
pub fn postgres_base_url() -> Option<String> {
    std::env::var("COVE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A new, empty database `<prefix>_<id>` on the test cluster; `None` (prints SKIP) when
/// `COVE_TEST_POSTGRES_URL` is not set, which fails in CI.
pub async fn postgres_db_or_skip(prefix: &str) -> Result<Option<String>> {
    let Some(base) = postgres_base_url() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must set COVE_TEST_POSTGRES_URL"
        );
        eprintln!("SKIP: COVE_TEST_POSTGRES_URL not set");
        return Ok(None);
    };
    Ok(Some(create_postgres_db(&base, prefix).await?))
}

/// Drops a database made by [`create_postgres_db`] on the cluster at `base` (its pools
/// closed).
pub async fn drop_postgres_db(base: &str, url: &str) -> Result<()> {
    let Some((_, name)) = url.rsplit_once('/') else {
        return Ok(());
    };
    let pool = sqlx::AnyPool::connect(base).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Every store backend to test, as (name, database URL): SQLite in `tmp`, plus a fresh
/// PostgreSQL database when [`postgres_base_url`] is set.
pub async fn store_backends(tmp: &TempDir) -> Result<Vec<(String, String)>> {
    let mut out = vec![(
        "sqlite".to_string(),
        format!("sqlite://{}?mode=rwc", tmp.path().join("t.db").display()),
    )];
    if let Some(base) = postgres_base_url() {
        out.push((
            "postgres".to_string(),
            create_postgres_db(&base, "cove_t")
                .await
                .context("connecting to COVE_TEST_POSTGRES_URL")?,
        ));
    }
    Ok(out)
}

/// Runs `check` with the URL of each of [`store_backends`] (an error names the backend) and
/// drops the PostgreSQL database afterwards.
pub async fn on_every_backend<F, Fut>(check: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let tmp = tempfile::tempdir()?;
    for (backend, url) in store_backends(&tmp).await? {
        check(url.clone())
            .await
            .with_context(|| format!("backend {backend}"))?;
        if backend == "postgres" {
            if let Some(base) = postgres_base_url() {
                drop_postgres_db(&base, &url).await?;
            }
        }
    }
    Ok(())
}

/// A new, empty database `<prefix>_<id>` on the PostgreSQL cluster at `base`; its URL.
pub async fn create_postgres_db(base: &str, prefix: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(base).await?;
    let name = format!("{prefix}_{}", cove_server::store::next_id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let (url, _) = base.rsplit_once('/').expect("a database path");
    Ok(format!("{url}/{name}"))
}

/// GET API `path` (after `/api/v1`) as the admin; the decoded JSON of a 2xx answer.
pub async fn api_json<T: serde::de::DeserializeOwned>(
    server: &TestServer,
    path: &str,
) -> Result<T> {
    Ok(server
        .http
        .get(server.api(path))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// GET API `path` (after `/api/v1`) as the admin from the server at `url`; the decoded JSON
/// of a 2xx answer.
pub async fn api_json_at<T: serde::de::DeserializeOwned>(url: &str, path: &str) -> Result<T> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/api/v1{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The log of job `job` of run `run`, as text (2xx).
pub async fn log_text(server: &TestServer, run: i64, job: &str) -> Result<String> {
    Ok(server
        .http
        .get(server.api(&format!("/runs/{run}/jobs/{job}/logs")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The runs of `repo` (`owner/name`), newest first.
pub async fn runs_of(server: &TestServer, repo: &str) -> Result<Vec<cove_api::Run>> {
    api_json(server, &format!("/repos/{repo}/runs")).await
}

/// GET `url` as the admin and decode its JSON body; panics on any failure.
pub async fn admin_get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: String) -> T {
    http.get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A server for a separate `cove-agent` process: no embedded agent, busybox jobs, a 3 s lease,
/// 500 ms heartbeats, a reaper every 200 ms, and `retry_on_agent_lost` retries.
pub async fn start_for_agent_process(retry_on_agent_lost: u32) -> Result<TestServer> {
    TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.runs.default_image = "cove/busybox:latest".into();
        c.runs.lease = Duration::from_secs(3);
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.reap_interval = Duration::from_millis(200);
        c.runs.retry_on_agent_lost = retry_on_agent_lost;
    })
    .await
}

/// The bytes of artifact `name` of job `job` in run `run`, as the admin.
pub async fn artifact_bytes(
    server: &TestServer,
    run: i64,
    job: &str,
    name: &str,
) -> Result<bytes::Bytes> {
    Ok(server
        .http
        .get(server.api(&format!("/runs/{run}/jobs/{job}/artifacts/{name}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?)
}

/// Ids of the containers (running or not) of job `job`.
pub fn job_container_ids(job: i64) -> Vec<String> {
    job_containers(job, "{{.ID}}")
}

/// Each container (running or not) of job `job`, as a `docker ps --format` template shows it.
pub fn job_containers(job: i64, format: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=cove.job={job}"),
            "--format",
            format,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes every container of job `job`.
pub fn remove_job_containers(job: i64) {
    for id in job_container_ids(job) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &id])
            .output();
    }
}
