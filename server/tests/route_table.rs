//! Walks EVERY `/api/v1` route of the route table the router is built from and checks that
//! a missing token, a wrong token, an expired token and a token without the needed scope are
//! refused, that admin-only routes refuse non-admins, and that repository routes refuse
//! callers without the needed role (and, on environment routes with an access rule, callers
//! who did not create the environment: server/tests/env_access.rs walks that matrix).

mod common;

use anyhow::Result;
use common::TestServer;
use cove_api::{ProjectRole, Role, Scope};
use cove_server::auth::Audience;
use cove_server::routes::{all_paths, api_routes, RouteSpec};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// An environment row in `admin/r1` so environment routes reach their role check.
const ROUTE_TEST_ENV: &str = "e0routetable0";

async fn insert_env(server: &TestServer) -> Result<()> {
    common::insert_env_row(server, "admin", "r1", ROUTE_TEST_ENV).await
}

/// A run row (with one job) in `admin/r1` so run routes reach their role check.
const ROUTE_TEST_RUN: i64 = 4242;

async fn insert_run(server: &TestServer) -> Result<()> {
    common::insert_run_row(server, "admin", "r1", ROUTE_TEST_RUN).await
}

fn concrete_path(spec: &RouteSpec, repo: &str, token_id: i64) -> String {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    spec.path
        .replace("{owner}", owner)
        .replace("{name}", name)
        .replace("{id}", &token_id.to_string())
        .replace("{*path}", "README.md")
        .replace("{username}", "bob")
        .replace("{env}", ROUTE_TEST_ENV)
        .replace("{run}", &ROUTE_TEST_RUN.to_string())
        .replace("{job}", "Build")
        .replace("{artifact}", "pkg")
        .replace("{secret}", "token")
        .replace("{sha}", &"0".repeat(40))
        .replace("{agent}", "1")
        .replace("{number}", "1")
        .replace("{comment}", "1")
        .replace("{port}", "8000")
        .replace("{environment}", "prod")
        .replace("{connection}", "main")
        .replace("{variable}", "REGION")
        .replace("{project}", "p1")
        .replace("{user}", "bob")
}

async fn call(
    server: &TestServer,
    spec: &RouteSpec,
    path: &str,
    token: Option<&str>,
) -> Result<StatusCode> {
    let method = Method::from_bytes(spec.method.as_str().as_bytes())?;
    let mut req = server
        .http
        .request(method, format!("{}{path}", server.url))
        .json(&json!({}));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let streaming = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming {
        // Server-sent events stay open: the status is what is checked here.
        return Ok(status);
    }
    let body = resp.text().await?;
    if let Some(token) = token {
        assert!(!body.contains(token), "{path}: token echoed in response");
    }
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_missing_wrong_expired_and_underscoped_tokens() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "r1").await?;
    insert_env(&server).await?;
    insert_run(&server).await?;
    let bob = server.create_user("bob").await?;
    // project `p1` (the admin its administrator) holding `admin/r1`, for `{project}` routes
    for (path, body) in [
        ("/projects", json!({"name": "p1"})),
        ("/projects/p1/repos", json!({"repo": "admin/r1"})),
    ] {
        let resp = server
            .http
            .post(server.api(path))
            .bearer_auth(&server.admin_token)
            .json(&body)
            .send()
            .await?;
        assert_eq!(resp.status(), 201, "{path}");
    }
    let admin_token_id = server
        .create_token(&server.admin_token, &[Scope::Read])
        .await?
        .info
        .id;
    let expired = {
        let resp = server
            .http
            .post(server.api("/tokens"))
            .bearer_auth(&server.admin_token)
            .json(&json!({"name": "short", "scopes": ["read", "write", "admin"], "expires_in_seconds": 1}))
            .send()
            .await?;
        assert_eq!(resp.status(), 201);
        resp.json::<cove_api::CreatedToken>().await?.token
    };
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let routes = api_routes();
    assert!(routes.len() >= 18, "route table shrank: {}", routes.len());
    for route in &routes {
        let spec = &route.spec;
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let what = format!("{} {}", spec.method, spec.path);

        assert_eq!(
            call(&server, spec, &path, None).await?,
            401,
            "{what}: no token"
        );
        assert_eq!(
            call(
                &server,
                spec,
                &path,
                Some("cove_0000000000000000000000000000000000000000")
            )
            .await?,
            401,
            "{what}: wrong token"
        );
        assert_eq!(
            call(&server, spec, &path, Some("not-even-a-token")).await?,
            401,
            "{what}: garbage"
        );
        assert_eq!(
            call(&server, spec, &path, Some(&expired)).await?,
            401,
            "{what}: expired token"
        );
        if spec.audience == Audience::Signature {
            // No credential works here, not even the admin's: only the forge's signature.
            assert_eq!(
                call(&server, spec, &path, Some(&server.admin_token)).await?,
                401,
                "{what}: admin token on a signature route"
            );
            continue;
        }

        // An admin token with every scope except the needed one.
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != spec.scope)
            .collect();
        let underscoped = server
            .create_token(&server.admin_token, &others)
            .await?
            .token;
        assert_eq!(
            call(&server, spec, &path, Some(&underscoped)).await?,
            403,
            "{what}: token without scope {}",
            spec.scope.as_str()
        );

        // A non-admin user with all of their scopes.
        if spec.admin_only {
            assert_eq!(
                call(&server, spec, &path, Some(&bob)).await?,
                403,
                "{what}: non-admin"
            );
        }
        // A user who is not a member of the project: 404, existence not revealed.
        if spec.project_role.is_some() {
            assert_eq!(
                call(&server, spec, &path, Some(&bob)).await?,
                404,
                "{what}: non-member of the project"
            );
        }
        // A user who is not a member of the private repository: 404, existence not revealed.
        if spec.repo_role.is_some() && spec.scope != Scope::Admin {
            assert_eq!(
                call(&server, spec, &path, Some(&bob)).await?,
                404,
                "{what}: non-member"
            );
        }
    }

    // Roles: make bob a reader; owner routes and writes still refuse him, reads work.
    let resp = server.put_member("admin/r1", "bob", "reader").await?;
    assert_eq!(resp.status(), 200);
    for route in &routes {
        let spec = &route.spec;
        let Some(role) = spec.repo_role else { continue };
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let status = call(&server, spec, &path, Some(&bob)).await?;
        // routes with an environment rule: the test environment is the admin's, not bob's
        if role > Role::Reader || spec.env_access.is_some() {
            assert_eq!(status, 403, "{} {}: reader", spec.method, spec.path);
        } else {
            assert!(
                status != 401 && status != 403,
                "{} {}: reader got {status}",
                spec.method,
                spec.path
            );
        }
    }

    // Project roles: bob a reader of `p1`; routes that need more refuse him, the rest admit him.
    let post = |path: &str, token: &str, body: serde_json::Value| {
        server
            .http
            .post(server.api(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let resp = post(
        "/projects/p1/members",
        &server.admin_token,
        json!({"user": "bob", "role": "reader"}),
    )
    .await?;
    assert_eq!(resp.status(), 201);
    let resp = post("/projects/p1/invitations/accept", &bob, json!({})).await?;
    assert_eq!(resp.status(), 200);
    for route in &routes {
        let spec = &route.spec;
        let Some(role) = spec.project_role else {
            continue;
        };
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let status = call(&server, spec, &path, Some(&bob)).await?;
        if role > ProjectRole::Reader {
            assert_eq!(status, 403, "{} {}: project reader", spec.method, spec.path);
        } else {
            assert!(
                status != 401 && status != 403 && status != 404,
                "{} {}: project reader got {status}",
                spec.method,
                spec.path
            );
        }
    }
    // A project reviewer without a per-repository role: the review routes admit him, the other
    // writer routes do not.
    let resp = server
        .http
        .put(server.api("/projects/p1/members/bob"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"role": "reviewer"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = server
        .http
        .delete(server.api("/repos/admin/r1/members/bob"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    let mut reviewer_routes = 0;
    for route in &routes {
        let spec = &route.spec;
        if spec.repo_role != Some(Role::Writer) || spec.env_access.is_some() {
            continue;
        }
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let status = call(&server, spec, &path, Some(&bob)).await?;
        if spec.reviewers {
            reviewer_routes += 1;
            assert!(
                status != 401 && status != 403,
                "{} {}: project reviewer got {status}",
                spec.method,
                spec.path
            );
        } else {
            assert_eq!(
                status, 403,
                "{} {}: project reviewer",
                spec.method, spec.path
            );
        }
    }
    assert!(
        reviewer_routes >= 2,
        "the review routes lost their reviewer rule"
    );
    // A token scoped to `p1` opens nothing but `p1` and its repositories.
    let resp = post(
        "/tokens",
        &bob,
        json!({"name": "p", "scopes": ["read", "write"], "project": "p1"}),
    )
    .await?;
    assert_eq!(resp.status(), 201);
    let scoped = resp.json::<cove_api::CreatedToken>().await?.token;
    for route in &routes {
        let spec = &route.spec;
        if spec.audience != Audience::Users
            || spec.repo_role.is_some()
            || spec.path.contains("{project}")
            || spec.admin_only
        {
            continue;
        }
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        assert_eq!(
            call(&server, spec, &path, Some(&scoped)).await?,
            403,
            "{} {}: project-scoped token",
            spec.method,
            spec.path
        );
    }

    // Agent-protocol routes refuse every user token (admins' too) and take agent tokens;
    // agent tokens are refused on every other route.
    let (_, agent_token) = server.register_agent("route-table").await?;
    for route in &routes {
        let spec = &route.spec;
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let what = format!("{} {}", spec.method, spec.path);
        let as_agent = call(&server, spec, &path, Some(&agent_token)).await?;
        if spec.audience == Audience::Signature {
            assert_eq!(as_agent, 401, "{what}: agent token on a signature route");
        } else if spec.audience == Audience::Agents {
            assert_eq!(
                call(&server, spec, &path, Some(&server.admin_token)).await?,
                403,
                "{what}: admin on an agent route"
            );
            assert!(
                as_agent != 401 && as_agent != 403,
                "{what}: agent got {as_agent}"
            );
        } else {
            assert_eq!(as_agent, 403, "{what}: agent token on a non-agent route");
        }
    }

    // Every user GET route answers the admin without an auth error.
    for route in &routes {
        let spec = &route.spec;
        if spec.method != axum::http::Method::GET || spec.audience != Audience::Users {
            continue;
        }
        let path = concrete_path(spec, "admin/r1", admin_token_id);
        let status = call(&server, spec, &path, Some(&server.admin_token)).await?;
        assert!(
            status != 401 && status != 403 && status != 405,
            "{} {}: admin got {status}",
            spec.method,
            spec.path
        );
    }

    // The OpenAPI document lists every route, including git hosting.
    let doc: serde_json::Value = server
        .http
        .get(server.api("/openapi.json"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    for (method, path) in all_paths() {
        assert!(
            doc["paths"][&path][&method].is_object(),
            "openapi lacks {method} {path}"
        );
    }
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_listed_without_secret_and_revocable() -> Result<()> {
    let server = TestServer::start().await?;
    let created = server
        .create_token(&server.admin_token, &[Scope::Read])
        .await?;
    assert!(created.token.starts_with("cove_"));
    let listed = server
        .http
        .get(server.api("/tokens"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?;
    assert!(listed.contains(&created.info.id.to_string()));
    assert!(!listed.contains(&created.token));
    // A read-only token cannot mint a write token.
    let resp = server
        .http
        .post(server.api("/tokens"))
        .bearer_auth(&created.token)
        .json(&json!({"name": "x", "scopes": ["write"]}))
        .send()
        .await?;
    assert_eq!(resp.status(), 403);
    let resp = server
        .http
        .delete(server.api(&format!("/tokens/{}", created.info.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    let resp = server
        .http
        .get(server.api("/user"))
        .bearer_auth(&created.token)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    // The database (and its WAL) store hashes only.
    for file in ["cove.db", "cove.db-wal"] {
        let bytes = std::fs::read(server.data_dir.join(file)).unwrap_or_default();
        assert!(!bytes
            .windows(created.token.len())
            .any(|w| w == created.token.as_bytes()));
    }
    server.stop().await;
    Ok(())
}

/// Every route whose handler takes a JSON body refuses a JSON array, an unknown field, a body
/// that is not JSON and a body without the JSON content type, each with the project's JSON
/// error (`{error, message}`) naming the problem, and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_body_refuses_wrong_shapes_with_a_json_error() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "r1").await?;
    insert_env(&server).await?;
    insert_run(&server).await?;
    server.create_user("bob").await?;
    let resp = server
        .http
        .post(server.api("/projects"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "p1"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let agent = server.agent_token().await?;
    let registration = server.registration_token(None).await?;
    let mut checked = 0;
    for route in api_routes() {
        let Some(body) = &route.doc.body else {
            continue;
        };
        if body.content_type != "application/json" {
            continue;
        }
        let spec = &route.spec;
        let what = format!("{} {}", spec.method, spec.path);
        let token = match spec.audience {
            Audience::Users => server.admin_token.clone(),
            Audience::Agents => agent.clone(),
            Audience::Registration => registration.clone(),
            Audience::Signature => continue,
        };
        let path = concrete_path(spec, "admin/r1", 1);
        let method = Method::from_bytes(spec.method.as_str().as_bytes())?;
        let cases: [(&str, Option<&str>, u16, &str, &str); 5] = [
            (
                "[]",
                Some("application/json"),
                422,
                "invalid",
                "invalid type",
            ),
            (
                r#"{"zz_unknown_field": 1}"#,
                Some("application/json"),
                422,
                "invalid",
                "zz_unknown_field",
            ),
            (
                r#"["a", "b", false]"#,
                Some("application/json"),
                422,
                "invalid",
                "must be a JSON object",
            ),
            ("{", Some("application/json"), 400, "bad_request", "EOF"),
            (
                "{}",
                None,
                415,
                "unsupported_media_type",
                "application/json",
            ),
        ];
        for (text, content_type, status, code, needle) in cases {
            let mut req = server
                .http
                .request(method.clone(), format!("{}{path}", server.url))
                .bearer_auth(&token)
                .body(text);
            if let Some(ct) = content_type {
                req = req.header(reqwest::header::CONTENT_TYPE, ct);
            }
            let resp = req.send().await?;
            let got = resp.status().as_u16();
            let answer = resp.text().await?;
            assert_eq!(got, status, "{what} with {text:?}: {answer}");
            let error: cove_api::ErrorBody = serde_json::from_str(&answer).unwrap_or_else(|e| {
                panic!("{what} with {text:?}: not the JSON error shape ({e}): {answer}")
            });
            assert_eq!(error.error, code, "{what} with {text:?}: {answer}");
            assert!(
                error.message.contains(needle),
                "{what} with {text:?}: message does not name the problem: {answer}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} JSON-body routes");
    // Nothing was created by any of the refused calls.
    let envs = server.state.store().list_envs().await?;
    assert_eq!(envs.len(), 1, "environments: {envs:?}");
    server.stop().await;
    Ok(())
}

/// Numeric `limit` query parameters: zero, negative and non-numbers are 400 with the JSON
/// error; a huge one is clamped (answered, not refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_parameters_are_validated() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "r1").await?;
    for route in ["commits", "events", "runs"] {
        for (limit, status) in [
            ("0", 400),
            ("-1", 400),
            ("abc", 400),
            ("1", 200),
            ("9223372036854775807", 200),
        ] {
            if route == "commits" && status == 200 {
                continue; // an empty repository has no commits: 404
            }
            let resp = server
                .http
                .get(server.api(&format!("/repos/admin/r1/{route}?limit={limit}")))
                .bearer_auth(&server.admin_token)
                .send()
                .await?;
            let got = resp.status().as_u16();
            let text = resp.text().await?;
            assert_eq!(got, status, "{route}?limit={limit}: {text}");
            if status == 400 {
                let error: cove_api::ErrorBody = serde_json::from_str(&text)?;
                assert!(error.message.contains("limit"), "{route}: {text}");
            }
        }
    }
    server.stop().await;
    Ok(())
}
