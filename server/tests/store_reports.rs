//! Run reports in the store (migration 0026_reports) on SQLite and PostgreSQL (when
//! `COVE_TEST_POSTGRES_URL` is set; see scripts/setup-postgres.sh): stored per job in order, a
//! retried job's reports replace its earlier ones, other jobs and runs are untouched, and
//! retention's run deletion removes them.

mod common;

use anyhow::{ensure, Result};
use cove_server::store::Store;

#[tokio::test]
async fn run_reports_on_every_backend() -> Result<()> {
    common::on_every_backend(|url| async move { exercise(&url).await }).await
}

async fn exercise(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let (run, other_run) = (101, 202);
    let pair = |n: &str, j: &str| (n.to_string(), j.to_string());
    store
        .set_job_reports(
            run,
            1,
            &[pair("unit", "{\"a\":1}"), pair("cov", "{\"b\":2}")],
            5,
        )
        .await?;
    store
        .set_job_reports(run, 2, &[pair("e2e", "{\"c\":3}")], 6)
        .await?;
    store
        .set_job_reports(other_run, 3, &[pair("x", "{}")], 7)
        .await?;
    ensure!(
        store.run_reports(run).await? == ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"],
        "{:?}",
        store.run_reports(run).await?
    );
    // a retried job replaces its own reports only
    store
        .set_job_reports(run, 1, &[pair("unit", "{\"a\":9}")], 8)
        .await?;
    let now = store.run_reports(run).await?;
    ensure!(
        now.len() == 2
            && now.contains(&"{\"a\":9}".to_string())
            && now.contains(&"{\"c\":3}".to_string()),
        "{now:?}"
    );
    store.delete_runs(&[run]).await?;
    ensure!(store.run_reports(run).await?.is_empty());
    ensure!(store.run_reports(other_run).await? == ["{}"]);
    Ok(())
}
