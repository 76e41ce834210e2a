//! The audit log in the store: filters, newest-first pages and expiry, the same on SQLite and
//! PostgreSQL (when `COVE_TEST_POSTGRES_URL` is set; see scripts/setup-postgres.sh), and the
//! retention pass deleting records older than `[retention] audit_days`.

mod common;

use anyhow::{ensure, Result};
use cove_server::store::{now_ms, AuditFilter, AuditRow, Store};

#[tokio::test]
async fn audit_filters_pages_and_expiry_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

fn row(at_ms: i64, user: Option<&str>, action: &str, target: &str, result: &str) -> AuditRow {
    AuditRow {
        at_ms,
        username: user.map(str::to_string),
        action: action.to_string(),
        target: target.to_string(),
        repo: target
            .strip_prefix("/api/v1/repos/")
            .map(|rest| rest.split('/').take(2).collect::<Vec<_>>().join("/")),
        result: result.to_string(),
        status: Some(if result == "ok" { 200 } else { 403 }),
        client: Some("127.0.0.1".into()),
        ..AuditRow::default()
    }
}

async fn list(store: &Store, filter: AuditFilter) -> Result<Vec<AuditRow>> {
    Ok(store.list_audit(&filter, 100).await?)
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let t0 = 1_700_000_000_000;
    let rows = [
        row(t0, Some("alice"), "login", "/api/v1/session", "ok"),
        row(
            t0 + 1000,
            Some("alice"),
            "POST /api/v1/tokens",
            "/api/v1/tokens",
            "ok",
        ),
        row(
            t0 + 2000,
            Some("bob"),
            "PUT /api/v1/repos/{owner}/{name}/secrets/{secret}",
            "/api/v1/repos/alice/proj/secrets/K",
            "denied",
        ),
        row(t0 + 3000, None, "login", "/api/v1/session", "denied"),
        row(t0 + 4000, Some("alice"), "git.push", "alice/proj", "ok"),
        row(
            t0 + 5000,
            Some("alice"),
            "POST /api/v1/repos/{owner}/{name}/environments",
            "/api/v1/repos/alice/other/environments",
            "failed",
        ),
    ];
    let mut ids = Vec::new();
    for r in &rows {
        ids.push(store.insert_audit(r).await?);
    }

    // Everything, newest first, stored as written.
    let all = list(&store, AuditFilter::default()).await?;
    ensure!(all.len() == rows.len(), "all rows: {all:?}");
    ensure!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let mut newest = rows[5].clone();
    newest.id = ids[5];
    ensure!(all[0] == newest, "round trip: {:?} vs {newest:?}", all[0]);
    ensure!(
        all[2].username.is_none() && all[2].token_id.is_none(),
        "nulls stay null"
    );

    let names = |rows: &[AuditRow]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{}:{}", r.username.clone().unwrap_or_default(), r.action))
            .collect()
    };
    // user
    let alice = list(
        &store,
        AuditFilter {
            username: Some("alice".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(alice.len() == 4, "alice: {:?}", names(&alice));
    // action contains; LIKE wildcards in the filter are plain characters
    let logins = list(
        &store,
        AuditFilter {
            action: Some("login".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(logins.len() == 2, "logins: {:?}", names(&logins));
    let secrets = list(
        &store,
        AuditFilter {
            action: Some("/secrets/".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(secrets.len() == 1, "secrets: {:?}", names(&secrets));
    let wild = list(
        &store,
        AuditFilter {
            action: Some("%".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(wild.is_empty(), "% is not a wildcard: {:?}", names(&wild));
    let underscore = list(
        &store,
        AuditFilter {
            action: Some("git_push".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        underscore.is_empty(),
        "_ is not a wildcard: {:?}",
        names(&underscore)
    );
    // target prefix, repository, result
    let target = list(
        &store,
        AuditFilter {
            target: Some("/api/v1/repos/alice/".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(target.len() == 2, "target: {:?}", names(&target));
    let repo = list(
        &store,
        AuditFilter {
            repo: Some("alice/proj".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        repo.len() == 1 && repo[0].username.as_deref() == Some("bob"),
        "repo: {:?}",
        names(&repo)
    );
    let denied = list(
        &store,
        AuditFilter {
            result: Some("denied".into()),
            ..Default::default()
        },
    )
    .await?;
    ensure!(denied.len() == 2, "denied: {:?}", names(&denied));
    // time window [since, until)
    let window = list(
        &store,
        AuditFilter {
            since_ms: Some(t0 + 1000),
            until_ms: Some(t0 + 3000),
            ..Default::default()
        },
    )
    .await?;
    ensure!(window.len() == 2, "window: {:?}", names(&window));
    // combined
    let combined = list(
        &store,
        AuditFilter {
            username: Some("alice".into()),
            result: Some("ok".into()),
            since_ms: Some(t0 + 500),
            ..Default::default()
        },
    )
    .await?;
    ensure!(combined.len() == 2, "combined: {:?}", names(&combined));

    // pages: limit, then the cursor (id) continues with older rows, none twice
    let page1 = store.list_audit(&AuditFilter::default(), 4).await?;
    let page2 = store
        .list_audit(
            &AuditFilter {
                before_id: Some(page1[3].id),
                ..Default::default()
            },
            4,
        )
        .await?;
    ensure!(
        page1.len() == 4 && page2.len() == 2,
        "pages {} + {}",
        page1.len(),
        page2.len()
    );
    let mut seen: Vec<i64> = page1.iter().chain(&page2).map(|r| r.id).collect();
    seen.sort_unstable();
    seen.dedup();
    ensure!(seen.len() == 6, "every row once across pages");

    // expiry
    let deleted = store.delete_audit_before(t0 + 2000).await?;
    ensure!(deleted == 2, "deleted {deleted}");
    ensure!(list(&store, AuditFilter::default()).await?.len() == 4);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn the_retention_pass_deletes_audit_records_past_audit_days() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut config = cove_server::Config::new(data.path());
    config.embedded_agent = false;
    config.limits.audit_days = 30;
    let server = cove_server::Server::new(config).await?;
    let state = server.state().clone();
    let now = now_ms();
    let day = 86_400_000;
    for age_days in [40, 31, 29, 1] {
        state
            .store()
            .insert_audit(&row(
                now - age_days * day,
                Some("alice"),
                "login",
                "/api/v1/session",
                "ok",
            ))
            .await?;
    }
    let pass = cove_server::retention::run_once(&state, now).await?;
    ensure!(pass.audit_rows == 2, "deleted {}", pass.audit_rows);
    let left = state
        .store()
        .list_audit(&AuditFilter::default(), 100)
        .await?;
    ensure!(
        left.iter().all(|r| r.at_ms > now - 30 * day),
        "only records younger than 30 days are kept"
    );
    ensure!(left.len() == 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_audit_write_does_not_fail_the_request() -> Result<()> {
    const ADMIN: &str = "cove_audit_store_admin_token_0123456789abcdef01234";
    let data = tempfile::tempdir()?;
    let mut config = cove_server::Config::new(data.path());
    config.embedded_agent = false;
    config.admin_token = Some(ADMIN.into());
    let db = config.database_url();
    let server = cove_server::Server::new(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/api/v1", listener.local_addr()?);
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let create = |name: &'static str| {
        http.post(format!("{url}/repos"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "name": name }))
            .send()
    };
    ensure!(create("first").await?.status() == 201);
    let audit: cove_api::AuditPage = http
        .get(format!("{url}/audit?action=POST"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .json()
        .await?;
    ensure!(audit.entries.len() == 1, "{audit:?}");
    ensure!(audit.entries[0].repo.as_deref() == Some("admin/first"));

    // The audit table is gone (a broken store): the request still does what it was asked.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await?;
    sqlx::query("DROP TABLE audit_log").execute(&pool).await?;
    pool.close().await;
    ensure!(create("second").await?.status() == 201);
    let r = http
        .get(format!("{url}/repos/admin/second"))
        .bearer_auth(ADMIN)
        .send()
        .await?;
    ensure!(r.status() == 200, "the repository exists");
    Ok(())
}
