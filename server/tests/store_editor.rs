//! The editor of environments and users' default editor in the store (migration 0023_editor)
//! on SQLite and PostgreSQL (when `COVE_TEST_POSTGRES_URL` is set; see
//! scripts/setup-postgres.sh): `terminal` until set, `vscode` once set, per user and per
//! environment; unknown rows read as `terminal`.

mod common;

use anyhow::{ensure, Result};
use cove_api::{Editor, EnvState, Visibility};
use cove_server::store::{EnvRow, Store};

#[tokio::test]
async fn editor_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let alice = store.create_user("alice", None, false).await?;
    let bob = store.create_user("bob", None, false).await?;
    ensure!(store.user_editor(alice.id).await? == Editor::Terminal);
    ensure!(store.set_user_editor(alice.id, Editor::Vscode).await?);
    ensure!(store.user_editor(alice.id).await? == Editor::Vscode);
    ensure!(store.user_editor(bob.id).await? == Editor::Terminal);
    ensure!(store.set_user_editor(alice.id, Editor::Terminal).await?);
    ensure!(store.user_editor(alice.id).await? == Editor::Terminal);
    ensure!(!store.set_user_editor(i64::MAX, Editor::Vscode).await?);

    let repo = store
        .create_repo(&alice, "r", Visibility::Private, "main")
        .await?;
    let row = |id: &str| EnvRow {
        id: id.into(),
        name: id.into(),
        repo_id: repo.id,
        owner_id: alice.id,
        branch: "main".into(),
        devfile_path: None,
        state: EnvState::Running,
        reason: None,
        plan_json: "{}".into(),
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
    };
    store.create_env(&row("e1")).await?;
    store.create_env(&row("e2")).await?;
    ensure!(
        store.env_editor("e1").await? == Editor::Terminal,
        "the column's default"
    );
    store.set_env_editor("e1", Editor::Vscode).await?;
    ensure!(store.env_editor("e1").await? == Editor::Vscode);
    ensure!(store.env_editor("e2").await? == Editor::Terminal);
    ensure!(store.env_editor("nope").await? == Editor::Terminal);
    Ok(())
}
