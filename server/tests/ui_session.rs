#![allow(clippy::unwrap_used)]
//! The web UI's server side: browser sessions (login with user + password, cookie flags,
//! CSRF on cookie-authenticated changes, logout, expiry, only hashes stored), the
//! server-sent-event streams (environments, runs, a run's DAG, a job's log lines with
//! `Last-Event-ID` resume) and the single-page-app fallback.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::TestServer;
use cove_api::{JobLogLine, LogStreamKind, SessionInfo};
use reqwest::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// Logs `user` in; returns (`name=value` for the Cookie header, the full Set-Cookie, info).
async fn login(server: &TestServer, user: &str) -> Result<(String, String, SessionInfo)> {
    server.login(user, PASSWORD).await
}

/// A minimal SSE reader: the next `(event, id, data)` within `within`.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(
        server: &TestServer,
        path: &str,
        cookie: &str,
        last_id: Option<&str>,
    ) -> Result<Events> {
        let mut req = server.http.get(server.api(path)).header(COOKIE, cookie);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str()?.to_string();
        assert!(ct.starts_with("text/event-stream"), "{path}: {ct}");
        Ok(Events {
            resp,
            buf: String::new(),
        })
    }

    async fn next(&mut self, within: Duration) -> Result<(String, Option<String>, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // keep-alive comment
                }
                return Ok((event, id, data.join("\n")));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await??;
            match chunk {
                Some(bytes) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                None => bail!("stream ended"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_login_csrf_logout_and_expiry() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let bob_token = server.create_user("bob").await?;
    let (cookie, set_cookie, info) = login(&server, "bob").await?;
    let secret = cookie.strip_prefix("cove_session=").unwrap().to_string();

    // Cookie flags: HttpOnly, SameSite=Strict, Path=/, an expiry, not Secure over plain http.
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            set_cookie.contains(flag),
            "{flag} missing: cookie flags {:?}",
            set_cookie.replace(&secret, "…")
        );
    }
    assert!(!set_cookie.contains("Secure"));
    assert_eq!(info.username, "bob");
    let csrf = info.csrf_token.clone().unwrap();
    assert_eq!(csrf.len(), 64);
    assert_ne!(csrf, secret);

    // The cookie authenticates reads; GET /session hands the same CSRF token back.
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let again: SessionInfo = server
        .http
        .get(server.api("/session"))
        .header(COOKIE, &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(again.csrf_token.as_deref(), Some(csrf.as_str()));

    // Cookie-authenticated changes need X-Cove-CSRF: none or a wrong one → 403, nothing created.
    let create = |csrf: Option<&str>, name: &str| {
        let mut req = server
            .http
            .post(server.api("/repos"))
            .header(COOKIE, &cookie)
            .json(&json!({ "name": name }));
        if let Some(csrf) = csrf {
            req = req.header("X-Cove-CSRF", csrf);
        }
        req.send()
    };
    assert_eq!(create(None, "nocsrf").await?.status(), 403);
    assert_eq!(
        create(Some("0".repeat(64).as_str()), "badcsrf")
            .await?
            .status(),
        403
    );
    assert_eq!(create(Some(&secret), "secretascsrf").await?.status(), 403);
    assert_eq!(create(Some(&csrf), "withcsrf").await?.status(), 201);
    let repos: Vec<Value> = server
        .http
        .get(server.api("/repos"))
        .bearer_auth(&bob_token)
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = repos.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["withcsrf"]);

    // Bearer clients without the cookie are unaffected (no CSRF header); a change that carries
    // the live session cookie needs the CSRF header even beside a bearer token (a browser
    // attaches cookies and cached credentials to cross-site requests, never the header).
    let resp = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&bob_token)
        .json(&json!({ "name": "bybearer" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let resp = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&bob_token)
        .header(COOKIE, &cookie)
        .json(&json!({ "name": "bearerandcookie" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 403);

    // Sessions come from passwords only: a token cannot mint one; a wrong password is 401,
    // without the Basic prompt when the UI asks.
    let resp = server
        .http
        .post(server.api("/session"))
        .bearer_auth(&bob_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    let resp = server
        .http
        .post(server.api("/session"))
        .basic_auth("bob", Some("wrong password"))
        .header("X-Cove-UI", "1")
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
    let resp = server
        .http
        .post(server.api("/session"))
        .basic_auth("bob", Some("wrong password"))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers().get(WWW_AUTHENTICATE).is_none(),
        "API routes never ask for Basic (only git does)"
    );

    // A forged or unknown cookie is 401.
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, format!("cove_session={}", "a".repeat(64)))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    // Only the hash is stored: the secret and the CSRF token are in no file of the data dir.
    for entry in std::fs::read_dir(&server.data_dir)? {
        let path = entry?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path)?;
            for needle in [&secret, &csrf] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} holds a session secret",
                    path.display()
                );
            }
        }
    }

    // Logout needs the CSRF token too, then clears the cookie and ends the session.
    let resp = server
        .http
        .delete(server.api("/session"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 403);
    let resp = server
        .http
        .delete(server.api("/session"))
        .header(COOKIE, &cookie)
        .header("X-Cove-CSRF", &csrf)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    let cleared = resp.headers()[SET_COOKIE].to_str()?;
    assert!(
        cleared.starts_with("cove_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    // Expiry: a session whose time has passed is refused.
    let user = server.state.store().user_by_name("bob").await?.unwrap();
    let old = "b".repeat(64);
    server
        .state
        .store()
        .create_session(
            user.id,
            &cove_server::auth::hash_token(&old),
            cove_server::store::now_secs() - 1,
        )
        .await?;
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, format!("cove_session={old}"))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    // …while one that is still valid works (same path, so the check is the expiry).
    let fresh = "c".repeat(64);
    server
        .state
        .store()
        .create_session(
            user.id,
            &cove_server::auth::hash_token(&fresh),
            cove_server::store::now_secs() + 60,
        )
        .await?;
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, format!("cove_session={fresh}"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_deliver_runs_logs_with_resume_and_environments() -> Result<()> {
    use cove_server::store::{JobRow, RunRow};
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_user("bob").await?;
    let admin = server.state.store().user_by_name("admin").await?.unwrap();
    let resp = server
        .http
        .post(server.api("/users"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"username": "root", "password": PASSWORD, "is_admin": true}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let (cookie, _, _) = login(&server, "root").await?;
    let _ = admin;
    let repo = server.create_repo(&server.admin_token, "app").await?;
    let repo_row = server
        .state
        .store()
        .repo(&repo.owner, &repo.name)
        .await?
        .unwrap();

    // A run with a running Build and a pending Test that depends on it.
    let run_id = 777_000;
    let run = RunRow {
        id: run_id,
        repo_id: repo_row.id,
        workflow: "ci".into(),
        workflow_file: ".codecatalyst/workflows/ci.yaml".into(),
        workflow_text: String::new(),
        implicit_branch: None,
        run_mode: "QUEUED".into(),
        branch: "main".into(),
        commit_sha: "0".repeat(40),
        trigger_kind: "push".into(),
        state: cove_api::RunState::Running,
        created_at_ms: 1,
        finished_at_ms: None,
        number: 0,
        pr_number: None,
    };
    let job = |id: i64, idx: i64, action: &str, deps: Vec<String>, state| JobRow {
        id,
        run_id,
        idx,
        action: action.into(),
        depends_on: deps,
        state,
        attempt: 1,
        max_attempts: 1,
        lease_expires_ms: None,
        cancel_requested: false,
        timeout_ms: 60_000,
        started_at_ms: None,
        finished_at_ms: None,
        error: None,
        variables_json: "{}".into(),
        artifacts_json: "[]".into(),
        on_failure: Default::default(),
        labels: Default::default(),
    };
    let build = job(run_id + 1, 0, "Build", vec![], cove_api::JobState::Running);
    let test = job(
        run_id + 2,
        1,
        "Test",
        vec!["Build".into()],
        cove_api::JobState::Pending,
    );
    server
        .state
        .store()
        .create_run(&run, &[build, test])
        .await?;
    let line = |seq: u64, text: &str| JobLogLine {
        seq,
        stream: LogStreamKind::Stdout,
        ts: seq,
        text: text.into(),
    };
    server
        .state
        .store()
        .append_logs(run_id + 1, &[line(1, "first line")])
        .await?;

    // The run stream: the DAG with states.
    let mut runs = Events::open(&server, &format!("/runs/{run_id}/stream"), &cookie, None).await?;
    let (event, _, data) = runs.next(Duration::from_secs(5)).await?;
    assert_eq!(event, "run");
    let v: Value = serde_json::from_str(&data)?;
    assert_eq!(v["state"], "running");
    assert_eq!(v["jobs"][1]["depends_on"], json!(["Build"]));

    // The run list stream of the repository.
    let mut list = Events::open(
        &server,
        "/repos/admin/app/runs/stream?branch=main",
        &cookie,
        None,
    )
    .await?;
    let (event, _, data) = list.next(Duration::from_secs(5)).await?;
    assert_eq!(event, "runs");
    assert_eq!(serde_json::from_str::<Value>(&data)?[0]["id"], run_id);

    // Job logs: the stored line, then a line stored while connected, each with its seq as id.
    let logs_path = format!("/runs/{run_id}/jobs/Build/logs/stream");
    let mut logs = Events::open(&server, &logs_path, &cookie, None).await?;
    let (event, id, data) = logs.next(Duration::from_secs(5)).await?;
    assert_eq!((event.as_str(), id.as_deref()), ("lines", Some("1")));
    assert_eq!(
        serde_json::from_str::<Vec<JobLogLine>>(&data)?[0].text,
        "first line"
    );
    // stored, then pushed to this server's followers (what runs::append_logs does for an
    // agent's batch)
    let second = [line(2, "second line")];
    server
        .state
        .store()
        .append_logs(run_id + 1, &second)
        .await?;
    server.state.log_hub().publish(run_id + 1, &second);
    let (_, id, data) = logs.next(Duration::from_secs(5)).await?;
    assert_eq!(id.as_deref(), Some("2"));
    assert_eq!(
        serde_json::from_str::<Vec<JobLogLine>>(&data)?[0].text,
        "second line"
    );

    // Resume: Last-Event-ID 1 gets line 2 only.
    let mut resumed = Events::open(&server, &logs_path, &cookie, Some("1")).await?;
    let (_, id, data) = resumed.next(Duration::from_secs(5)).await?;
    assert_eq!(id.as_deref(), Some("2"));
    assert_eq!(serde_json::from_str::<Vec<JobLogLine>>(&data)?.len(), 1);

    // The run ends: the run stream sends the final state, then `end`; the log stream ends too.
    use cove_api::JobState::{Pending, Running, Succeeded};
    for (id, from) in [(run_id + 1, Running), (run_id + 2, Pending)] {
        let now = cove_server::store::now_ms();
        assert!(
            server
                .state
                .store()
                .end_job(id, from, None, Succeeded, None, None, now)
                .await?
        );
    }
    cove_server::runs::settle_run(&server.state, run_id).await?;
    let (event, _, data) = runs.next(Duration::from_secs(5)).await?;
    assert_eq!(event, "run");
    let v: Value = serde_json::from_str(&data)?;
    assert_eq!(v["state"], "succeeded");
    assert_eq!(runs.next(Duration::from_secs(5)).await?.0, "end");
    assert_eq!(logs.next(Duration::from_secs(5)).await?.0, "end");

    // Environments: the list as one event (empty here), cookie-authenticated.
    let mut envs = Events::open(&server, "/environments/stream", &cookie, None).await?;
    let (event, _, data) = envs.next(Duration::from_secs(5)).await?;
    assert_eq!((event.as_str(), data.as_str()), ("environments", "[]"));

    // Streams are authorized like every route: no credential → 401, non-member → 404.
    let resp = server
        .http
        .get(server.api(&format!("/runs/{run_id}/stream")))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    let (bob_cookie, _, _) = login(&server, "bob").await?;
    let resp = server
        .http
        .get(server.api(&format!("/runs/{run_id}/stream")))
        .header(COOKIE, &bob_cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_page_app_is_served_at_the_root_and_api_misses_stay_json() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    for path in ["/", "/index.html"] {
        let resp = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await?;
        // 200 with the built UI, 503 with the "not built" page: HTML either way.
        assert!(
            resp.status() == 200 || resp.status() == 503,
            "{path}: {}",
            resp.status()
        );
        assert!(resp.headers()["content-type"]
            .to_str()?
            .starts_with("text/html"));
        let csp = resp.headers()["content-security-policy"].to_str()?;
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        assert!(resp.text().await?.contains("<html"));
    }
    // The app routes in the fragment: other paths are plain 404s (mistyped git URLs too).
    for path in [
        "/envs",
        "/real.git/info/refs?service=git-upload-pack",
        "/git/x",
        "/api",
    ] {
        let resp = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await?;
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = server.http.get(server.api("/no-such-route")).send().await?;
    assert_eq!(resp.status(), 404);
    assert!(resp.headers()["content-type"]
        .to_str()?
        .starts_with("application/json"));
    let resp = server
        .http
        .get(format!("{}/assets/missing-ABCDEFGH.js", server.url))
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    // No way out of the asset directory (encoded or not): at most the app's index page.
    for path in [
        "/..%2F..%2Fetc/passwd",
        "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/a/../../etc/passwd",
    ] {
        let resp = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await?;
        let body = resp.text().await?;
        assert!(!body.contains("root:"), "{path}");
    }
    server.stop().await;
    Ok(())
}
