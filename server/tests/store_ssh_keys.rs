//! SSH keys in the store (migration 0021_ssh_keys) on SQLite and PostgreSQL (when
//! `COVE_TEST_POSTGRES_URL` is set; see scripts/setup-postgres.sh): add, list per user and
//! for everyone, lookup by fingerprint, a fingerprint belongs to one user, removal scoped to
//! the owner, and the last use.

mod common;

use anyhow::{ensure, Result};
use cove_server::store::{next_id, SshKeyRow, Store, StoreError};

#[tokio::test]
async fn ssh_keys_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

fn key(user_id: i64, name: &str, fingerprint: &str) -> SshKeyRow {
    SshKeyRow {
        id: next_id(),
        user_id,
        username: String::new(),
        name: name.into(),
        algorithm: "ssh-ed25519".into(),
        fingerprint: fingerprint.into(),
        public_key: format!("ssh-ed25519 AAAA{name}"),
        created_at: 1_700_000_000,
        last_used_at: None,
    }
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let alice = store.create_user("alice", None, false).await?;
    let bob = store.create_user("bob", None, false).await?;
    let a1 = key(alice.id, "laptop", "SHA256:a1");
    let a2 = key(alice.id, "desktop", "SHA256:a2");
    let b1 = key(bob.id, "bob", "SHA256:b1");
    for k in [&a1, &a2, &b1] {
        store.add_ssh_key(k).await?;
    }
    // one user per fingerprint
    let taken = store.add_ssh_key(&key(bob.id, "copy", "SHA256:a1")).await;
    ensure!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");

    let mine = store.ssh_keys(Some(alice.id)).await?;
    ensure!(
        mine.iter().map(|k| k.name.as_str()).collect::<Vec<_>>() == ["laptop", "desktop"],
        "{mine:?}"
    );
    ensure!(mine.iter().all(|k| k.username == "alice"), "{mine:?}");
    ensure!(store.ssh_keys(None).await?.len() == 3);
    let found = store.ssh_key_by_fingerprint("SHA256:b1").await?;
    ensure!(
        found.as_ref().map(|k| (k.user_id, k.username.as_str())) == Some((bob.id, "bob")),
        "{found:?}"
    );
    ensure!(store.ssh_key_by_fingerprint("SHA256:none").await?.is_none());

    store.touch_ssh_key(a1.id, 1_800_000_000).await?;
    let used = store.ssh_key_by_fingerprint("SHA256:a1").await?;
    ensure!(used.and_then(|k| k.last_used_at) == Some(1_800_000_000));

    // a user removes only their own keys; an administrator's removal takes any
    ensure!(!store.delete_ssh_key(b1.id, Some(alice.id)).await?);
    ensure!(store.delete_ssh_key(a2.id, Some(alice.id)).await?);
    ensure!(store.delete_ssh_key(b1.id, None).await?);
    ensure!(!store.delete_ssh_key(b1.id, None).await?);
    ensure!(store.ssh_keys(None).await?.len() == 1);
    store.close().await;
    Ok(())
}
