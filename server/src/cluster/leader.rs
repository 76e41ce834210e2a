//! The leader election: a PostgreSQL advisory lock held by a dedicated session
//! (`store::cluster::LeaderSession`).
//!
//! A follower tries `pg_try_advisory_lock` every [`CAMPAIGN_EVERY`]. The leader checks every
//! [`CHECK_EVERY`] that its session still holds the lock; a check that fails or takes longer
//! than [`CHECK_TIMEOUT`] ends its leadership at once (its singleton tasks are cancelled) and
//! it closes the session and campaigns again. The database ends a killed leader's session at
//! once (its socket closes) and a silent one's after its keep-alive (about 11 s), so a
//! leader always notices the loss (within CHECK_EVERY + CHECK_TIMEOUT = 4 s) before another
//! replica can take the lock. A graceful shutdown closes the session, so another replica
//! takes over within one campaign interval.

use std::time::Duration;

use crate::AppState;

/// How often a follower tries to take the lock.
pub const CAMPAIGN_EVERY: Duration = Duration::from_secs(1);
/// How often the leader checks that it still holds the lock.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest a check may take before the leader steps down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before connecting again after a failed connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the election (PostgreSQL only; with SQLite this process leads from the start).
pub fn spawn(state: AppState) {
    if !state.cluster().replicated() {
        state.metrics().set_leader(true);
        return;
    }
    state.metrics().set_leader(false);
    tokio::spawn(async move {
        let closing = state.closing().clone();
        tokio::select! {
            () = campaign(&state) => {}
            () = closing.cancelled() => {}
        }
        step_down(&state, "shutting down");
    });
}

fn step_down(state: &AppState, why: &str) {
    if state.cluster().is_leader() {
        tracing::warn!(reason = why, "this replica is no longer the leader");
    }
    state.cluster().set_leader(false);
    state.metrics().set_leader(false);
}

/// Campaigns, leads, and campaigns again, forever (the caller cancels it at shutdown; the
/// session is then dropped, which closes its connection and releases the lock).
async fn campaign(state: &AppState) {
    let mut warned = false;
    loop {
        let mut session = match state.store().leader_session().await {
            Ok(Some(session)) => session,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "leader election: cannot connect; retrying");
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Follower: try until the lock is ours.
        let acquired = loop {
            match tokio::time::timeout(CHECK_TIMEOUT, session.try_acquire()).await {
                Ok(Ok(true)) => break true,
                Ok(Ok(false)) => {
                    if !warned && state.runs().config().embedded_slots > 0 {
                        warned = true;
                        tracing::warn!(
                            "another replica leads: with several replicas run jobs on standalone agents ([jobs] embedded_slots = 0); the embedded job loops of replicas sharing a data directory cannot tell their jobs apart (docs/replicas.md)"
                        );
                    }
                    tokio::time::sleep(CAMPAIGN_EVERY).await
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election: the session failed; reconnecting");
                    break false;
                }
                Err(_) => {
                    tracing::warn!("leader election: the session does not answer; reconnecting");
                    break false;
                }
            }
        };
        if acquired {
            state.cluster().set_leader(true);
            state.metrics().set_leader(true);
            tracing::info!("this replica is the leader");
            // Leader: check the lock until a check fails.
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                match tokio::time::timeout(CHECK_TIMEOUT, session.holds()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        step_down(state, "the leader lock is gone");
                        break;
                    }
                    Ok(Err(e)) => {
                        step_down(state, &format!("the leader session failed: {e}"));
                        break;
                    }
                    Err(_) => {
                        step_down(state, "the leader session does not answer");
                        break;
                    }
                }
            }
        }
        // Closing the session releases the lock, should the database still think we hold it.
        let _ = tokio::time::timeout(CHECK_TIMEOUT, session.close()).await;
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
