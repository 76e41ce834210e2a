//! Projects and members (issue 16): repository roles derived from project roles with
//! per-repository overrides, invitations, role changes, the last administrator, reviewers
//! reviewing pull requests, estimates as points, the project board; the store rules on SQLite
//! and PostgreSQL; and revocation — a removed member's streams end and their requests and
//! project-scoped tokens are refused within 30 s. Real in-process server, real git and HTTP.

#![allow(clippy::unwrap_used)]

mod common;
mod team;

use std::time::{Duration, Instant};

use common::TestServer;
use cove_api::{EstimateKind, ProjectRole, Role, Visibility};
use cove_server::store::{MemberRefusal, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Api<'a> {
    server: &'a TestServer,
}

impl Api<'_> {
    async fn call(
        &self,
        method: &str,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .server
            .http
            .request(method, self.server.api(path))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call("GET", token, path, None).await
    }
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", token, path, Some(body)).await
    }
    async fn put(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("PUT", token, path, Some(body)).await
    }
    async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("PATCH", token, path, Some(body)).await
    }
    async fn delete(&self, token: &str, path: &str) -> StatusCode {
        self.call("DELETE", token, path, None).await.0
    }

    /// `user` invited with `role` by `admin_token` and accepted with `user_token`.
    async fn join(
        &self,
        admin_token: &str,
        project: &str,
        user: &str,
        user_token: &str,
        role: &str,
    ) {
        let (s, b) = self
            .post(
                admin_token,
                &format!("/projects/{project}/members"),
                json!({"user": user, "role": role}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self
            .post(
                user_token,
                &format!("/projects/{project}/invitations/accept"),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
}

/// `olga/site` with `main` and a `feature` branch one commit ahead.
async fn site_repo(server: &TestServer, olga: &str) {
    let r = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "site", "owner": "olga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::git_ok(dir, &["init", "-q", "-b", "main"])
        .await
        .unwrap();
    common::commit_file(dir, "README.md", b"site\n", "init")
        .await
        .unwrap();
    common::git_ok(dir, &["checkout", "-q", "-b", "feature"])
        .await
        .unwrap();
    common::commit_file(dir, "README.md", b"site v2\n", "v2")
        .await
        .unwrap();
    let url = server.git_url("olga/site", Some(olga));
    common::git_ok(dir, &["push", "-q", &url, "main", "feature"])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_roles_derive_repository_roles_invitations_overrides_and_estimates() {
    let server = TestServer::start().await.unwrap();
    let api = Api { server: &server };
    let olga = server.create_user("olga").await.unwrap();
    let alice = server.create_user("alice").await.unwrap();
    let rita = server.create_user("rita").await.unwrap();
    let sam = server.create_user("sam").await.unwrap();
    site_repo(&server, &olga).await;
    server
        .create_repo(&server.admin_token, "other")
        .await
        .unwrap();

    // create: the creator is the administrator; bad names and duplicates refused
    let (s, p) = api
        .post(
            &olga,
            "/projects",
            json!({"name": "web", "description": "the site"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["role"], "administrator");
    assert_eq!(p["estimate_kind"], "sizes");
    assert_eq!(
        api.post(&alice, "/projects", json!({"name": "WEB"}))
            .await
            .0,
        409
    );
    assert_eq!(
        api.post(&alice, "/projects", json!({"name": "../x"}))
            .await
            .0,
        400
    );
    assert_eq!(
        api.post(&alice, "/projects", json!({"name": "x", "extra": 1}))
            .await
            .0,
        422
    );

    // attach: an administrator of the project who owns the repository
    assert_eq!(
        api.post(&olga, "/projects/web/repos", json!({"repo": "admin/other"}))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post(&sam, "/projects/web/repos", json!({"repo": "olga/site"}))
            .await
            .0,
        404
    );
    let (s, p) = api
        .post(&olga, "/projects/web/repos", json!({"repo": "olga/site"}))
        .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["repos"], json!(["olga/site"]));
    // at most one project per repository
    let (s, _) = api
        .post(&server.admin_token, "/projects", json!({"name": "second"}))
        .await;
    assert_eq!(s, 201);
    let (s, b) = api
        .post(
            &server.admin_token,
            "/projects/second/repos",
            json!({"repo": "olga/site"}),
        )
        .await;
    assert_eq!(s, 409, "{b}");

    // strangers see nothing; an invitation gives no access until accepted
    assert_eq!(api.get(&sam, "/projects/web").await.0, 404);
    assert_eq!(api.get(&sam, "/projects/web/members").await.0, 404);
    let (s, m) = api
        .post(
            &olga,
            "/projects/web/members",
            json!({"user": "alice", "role": "contributor"}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["pending"], true);
    assert_eq!(
        api.post(
            &olga,
            "/projects/web/members",
            json!({"user": "nobody", "role": "reader"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.post(
            &olga,
            "/projects/web/members",
            json!({"user": "alice", "role": "boss"})
        )
        .await
        .0,
        422
    );
    assert_eq!(api.get(&alice, "/repos/olga/site").await.0, 404);
    let (_, list) = api.get(&alice, "/projects").await;
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["invited_as"], "contributor");
    assert_eq!(list[0]["role"], Value::Null);
    assert_eq!(
        api.post(&sam, "/projects/web/invitations/accept", json!({}))
            .await
            .0,
        404
    );
    let (s, p) = api
        .post(&alice, "/projects/web/invitations/accept", json!({}))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["role"], "contributor");
    // contributor → writer: issues yes, the board's columns (owners) no
    let (s, b) = api
        .post(
            &alice,
            "/repos/olga/site/issues",
            json!({"title": "footer"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let columns = json!({"columns": [{"name": "Backlog"}, {"name": "Done"}]});
    assert_eq!(
        api.put(&alice, "/repos/olga/site/board/columns", columns.clone())
            .await
            .0,
        403
    );
    // members manage nothing: only administrators invite and change roles
    assert_eq!(
        api.post(
            &alice,
            "/projects/web/members",
            json!({"user": "sam", "role": "reader"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.put(
            &alice,
            "/projects/web/members/alice",
            json!({"role": "administrator"})
        )
        .await
        .0,
        403
    );
    assert_eq!(api.delete(&alice, "/projects/web/members/olga").await, 403);

    // a per-repository role overrides the project's, even a lower one; removing it restores
    assert_eq!(
        server
            .put_member_as(&olga, "olga/site", "alice", "reader")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api.post(&alice, "/repos/olga/site/issues", json!({"title": "x"}))
            .await
            .0,
        403
    );
    assert_eq!(
        api.delete(&olga, "/repos/olga/site/members/alice").await,
        204
    );
    assert_eq!(
        api.post(&alice, "/repos/olga/site/issues", json!({"title": "y"}))
            .await
            .0,
        201
    );

    // reviewer → reader who may review pull requests; a reader may not
    api.join(&olga, "web", "rita", &rita, "reviewer").await;
    api.join(&olga, "web", "sam", &sam, "reader").await;
    let (s, pr) = api
        .post(
            &olga,
            "/repos/olga/site/pulls",
            json!({"source": "feature", "title": "v2"}),
        )
        .await;
    assert_eq!(s, 201, "{pr}");
    let n = pr["number"].as_i64().unwrap();
    let review = json!({"verdict": "approve"});
    assert_eq!(api.get(&rita, "/repos/olga/site").await.0, 200);
    assert_eq!(
        api.post(&rita, "/repos/olga/site/issues", json!({"title": "z"}))
            .await
            .0,
        403
    );
    let (s, b) = api
        .post(
            &rita,
            &format!("/repos/olga/site/pulls/{n}/reviews"),
            review.clone(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = api
        .post(
            &rita,
            &format!("/repos/olga/site/pulls/{n}/comments"),
            json!({"body": "looks good"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        api.post(
            &sam,
            &format!("/repos/olga/site/pulls/{n}/reviews"),
            review.clone()
        )
        .await
        .0,
        403
    );
    assert_eq!(api.get(&sam, "/repos/olga/site/issues").await.0, 200);

    // role change; the last administrator can neither be demoted, removed nor leave
    assert_eq!(
        api.put(
            &olga,
            "/projects/web/members/olga",
            json!({"role": "reader"})
        )
        .await
        .0,
        409
    );
    assert_eq!(api.delete(&olga, "/projects/web/members/olga").await, 409);
    let (s, m) = api
        .put(
            &olga,
            "/projects/web/members/alice",
            json!({"role": "administrator"}),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["role"], "administrator");
    assert_eq!(
        api.put(&alice, "/repos/olga/site/board/columns", columns)
            .await
            .0,
        200
    );
    let (_, members) = api.get(&sam, "/projects/web/members").await;
    let roles: Vec<(String, String)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("alice", "administrator"),
        ("olga", "administrator"),
        ("rita", "reviewer"),
        ("sam", "reader"),
    ];
    assert_eq!(roles, want.map(|(u, r)| (u.to_string(), r.to_string())));
    // leaving: self allowed
    assert_eq!(api.delete(&sam, "/projects/web/members/sam").await, 204);
    assert_eq!(api.get(&sam, "/repos/olga/site").await.0, 404);
    assert_eq!(api.get(&sam, "/projects/web").await.0, 404);

    // estimates: sizes by default, points when the project says so (administrators)
    assert_eq!(
        api.patch(&rita, "/projects/web", json!({"estimate_kind": "points"}))
            .await
            .0,
        403
    );
    let (s, p) = api
        .patch(&olga, "/projects/web", json!({"estimate_kind": "points"}))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["estimate_kind"], "points");
    let (s, i) = api
        .post(
            &alice,
            "/repos/olga/site/issues",
            json!({"title": "pts", "estimate": "5"}),
        )
        .await;
    assert_eq!(s, 201, "{i}");
    assert_eq!(i["estimate"], "5");
    let (s, b) = api
        .post(
            &alice,
            "/repos/olga/site/issues",
            json!({"title": "t", "estimate": "M"}),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("0, 1, 2, 3, 5, 8, 13, 21"),
        "{b}"
    );
    assert_eq!(
        api.post(
            &alice,
            "/repos/olga/site/issues",
            json!({"title": "t", "estimate": "4"})
        )
        .await
        .0,
        400
    );
    let number = i["number"].as_i64().unwrap();
    let (s, i) = api
        .patch(
            &alice,
            &format!("/repos/olga/site/issues/{number}"),
            json!({"estimate": "13"}),
        )
        .await;
    assert_eq!(s, 200, "{i}");
    assert_eq!(i["estimate"], "13");
    // a repository outside any project keeps T-shirt sizes
    let (s, _) = api
        .post(
            &server.admin_token,
            "/repos/admin/other/issues",
            json!({"title": "t", "estimate": "m"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        api.post(
            &server.admin_token,
            "/repos/admin/other/issues",
            json!({"title": "t", "estimate": "5"})
        )
        .await
        .0,
        400
    );

    // the project board: the repositories' cards merged by column, each with its repository
    let (s, board) = api.get(&rita, "/projects/web/board").await;
    assert_eq!(s, 200, "{board}");
    let names: Vec<&str> = board["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Backlog", "Done"]);
    let cards = board["columns"][0]["issues"].as_array().unwrap();
    assert_eq!(cards.len(), 3, "{board}");
    assert!(cards.iter().all(|c| c["repo"] == "olga/site"));
    assert!(cards.iter().any(|c| c["estimate"] == "13"));
    assert_eq!(api.get(&sam, "/projects/web/board").await.0, 404);

    // detach: the project's roles stop applying
    assert_eq!(
        api.delete(&olga, "/projects/web/repos/olga/site").await,
        204
    );
    assert_eq!(api.get(&rita, "/repos/olga/site").await.0, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_store_rules_hold_on_sqlite_and_postgres() {
    common::on_every_backend(|url| async move {
        let store = Store::open(&url).await?;
        let olga = store.create_user("olga", None, false).await?;
        let bob = store.create_user("bob", None, false).await?;
        let repo = store
            .create_repo(&olga, "site", Visibility::Private, "main")
            .await?;
        let p = store
            .create_project("web", "", EstimateKind::Points, olga.id)
            .await?;
        assert!(matches!(
            store
                .create_project("Web", "", EstimateKind::Sizes, bob.id)
                .await,
            Err(cove_server::store::StoreError::Conflict(_))
        ));
        store.attach_repo(p.id, &repo).await?;
        let q = store
            .create_project("other", "", EstimateKind::Sizes, bob.id)
            .await?;
        assert!(
            store.attach_repo(q.id, &repo).await.is_err(),
            "one project per repository"
        );
        assert_eq!(
            store.project_of_repo(repo.id).await?.unwrap().estimate_kind,
            EstimateKind::Points
        );
        // invitation: nothing until accepted
        store
            .invite_to_project(p.id, bob.id, ProjectRole::Contributor, "olga")
            .await?;
        assert_eq!(store.member_role(repo.id, bob.id).await?, None);
        assert_eq!(store.list_repos(bob.id, false).await?.len(), 0);
        assert_eq!(
            store.accept_invitation(p.id, bob.id).await?,
            Some(ProjectRole::Contributor)
        );
        assert_eq!(store.accept_invitation(p.id, bob.id).await?, None);
        assert_eq!(
            store.member_role(repo.id, bob.id).await?,
            Some(Role::Writer)
        );
        assert_eq!(store.list_repos(bob.id, false).await?.len(), 1);
        // the override wins
        store.set_member(repo.id, bob.id, Role::Reader).await?;
        assert_eq!(
            store.member_role(repo.id, bob.id).await?,
            Some(Role::Reader)
        );
        store.remove_member(repo.id, bob.id).await?;
        // the last administrator stays
        assert_eq!(
            store
                .set_project_role(p.id, olga.id, ProjectRole::Reader)
                .await?,
            Err(MemberRefusal::LastAdministrator)
        );
        assert_eq!(
            store.remove_project_member(p.id, olga.id).await?,
            Err(MemberRefusal::LastAdministrator)
        );
        store
            .set_project_role(p.id, bob.id, ProjectRole::Administrator)
            .await?
            .unwrap();
        assert_eq!(store.member_role(repo.id, bob.id).await?, Some(Role::Owner));
        store.remove_project_member(p.id, olga.id).await?.unwrap();
        assert_eq!(store.member_role(repo.id, olga.id).await?, None);
        assert_eq!(
            store.remove_project_member(p.id, olga.id).await?,
            Err(MemberRefusal::NotMember)
        );
        let members = store.project_members(p.id).await?;
        assert_eq!(members.len(), 1);
        assert_eq!(
            (members[0].username.as_str(), members[0].role),
            ("bob", ProjectRole::Administrator)
        );
        store.close().await;
        Ok(())
    })
    .await
    .unwrap();
}

/// The acceptance bound is 30 s; asserted with a margin.
const BOUND: Duration = Duration::from_secs(35);

/// Reads an SSE response until the server ends it; the text of its last `error` event.
async fn sse_end(resp: &mut reqwest::Response, since: Instant) -> String {
    let mut all = String::new();
    loop {
        let left = BOUND.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, resp.chunk()).await {
            Err(_) => panic!("the stream did not end within {BOUND:?}: {all}"),
            Ok(Ok(Some(bytes))) => all.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(_) => break,
        }
    }
    let error = all
        .rsplit("event: error")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(all.contains("event: error"), "no error event: {all}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_ends_streams_requests_and_project_tokens_within_30_s() {
    let server = TestServer::start_configured(|c| c.embedded_agent = false)
        .await
        .unwrap();
    let api = Api { server: &server };
    let olga = server.create_user("olga").await.unwrap();
    let walt = server.create_user("walt").await.unwrap();
    let rita = server.create_user("rita").await.unwrap();
    let r = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "shared", "owner": "olga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.create_repo(&walt, "mine").await.unwrap();
    assert_eq!(
        api.post(&olga, "/projects", json!({"name": "team"}))
            .await
            .0,
        201
    );
    assert_eq!(
        api.post(
            &olga,
            "/projects/team/repos",
            json!({"repo": "olga/shared"})
        )
        .await
        .0,
        201
    );
    api.join(&olga, "team", "walt", &walt, "contributor").await;
    api.join(&olga, "team", "rita", &rita, "reader").await;
    let run = team::open_run(&server, 7_100_001).await;

    // a token scoped to the project: only the project and its repositories
    assert_eq!(
        api.post(
            &rita,
            "/tokens",
            json!({"name": "p", "scopes": ["read"], "project": "nope"})
        )
        .await
        .0,
        404
    );
    let (s, created) = api
        .post(
            &walt,
            "/tokens",
            json!({"name": "p", "scopes": ["read", "write"], "project": "team"}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["project"], "team");
    let scoped = created["token"].as_str().unwrap().to_string();
    assert_eq!(api.get(&scoped, "/repos/olga/shared").await.0, 200);
    assert_eq!(api.get(&scoped, "/projects/team/board").await.0, 200);
    assert_eq!(api.get(&scoped, "/repos/walt/mine").await.0, 403);
    assert_eq!(api.get(&scoped, "/user").await.0, 403);
    assert_eq!(api.get(&scoped, "/repos").await.0, 403);
    assert_eq!(
        api.post(&scoped, "/tokens", json!({"name": "x", "scopes": ["read"]}))
            .await
            .0,
        403
    );
    let (_, tokens) = api.get(&walt, "/tokens").await;
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["project"] == "team"),
        "{tokens}"
    );

    // walt's streams: a job's log lines (his own token and the project token), a followed log
    let open = |token: &str, path: String| {
        let req = server.http.get(server.api(&path)).bearer_auth(token);
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            resp
        }
    };
    let logs = format!("/runs/{run}/jobs/Build/logs/stream");
    let mut own = open(&walt, logs.clone()).await;
    let mut by_project = open(&scoped, logs.clone()).await;
    let mut follow = open(&walt, format!("/runs/{run}/jobs/Build/logs?follow=true")).await;
    let first = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"building\n");
    // rita keeps her access: her stream stays open
    let mut control = open(&rita, logs.clone()).await;

    let removed = Instant::now();
    assert_eq!(api.delete(&olga, "/projects/team/members/walt").await, 204);
    for (what, stream) in [("own token", &mut own), ("project token", &mut by_project)] {
        let reason = sse_end(stream, removed).await;
        assert!(
            reason.contains("access withdrawn") || reason.contains("no longer a member"),
            "{what}: {reason}"
        );
    }
    let mut rest = String::new();
    while let Some(chunk) =
        tokio::time::timeout(BOUND.saturating_sub(removed.elapsed()), follow.chunk())
            .await
            .expect("the followed log ends in time")
            .unwrap()
    {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.starts_with("[cove: log stream ended:"), "{rest}");
    assert!(removed.elapsed() <= BOUND, "took {:?}", removed.elapsed());

    // new requests: 404 with his own token (the repository is no longer his to see), 403
    // with the project token, and git refuses too
    assert_eq!(api.get(&walt, "/repos/olga/shared").await.0, 404);
    assert_eq!(api.get(&walt, &format!("/runs/{run}")).await.0, 404);
    assert_eq!(api.get(&walt, "/projects/team").await.0, 404);
    assert_eq!(api.get(&scoped, "/repos/olga/shared").await.0, 403);
    assert_eq!(api.get(&scoped, "/projects/team/board").await.0, 403);
    let refs = server
        .http
        .get(format!(
            "{}/git/olga/shared/info/refs?service=git-upload-pack",
            server.url
        ))
        .basic_auth("walt", Some(&walt))
        .send()
        .await
        .unwrap();
    assert_eq!(refs.status(), 404);
    // his own repository still works with his own token
    assert_eq!(api.get(&walt, "/repos/walt/mine").await.0, 200);

    // rita's stream outlived the re-checks that ended walt's
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(500), control.chunk()).await {
            Err(_) => {}
            Ok(Ok(Some(bytes))) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains("event: error"), "rita's stream: {text}");
            }
            Ok(_) => panic!("the stream of a member who kept access ended"),
        }
    }
    server.stop().await;
}

/// Reads the terminal until the server closes it: the close frame must come within
/// [`BOUND`] of `since`, with code 1008 and a reason containing `reason`.
async fn closed_with(socket: &mut team::Socket, since: Instant, reason: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let left = BOUND.saturating_sub(since.elapsed());
        let msg = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("the terminal is still open after {BOUND:?}"));
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                assert!(frame.reason.contains(reason), "{frame:?}");
                return;
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("the terminal ended without a close frame that says why")
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Runs `echo` in the terminal and waits for its output: the terminal is live.
async fn live(socket: &mut team::Socket) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    socket
        .send(Message::Binary(b"echo live-$((6*7))\n".to_vec().into()))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("live-42") {
        let msg = tokio::time::timeout(BOUND, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no output; got {seen:?}"));
        match msg {
            Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Some(Ok(_)) => {}
            other => panic!("terminal ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_members_terminal_closes_within_30_s() {
    cove_tests::require_docker();
    let server = TestServer::start().await.unwrap();
    let api = Api { server: &server };
    let t = team::setup(&server).await;
    let mut cleanup = team::Cleanup::default();
    // sam is no member of olga/shared: only the project makes him a writer there
    assert_eq!(
        api.post(&t.olga, "/projects", json!({"name": "team"}))
            .await
            .0,
        201
    );
    let (s, b) = api
        .post(
            &t.olga,
            "/projects/team/repos",
            json!({"repo": "olga/shared"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    api.join(&t.olga, "team", "sam", &t.sam, "contributor")
        .await;
    let (status, env) = team::create_env(&server, &t.sam, "project-term").await;
    assert_eq!(status, 201);
    let id = env.unwrap().id;
    cleanup.0.push(id.clone());
    team::wait_state(&server, &id, cove_api::EnvState::Running).await;
    let (h, v) = team::bearer(&t.sam);
    let mut socket = team::open_terminal(&server, &id, h, &v)
        .await
        .unwrap_or_else(|status| panic!("terminal refused: {status}"));
    live(&mut socket).await;

    let since = Instant::now();
    assert_eq!(api.delete(&t.olga, "/projects/team/members/sam").await, 204);
    closed_with(&mut socket, since, "access withdrawn").await;
    // and a new terminal, or anything else on the environment, is refused
    let (h, v) = team::bearer(&t.sam);
    assert_eq!(
        team::open_terminal(&server, &id, h, &v).await.err(),
        Some(404)
    );
    assert_eq!(api.get(&t.sam, &format!("/environments/{id}")).await.0, 404);

    let r = api.delete(&t.olga, &format!("/environments/{id}")).await;
    assert_eq!(r, 202);
    team::wait_gone(&server, &id).await;
    server.stop().await;
}
