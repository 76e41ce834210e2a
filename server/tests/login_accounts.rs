#![allow(clippy::unwrap_used)]
//! Accounts and tokens (issue 14): tokens expire after the server's default unless an
//! administrator asks for `never`; a disabled user is locked out of the API, the web UI and git
//! at once; a user changes its password and the old one stops working; user and repository
//! names are unique without regard to case; a request carrying the session cookie needs the
//! CSRF header even beside an `Authorization` header; only git asks for Basic credentials.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{clone, git, insert_run_row, TestServer};
use cove_api::{CreatedToken, User};
use cove_server::store::now_secs;
use reqwest::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const DAY: i64 = 24 * 3600;

async fn login(server: &TestServer, user: &str, password: &str) -> Result<(String, String)> {
    let (pair, _, info) = server.login(user, password).await?;
    Ok((pair, info.csrf_token.unwrap()))
}

async fn token(server: &TestServer, bearer: &str, body: Value) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api("/tokens"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_by_default_and_only_admins_get_never() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let bob = server.create_user("bob").await?;

    // The helper's own token asked for no lifetime: it got the 90-day default.
    let mine: Vec<Value> = server
        .http
        .get(server.api("/tokens"))
        .bearer_auth(&bob)
        .send()
        .await?
        .json()
        .await?;
    let at = mine[0]["expires_at"].as_i64().expect("a default expiry");
    assert!((at - now_secs() - 90 * DAY).abs() < 60, "expires_at {at}");

    let resp = token(&server, &bob, json!({"name": "ci", "scopes": ["read"]})).await?;
    assert_eq!(resp.status(), 201);
    let created: CreatedToken = resp.json().await?;
    let at = created.info.expires_at.expect("a default expiry");
    assert!((at - now_secs() - 90 * DAY).abs() < 60, "expires_at {at}");

    let resp = token(
        &server,
        &bob,
        json!({"name": "short", "scopes": ["read"], "expires_in_seconds": 30 * DAY}),
    )
    .await?;
    let at = resp.json::<CreatedToken>().await?.info.expires_at.unwrap();
    assert!((at - now_secs() - 30 * DAY).abs() < 60);

    // `never` is for administrators.
    let never = json!({"name": "forever", "scopes": ["read"], "never_expires": true});
    let resp = token(&server, &bob, never.clone()).await?;
    assert_eq!(resp.status(), 403);
    let resp = token(&server, &server.admin_token, never).await?;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<CreatedToken>().await?.info.expires_at, None);
    server.stop().await;

    // The default is configurable.
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.auth.token_expiry = Some(Duration::from_secs(7 * DAY as u64));
    })
    .await?;
    let resp = token(
        &server,
        &server.admin_token,
        json!({"name": "week", "scopes": ["read"]}),
    )
    .await?;
    let at = resp.json::<CreatedToken>().await?.info.expires_at.unwrap();
    assert!((at - now_secs() - 7 * DAY).abs() < 60);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_locked_out_of_api_ui_and_git_at_once() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let bob = server.create_user("bob").await?;
    server.create_repo(&bob, "work").await?;
    let (cookie, _) = login(&server, "bob", PASSWORD).await?;
    let work = tempfile::tempdir()?;
    clone(
        work.path(),
        &server.git_url("bob/work", Some(&bob)),
        "a",
        &[],
    )
    .await?;

    let get_user = |how: &str| {
        let req = server.http.get(server.api("/user"));
        match how {
            "token" => req.bearer_auth(&bob),
            "password" => req.basic_auth("bob", Some(PASSWORD)),
            _ => req.header(COOKIE, &cookie),
        }
        .send()
    };
    for how in ["token", "password", "cookie"] {
        assert_eq!(get_user(how).await?.status(), 200, "{how} before");
    }

    // Only administrators disable, and not themselves.
    let resp = server
        .http
        .post(server.api("/users/admin/disable"))
        .bearer_auth(&bob)
        .send()
        .await?;
    assert_eq!(resp.status(), 403);
    let resp = server
        .http
        .post(server.api("/users/admin/disable"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);

    let resp = server
        .http
        .post(server.api("/users/bob/disable"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<User>().await?.disabled);
    for how in ["token", "password", "cookie"] {
        assert_eq!(get_user(how).await?.status(), 401, "{how} after disable");
    }
    let out = git(
        work.path(),
        &["clone", "-q", &server.git_url("bob/work", Some(&bob)), "b"],
    )
    .await?;
    assert!(
        !out.status.success(),
        "git clone with a disabled user's token"
    );
    let resp = server
        .http
        .get(format!(
            "{}/git/bob/work.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .basic_auth("bob", Some(PASSWORD))
        .send()
        .await?;
    assert_eq!(resp.status(), 401, "git with the disabled user's password");
    let users: Vec<User> = server
        .http
        .get(server.api("/users"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert!(users.iter().any(|u| u.username == "bob" && u.disabled));

    // Enabled again: the token and password work; the session was ended for good.
    let resp = server
        .http
        .post(server.api("/users/bob/enable"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(get_user("token").await?.status(), 200);
    assert_eq!(get_user("password").await?.status(), 200);
    assert_eq!(get_user("cookie").await?.status(), 401);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changes_its_password_and_the_old_one_stops_working() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let bob = server.create_user("bob").await?;
    let (cookie, csrf) = login(&server, "bob", PASSWORD).await?;
    let new = "a much better passphrase";
    let change = |current: &str, next: &str| {
        server
            .http
            .put(server.api("/user/password"))
            .bearer_auth(&bob)
            .json(&json!({"current_password": current, "new_password": next}))
            .send()
    };
    assert_eq!(change("not my password", new).await?.status(), 403);
    assert_eq!(change(PASSWORD, "short").await?.status(), 400);
    assert_eq!(change(PASSWORD, new).await?.status(), 204);

    let basic = |password: &str| {
        server
            .http
            .get(server.api("/user"))
            .basic_auth("bob", Some(password))
            .send()
    };
    assert_eq!(basic(PASSWORD).await?.status(), 401, "the old password");
    assert_eq!(basic(new).await?.status(), 200, "the new password");
    // Sessions of the old password end with it.
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, &cookie)
        .header("X-Cove-CSRF", &csrf)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    login(&server, "bob", new).await?;

    // An administrator can set it (a forgotten password).
    let resp = server
        .http
        .put(server.api("/users/bob/password"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"new_password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    assert_eq!(basic(PASSWORD).await?.status(), 200);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_differing_only_in_case_are_refused() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let resp = server
        .http
        .post(server.api("/users"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"username": "Admin", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(resp.status(), 409, "`Admin` beside `admin`");
    assert!(resp.text().await?.contains("case"));
    server.create_repo(&server.admin_token, "app").await?;
    for name in ["App", "APP"] {
        let resp = server
            .http
            .post(server.api("/repos"))
            .bearer_auth(&server.admin_token)
            .json(&json!({"name": name}))
            .send()
            .await?;
        assert_eq!(resp.status(), 409, "repository {name} beside app");
    }
    let bob = server.create_user("bob").await?;
    server.create_repo(&bob, "app").await?; // another owner: fine
    let users: Vec<User> = server
        .http
        .get(server.api("/users"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin", "bob"]);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_less_post_with_session_cookie_and_authorization_needs_the_csrf_header() -> Result<()>
{
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let bob = server.create_user("bob").await?;
    server.create_repo(&bob, "app").await?;
    insert_run_row(&server, "bob", "app", 4_000).await?;
    let (cookie, csrf) = login(&server, "bob", PASSWORD).await?;
    let runs = || async {
        let v: Vec<Value> = server
            .http
            .get(server.api("/repos/bob/app/runs"))
            .bearer_auth(&bob)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v.len())
    };
    let before = runs().await?;

    // The browser case: the session cookie plus Basic credentials the browser attaches by
    // itself. Without the CSRF header the retry is refused and nothing happens.
    let retry = |csrf: Option<&str>| {
        let mut req = server
            .http
            .post(server.api("/runs/4000/retry"))
            .header(COOKIE, &cookie)
            .basic_auth("bob", Some(PASSWORD));
        if let Some(csrf) = csrf {
            req = req.header("X-Cove-CSRF", csrf);
        }
        req.send()
    };
    let resp = retry(None).await?;
    assert_eq!(resp.status(), 403, "{}", resp.text().await?);
    let resp = server
        .http
        .post(server.api("/runs/4000/retry"))
        .header(COOKIE, &cookie)
        .bearer_auth(&bob)
        .send()
        .await?;
    assert_eq!(resp.status(), 403, "a bearer token beside the cookie too");
    assert_eq!(runs().await?, before, "nothing was retried");
    let resp = retry(Some(&csrf)).await?;
    assert!(resp.status().is_success(), "{}", resp.status());

    // Without the cookie (the CLI, scripts) no CSRF header is needed.
    let resp = server
        .http
        .post(server.api("/runs/4000/retry"))
        .bearer_auth(&bob)
        .send()
        .await?;
    assert_ne!(resp.status(), 403);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_git_routes_ask_for_basic_credentials() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_repo(&server.admin_token, "app").await?;
    for resp in [
        server.http.get(server.api("/user")).send().await?,
        server
            .http
            .get(server.api("/user"))
            .basic_auth("admin", Some("wrong password"))
            .send()
            .await?,
        server.http.post(server.api("/session")).send().await?,
        server
            .http
            .get(server.api("/repos"))
            .bearer_auth("cove_wrong")
            .send()
            .await?,
    ] {
        assert_eq!(resp.status(), 401);
        assert!(
            resp.headers().get(WWW_AUTHENTICATE).is_none(),
            "{}: an API 401 must not ask for Basic",
            resp.url()
        );
    }
    let resp = server
        .http
        .get(format!(
            "{}/git/admin/app.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Basic realm=\"cove\"");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_renews_while_it_is_used() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_user("bob").await?;
    let (cookie, _) = login(&server, "bob", PASSWORD).await?;
    // Age the session: one hour left.
    let secret = cookie.strip_prefix("cove_session=").unwrap();
    let store = server.state.store();
    let (row, _) = store
        .session_by_hash(&cove_server::auth::hash_token(secret))
        .await?
        .unwrap();
    store.renew_session(row.id, now_secs() + 3600).await?;
    let resp = server
        .http
        .get(server.api("/user"))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let set = resp.headers()[SET_COOKIE].to_str()?.to_string();
    let max_age: i64 = set
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()?;
    assert!(set.starts_with(&cookie), "the same session is renewed");
    assert!(
        max_age > 12 * 3600 - 60,
        "renewed cookie lifetime {max_age}"
    );
    let (row, _) = store
        .session_by_hash(&cove_server::auth::hash_token(secret))
        .await?
        .unwrap();
    assert!(row.expires_at >= now_secs() + 12 * 3600 - 60);
    server.stop().await;
    Ok(())
}
