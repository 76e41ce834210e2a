//! A repository shared by a team, for the access tests (`env_access.rs`,
//! `stream_revocation.rs`): `olga/shared` owned by olga, alice and walt writers, rita reader,
//! sam a stranger, `admin` the administrator; a busybox devfile on `main`. Helpers for
//! environments (create, wait) and terminal WebSockets through the public API.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cove_api::{EnvState, Environment};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::common::{self, TestServer};

pub const DEVFILE: &str =
    "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n";

/// Everyone's token (read + write scopes; the administrator's has every scope).
pub struct Team {
    pub admin: String,
    pub olga: String,
    pub alice: String,
    pub walt: String,
    pub rita: String,
    pub sam: String,
}

/// Creates the users, `olga/shared` with its members and the devfile on `main`.
pub async fn setup(server: &TestServer) -> Team {
    let olga = server.create_user("olga").await.unwrap();
    let alice = server.create_user("alice").await.unwrap();
    let walt = server.create_user("walt").await.unwrap();
    let rita = server.create_user("rita").await.unwrap();
    let sam = server.create_user("sam").await.unwrap();
    let r = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "shared", "owner": "olga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (user, role) in [("alice", "writer"), ("walt", "writer"), ("rita", "reader")] {
        set_member(server, &olga, user, role).await;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::git_ok(dir, &["init", "-q", "-b", "main"])
        .await
        .unwrap();
    common::commit_file(dir, "devfile.yaml", DEVFILE.as_bytes(), "devfile")
        .await
        .unwrap();
    let url = server.git_url("olga/shared", Some(&olga));
    common::git_ok(dir, &["push", "-q", &url, "main"])
        .await
        .unwrap();
    Team {
        admin: server.admin_token.clone(),
        olga,
        alice,
        walt,
        rita,
        sam,
    }
}

/// Gives `user` `role` on `olga/shared` (as `owner_token`).
pub async fn set_member(server: &TestServer, owner_token: &str, user: &str, role: &str) {
    let r = server
        .put_member_as(owner_token, "olga/shared", user, role)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Creates an environment in `olga/shared` as `token`: the status, and the environment on 201.
pub async fn create_env(
    server: &TestServer,
    token: &str,
    name: &str,
) -> (StatusCode, Option<Environment>) {
    let r = server
        .http
        .post(server.api("/repos/olga/shared/environments"))
        .bearer_auth(token)
        .json(&json!({ "name": name, "idle_timeout_secs": 0 }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status == 201 {
        (status, Some(r.json().await.unwrap()))
    } else {
        (status, None)
    }
}

/// The environment as the administrator sees it (`None` once deleted).
pub async fn env(server: &TestServer, id: &str) -> Option<Environment> {
    let r = server
        .http
        .get(server.api(&format!("/environments/{id}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return None;
    }
    assert_eq!(r.status(), 200);
    Some(r.json().await.unwrap())
}

/// Waits (up to 120 s) until the environment is in `want`; panics when it fails.
pub async fn wait_state(server: &TestServer, id: &str, want: EnvState) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = env(server, id).await.expect("environment exists");
        if e.state == want {
            return;
        }
        assert!(
            e.state != EnvState::Failed || want == EnvState::Failed,
            "environment {id} failed: {:?}",
            e.reason
        );
        assert!(
            Instant::now() < deadline,
            "environment {id} is {:?}, not {want:?}",
            e.state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 120 s) until the environment is gone.
pub async fn wait_gone(server: &TestServer, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while env(server, id).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "environment {id} was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the terminal WebSocket of environment `id` with `header: value` as credential
/// (`Authorization: Bearer …` or `Cookie: …`): the socket, or the HTTP status of the refusal.
pub async fn open_terminal(
    server: &TestServer,
    id: &str,
    header: &str,
    value: &str,
) -> Result<Socket, u16> {
    use tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/api/v1/environments/{id}/terminal",
        server.url.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        tungstenite::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("terminal WebSocket: {e}"),
    }
}

/// Opens the WebSocket at API `path` (after `/api/v1`) with one header: the socket, or the
/// HTTP status of the refusal.
pub async fn open_ws(
    server: &TestServer,
    path: &str,
    header: &str,
    value: &str,
) -> Result<Socket, u16> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}/api/v1{path}", server.url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        tungstenite::http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("WebSocket {path}: {e}"),
    }
}

/// `Authorization: Bearer <token>` as a header pair for [`open_terminal`].
pub fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// Logs `user` in (the test password): `(cove_session=…, CSRF token)`.
pub async fn login(server: &TestServer, user: &str) -> (String, String) {
    let r = server
        .http
        .post(server.api("/session"))
        .basic_auth(user, Some("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "login as {user}");
    let cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let info: cove_api::SessionInfo = r.json().await.unwrap();
    (cookie, info.csrf_token.unwrap())
}

/// A server-sent-event stream read as a client does.
pub struct Events {
    resp: reqwest::Response,
    buf: String,
}

/// What the next read of an [`Events`] stream found.
#[derive(Debug)]
pub enum Next {
    /// `(event, data)`
    Event(String, String),
    /// The server ended the stream.
    End,
}

impl Events {
    /// `GET path` (after `/api/v1`) with `header: value` as credential; must answer 200.
    pub async fn open(server: &TestServer, path: &str, header: &str, value: &str) -> Events {
        let resp = server
            .http
            .get(server.api(path))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{path}: {ct}");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped) or the end, within `within`; panics when
    /// neither comes.
    pub async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::from("message"), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Next::Event(event, data.join("\n"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("an event or the end of the stream in time");
            match chunk {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return Next::End,
            }
        }
    }
}

/// Removes the Docker objects of the environments it holds when dropped (also when a test
/// fails half-way); only objects labelled with those environments' ids.
#[derive(Default)]
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.0 {
            let label = format!("label=cove.env={id}");
            for (list, remove) in [
                (["ps", "-aq"].as_slice(), ["rm", "-f"].as_slice()),
                (&["volume", "ls", "-q"], &["volume", "rm", "-f"]),
            ] {
                let Ok(out) = cove_tests::docker(list.iter().chain(&["--filter", &label])).output()
                else {
                    continue;
                };
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if !ids.is_empty() {
                    let _ = cove_tests::docker(remove.iter().map(|s| s.to_string()).chain(ids))
                        .output();
                }
            }
        }
    }
}

/// A run `run_id` of `olga/shared` whose one job (`Build`) waits for an agent that never comes (the
/// server has none), with a line of log: its streams stay open until something ends them.
pub async fn open_run(server: &TestServer, run_id: i64) -> i64 {
    let store = server.state.store();
    let repo = store.repo("olga", "shared").await.unwrap().unwrap();
    let run = cove_server::store::RunRow {
        id: run_id,
        workflow_file: ".codecatalyst/workflows/wf.yaml".into(),
        run_mode: "QUEUED".into(),
        trigger_kind: "manual".into(),
        state: cove_api::RunState::Running,
        ..cove_server::store::RunRow::queued(repo.id, "wf", 0)
    };
    let job = cove_server::store::JobRow {
        id: run_id + 1,
        ..cove_server::store::JobRow::pending(run_id, 0, "Build")
    };
    store.create_run(&run, &[job]).await.unwrap();
    let line = cove_api::JobLogLine {
        seq: 1,
        stream: cove_api::LogStreamKind::Stdout,
        ts: 0,
        text: "building".into(),
    };
    store.append_logs(run_id + 1, &[line]).await.unwrap();
    run_id
}
