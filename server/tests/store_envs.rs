//! Environment state transitions in the store are compare-and-set, the same on SQLite and
//! PostgreSQL (when `COVE_TEST_POSTGRES_URL` is set; see scripts/setup-postgres.sh and
//! `store::postgres_is_not_skipped_in_ci`).

mod common;

use anyhow::{Context, Result};
use cove_api::{EnvState, Visibility};
use cove_server::store::{EnvRow, EnvSweep, Store};

#[tokio::test]
async fn environment_transitions_are_conditional_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let owner = store.create_user("owner", None, true).await?;
    let repo = store
        .create_repo(&owner, "r", Visibility::Private, "main")
        .await?;
    let row = EnvRow {
        id: "e1".into(),
        name: "dev".into(),
        repo_id: repo.id,
        owner_id: owner.id,
        branch: "main".into(),
        devfile_path: Some("devfile.yaml".into()),
        state: EnvState::Creating,
        reason: None,
        plan_json: "{}".into(),
        devfile_text: Some("v1".into()),
        restart_required: false,
        devfile_changes: None,
        endpoints_json: "[]".into(),
        idle_timeout_secs: 60,
        last_activity_ms: 0,
        created_at: 0,
        agent_id: None,
        placement: None,
        pooled: None,
    };
    store.create_env(&row).await?;
    let state = |s: &Store| {
        let s = s.clone();
        async move { Ok::<_, anyhow::Error>(s.env("e1").await?.context("row")?.state) }
    };

    // a report for the wrong state changes nothing
    assert!(
        !store
            .transition_env("e1", &[EnvState::Stopping], EnvState::Stopped, None)
            .await?
    );
    assert_eq!(state(&store).await?, EnvState::Creating);
    // the right one moves it, once
    assert!(
        store
            .transition_env(
                "e1",
                &[EnvState::Creating, EnvState::Starting],
                EnvState::Running,
                None
            )
            .await?
    );
    assert!(
        !store
            .transition_env(
                "e1",
                &[EnvState::Creating, EnvState::Starting],
                EnvState::Running,
                None
            )
            .await?
    );
    assert_eq!(state(&store).await?, EnvState::Running);

    // restart-required only for the devfile text that was compared, and only while running
    assert!(
        !store
            .set_env_restart_required("e1", Some("v0"), true, Some("+ x"))
            .await?
    );
    assert!(
        store
            .set_env_restart_required("e1", Some("v1"), true, Some("+ x"))
            .await?
    );
    assert!(store.env("e1").await?.context("row")?.restart_required);

    // the row is only deleted by a delete report while deleting
    assert!(!store.delete_env_if_deleting("e1").await?);
    assert!(
        store
            .transition_env("e1", &[EnvState::Running], EnvState::Deleting, None)
            .await?
    );
    assert!(
        !store
            .set_env_restart_required("e1", Some("v1"), false, None)
            .await?
    );
    assert!(store.delete_env_if_deleting("e1").await?);
    assert!(store.env("e1").await?.is_none());
    assert!(
        !store
            .transition_env("e1", &[EnvState::Deleting], EnvState::Failed, None)
            .await?
    );

    // the sweeps after an interrupted create: remembered once, started by the delete,
    // forgotten at the end; an environment that was not interrupted has none
    assert!(!store.env_sweep_deleted("e2", 5).await?);
    store.add_env_sweep("e1", None).await?;
    store.add_env_sweep("e1", Some(7)).await?;
    store.add_env_sweep("e3", Some(9)).await?;
    let sweep = |id: &str, agent_id, deleted_ms| EnvSweep {
        env_id: id.into(),
        agent_id,
        deleted_ms,
    };
    assert_eq!(
        store.env_sweeps().await?,
        vec![sweep("e1", None, None), sweep("e3", Some(9), None)]
    );
    assert!(store.env_sweep_deleted("e1", 1_700_000_000_123).await?);
    store.end_env_sweep("e3").await?;
    assert_eq!(
        store.env_sweeps().await?,
        vec![sweep("e1", None, Some(1_700_000_000_123))]
    );
    store.end_env_sweep("e1").await?;
    assert!(store.env_sweeps().await?.is_empty());
    store.close().await;
    Ok(())
}
