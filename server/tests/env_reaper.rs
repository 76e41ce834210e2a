//! The idle reaper stops every idle environment even when one of them cannot be stopped:
//! the failing one is logged and the pass goes on (real store, embedded agent on the real
//! Docker engine).

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use cove_api::{EnvState, Visibility};
use cove_server::store::EnvRow;

fn idle_row(id: &str, repo_id: i64, owner_id: i64, plan_json: &str) -> EnvRow {
    EnvRow {
        id: id.into(),
        name: id.into(),
        repo_id,
        owner_id,
        branch: "main".into(),
        devfile_path: None,
        state: EnvState::Running,
        reason: None,
        plan_json: plan_json.into(),
        devfile_text: None,
        restart_required: false,
        devfile_changes: None,
        endpoints_json: "[]".into(),
        idle_timeout_secs: 60,
        last_activity_ms: 0,
        created_at: 0,
        agent_id: None,
        placement: None,
        pooled: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_environment_does_not_abort_a_reaper_pass() {
    cove_tests::require_docker();
    let server = TestServer::start().await.unwrap();
    // an answered request means the start-up reconciliation is over (it runs before serving)
    let r = server
        .http
        .get(server.api("/user"))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = server.state.store();
    let owner = store.create_user("reaper-owner", None, true).await.unwrap();
    let repo = store
        .create_repo(&owner, "idle", Visibility::Private, "main")
        .await
        .unwrap();
    // listed first (same created_at, smaller id): a row whose plan cannot be read
    store
        .create_env(&idle_row("e0broken", repo.id, owner.id, "not a plan"))
        .await
        .unwrap();
    let plan = serde_json::to_string(&devfiles::EnvironmentPlan::default()).unwrap();
    store
        .create_env(&idle_row("e1fine", repo.id, owner.id, &plan))
        .await
        .unwrap();

    let stopped = cove_server::envs::reap_idle(&server.state, 10 * 60 * 1000)
        .await
        .expect("a failing environment does not fail the pass");
    assert_eq!(stopped, vec!["e1fine".to_string()]);
    let fine = store.env("e1fine").await.unwrap().unwrap();
    assert_ne!(fine.state, EnvState::Running, "the idle one was stopped");
    let broken = store.env("e0broken").await.unwrap().unwrap();
    assert_eq!(broken.state, EnvState::Running);
    server.stop().await;
}
