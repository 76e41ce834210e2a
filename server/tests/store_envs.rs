//! Environment state transitions in the store are compare-and-set, the same on SQLite and
//! PostgreSQL (when `COVE_TEST_POSTGRES_URL` is set; see scripts/setup-postgres.sh and
//! `store::postgres_is_not_skipped_in_ci`).

use anyhow::{Context, Result};
use cove_api::{EnvState, Visibility};
use cove_server::store::{EnvRow, Store};
use rand::RngCore;

async fn backends(tmp: &tempfile::TempDir) -> Result<Vec<(String, String)>> {
    let mut out = vec![(
        "sqlite".to_string(),
        format!("sqlite://{}?mode=rwc", tmp.path().join("t.db").display()),
    )];
    if let Some(base) = std::env::var("COVE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&base).await?;
        let mut suffix = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut suffix);
        let name = format!("cove_t_{}", hex::encode(suffix));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        let (prefix, _) = base.rsplit_once('/').context("no database path")?;
        out.push(("postgres".to_string(), format!("{prefix}/{name}")));
    }
    Ok(out)
}

/// Drops a database made by [`backends`] (its pools are closed).
async fn drop_postgres(url: &str) -> Result<()> {
    let base = std::env::var("COVE_TEST_POSTGRES_URL")?;
    let Some((_, name)) = url.rsplit_once('/') else {
        return Ok(());
    };
    let pool = sqlx::AnyPool::connect(&base).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn environment_transitions_are_conditional_on_every_backend() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for (backend, url) in backends(&tmp).await? {
        exercise(&url)
            .await
            .with_context(|| format!("backend {backend}"))?;
        if backend == "postgres" {
            drop_postgres(&url).await?;
        }
    }
    Ok(())
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
    store.close().await;
    Ok(())
}
