//! Store tests: run against SQLite always and against PostgreSQL when
//! `COVE_TEST_POSTGRES_URL` is set (see scripts/setup-postgres.sh). In CI (`CI=true`) the
//! PostgreSQL variable is required, so PostgreSQL is never skipped silently.

mod common;

use anyhow::{Context, Result};
use common::{clone, commit_file, git_ok, on_every_backend, postgres_base_url, TestServer};
use cove_api::{PushEvent, Role, Scope, Visibility, ZERO_SHA};
use cove_server::store::{next_id, RefUpdate, Store, StoreError};

#[test]
fn postgres_is_not_skipped_in_ci() {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    assert!(
        !ci || postgres_base_url().is_some(),
        "CI=true but COVE_TEST_POSTGRES_URL is not set: run `eval \"$(scripts/setup-postgres.sh)\"` before the tests"
    );
}

#[tokio::test]
async fn store_behaves_the_same_on_every_backend() -> Result<()> {
    on_every_backend(|url| async move { exercise(&url).await }).await
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    // Migrations are idempotent.
    drop(Store::open(url).await?);
    assert_eq!(store.user_count().await?, 0);

    let alice = store
        .create_user("alice", Some("$argon2id$fake"), true)
        .await?;
    let bob = store.create_user("bob", None, false).await?;
    let carol = store.create_user("carol", None, false).await?;
    assert!(matches!(
        store.create_user("alice", None, false).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user_count().await?, 3);
    let found = store.user_by_name("alice").await?.context("alice")?;
    assert_eq!(found.id, alice.id);
    assert_eq!(found.password_hash.as_deref(), Some("$argon2id$fake"));
    assert!(found.is_admin);
    assert_eq!(store.first_admin().await?.map(|u| u.id), Some(alice.id));

    // Tokens: stored by hash, with scopes and optional expiry.
    let t = store
        .create_token(
            bob.id,
            "laptop",
            "hash-1",
            &[Scope::Read, Scope::Write],
            Some(123),
        )
        .await?;
    let (row, user) = store.token_by_hash("hash-1").await?.context("token")?;
    assert_eq!((row.id, user.id), (t.id, bob.id));
    assert_eq!(row.scopes, vec![Scope::Read, Scope::Write]);
    assert_eq!(row.expires_at, Some(123));
    store
        .create_token(bob.id, "ci", "hash-2", &[Scope::Read], None)
        .await?;
    assert!(store.token_by_hash("nope").await?.is_none());
    assert_eq!(store.list_tokens(bob.id).await?.len(), 2);
    assert!(
        !store.delete_token(carol.id, t.id).await?,
        "someone else's token"
    );
    assert!(store.delete_token(bob.id, t.id).await?);
    assert!(store.token_by_hash("hash-1").await?.is_none());

    // Repositories and visibility.
    let private = store
        .create_repo(&bob, "secret", Visibility::Private, "main")
        .await?;
    let public = store
        .create_repo(&bob, "open", Visibility::Public, "main")
        .await?;
    assert!(matches!(
        store
            .create_repo(&bob, "secret", Visibility::Public, "main")
            .await,
        Err(StoreError::Conflict(_))
    ));
    let names = |repos: Vec<cove_server::store::RepoRow>| {
        repos.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_repos(bob.id, false).await?),
        ["open", "secret"]
    );
    assert_eq!(names(store.list_repos(carol.id, false).await?), ["open"]);
    assert_eq!(
        names(store.list_repos(alice.id, true).await?),
        ["open", "secret"]
    );

    // Members: set, replace, list, remove.
    store.set_member(private.id, carol.id, Role::Reader).await?;
    store.set_member(private.id, carol.id, Role::Writer).await?;
    assert_eq!(
        store.member_role(private.id, carol.id).await?,
        Some(Role::Writer)
    );
    assert_eq!(
        store.list_members(private.id).await?,
        vec![("carol".to_string(), Role::Writer)]
    );
    assert_eq!(
        names(store.list_repos(carol.id, false).await?),
        ["open", "secret"]
    );
    assert!(store.remove_member(private.id, carol.id).await?);
    assert_eq!(store.member_role(private.id, carol.id).await?, None);

    // Push events: one transaction per push, listed oldest first, limited to the newest.
    let sha = |c: char| c.to_string().repeat(40);
    let updates: Vec<RefUpdate> = (0..5)
        .map(|i| RefUpdate {
            ref_name: format!("refs/heads/b{i}"),
            old_sha: ZERO_SHA.to_string(),
            new_sha: sha(char::from(b'a' + i as u8)),
        })
        .collect();
    let stored = store
        .insert_push_events(&private, Some(&carol), &updates)
        .await?;
    assert_eq!(stored.len(), 5);
    let listed = store.list_push_events(private.id, 3).await?;
    let refs: Vec<&str> = listed.iter().map(|e| e.ref_name.as_str()).collect();
    assert_eq!(refs, ["refs/heads/b2", "refs/heads/b3", "refs/heads/b4"]);
    assert_eq!(listed[0].pusher.as_deref(), Some("carol"));
    assert!(store.list_push_events(public.id, 10).await?.is_empty());

    // Deleting a repository removes its events and members.
    store.set_member(private.id, carol.id, Role::Reader).await?;
    store.delete_repo(private.id).await?;
    assert!(store.repo("bob", "secret").await?.is_none());
    assert!(store.list_push_events(private.id, 10).await?.is_empty());
    assert!(store.list_members(private.id).await?.is_empty());
    store.close().await;
    Ok(())
}

#[test]
fn ids_are_strictly_increasing() {
    let ids: Vec<i64> = (0..10_000).map(|_| next_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

/// The whole server on PostgreSQL: create, push, events, clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_postgres_push_and_clone() -> Result<()> {
    let Some(base) = postgres_base_url() else {
        // Covered by `postgres_is_not_skipped_in_ci` in CI.
        return Ok(());
    };
    let db = common::create_postgres_db(&base, "cove_t").await?;
    let server = TestServer::start_with(Some(db.clone())).await?;
    server.create_repo(&server.admin_token, "pg").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/pg", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let head = commit_file(&a, "f", b"postgres", "pg").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let b = clone(work.path(), &url, "b", &["-c", "protocol.version=2"]).await?;
    assert_eq!(git_ok(&b, &["rev-parse", "HEAD"]).await?, head);
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/pg/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].new_sha, head);
    server.stop().await;
    common::drop_postgres_db(&base, &db).await
}

/// Durability in the store (issue 13 §4), on every backend: the push-event cursor, one run per
/// workflow per event, concurrent artifact records, the finish digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_runs_store_on_every_backend() -> Result<()> {
    use cove_api::{JobState, RunState};
    use cove_server::store::{JobRow, RunRow};
    on_every_backend(|url| async move {
        let store = Store::open(&url).await?;
        let owner = store.create_user("dora", None, false).await?;
        let repo = store
            .create_repo(&owner, "d", Visibility::Private, "main")
            .await?;
        let update = |r: &str| RefUpdate {
            ref_name: format!("refs/heads/{r}"),
            old_sha: ZERO_SHA.to_string(),
            new_sha: "a".repeat(40),
        };
        let stored = store
            .insert_push_events(&repo, Some(&owner), &[update("main"), update("dev")])
            .await?;
        let pending = store.pending_push_events(10).await?;
        assert_eq!(
            pending.iter().map(|e| e.id).collect::<Vec<_>>(),
            stored.iter().map(|e| e.id).collect::<Vec<_>>(),
            "oldest first"
        );
        assert_eq!(pending[0].repo, "dora/d");
        assert_eq!(pending[0].pusher.as_deref(), Some("dora"));

        let event = stored[0].id;
        let run = |id: i64| RunRow {
            id,
            repo_id: repo.id,
            workflow: "wf".into(),
            workflow_file: ".codecatalyst/workflows/wf.yaml".into(),
            workflow_text: String::new(),
            implicit_branch: None,
            run_mode: "QUEUED".into(),
            branch: "main".into(),
            commit_sha: "a".repeat(40),
            trigger_kind: "push".into(),
            state: RunState::Queued,
            created_at_ms: 0,
            finished_at_ms: None,
            number: 0,
            pr_number: None,
        };
        let job = |id: i64, run_id: i64| JobRow {
            id,
            run_id,
            idx: 0,
            action: "Build".into(),
            depends_on: vec![],
            state: JobState::Pending,
            attempt: 0,
            max_attempts: 2,
            lease_expires_ms: None,
            cancel_requested: false,
            timeout_ms: 1000,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            variables_json: "{}".into(),
            artifacts_json: "[]".into(),
            on_failure: Default::default(),
            labels: Default::default(),
        };
        let (r1, j1) = (next_id(), next_id());
        assert!(
            store
                .create_push_run(&run(r1), &[job(j1, r1)], event)
                .await?
        );
        let r2 = next_id();
        assert!(
            !store
                .create_push_run(&run(r2), &[job(next_id(), r2)], event)
                .await?,
            "a second run of the same event and workflow"
        );
        assert!(store.run(r2).await?.is_none(), "nothing of it was written");
        store.push_event_done(event).await?;
        let pending = store.pending_push_events(10).await?;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, stored[1].id);

        // Concurrent artifact records of one job all stay.
        let adds = (0..12).map(|i| {
            let store = store.clone();
            async move { store.add_job_artifact(j1, &format!("a{i}")).await }
        });
        for r in futures_util::future::join_all(adds).await {
            r?;
        }
        store.add_job_artifact(j1, "a0").await?;
        let names: Vec<String> =
            serde_json::from_str(&store.job(j1).await?.context("job")?.artifacts_json)?;
        assert_eq!(names.len(), 12, "{names:?}");

        // The finish digest is kept with the attempt that ended.
        let attempt = store.lease_job(j1, 1, 1000, None).await?.context("lease")?;
        assert!(
            store
                .finish_job(j1, attempt, JobState::Succeeded, None, "{}", 2, "d1")
                .await?
        );
        assert_eq!(store.finish_digest(j1).await?, Some((attempt, "d1".into())));
        assert!(
            !store
                .finish_job(j1, attempt, JobState::Failed, None, "{}", 3, "d2")
                .await?,
            "an ended attempt does not end twice"
        );
        store.close().await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}

/// Issue 14: a secret's `all_branches` flag (migration 0011) is stored, replaced and listed
/// alike on every backend; secrets stored before it default to the default branch only.
#[tokio::test]
async fn secret_branch_flag_on_every_backend() -> Result<()> {
    on_every_backend(|url| async move {
        let store = Store::open(&url).await?;
        let owner = store.create_user("erin", None, false).await?;
        let repo = store
            .create_repo(&owner, "s", Visibility::Private, "main")
            .await?;
        store.put_secret(repo.id, "B", "sealed-b", true, 1).await?;
        store.put_secret(repo.id, "A", "sealed-a", false, 1).await?;
        let flags = |rows: Vec<cove_server::store::SecretRow>| {
            rows.into_iter()
                .map(|r| (r.name, r.sealed, r.all_branches))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            flags(store.list_secrets(repo.id).await?),
            vec![
                ("A".into(), "sealed-a".into(), false),
                ("B".into(), "sealed-b".into(), true)
            ]
        );
        // Replacing a secret replaces its flag too.
        store
            .put_secret(repo.id, "B", "sealed-b2", false, 2)
            .await?;
        store.put_secret(repo.id, "A", "sealed-a2", true, 2).await?;
        assert_eq!(
            flags(store.list_secrets(repo.id).await?),
            vec![
                ("A".into(), "sealed-a2".into(), true),
                ("B".into(), "sealed-b2".into(), false)
            ]
        );
        // A row written without the column (as before the migration) is default-branch only.
        let raw = sqlx::AnyPool::connect(&url).await?;
        sqlx::query(
            "INSERT INTO secrets (repo_id, name, sealed, created_at, updated_at) VALUES ($1, 'OLD', 'x', 0, 0)",
        )
        .bind(repo.id)
        .execute(&raw)
        .await?;
        raw.close().await;
        let old = store
            .list_secrets(repo.id)
            .await?
            .into_iter()
            .find(|r| r.name == "OLD")
            .context("OLD listed")?;
        assert!(!old.all_branches);
        store.close().await;
        anyhow::Ok(())
    })
    .await
}

/// Migration 0009_login and the account SQL on every backend: names unique without regard to
/// case, disabling (ends sessions, flags every lookup), password change (ends sessions),
/// session renewal.
#[tokio::test]
async fn login_store_on_every_backend() -> Result<()> {
    on_every_backend(|url| async move { login_store(&url).await }).await
}

async fn login_store(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let admin = store.create_user("admin", None, true).await?;
    for lookalike in ["Admin", "ADMIN"] {
        assert!(
            matches!(
                store.create_user(lookalike, None, false).await,
                Err(StoreError::Conflict(_))
            ),
            "{lookalike} beside admin"
        );
    }
    store
        .create_repo(&admin, "app", Visibility::Private, "main")
        .await?;
    assert!(matches!(
        store
            .create_repo(&admin, "App", Visibility::Private, "main")
            .await,
        Err(StoreError::Conflict(_))
    ));

    let bob = store
        .create_user("bob", Some("$argon2id$old"), false)
        .await?;
    assert!(!bob.disabled);
    store
        .create_token(bob.id, "t", "bob-token", &[Scope::Read], None)
        .await?;
    let session = store
        .create_session(bob.id, "bob-session", now() + 60)
        .await?;
    store.renew_session(session.id, now() + 3600).await?;
    let (row, _) = store
        .session_by_hash("bob-session")
        .await?
        .context("session")?;
    assert_eq!(row.expires_at, now() + 3600);

    assert!(store.set_user_disabled(bob.id, true).await?);
    assert!(store.user_by_name("bob").await?.context("bob")?.disabled);
    let (_, user) = store.token_by_hash("bob-token").await?.context("token")?;
    assert!(user.disabled, "the token lookup sees the flag");
    assert!(store.session_by_hash("bob-session").await?.is_none());
    assert!(store
        .list_users()
        .await?
        .iter()
        .any(|u| u.username == "bob" && u.disabled));
    assert!(store.set_user_disabled(bob.id, false).await?);
    assert!(
        !store
            .token_by_hash("bob-token")
            .await?
            .context("token")?
            .1
            .disabled
    );
    assert!(!store.set_user_disabled(next_id(), true).await?);

    store
        .create_session(bob.id, "bob-session-2", now() + 60)
        .await?;
    store.set_password_hash(bob.id, "$argon2id$new").await?;
    let bob = store.user_by_name("bob").await?.context("bob")?;
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(store.session_by_hash("bob-session-2").await?.is_none());
    store.close().await;
    Ok(())
}

fn now() -> i64 {
    cove_server::store::now_secs()
}
