//! WebSockets through the endpoint proxy (`/env/{env}/{endpoint}/…`) and their `Origin`
//! (issue 18; docs/ports.md "WebSockets and Origin"), on a real environment (the embedded agent
//! on the real Docker engine) running a WebSocket echo service. With the session cookie, an
//! upgrade must come from Cove's own origin or carry no `Origin`: `Origin: null` (a sandboxed
//! page — the proxied pages' own, or any site's sandboxed iframe) and foreign origins get 403
//! and never reach the service. A token is not sent by browsers on their own, so a
//! token-authenticated upgrade is taken from any origin.

#![allow(clippy::unwrap_used)]

mod common;
mod team;

use std::time::{Duration, Instant};

use common::TestServer;
use cove_api::EnvState;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

const DEVFILE: &str = r#"schemaVersion: 2.2.0
metadata:
  name: web
components:
  - name: app
    container:
      image: cove/universal:latest
      mountSources: true
      endpoints:
        - name: web
          targetPort: 8000
          exposure: public
          protocol: http
"#;

/// Opens `url` as a WebSocket with these headers: the socket, or the refusal's status and body.
async fn open(url: &str, headers: &[(&str, &str)]) -> Result<team::Socket, (u16, String)> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket {url}: {e}"),
    }
}

/// One message through the echo service.
async fn echo(mut ws: team::Socket, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("an echo")
        .expect("open")
        .unwrap();
    assert_eq!(got, Message::Text(text.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxied_websockets_with_the_session_cookie_need_coves_origin() {
    let server = TestServer::start().await.unwrap();
    let alice = server.create_user("alice").await.unwrap();
    server.create_repo(&alice, "web").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::git_ok(dir, &["init", "-q", "-b", "main"])
        .await
        .unwrap();
    std::fs::write(
        dir.join("app.py"),
        include_str!("../../cli/tests/ports_support/app.py"),
    )
    .unwrap();
    common::git_ok(dir, &["add", "app.py"]).await.unwrap();
    common::commit_file(dir, "devfile.yaml", DEVFILE.as_bytes(), "app")
        .await
        .unwrap();
    let url = server.git_url("alice/web", Some(&alice));
    common::git_ok(dir, &["push", "-q", &url, "main"])
        .await
        .unwrap();
    let (status, env) = {
        let r = server
            .http
            .post(server.api("/repos/alice/web/environments"))
            .bearer_auth(&alice)
            .json(&json!({"name": "web", "idle_timeout_secs": 0}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json::<cove_api::Environment>().await.ok())
    };
    assert_eq!(status, 201);
    let env = env.unwrap().id;
    let _cleanup = cove_tests::EnvCleanup(env.clone());
    team::wait_state(&server, &env, EnvState::Running).await;

    // the echo service, started detached in the environment
    let start = "cd /projects/web && (nohup python3 app.py 8000 >/tmp/app.log 2>&1 &); \
        for i in $(seq 1 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null && exit 0; sleep 0.1; done; exit 1";
    let r = server
        .http
        .post(server.api(&format!("/environments/{env}/exec")))
        .bearer_auth(&alice)
        .json(&json!({"command": ["sh", "-c", start]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let result: cove_api::ExecResult = r.json().await.unwrap();
    assert_eq!(result.exit_code, 0, "{result:?}");

    let (cookie, _csrf) = team::login(&server, "alice").await;
    let ws_url = format!(
        "{}/env/{env}/web/ws",
        server.url.replace("http://", "ws://")
    );
    let own_origin = server.url.clone();
    let bearer = format!("Bearer {alice}");

    // the session cookie from Cove's own origin, or without Origin (not a browser): passes
    let deadline = Instant::now() + Duration::from_secs(30);
    let ws = loop {
        match open(&ws_url, &[("cookie", &cookie), ("origin", &own_origin)]).await {
            Ok(ws) => break ws,
            Err((503, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("own origin refused: {e:?}"),
        }
    };
    echo(ws, "from cove's origin").await;
    echo(
        open(&ws_url, &[("cookie", &cookie)]).await.unwrap(),
        "no origin",
    )
    .await;

    // the session cookie from a sandboxed page (Origin: null) or another site: 403 from Cove,
    // the service never answers
    for origin in ["null", "http://evil.example", "http://127.0.0.1:1"] {
        let refused = open(&ws_url, &[("cookie", &cookie), ("origin", origin)])
            .await
            .err();
        let (status, body) = refused.unwrap_or_else(|| panic!("Origin {origin} was let through"));
        assert_eq!(status, 403, "Origin {origin}: {body}");
        assert!(body.contains("cross-origin"), "Cove's refusal: {body}");
    }

    // a token is no ambient credential: any origin, null included, may use it
    echo(
        open(&ws_url, &[("authorization", &bearer), ("origin", "null")])
            .await
            .unwrap(),
        "token, Origin null",
    )
    .await;

    // plain (non-upgrade) requests with the session cookie are not affected by the rule
    let r = server
        .http
        .get(format!("{}/env/{env}/web/plain", server.url))
        .header("cookie", &cookie)
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = server
        .http
        .delete(server.api(&format!("/environments/{env}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    team::wait_gone(&server, &env).await;
}
