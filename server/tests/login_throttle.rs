#![allow(clippy::unwrap_used)]
//! Password logins under attack (issue 14): failed attempts are throttled per user name and per
//! client address on every surface that takes a password (the web UI login, HTTP Basic on the
//! API, HTTP Basic on git) with 429 + `Retry-After`; the client address comes from
//! `X-Forwarded-For` only when the peer is a trusted proxy; an unknown user costs the same
//! argon2 time as a known one.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::TestServer;
use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

async fn make_user(server: &TestServer, name: &str) -> Result<()> {
    let resp = server
        .http
        .post(server.api("/users"))
        .bearer_auth(&server.admin_token)
        .json(&json!({ "username": name, "password": PASSWORD }))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "create {name}");
    Ok(())
}

fn retry_after(resp: &Response) -> u64 {
    resp.headers()
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", resp.headers()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Five wrong passwords are answered 401; the sixth, right after, is 429 with `Retry-After`,
/// and so is the right password until the back-off has passed; then the right one works.
async fn five_then_429<F, Fut>(what: &str, attempt: F) -> Result<()>
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<Response>>,
{
    for i in 1..=5 {
        let resp = attempt("wrong password").await?;
        assert_eq!(resp.status(), 401, "{what}: wrong password #{i}");
    }
    let resp = attempt("wrong password").await?;
    assert_eq!(resp.status(), 429, "{what}: the 6th wrong password");
    let wait = retry_after(&resp);
    assert!((1..=2).contains(&wait), "{what}: Retry-After {wait}");
    let resp = attempt(PASSWORD).await?;
    assert_eq!(
        resp.status(),
        429,
        "{what}: the right password is not even checked while throttled"
    );
    tokio::time::sleep(Duration::from_secs(retry_after(&resp))).await;
    let resp = attempt(PASSWORD).await?;
    assert!(
        resp.status().is_success(),
        "{what}: after Retry-After the right password works: {}",
        resp.status()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_wrong_password_is_429_on_the_ui_login_api_basic_and_git_basic() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_repo(&server.admin_token, "app").await?;
    for user in ["ui", "api", "git"] {
        make_user(&server, user).await?;
    }
    let resp = server.put_member("admin/app", "git", "reader").await?;
    assert!(resp.status().is_success(), "member: {}", resp.status());

    five_then_429("POST /api/v1/session", |password| {
        server
            .http
            .post(server.api("/session"))
            .basic_auth("ui", Some(password))
            .send()
    })
    .await?;
    five_then_429("Basic on GET /api/v1/user", |password| {
        server
            .http
            .get(server.api("/user"))
            .basic_auth("api", Some(password))
            .send()
    })
    .await?;
    let refs = format!(
        "{}/git/admin/app.git/info/refs?service=git-upload-pack",
        server.url
    );
    five_then_429("Basic on git info/refs", |password| {
        server
            .http
            .get(&refs)
            .basic_auth("git", Some(password))
            .send()
    })
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_many_names_is_throttled_and_cannot_spoof_its_address() -> Result<()> {
    // No trusted proxy: X-Forwarded-For is the client's own claim and is ignored.
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    for i in 0..20 {
        let resp = server
            .http
            .get(server.api("/user"))
            .basic_auth(format!("nobody{i}"), Some("guess"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send()
            .await?;
        assert_eq!(resp.status(), 401, "guess #{}", i + 1);
    }
    let resp = server
        .http
        .get(server.api("/user"))
        .basic_auth("nobody-else", Some("guess"))
        .header("X-Forwarded-For", "203.0.113.99")
        .send()
        .await?;
    assert_eq!(
        resp.status(),
        429,
        "the 21st failure from one address, whatever X-Forwarded-For says"
    );
    assert!(retry_after(&resp) >= 1);
    server.stop().await;

    // Behind a trusted proxy, X-Forwarded-For names the client: other clients are not
    // throttled for one client's guesses.
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.auth.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await?;
    make_user(&server, "bob").await?;
    for i in 0..21 {
        let resp = server
            .http
            .get(server.api("/user"))
            .basic_auth(format!("nobody{i}"), Some("guess"))
            .header("X-Forwarded-For", "198.51.100.7")
            .send()
            .await?;
        let want = if i < 20 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(resp.status(), want, "guess #{} from 198.51.100.7", i + 1);
    }
    let resp = server
        .http
        .get(server.api("/user"))
        .basic_auth("bob", Some(PASSWORD))
        .header("X-Forwarded-For", "198.51.100.8")
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "another client behind the same proxy");
    server.stop().await;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A side channel, not a speed bound: if an unknown user were refused without an argon2 check
/// (1 ms against tens of ms), the unknown-user median would be far below half the known one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_costs_the_same_password_check_as_a_known_one() -> Result<()> {
    // Every attempt comes from its own address (through a trusted proxy) and known users are
    // spread over several accounts, so the throttle never answers instead of the check.
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.auth.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await?;
    for i in 0..4 {
        make_user(&server, &format!("known{i}")).await?;
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut address = 0;
    for i in 0..10 {
        for (user, times) in [
            (format!("known{}", i % 4), &mut known),
            (format!("unknown{i}"), &mut unknown),
        ] {
            address += 1;
            let started = Instant::now();
            let resp = server
                .http
                .get(server.api("/user"))
                .basic_auth(&user, Some("wrong password"))
                .header("X-Forwarded-For", format!("198.51.100.{address}"))
                .send()
                .await?;
            let took = started.elapsed();
            assert_eq!(resp.status(), 401, "{user}");
            times.push(took);
        }
    }
    let (known, unknown) = (median(known), median(unknown));
    assert!(
        unknown * 2 >= known,
        "unknown users answer in {unknown:?} (median), known ones in {known:?}: \
         the difference tells which user names exist"
    );
    server.stop().await;
    Ok(())
}
