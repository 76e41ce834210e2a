//! Personal settings and outdated-environment bookkeeping in the store (migration
//! 0022_dotfiles) on SQLite and PostgreSQL (when `COVE_TEST_POSTGRES_URL` is set; see
//! scripts/setup-postgres.sh): a user's dotfiles repository set, read, replaced and cleared,
//! per user; an environment's devfile blob ids (applied upstream, replaced by an update)
//! recorded and read back.

mod common;

use anyhow::{ensure, Result};
use cove_api::{EnvState, Visibility};
use cove_server::store::{EnvRow, Store};

#[tokio::test]
async fn settings_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let alice = store.create_user("alice", None, false).await?;
    let bob = store.create_user("bob", None, false).await?;
    ensure!(store.user_dotfiles(alice.id).await?.is_none());
    ensure!(
        store
            .set_user_dotfiles(alice.id, Some("alice/dots"))
            .await?
    );
    ensure!(store.user_dotfiles(alice.id).await?.as_deref() == Some("alice/dots"));
    ensure!(store.user_dotfiles(bob.id).await?.is_none());
    ensure!(
        store
            .set_user_dotfiles(alice.id, Some("https://example.com/d.git"))
            .await?
    );
    ensure!(store.user_dotfiles(alice.id).await?.as_deref() == Some("https://example.com/d.git"));
    ensure!(store.set_user_dotfiles(alice.id, None).await?);
    ensure!(store.user_dotfiles(alice.id).await?.is_none());
    ensure!(!store.set_user_dotfiles(i64::MAX, Some("x/y")).await?);

    let repo = store
        .create_repo(&alice, "r", Visibility::Private, "main")
        .await?;
    let row = EnvRow {
        id: "e1".into(),
        name: "dev".into(),
        repo_id: repo.id,
        owner_id: alice.id,
        branch: "main".into(),
        devfile_path: Some("devfile.yaml".into()),
        state: EnvState::Running,
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
    ensure!(store.env_devfile_upstream("e1").await?.is_none());
    store.set_env_devfile_upstream("e1", Some("abc123")).await?;
    ensure!(store.env_devfile_upstream("e1").await?.as_deref() == Some("abc123"));
    ensure!(store.env_devfile_upstream("nope").await?.is_none());
    ensure!(store.env_devfile_behind("e1").await?.is_none());
    store.set_env_devfile_behind("e1", Some("old456")).await?;
    ensure!(store.env_devfile_behind("e1").await?.as_deref() == Some("old456"));
    Ok(())
}
