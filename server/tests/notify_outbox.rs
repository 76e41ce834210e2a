#![allow(clippy::unwrap_used)]
//! The notification outbox (migration 0015_notify) on SQLite and PostgreSQL: an event
//! enqueues once per key, claims are exclusive, the log keeps the newest finished deliveries
//! and a restart makes pending ones due.

mod common;

use anyhow::Result;
use common::{TestServer, ADMIN_TOKEN};

/// The outbox on one store: an event enqueues once per key, claims are exclusive, and the
/// log keeps the newest finished deliveries (pending ones are never pruned).
async fn outbox_on(database_url: Option<String>) -> Result<()> {
    use cove_server::store::{now_ms, Attempt, DeliveryRow, NotifyTargetRow};
    let server = TestServer::start_with(database_url).await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let store = server.state.store();
    let repo = store.repo("admin", "app").await?.unwrap();
    let target = NotifyTargetRow {
        id: cove_server::store::next_id(),
        repo_id: repo.id,
        kind: "slack".into(),
        url: "http://192.0.2.1/x".into(),
        secret_sealed: None,
        events: vec!["run_failed".into()],
        created_by: "admin".into(),
        created_at_ms: now_ms(),
    };
    store.create_notify_target(&target).await?;
    // Far in the future: the server's own worker leaves these rows alone.
    let later = now_ms() + 3_600_000;
    let row = |key: &str| DeliveryRow {
        id: cove_server::store::next_id(),
        target_id: Some(target.id),
        user_id: None,
        event: "run_failed".into(),
        event_key: key.into(),
        body: "{}".into(),
        status: "pending".into(),
        attempts: 0,
        next_attempt_ms: later,
        response_code: None,
        error: None,
        duration_ms: None,
        created_at_ms: now_ms(),
        finished_at_ms: None,
    };
    let rows: Vec<DeliveryRow> = (0..5).map(|i| row(&format!("k{i}"))).collect();
    assert_eq!(store.enqueue_deliveries(&rows).await?, 5);
    assert_eq!(store.enqueue_deliveries(&[row("k0")]).await?, 0, "same key");
    assert!(store.claim_delivery(&rows[0], later + 60_000).await?);
    assert!(
        !store.claim_delivery(&rows[0], later + 60_000).await?,
        "claimed once"
    );
    for d in &rows[..4] {
        let done = Attempt {
            status: "delivered",
            next_attempt_ms: later,
            response_code: Some(200),
            error: None,
            duration_ms: 3,
            finished_at_ms: Some(now_ms()),
        };
        store.record_attempt(d.id, 1, &done).await?;
    }
    assert_eq!(store.prune_deliveries(target.id, 2).await?, 2);
    let left = store.deliveries_of_target(target.id, 100).await?;
    let ids: Vec<i64> = left.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![rows[4].id, rows[3].id, rows[2].id],
        "newest first"
    );
    assert_eq!(left[0].status, "pending");
    // After a restart every pending delivery is due at once.
    assert_eq!(store.retry_pending_deliveries(now_ms()).await?, 1);
    assert!(store.delete_notify_target(repo.id, target.id).await?);
    assert!(store.deliveries_of_target(target.id, 100).await?.is_empty());
    // Email to one user (migration 0018): the user's address, and deliveries that belong to
    // no target, deduplicated per user.
    let user = store.user_by_name("admin").await?.unwrap();
    assert_eq!(user.email, None);
    assert!(
        store
            .set_user_email(user.id, Some("admin@example.test"))
            .await?
    );
    let user = store.user_by_name("admin").await?.unwrap();
    assert_eq!(user.email.as_deref(), Some("admin@example.test"));
    let mail = |key: &str| DeliveryRow {
        target_id: None,
        user_id: Some(user.id),
        ..row(key)
    };
    assert_eq!(
        store.enqueue_deliveries(&[mail("k0"), mail("k9")]).await?,
        2
    );
    assert_eq!(
        store.enqueue_deliveries(&[mail("k0")]).await?,
        0,
        "same key"
    );
    assert_eq!(store.deliveries_of_user(user.id, 100).await?.len(), 2);
    assert!(store.set_user_email(user.id, None).await?);
    assert_eq!(store.user_by_name("admin").await?.unwrap().email, None);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_on_sqlite() -> Result<()> {
    outbox_on(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_on_postgres() -> Result<()> {
    let Some(db) = common::postgres_db_or_skip("cove_notify").await? else {
        return Ok(());
    };
    outbox_on(Some(db)).await
}
