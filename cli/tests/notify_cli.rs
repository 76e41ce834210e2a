#![allow(clippy::unwrap_used)]
//! `cove repo notify add|list|test|deliveries|remove` with the real binary against a real
//! server and a real HTTP receiver on 127.0.0.1 (allowed by the server's configuration).

mod common;

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ok as stdout, ADMIN_TOKEN};

/// Accepts connections, keeps each request's text, answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then the body of Content-Length bytes.
                loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, got)
}

async fn cove(url: &str, home: &std::path::Path, args: &[&str]) -> Output {
    common::cove_async(home, url, ADMIN_TOKEN, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_notify_commands() {
    let s = common::serve(|config| {
        config.embedded_agent = false;
        config.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (url, home) = (s.url.clone(), &s.home);
    let (hook, got) = receiver().await;
    stdout(&cove(&url, home.path(), &["repo", "create", "app"]).await);

    let bad = cove(
        &url,
        home.path(),
        &[
            "repo",
            "notify",
            "add",
            "admin/app",
            "--kind",
            "webhook",
            "--url",
            &hook,
            "--event",
            "nope",
        ],
    )
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown event"));

    let out = stdout(
        &cove(
            &url,
            home.path(),
            &[
                "repo",
                "notify",
                "add",
                "admin/app",
                "--kind",
                "webhook",
                "--url",
                &format!("{hook}/secret-path"),
                "--event",
                "run_failed",
                "--output",
                "json",
            ],
        )
        .await,
    );
    let target: cove_api::NotifyTarget = serde_json::from_str(&out).unwrap();
    assert_eq!(target.secret.as_ref().map(String::len), Some(64));
    let id = target.id.to_string();

    let list = stdout(&cove(&url, home.path(), &["repo", "notify", "list", "admin/app"]).await);
    assert!(list.contains(&id) && list.contains("run_failed"), "{list}");
    assert!(
        !list.contains("secret-path"),
        "the URL's path is hidden: {list}"
    );

    let out = stdout(
        &cove(
            &url,
            home.path(),
            &["repo", "notify", "test", "admin/app", &id],
        )
        .await,
    );
    assert!(out.contains("queued"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = stdout(
            &cove(
                &url,
                home.path(),
                &["repo", "notify", "deliveries", "admin/app", &id],
            )
            .await,
        );
        if log.contains("delivered") {
            assert!(log.contains("ping") && log.contains("200"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requests = got.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = requests[0].to_ascii_lowercase();
    assert!(request.starts_with("post /secret-path "), "{request}");
    assert!(request.contains("x-cove-event: ping"), "{request}");
    assert!(request.contains("x-cove-signature: sha256="), "{request}");

    let out = stdout(
        &cove(
            &url,
            home.path(),
            &["repo", "notify", "remove", "admin/app", &id],
        )
        .await,
    );
    assert!(out.contains("removed"), "{out}");
    let list = stdout(&cove(&url, home.path(), &["repo", "notify", "list", "admin/app"]).await);
    assert!(list.contains("no notification targets"), "{list}");
}

/// `cove user set-email` (your own, another user's as an administrator, `--clear`),
/// `cove repo notify add --kind email --address …` and `cove user deliveries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_commands() {
    let s = common::serve(|config| {
        config.embedded_agent = false;
        // Nothing listens there: the test only creates and lists.
        config.notify.smtp = Some(
            cove_server::notify::config::SmtpSettings::plain("127.0.0.1", 9, "cove@example.test")
                .unwrap(),
        );
    })
    .await;
    let (url, home) = (s.url.clone(), &s.home);
    stdout(&cove(&url, home.path(), &["repo", "create", "app"]).await);
    let out = stdout(
        &cove(
            &url,
            home.path(),
            &["user", "set-email", "admin@example.test"],
        )
        .await,
    );
    assert!(
        out.contains("email notifications of admin go to admin@example.test"),
        "{out}"
    );
    let users = stdout(&cove(&url, home.path(), &["user", "list"]).await);
    assert!(
        users.contains("admin  admin  <admin@example.test>"),
        "{users}"
    );
    let bad = cove(&url, home.path(), &["user", "set-email", "not an address"]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not an email address"),
        "{bad:?}"
    );
    let out = stdout(
        &cove(
            &url,
            home.path(),
            &["user", "set-email", "--user", "admin", "--clear"],
        )
        .await,
    );
    assert!(out.contains("admin has no email address"), "{out}");
    let out = stdout(
        &cove(
            &url,
            home.path(),
            &[
                "repo",
                "notify",
                "add",
                "app",
                "--kind",
                "email",
                "--address",
                "team@example.test",
                "--address",
                "ops@example.test",
                "--event",
                "run_failed",
            ],
        )
        .await,
    );
    assert!(
        out.contains("email mailto:team@example.test,ops@example.test"),
        "{out}"
    );
    let list = stdout(&cove(&url, home.path(), &["repo", "notify", "list", "app"]).await);
    assert!(
        list.contains("mailto:team@example.test,ops@example.test"),
        "{list}"
    );
    let out = stdout(&cove(&url, home.path(), &["user", "deliveries"]).await);
    assert!(out.contains("no deliveries"), "{out}");
}
