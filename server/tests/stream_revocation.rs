//! Long-lived responses end when their caller's authorization does (issue 14): server-sent
//! event streams (a job's log lines, the run list, a run, the environment list), a followed
//! job log and terminal WebSockets end within 30 s of token revocation, logout, session
//! expiry and removal from the repository — with a reason (`event: error`, a last log line, a
//! WebSocket close frame 1008) — while the same streams of callers who keep their access stay
//! open. Real in-process server, real HTTP and WebSocket clients; the terminals run in real
//! environments (embedded agent, real Docker engine).

#![allow(clippy::unwrap_used)]

mod common;
mod team;

use std::time::{Duration, Instant};

use common::TestServer;
use cove_api::{EnvState, Scope};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use team::{bearer, Events, Next};
use tokio_tungstenite::tungstenite::Message;

/// The acceptance bound: a stream ends at most this long after its access does.
const BOUND: Duration = Duration::from_secs(30);

/// A token of `user` (password login) with read + write scopes: `(token, id)`.
async fn second_token(server: &TestServer, user: &str) -> (String, i64) {
    let r = server
        .http
        .post(server.api("/tokens"))
        .basic_auth(user, Some("correct horse battery"))
        .json(&json!({"name": "stream", "scopes": [Scope::Read, Scope::Write]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: cove_api::CreatedToken = r.json().await.unwrap();
    (created.token, created.info.id)
}

/// Revokes token `id` as its owner `user`.
async fn revoke(server: &TestServer, user: &str, id: i64) {
    let r = server
        .http
        .delete(server.api(&format!("/tokens/{id}")))
        .basic_auth(user, Some("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Logs the session of `cookie` out.
async fn logout(server: &TestServer, cookie: &str, csrf: &str) {
    let r = server
        .http
        .delete(server.api("/session"))
        .header("cookie", cookie)
        .header("x-cove-csrf", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Olga removes `user` from `olga/shared`.
async fn remove_member(server: &TestServer, t: &team::Team, user: &str) {
    let r = server
        .http
        .delete(server.api(&format!("/repos/olga/shared/members/{user}")))
        .bearer_auth(&t.olga)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// A browser session of `user` that expires `secs` from now, written to the store the way a
/// login writes it: the `Cookie` header value. Sessions renew while used (12 h after the last
/// use) but never past their maximum lifetime after login, so this one is dated back to the
/// end of that lifetime: using it cannot renew it, and it really expires.
async fn expiring_session(server: &TestServer, user: &str, secs: i64) -> String {
    let store = server.state.store();
    let user = store.user_by_name(user).await.unwrap().unwrap();
    let secret = format!("{:064x}", cove_server::store::next_id());
    let expires = cove_server::store::now_secs() + secs;
    let row = store
        .create_session(user.id, &cove_server::auth::hash_token(&secret), expires)
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", server.data_dir.join("cove.db").display());
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE sessions SET created_at = $1 WHERE id = $2")
        .bind(expires - cove_server::auth::SESSION_MAX_SECS)
        .bind(row.id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    format!("cove_session={secret}")
}

/// Reads `events` until the server ends it, which must happen within [`BOUND`] of `since`
/// with a last `error` event containing `reason`.
async fn ends_with(what: &str, events: &mut Events, since: Instant, reason: &str) {
    let mut last_error = None;
    loop {
        let left = BOUND.saturating_sub(since.elapsed());
        match events.next(left).await {
            Next::Event(name, data) if name == "error" => last_error = Some(data),
            Next::Event(..) => {}
            Next::End => break,
        }
    }
    let took = since.elapsed();
    assert!(took <= BOUND, "{what}: ended only after {took:?}");
    let last_error = last_error.unwrap_or_else(|| panic!("{what}: no error event"));
    assert!(
        last_error.contains(reason),
        "{what}: error event {last_error:?} does not say {reason:?}"
    );
}

/// The stream is still open: the server does not end it within `secs` (more than one
/// re-check).
async fn stays_open(what: &str, events: &mut Events, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, events.next(Duration::from_secs(secs + 30))).await;
        match next {
            Err(_) => return,
            Ok(Next::End) => panic!("{what}: the stream ended"),
            Ok(Next::Event(name, data)) => {
                assert_ne!(name, "error", "{what}: error event {data}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_end_within_30_s_of_revocation_logout_expiry_and_removal() {
    let server = TestServer::start_configured(|c| c.embedded_agent = false)
        .await
        .unwrap();
    let t = team::setup(&server).await;
    let run = team::open_run(&server, 7_000_001).await;
    let job_logs = format!("/runs/{run}/jobs/Build/logs/stream");
    let run_stream = format!("/runs/{run}/stream");
    let run_list = "/repos/olga/shared/runs/stream";
    let open = |path: &str, (header, value): (&'static str, String)| {
        let path = path.to_string();
        let server = &server;
        async move { Events::open(server, &path, header, &value).await }
    };

    // callers who keep their access: their streams stay open throughout
    let mut control_logs = open(&job_logs, bearer(&t.admin)).await;
    let mut control_list = open(run_list, bearer(&t.rita)).await;

    // token revocation: a job's log lines, and a followed plain-text log
    let (token, token_id) = second_token(&server, "alice").await;
    let mut logs = open(&job_logs, bearer(&token)).await;
    assert!(matches!(logs.next(BOUND).await, Next::Event(n, _) if n == "lines"));
    let mut follow = server
        .http
        .get(server.api(&format!("/runs/{run}/jobs/Build/logs?follow=true")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), 200);
    let first = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"building\n");
    let revoked = Instant::now();
    revoke(&server, "alice", token_id).await;
    ends_with(
        "job log stream, token revoked",
        &mut logs,
        revoked,
        "the token was revoked",
    )
    .await;
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(BOUND, follow.chunk())
        .await
        .expect("the followed log ends in time")
        .unwrap()
    {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        revoked.elapsed() <= BOUND,
        "followed log: {:?}",
        revoked.elapsed()
    );
    assert_eq!(rest, "[cove: log stream ended: the token was revoked]\n");

    // removal from the repository: the run list, a run and its job's log lines
    let mut list = open(run_list, bearer(&t.walt)).await;
    let mut one = open(&run_stream, bearer(&t.walt)).await;
    // (this one with user + password: HTTP Basic)
    let basic = {
        use base64::Engine;
        let pair = base64::engine::general_purpose::STANDARD.encode("walt:correct horse battery");
        ("authorization", format!("Basic {pair}"))
    };
    let mut lines = open(&job_logs, basic).await;
    assert!(matches!(list.next(BOUND).await, Next::Event(n, _) if n == "runs"));
    assert!(matches!(one.next(BOUND).await, Next::Event(n, _) if n == "run"));
    let removed = Instant::now();
    remove_member(&server, &t, "walt").await;
    for (what, events) in [
        ("run list, removed", &mut list),
        ("run, removed", &mut one),
        ("job log, removed", &mut lines),
    ] {
        ends_with(what, events, removed, "access withdrawn").await;
    }

    // logout: the environment list and the run list of a browser session
    let (cookie, csrf) = team::login(&server, "rita").await;
    let mut envs = open("/environments/stream", ("cookie", cookie.clone())).await;
    let mut runs = open(run_list, ("cookie", cookie.clone())).await;
    assert!(matches!(envs.next(BOUND).await, Next::Event(n, _) if n == "environments"));
    let logged_out = Instant::now();
    logout(&server, &cookie, &csrf).await;
    ends_with("environments, logout", &mut envs, logged_out, "logged out").await;
    ends_with("run list, logout", &mut runs, logged_out, "logged out").await;

    // session expiry
    // (expiry is counted in whole seconds: the session ends 2 to 3 s from now; the bound is
    // measured from the earliest)
    let cookie = expiring_session(&server, "alice", 3).await;
    let expiry = Instant::now() + Duration::from_secs(2);
    let mut envs = open("/environments/stream", ("cookie", cookie.clone())).await;
    assert!(matches!(envs.next(BOUND).await, Next::Event(n, _) if n == "environments"));
    tokio::time::sleep_until(expiry.into()).await;
    ends_with(
        "environments, session expiry",
        &mut envs,
        expiry,
        "the session expired",
    )
    .await;

    stays_open("admin's job log", &mut control_logs, 6).await;
    stays_open("reader's run list", &mut control_list, 6).await;
    server.stop().await;
}

/// Reads the terminal until the server closes it: the close frame must come within
/// [`BOUND`] of `since`, with code 1008 and a reason containing `reason`.
async fn closed_with(what: &str, socket: &mut team::Socket, since: Instant, reason: &str) {
    loop {
        let left = BOUND.saturating_sub(since.elapsed());
        let msg = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: the terminal is still open after {BOUND:?}"));
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008, "{what}: {frame:?}");
                assert!(frame.reason.contains(reason), "{what}: {frame:?}");
                return;
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("{what}: ended without a close frame that says why")
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Runs `echo` in the terminal and waits for its output: the terminal is live.
async fn live(what: &str, socket: &mut team::Socket) {
    socket
        .send(Message::Binary(b"echo live-$((6*7))\n".to_vec().into()))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("live-42") {
        let msg = tokio::time::timeout(BOUND, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no output; got {seen:?}"));
        match msg {
            Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Some(Ok(_)) => {}
            other => panic!("{what}: terminal ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_close_within_30_s_of_revocation_logout_expiry_and_removal() {
    cove_tests::require_docker();
    let server = TestServer::start().await.unwrap();
    let t = team::setup(&server).await;
    let mut cleanup = team::Cleanup::default();
    let (status, env) = team::create_env(&server, &t.alice, "terminals").await;
    assert_eq!(status, 201);
    let id = env.unwrap().id;
    cleanup.0.push(id.clone());
    team::wait_state(&server, &id, EnvState::Running).await;
    let open = |header: &'static str, value: String| {
        let server = &server;
        let id = id.clone();
        async move {
            team::open_terminal(server, &id, header, &value)
                .await
                .unwrap_or_else(|status| panic!("terminal refused: {status}"))
        }
    };

    // the administrator's terminal stays open throughout
    let (h, v) = bearer(&t.admin);
    let mut control = open(h, v).await;
    live("admin", &mut control).await;

    // token revocation
    let (token, token_id) = second_token(&server, "alice").await;
    let (h, v) = bearer(&token);
    let mut socket = open(h, v).await;
    live("token", &mut socket).await;
    let since = Instant::now();
    revoke(&server, "alice", token_id).await;
    closed_with("token revoked", &mut socket, since, "the token was revoked").await;

    // logout
    let (cookie, csrf) = team::login(&server, "alice").await;
    let mut socket = open("cookie", cookie.clone()).await;
    live("session", &mut socket).await;
    let since = Instant::now();
    logout(&server, &cookie, &csrf).await;
    closed_with("logout", &mut socket, since, "logged out").await;

    // session expiry
    // (ends 7 to 8 s from now: time for `live` before the first re-check that sees it)
    let cookie = expiring_session(&server, "alice", 8).await;
    let expiry = Instant::now() + Duration::from_secs(7);
    let mut socket = open("cookie", cookie).await;
    live("expiring session", &mut socket).await;
    closed_with("session expiry", &mut socket, expiry, "the session expired").await;

    // removal from the repository
    let (h, v) = bearer(&t.alice);
    let mut socket = open(h, v).await;
    live("member", &mut socket).await;
    let since = Instant::now();
    remove_member(&server, &t, "alice").await;
    closed_with("removed", &mut socket, since, "access withdrawn").await;

    live("admin, after all that", &mut control).await;
    control.close(None).await.unwrap();
    let r = server
        .http
        .delete(server.api(&format!("/environments/{id}")))
        .bearer_auth(&t.olga)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    team::wait_gone(&server, &id).await;
    server.stop().await;
}
