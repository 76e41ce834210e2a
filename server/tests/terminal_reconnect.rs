//! Reconnecting terminals (issue 18, "The web terminal"): a terminal opened with
//! `?reconnect=ID` outlives a dropped WebSocket for the grace period, on a real environment
//! (the embedded agent on the real Docker engine). The same user reattaches with the id and
//! finds the same shell (its variables, its background jobs, its output replayed); another
//! user's attempt is refused; after the grace period the shell and its jobs are ended and the
//! id opens a fresh shell.

#![allow(clippy::unwrap_used)]

mod common;
mod team;

use std::time::{Duration, Instant};

use common::TestServer;
use cove_api::EnvState;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use team::{bearer, create_env, open_ws, wait_gone, wait_state, Socket};

/// Reads the socket until its terminal output contains `needle`: the output read (30 s bound).
async fn read_until(ws: &mut Socket, needle: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&out).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} in the terminal output: {:?}",
                    String::from_utf8_lossy(&out)
                )
            });
        match msg {
            Some(Ok(Message::Binary(b))) => out.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => panic!("unexpected control frame {t}"),
            Some(Ok(_)) => {}
            other => panic!(
                "the terminal ended ({other:?}) before {needle:?}: {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    out
}

/// The first frame of a reconnecting terminal: `{"type":"session", …}`.
async fn hello(ws: &mut Socket) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("a session frame")
        .expect("the socket is open")
        .unwrap();
    let Message::Text(text) = msg else {
        panic!("the first frame is not the session frame: {msg:?}")
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "session", "{v}");
    v
}

async fn type_line(ws: &mut Socket, line: &str) {
    ws.send(Message::Binary(format!("{line}\n").into_bytes().into()))
        .await
        .unwrap();
}

/// The command lines of every process in the environment's main container.
async fn processes(server: &TestServer, token: &str, env: &str) -> String {
    let r = server
        .http
        .post(server.api(&format!("/environments/{env}/exec")))
        .bearer_auth(token)
        .json(&json!({"command": ["sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' '"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let result: cove_api::ExecResult = r.json().await.unwrap();
    result.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_terminal_survives_a_dropped_socket_for_its_owner_only() {
    let grace = Duration::from_secs(8);
    let server = TestServer::start_configured(|c| c.intervals.terminal_grace = grace)
        .await
        .unwrap();
    let team = team::setup(&server).await;
    let (status, env) = create_env(&server, &team.olga, "reconnect").await;
    assert_eq!(status, 201);
    let env = env.unwrap().id;
    let _cleanup = cove_tests::EnvCleanup(env.clone());
    wait_state(&server, &env, EnvState::Running).await;
    let rid = "test-reconnect-0001";
    let path = format!("/environments/{env}/terminal?reconnect={rid}&cols=100&rows=30");
    let (h, olga) = bearer(&team.olga);
    let (_, admin) = bearer(&team.admin);

    // a new session: a shell with a variable and a background job
    let mut ws = open_ws(&server, &path, h, &olga).await.unwrap();
    let first = hello(&mut ws).await;
    assert_eq!(first["resumed"], false, "{first}");
    assert_eq!(first["offset"], 0, "{first}");
    type_line(&mut ws, "export X=42; sleep 4242 & echo ready-$((40+2))").await;
    read_until(&mut ws, "ready-42").await;

    // the network drops: no close frame, the TCP connection just ends
    drop(ws);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        processes(&server, &team.olga, &env)
            .await
            .contains("sleep 4242"),
        "the shell's job runs on while the session is detached"
    );

    // another user who may open terminals here (the administrator) cannot take it over
    assert_eq!(open_ws(&server, &path, h, &admin).await.err(), Some(403));

    // the owner reattaches within the grace period: the same shell, output replayed
    let mut ws = open_ws(&server, &path, h, &olga).await.unwrap();
    let again = hello(&mut ws).await;
    assert_eq!(again["resumed"], true, "{again}");
    assert_eq!(again["offset"], 0, "the whole buffer is replayed: {again}");
    let mut seen = read_until(&mut ws, "ready-42").await.len();
    type_line(&mut ws, "echo \"val:$X:\"").await;
    seen += read_until(&mut ws, "val:42:").await.len();
    drop(ws);

    // a reattach from where the client left off replays nothing it has shown
    let since = format!("{path}&since={seen}");
    let mut ws = open_ws(&server, &since, h, &olga).await.unwrap();
    let third = hello(&mut ws).await;
    assert_eq!(third["resumed"], true, "{third}");
    assert_eq!(third["offset"], seen as u64, "{third}");
    type_line(&mut ws, "echo mark-$((1+1))").await;
    let rest = String::from_utf8_lossy(&read_until(&mut ws, "mark-2").await).to_string();
    assert!(
        !rest.contains("ready-42") && !rest.contains("val:42:"),
        "output the client had shown is not sent again: {rest:?}"
    );
    drop(ws);

    // after the grace period the shell and its job are ended
    let deadline = Instant::now() + grace + Duration::from_secs(60);
    while processes(&server, &team.olga, &env)
        .await
        .contains("sleep 4242")
    {
        assert!(
            Instant::now() < deadline,
            "the detached session's processes still run after the grace period"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // and the id opens a fresh shell
    let mut ws = open_ws(&server, &path, h, &olga).await.unwrap();
    let fresh = hello(&mut ws).await;
    assert_eq!(fresh["resumed"], false, "{fresh}");
    type_line(&mut ws, "echo \"val:$X:\"").await;
    read_until(&mut ws, "val::").await;
    // the client ends it deliberately: not kept for the grace period, the id opens a new shell
    type_line(&mut ws, "export X=43").await;
    ws.send(Message::Text(r#"{"type":"close"}"#.into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the server did not close the socket of a closed session"),
        }
    }
    drop(ws);
    let mut ws = open_ws(&server, &path, h, &olga).await.unwrap();
    let after_close = hello(&mut ws).await;
    assert_eq!(after_close["resumed"], false, "{after_close}");
    type_line(&mut ws, "echo \"val:$X:\"").await;
    read_until(&mut ws, "val::").await;
    drop(ws);

    // a caller who loses access (here: the token is revoked) has the session ended at once:
    // closed with 1008, and the id opens a new shell right away
    let (token, token_id) = {
        let r = server
            .http
            .post(server.api("/tokens"))
            .basic_auth("olga", Some("correct horse battery"))
            .json(&json!({"name": "term", "scopes": ["read", "write"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: cove_api::CreatedToken = r.json().await.unwrap();
        (created.token, created.info.id)
    };
    let revocable = format!("Bearer {token}");
    let rid2 = format!("{env}/terminal?reconnect=test-reconnect-0002");
    let path2 = format!("/environments/{rid2}");
    let mut ws = open_ws(&server, &path2, h, &revocable).await.unwrap();
    assert_eq!(hello(&mut ws).await["resumed"], false);
    type_line(&mut ws, "export X=44; echo set-$((40+4))").await;
    read_until(&mut ws, "set-44").await;
    let r = server
        .http
        .delete(server.api(&format!("/tokens/{token_id}")))
        .basic_auth("olga", Some("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("the terminal was not closed after the revocation: {other:?}"),
        }
    };
    assert_eq!(code, Some(1008));
    drop(ws);
    let mut ws = open_ws(&server, &path2, h, &olga).await.unwrap();
    assert_eq!(hello(&mut ws).await["resumed"], false, "ended, not kept");
    type_line(&mut ws, "echo \"val:$X:\"").await;
    read_until(&mut ws, "val::").await;
    drop(ws);

    // a malformed reconnect id is refused
    let bad = format!("/environments/{env}/terminal?reconnect=short");
    assert_eq!(open_ws(&server, &bad, h, &olga).await.err(), Some(400));

    let r = server
        .http
        .delete(server.api(&format!("/environments/{env}")))
        .bearer_auth(&team.olga)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_gone(&server, &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_terminals_are_bounded_per_user() {
    let server = TestServer::start().await.unwrap();
    let team = team::setup(&server).await;
    let (status, env) = create_env(&server, &team.olga, "bounded").await;
    assert_eq!(status, 201);
    let env = env.unwrap().id;
    let _cleanup = cove_tests::EnvCleanup(env.clone());
    wait_state(&server, &env, EnvState::Running).await;
    let (h, olga) = bearer(&team.olga);
    let max = cove_server::envs::terminal_sessions::MAX_PER_USER;
    let path = |i: usize| format!("/environments/{env}/terminal?reconnect=test-bounded-{i:04}");

    // as many attached sessions as allowed; one more is refused
    let mut open = Vec::new();
    for i in 0..max {
        let mut ws = open_ws(&server, &path(i), h, &olga).await.unwrap();
        assert_eq!(hello(&mut ws).await["resumed"], false);
        open.push(ws);
    }
    let shells = || async {
        processes(&server, &team.olga, &env)
            .await
            .matches("sh -l ")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while shells().await != max {
        assert!(
            Instant::now() < deadline,
            "{max} shells: {}",
            shells().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        open_ws(&server, &path(max), h, &olga).await.err(),
        Some(409)
    );
    assert_eq!(
        shells().await,
        max,
        "a refused terminal leaves no shell behind"
    );
    // another user is not counted against olga's sessions
    let (_, admin) = bearer(&team.admin);
    let mut other = open_ws(&server, &path(1000), h, &admin).await.unwrap();
    assert_eq!(hello(&mut other).await["resumed"], false);
    drop(other);

    // one socket drops: its session is detached, and the next new one ends it to make room
    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ws = loop {
        match open_ws(&server, &path(max), h, &olga).await {
            Ok(ws) => break ws,
            Err(409) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("a session while one is detached: {e}"),
        }
    };
    assert_eq!(hello(&mut ws).await["resumed"], false);
    // the detached one was ended, not kept: its id is a new session, over the bound again
    assert_eq!(open_ws(&server, &path(0), h, &olga).await.err(), Some(409));
    drop(ws);
    drop(open);

    let r = server
        .http
        .delete(server.api(&format!("/environments/{env}")))
        .bearer_auth(&team.olga)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_gone(&server, &env).await;
}
