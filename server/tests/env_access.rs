//! The environment access matrix (issue 14): every environment route of the route table,
//! walked as the environment's creator, another writer, a reader, a stranger (no access to
//! the repository), the repository's owner and an administrator, on real environments (the
//! embedded agent on the real Docker engine). An environment belongs to its creator: terminal,
//! exec, logs, events, start, move, restart and update need the creator or an administrator; the
//! repository's owner may also stop and delete it; everyone else with a role on the
//! repository only sees that it exists.

#![allow(clippy::unwrap_used)]

mod common;
mod team;

use common::TestServer;
use cove_api::{EnvState, Environment};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

use team::{bearer, create_env, open_terminal, open_ws, wait_gone, wait_state, Events, Next, Team};

/// `method path` as `token` (JSON body `body`): the status.
async fn status(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> u16 {
    server
        .http
        .request(method, server.api(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The ids in `GET /environments` as `token`.
async fn listed(server: &TestServer, token: &str) -> Vec<String> {
    let r = server
        .http
        .get(server.api("/environments"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Environment>>()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// The first SSE snapshot of `GET /environments/stream` as `token`: the ids in it.
async fn streamed(server: &TestServer, token: &str) -> Vec<String> {
    let (header, value) = bearer(token);
    let mut events = Events::open(server, "/environments/stream", header, &value).await;
    let Next::Event(name, data) = events.next(Duration::from_secs(30)).await else {
        panic!("the stream ended")
    };
    assert_eq!(name, "environments");
    serde_json::from_str::<Vec<Environment>>(&data)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Walks one environment route as each of `who` and asserts the statuses.
async fn walk(
    server: &TestServer,
    method: Method,
    path: &str,
    body: serde_json::Value,
    who: &[(&str, &str, u16)],
) {
    for (name, token, want) in who {
        let got = status(server, method.clone(), path, token, body.clone()).await;
        assert_eq!(got, *want, "{method} {path} as {name}");
    }
}

/// Every environment route of the route table with its environment rule: a new environment
/// route fails this test until it is added here and to the walk below.
#[test]
fn the_route_table_names_the_environment_rule_of_every_environment_route() {
    use cove_server::envs::EnvAccess::{Creator, CreatorOrRepoOwner};
    let expected = [
        ("POST", "/api/v1/repos/{owner}/{name}/environments", None),
        ("GET", "/api/v1/environments", None),
        ("GET", "/api/v1/environments/stream", None),
        ("GET", "/api/v1/environments/orphans", None),
        ("GET", "/api/v1/environments/{env}", None),
        (
            "DELETE",
            "/api/v1/environments/{env}",
            Some(CreatorOrRepoOwner),
        ),
        ("POST", "/api/v1/environments/{env}/start", Some(Creator)),
        (
            "POST",
            "/api/v1/environments/{env}/stop",
            Some(CreatorOrRepoOwner),
        ),
        ("POST", "/api/v1/environments/{env}/move", Some(Creator)),
        ("POST", "/api/v1/environments/{env}/restart", Some(Creator)),
        ("POST", "/api/v1/environments/{env}/update", Some(Creator)),
        ("POST", "/api/v1/environments/{env}/exec", Some(Creator)),
        ("GET", "/api/v1/environments/{env}/logs", Some(Creator)),
        ("GET", "/api/v1/environments/{env}/events", Some(Creator)),
        ("GET", "/api/v1/environments/{env}/terminal", Some(Creator)),
        ("GET", "/api/v1/environments/{env}/ssh", Some(Creator)),
        (
            "GET",
            "/api/v1/environments/{env}/ports/{port}/tunnel",
            Some(Creator),
        ),
    ];
    let table: Vec<_> = cove_server::routes::api_routes()
        .into_iter()
        .map(|r| r.spec)
        // dev environments; `…/deploy/environments` are deployment targets (server/src/deploy/)
        .filter(|s| s.path.contains("environments") && !s.path.contains("/deploy/"))
        .map(|s| (s.method.to_string(), s.path, s.env_access))
        .collect();
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(m, p, a)| (m.to_string(), p, a))
        .collect();
    assert_eq!(table, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_environment_route_as_creator_writer_reader_stranger_owner_and_admin() {
    cove_tests::require_docker();
    // SSH on (its WebSocket route is walked like the terminal)
    let server = TestServer::start_configured(|c| {
        c.ssh_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    .unwrap();
    let t: Team = team::setup(&server).await;
    let mut cleanup = team::Cleanup::default();

    // ---- create (POST /repos/{owner}/{name}/environments): writers and up
    let (st, a) = create_env(&server, &t.alice, "alice-env").await;
    assert_eq!(st, 201, "create as writer alice");
    let a = a.unwrap().id;
    let (st, w) = create_env(&server, &t.walt, "walt-env").await;
    assert_eq!(st, 201, "create as writer walt");
    let w = w.unwrap().id;
    let (st, x) = create_env(&server, &t.admin, "admin-env").await;
    assert_eq!(st, 201, "create as administrator");
    let x = x.unwrap().id;
    cleanup.0.extend([a.clone(), w.clone(), x.clone()]);
    assert_eq!(create_env(&server, &t.rita, "r").await.0, 403, "reader");
    assert_eq!(create_env(&server, &t.sam, "s").await.0, 404, "stranger");
    for id in [&a, &w, &x] {
        wait_state(&server, id, EnvState::Running).await;
    }
    let shown = team::env(&server, &a).await.unwrap();
    assert_eq!(
        shown.owner, "alice",
        "the creator is the environment's owner"
    );

    // ---- list, stream, show: everyone with a role sees that it exists; a stranger does not
    for (name, token) in [
        ("alice", &t.alice),
        ("walt", &t.walt),
        ("rita", &t.rita),
        ("olga", &t.olga),
        ("admin", &t.admin),
    ] {
        assert!(listed(&server, token).await.contains(&a), "list as {name}");
        assert!(
            streamed(&server, token).await.contains(&a),
            "stream as {name}"
        );
    }
    assert!(listed(&server, &t.sam).await.is_empty(), "list as stranger");
    walk(
        &server,
        Method::GET,
        "/environments/orphans",
        json!({}),
        &[
            ("alice", &t.alice, 403),
            ("walt", &t.walt, 403),
            ("rita", &t.rita, 403),
            ("olga", &t.olga, 403),
            ("sam", &t.sam, 403),
            ("admin", &t.admin, 200),
        ],
    )
    .await;
    assert!(
        streamed(&server, &t.sam).await.is_empty(),
        "stream as stranger"
    );
    let show = format!("/environments/{a}");
    walk(
        &server,
        Method::GET,
        &show,
        json!({}),
        &[
            ("alice", &t.alice, 200),
            ("walt", &t.walt, 200),
            ("rita", &t.rita, 200),
            ("olga", &t.olga, 200),
            ("admin", &t.admin, 200),
            ("sam", &t.sam, 404),
        ],
    )
    .await;

    // ---- logs, events, exec, terminal: the creator and administrators only
    let creator_only = |ok: u16| {
        vec![
            ("alice", t.alice.as_str(), ok),
            ("admin", t.admin.as_str(), ok),
            ("walt", t.walt.as_str(), 403),
            ("rita", t.rita.as_str(), 403),
            ("olga", t.olga.as_str(), 403),
            ("sam", t.sam.as_str(), 404),
        ]
    };
    for route in ["logs", "events"] {
        let path = format!("/environments/{a}/{route}");
        walk(&server, Method::GET, &path, json!({}), &creator_only(200)).await;
    }
    let exec = format!("/environments/{a}/exec");
    walk(
        &server,
        Method::POST,
        &exec,
        json!({"command": ["true"]}),
        &creator_only(200),
    )
    .await;
    for (name, token, want) in creator_only(101) {
        let (header, value) = bearer(token);
        match open_terminal(&server, &a, header, &value).await {
            Ok(mut socket) => {
                assert_eq!(want, 101, "terminal as {name} was opened");
                socket.close(None).await.unwrap();
            }
            Err(got) => assert_eq!(got, want, "terminal as {name}"),
        }
    }
    for (name, token, want) in creator_only(101) {
        let (header, value) = bearer(token);
        match open_ws(&server, &format!("/environments/{a}/ssh"), header, &value).await {
            Ok(mut socket) => {
                assert_eq!(want, 101, "SSH WebSocket as {name} was opened");
                socket.close(None).await.unwrap();
            }
            Err(got) => assert_eq!(got, want, "SSH WebSocket as {name}"),
        }
    }
    // a port tunnel (`cove env port-forward`): opened even when nothing listens (the
    // loopback relay then ends it)
    for (name, token, want) in creator_only(101) {
        let (header, value) = bearer(token);
        let path = format!("/environments/{a}/ports/8000/tunnel");
        match open_ws(&server, &path, header, &value).await {
            Ok(mut socket) => {
                assert_eq!(want, 101, "port tunnel as {name} was opened");
                let _ = socket.close(None).await;
            }
            Err(got) => assert_eq!(got, want, "port tunnel as {name}"),
        }
    }

    // ---- restart, stop, start: the creator and administrators; stop also the repo's owner
    let (restart, stop, start) = (
        format!("/environments/{a}/restart"),
        format!("/environments/{a}/stop"),
        format!("/environments/{a}/start"),
    );
    let refused = [
        ("walt", t.walt.as_str(), 403),
        ("rita", t.rita.as_str(), 403),
        ("olga", t.olga.as_str(), 403),
        ("sam", t.sam.as_str(), 404),
    ];
    walk(&server, Method::POST, &restart, json!({}), &refused).await;
    for (name, token) in [("alice", &t.alice), ("admin", &t.admin)] {
        walk(
            &server,
            Method::POST,
            &restart,
            json!({}),
            &[(name, token, 200)],
        )
        .await;
        wait_state(&server, &a, EnvState::Running).await;
    }
    // update (onto the branch's devfile): the same rule as restart
    let update = format!("/environments/{a}/update");
    walk(&server, Method::POST, &update, json!({}), &refused).await;
    walk(
        &server,
        Method::POST,
        &update,
        json!({}),
        &[("alice", t.alice.as_str(), 200)],
    )
    .await;
    wait_state(&server, &a, EnvState::Running).await;
    // move (to another agent): the same rule as start; the creator reaches the handler (a
    // running environment: stop it first)
    let mv = format!("/environments/{a}/move");
    walk(&server, Method::POST, &mv, json!({"agent": "x"}), &refused).await;
    walk(
        &server,
        Method::POST,
        &mv,
        json!({"agent": "x"}),
        &[("alice", t.alice.as_str(), 409)],
    )
    .await;
    walk(&server, Method::POST, &stop, json!({}), &refused[..2]).await;
    walk(&server, Method::POST, &stop, json!({}), &refused[3..]).await;
    for (name, token) in [("alice", &t.alice), ("admin", &t.admin), ("olga", &t.olga)] {
        walk(
            &server,
            Method::POST,
            &stop,
            json!({}),
            &[(name, token, 200)],
        )
        .await;
        wait_state(&server, &a, EnvState::Stopped).await;
        if name == "olga" {
            break;
        }
        walk(&server, Method::POST, &start, json!({}), &refused).await;
        walk(
            &server,
            Method::POST,
            &start,
            json!({}),
            &[(name, token, 200)],
        )
        .await;
        wait_state(&server, &a, EnvState::Running).await;
    }
    assert_eq!(
        team::env(&server, &a).await.unwrap().state,
        EnvState::Stopped
    );

    // ---- delete: the creator, the repository's owner, administrators
    let delete = |id: &str| format!("/environments/{id}");
    walk(
        &server,
        Method::DELETE,
        &delete(&a),
        json!({}),
        &refused[..2],
    )
    .await;
    walk(
        &server,
        Method::DELETE,
        &delete(&a),
        json!({}),
        &refused[3..],
    )
    .await;
    walk(
        &server,
        Method::DELETE,
        &delete(&a),
        json!({}),
        &[("alice", &t.alice, 202)],
    )
    .await;
    walk(
        &server,
        Method::DELETE,
        &delete(&x),
        json!({}),
        &[("walt", &t.walt, 403), ("olga", &t.olga, 202)],
    )
    .await;
    walk(
        &server,
        Method::DELETE,
        &delete(&w),
        json!({}),
        &[("alice", &t.alice, 403), ("admin", &t.admin, 202)],
    )
    .await;
    for id in [&a, &w, &x] {
        wait_gone(&server, id).await;
    }
    server.stop().await;
}
