//! Wake-ups between replicas over PostgreSQL LISTEN/NOTIFY (channel
//! `store::cluster::WAKE_CHANNEL`, payload `<replica> <kind>`).
//!
//! Outbound: what this replica announces ([`super::Cluster::announce`]) is coalesced — every
//! kind waiting at once is sent as one NOTIFY — so a burst of log batches costs a few
//! notifications, not one per batch. Inbound: a wake-up of another replica wakes this
//! replica's own waiters (never announced again). A listener that lost its connection may
//! have missed wake-ups: it wakes everything once it is back. Wake-ups only shorten waits;
//! every waiter also polls (log followers every second, lease long polls at their end, the
//! push consumer and notification worker every 30 s), so a lost NOTIFY delays, never loses.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Wake;
use crate::AppState;

/// Wait before listening again after a failed connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the sender and the listener (PostgreSQL only).
pub fn spawn(state: AppState) {
    if !state.cluster().replicated() {
        return;
    }
    let outbound = match state.cluster().outbound.lock() {
        Ok(mut slot) => slot.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(mut outbound) = outbound {
        let sender = state.clone();
        tokio::spawn(async move {
            let me = sender.cluster().replica;
            while let Some(first) = outbound.recv().await {
                let mut kinds = BTreeSet::from([first.as_str()]);
                while let Ok(more) = outbound.try_recv() {
                    kinds.insert(more.as_str());
                }
                for kind in kinds {
                    if let Err(e) = sender
                        .store()
                        .notify_replicas(&format!("{me:016x} {kind}"))
                        .await
                    {
                        tracing::debug!(error = %e, kind, "cannot wake the other replicas");
                    }
                }
            }
        });
    }
    tokio::spawn(async move {
        let closing = state.closing().clone();
        tokio::select! {
            () = listen(&state) => {}
            () = closing.cancelled() => {}
        }
    });
}

async fn listen(state: &AppState) {
    let me = format!("{:016x}", state.cluster().replica);
    loop {
        let mut listener = match state.store().wake_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the other replicas' wake-ups; retrying");
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Anything announced while this replica was not listening.
        wake_all(state);
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    let Some((from, kind)) = note.payload().split_once(' ') else {
                        continue;
                    };
                    if from == me {
                        continue;
                    }
                    if let Some(wake) = Wake::parse(kind) {
                        wake_local(state, wake);
                    }
                }
                // The connection was lost and is re-established by the next call:
                // wake-ups may have been missed meanwhile.
                Ok(None) => wake_all(state),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for the other replicas' wake-ups failed; reconnecting");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    break;
                }
            }
        }
    }
}

fn wake_all(state: &AppState) {
    for wake in [Wake::Runs, Wake::Push, Wake::Notify] {
        wake_local(state, wake);
    }
}

/// Wakes this replica's waiters of `wake`.
fn wake_local(state: &AppState, wake: Wake) {
    match wake {
        Wake::Runs => state.runs().wake_local(),
        Wake::Push => state.cluster().pushed.notify_one(),
        Wake::Notify => state.notifier().wake_local(),
    }
}
