//! Ports of environments through the server (docs/ports.md), against a real in-process
//! server whose embedded agent runs the environment on the real Docker engine: a service
//! started in the environment with `cove env exec` (cli/tests/ports_support/app.py) is reached
//! through `cove env port-forward` (plain TCP on 127.0.0.1:LOCAL) and through the public
//! endpoint's URL (HTTP with a token, a streamed body, a WebSocket echo); Cove's credentials
//! never reach the service; `internal` and `none` endpoints are not proxied; another writer
//! gets 403 on the tunnel and a stranger 404 on both; a tunnel is activity for the idle stop.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cove_api::{EnvState, Environment};

use common::{git, ok};

const DEVFILE: &str = r#"schemaVersion: 2.2.0
metadata:
  name: ports
components:
  - name: app
    container:
      image: cove/universal:latest
      mountSources: true
      memoryLimit: 1Gi
      endpoints:
        - name: web
          targetPort: 8000
          exposure: public
          protocol: http
        - name: admin
          targetPort: 8001
          exposure: internal
          protocol: http
        - name: hidden
          targetPort: 8002
          exposure: none
          protocol: http
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ports_through_the_server() {
    let s = common::serve_with_engine(|_| {}).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for (name, pw) in [
        ("alice", "alice-password-1"),
        ("bob", "bob-password-12"),
        ("dave", "dave-password-12"),
        ("carol", "carol-password-1"),
    ] {
        common::create_user(&http, &s.url, name, pw).await;
        let t = common::create_token(&http, &s.url, name, pw, "t", &["read", "write"]).await;
        tokens.push(t.token);
    }
    common::create_repo(&http, &s.url, &tokens[0], "ports").await;
    // bob writes to the repository, dave reads it, carol has no role on it
    for (who, role) in [("bob", "writer"), ("dave", "reader")] {
        let r = common::put_member(&http, &s.url, "alice/ports", who, role).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run(&url, &tokens))
        .await
        .unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cove(home: &Path, url: &str, token: &str, args: &[&str]) -> std::process::Output {
    common::cove(home, url, token, args)
}

/// An HTTP/1.0 exchange on a plain TCP connection: the whole answer.
fn http_over(port: u16, request: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    text(&answer)
}

/// `status, body` of a request through the proxy (no redirects followed).
fn proxied(method: &str, url: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut req = agent
        .request(method, url)
        .set("Cookie", "theirs=1")
        .set("X-Forwarded-For", "6.6.6.6");
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    match res {
        Ok(r) => {
            let status = r.status();
            let location = r.header("location").unwrap_or("").to_string();
            let body = r.into_string().unwrap_or_default();
            (status, format!("{location}{body}"))
        }
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Starts `cove env port-forward` and reads the local ports it prints.
fn port_forward(
    home: &Path,
    url: &str,
    token: &str,
    env: &str,
    pairs: &[&str],
) -> (Child, Vec<u16>) {
    let mut child = common::cove_command(home, url, token)
        .args(["env", "port-forward", env])
        .args(pairs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ports = Vec::new();
    for _ in pairs {
        let line = lines.next().unwrap().unwrap();
        // Forwarding 127.0.0.1:LOCAL -> ENV:REMOTE
        let local = line
            .strip_prefix("Forwarding 127.0.0.1:")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("{line}"));
        ports.push(local.parse().unwrap());
    }
    (child, ports)
}

fn run(url: &str, tokens: &[String]) {
    let (alice, bob, dave, carol) = (&tokens[0], &tokens[1], &tokens[2], &tokens[3]);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("devfile.yaml"), DEVFILE).unwrap();
    std::fs::write(w.join("app.py"), include_str!("ports_support/app.py")).unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "app"]);
    let push = url.replace("http://", &format!("http://alice:{alice}@")) + "/git/alice/ports.git";
    git(w, &["push", "-q", &push, "main"]);
    let out = cove(
        home,
        url,
        alice,
        &[
            "env",
            "create",
            "alice/ports",
            "--name",
            "ports",
            "--output",
            "json",
        ],
    );
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.state, EnvState::Running, "{}", text(&out.stderr));
    let id = env.id.clone();

    // the endpoints: public with its URL through the server, internal, `none` not listed
    let names: Vec<&str> = env.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["web", "admin"], "{:?}", env.endpoints);
    let web_url = format!("{url}/env/{id}/web/");
    assert_eq!(env.endpoints[0].url.as_deref(), Some(web_url.as_str()));
    assert_eq!(env.endpoints[0].exposure, "public");
    let shown = ok(&cove(home, url, alice, &["env", "show", "ports"]));
    assert!(shown.contains(&web_url), "{shown}");
    assert!(!shown.contains("hidden"), "{shown}");

    // the service, started detached in the environment on 8000 and 8001
    ok(&cove(
        home,
        url,
        alice,
        &[
            "env", "exec", "ports", "--no-tty", "--", "sh", "-c",
            "cd /projects/ports && for p in 8000 8001; do (nohup python3 app.py $p >/tmp/app-$p.log 2>&1 &); done; \
             for i in $(seq 1 100); do python3 -c 'import socket; [socket.create_connection((\"127.0.0.1\", p)) for p in (8000, 8001)]' 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
        ],
    ));
    let before = state_activity(url, alice, &id);
    std::thread::sleep(Duration::from_millis(20));

    // `cove env port-forward`: plain TCP from 127.0.0.1:LOCAL to the ports in the environment
    let (mut child, ports) = port_forward(home, url, alice, "ports", &["0:8000", "0:8001"]);
    let answer = http_over(ports[0], "GET /hello?x=1 HTTP/1.0\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.contains("port=8000") && answer.contains("path=/hello?x=1"),
        "{answer}"
    );
    let answer = http_over(ports[1], "GET /internal HTTP/1.0\r\nHost: x\r\n\r\n");
    assert!(answer.contains("port=8001"), "{answer}");
    // several connections, one after another and at once
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let p = ports[0];
            std::thread::spawn(move || http_over(p, &format!("GET /c{i} HTTP/1.0\r\n\r\n")))
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let a = t.join().unwrap();
        assert!(a.contains(&format!("path=/c{i}")), "{a}");
    }
    child.kill().unwrap();
    let _ = child.wait();
    // a tunnel is activity for the idle stop
    let after = state_activity(url, alice, &id);
    assert!(after > before, "last activity {before} -> {after}");
    // nothing listening: the forwarded connection just ends (after the loopback relay found
    // nothing either), and the forward keeps serving
    let (mut child, ports) = port_forward(home, url, alice, "ports", &["0:8009"]);
    assert_eq!(http_over(ports[0], "GET / HTTP/1.0\r\n\r\n"), "");
    child.kill().unwrap();
    let _ = child.wait();

    // the tunnel route: another writer 403, a stranger 404, a reader 403
    for (who, token, status) in [
        ("bob", bob, 403),
        ("carol", carol, 404),
        ("dave", dave, 403),
    ] {
        let got = tunnel_status(url, token, &id, 8000);
        assert_eq!(got, Some(status), "{who}");
    }
    // an open tunnel ends once its token is revoked (checked every 5 s, like a terminal)
    let second: cove_api::CreatedToken = ureq::post(&format!("{url}/api/v1/tokens"))
        .set("Authorization", &format!("Bearer {alice}"))
        .send_json(serde_json::json!({"name": "short", "scopes": ["read", "write"]}))
        .unwrap()
        .into_json()
        .unwrap();
    let mut socket = open_tunnel(url, &second.token, &id, 8000);
    ureq::delete(&format!("{url}/api/v1/tokens/{}", second.info.id))
        .set("Authorization", &format!("Bearer {alice}"))
        .call()
        .unwrap();
    let started = Instant::now();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // generous: the bound is the 5 s re-check
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // and `cove env port-forward` as bob says why
    let (mut child, ports) = port_forward(home, url, bob, &id, &["0:8000"]);
    assert_eq!(http_over(ports[0], "GET / HTTP/1.0\r\n\r\n"), "");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));

    // the public endpoint through the server: Cove's credentials stay out, X-Forwarded-* set
    let (status, body) = proxied("GET", &format!("{web_url}a/b?q=1"), Some(alice), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path=/a/b?q=1"), "{body}");
    assert!(body.contains("authorization=\n"), "{body}");
    assert!(body.contains("cookie=theirs=1\n"), "{body}");
    assert!(body.contains("x-forwarded-for=127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto=http\n"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-prefix=/env/{id}/web\n")),
        "{body}"
    );
    // the page is sandboxed (an opaque origin: no access to Cove's API as the viewer) and
    // cannot plant a cookie named like Cove's session
    {
        let r = ureq::get(&format!("{web_url}sandboxed"))
            .set("Authorization", &format!("Bearer {alice}"))
            .call()
            .unwrap();
        let csp = r.all("content-security-policy").join("; ");
        assert!(csp.contains("sandbox"), "{csp}");
        assert!(!csp.contains("allow-same-origin"), "{csp}");
        let cookies = r.all("set-cookie").join(" | ");
        assert!(cookies.contains("app=1"), "{cookies}");
        assert!(!cookies.contains("cove_session"), "{cookies}");
    }
    // the root, and the prefix without its slash redirected to it
    let (status, body) = proxied("GET", &web_url, Some(alice), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path=/\n"), "{body}");
    let (status, location) = proxied("GET", web_url.trim_end_matches('/'), Some(alice), None);
    assert_eq!(status, 307, "{location}");
    assert!(
        location.starts_with(&format!("/env/{id}/web/")),
        "{location}"
    );
    // a body streamed through (1 MiB)
    let big = vec![b'x'; 1 << 20];
    let (status, body) = proxied("POST", &format!("{web_url}upload"), Some(alice), Some(&big));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("method=POST") && body.contains("body=1048576"),
        "{body}"
    );
    // anyone who may see the environment: another writer, a reader
    for token in [bob, dave] {
        let (status, body) = proxied("GET", &web_url, Some(token), None);
        assert_eq!(status, 200, "{body}");
    }
    // a stranger: 404, as for the environment itself; no credential: 401
    let (status, body) = proxied("GET", &web_url, Some(carol), None);
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("port="), "{body}");
    let (status, _) = proxied("GET", &web_url, None, None);
    assert_eq!(status, 401);
    // `internal` and `none` endpoints and unknown names are not proxied
    for name in ["admin", "hidden", "nope"] {
        let (status, body) = proxied("GET", &format!("{url}/env/{id}/{name}/"), Some(alice), None);
        assert_eq!(status, 404, "{name}: {body}");
        assert!(!body.contains("port="), "{body}");
    }
    // a WebSocket passes through
    let ws = format!("{}/env/{id}/web/ws", url.replace("http://", "ws://"));
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(ws).unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {alice}").parse().unwrap());
    let (mut socket, response) = tungstenite::connect(request).unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(tungstenite::Message::Text("hello through the proxy".into()))
        .unwrap();
    let echoed = socket.read().unwrap();
    assert_eq!(
        echoed.into_text().unwrap().as_str(),
        "hello through the proxy"
    );
    let _ = socket.close(None);

    // a stopped environment: 503, not the service
    ok(&cove(home, url, alice, &["env", "stop", "ports"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = proxied("GET", &web_url, Some(alice), None);
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// An accepted tunnel WebSocket, with a read timeout that fails a hung read.
fn open_tunnel(
    url: &str,
    token: &str,
    env: &str,
    port: u16,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let ws = format!(
        "{}/api/v1/environments/{env}/ports/{port}/tunnel",
        url.replace("http://", "ws://")
    );
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(ws).unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, _) = tungstenite::connect(request).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    socket
}

/// The status the tunnel WebSocket answers with (`None`: it was accepted).
fn tunnel_status(url: &str, token: &str, env: &str, port: u16) -> Option<u16> {
    let ws = format!(
        "{}/api/v1/environments/{env}/ports/{port}/tunnel",
        url.replace("http://", "ws://")
    );
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(ws).unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::connect(request) {
        Ok(_) => None,
        Err(tungstenite::Error::Http(r)) => Some(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

fn state_activity(url: &str, token: &str, env: &str) -> i64 {
    let e: Environment = ureq::get(&format!("{url}/api/v1/environments/{env}"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    e.last_activity_ms
}
