//! The delivery worker: sends due deliveries from the outbox (webhooks here, email with
//! [`super::email::send`]), records each attempt, retries
//! with exponential back-off (`[notify] retry_base_ms`, doubling, at most one hour apart)
//! until `max_attempts`, prunes each target's log. Woken at once by [`super::emit`].

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ssrf;
use crate::store::{self, Attempt, DeliveryRow};
use crate::AppState;

/// Longest one attempt may take (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed delivery is taken again after this long (its worker died mid-attempt).
const CLAIM_MS: i64 = 60_000;
/// Deliveries attempted at once.
const BATCH: i64 = 16;
/// Longest wait between looks at the outbox when nothing wakes the worker.
const IDLE_WAIT: Duration = Duration::from_secs(30);
/// Longest gap between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;

/// `sha256=<hex>` of HMAC-SHA256(secret, body): the `X-Cove-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delay before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff_ms(base_ms: i64, attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(30);
    base_ms.saturating_mul(1_i64 << shift).min(MAX_BACKOFF_MS)
}

/// Runs the worker until the token is cancelled, on the leader only (`crate::cluster`).
/// With one process (SQLite), pending deliveries (a restart interrupted them, or they wait
/// for a retry) are due at once; with replicas a new leader leaves the deliveries another
/// replica claimed alone until their claim ends ([`CLAIM_MS`]), so no attempt runs twice.
pub fn spawn(state: AppState) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    crate::cluster::singleton(&state, "notification delivery", move |state| {
        let token = token.clone();
        async move {
            if !state.cluster().replicated() {
                match state
                    .store()
                    .retry_pending_deliveries(store::now_ms())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(count = n, "retrying pending notifications after a restart")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot reschedule pending notifications"),
                }
            }
            loop {
                let wait = match pass(&state).await {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(error = %e, "notification pass failed");
                        Duration::from_secs(1)
                    }
                };
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = state.notifier().wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    });
    stop
}

/// Sends what is due; returns how long to wait for the next due delivery.
async fn pass(state: &AppState) -> Result<Duration, store::StoreError> {
    loop {
        let now = store::now_ms();
        let due = state.store().due_deliveries(now, BATCH).await?;
        if due.is_empty() {
            break;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for d in due {
            if !state.store().claim_delivery(&d, now + CLAIM_MS).await? {
                continue;
            }
            let state = state.clone();
            tasks.spawn(async move { attempt(&state, d).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "cannot record a notification attempt");
            }
        }
    }
    let next = state.store().next_delivery_due().await?;
    Ok(match next {
        Some(at) => {
            Duration::from_millis(u64::try_from(at - store::now_ms()).unwrap_or(0)).min(IDLE_WAIT)
        }
        None => IDLE_WAIT,
    })
}

/// One attempt of `d`: send, record, schedule the retry or end it.
async fn attempt(state: &AppState, d: DeliveryRow) -> Result<(), store::StoreError> {
    let settings = state.notifier().settings().clone();
    let attempts = d.attempts + 1;
    let started = Instant::now();
    let outcome = match (d.target_id, d.user_id) {
        (Some(target_id), _) => match state.store().notify_target(target_id).await? {
            Some(target) if target.kind == "email" => {
                let to = super::email::target_addresses(&target.url);
                super::email::send(settings.smtp.as_ref(), &to, d.id, &d.body).await
            }
            Some(target) => {
                let secret = match &target.secret_sealed {
                    Some(sealed) => state
                        .runs()
                        .key()
                        .open(target.repo_id, &secret_name(target.id), sealed)
                        .map(Some)
                        .map_err(|_| "cannot open the target's signing secret".to_string()),
                    None => Ok(None),
                };
                match secret {
                    Ok(secret) => {
                        send(&target.url, &d, secret.as_deref(), &settings.allow_private).await
                    }
                    Err(e) => Err((None, e)),
                }
            }
            None => Err((None, "the target was deleted".to_string())),
        },
        (None, Some(user_id)) => match state.store().user_by_id(user_id).await? {
            Some(user) if user.disabled => Err((None, "the user is disabled".to_string())),
            Some(user) => match user.email.as_deref().map(super::email::parse_address) {
                Some(Ok(address)) => {
                    super::email::send(settings.smtp.as_ref(), &[address], d.id, &d.body).await
                }
                _ => Err((None, "the user has no email address".to_string())),
            },
            None => Err((None, "the user was deleted".to_string())),
        },
        (None, None) => Err((None, "the delivery has no recipient".to_string())),
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let now = store::now_ms();
    let record = match outcome {
        Ok(code) => Attempt {
            status: "delivered",
            next_attempt_ms: now,
            response_code: Some(i64::from(code)),
            error: None,
            duration_ms,
            finished_at_ms: Some(now),
        },
        Err((code, error)) => {
            let last = attempts >= settings.max_attempts;
            tracing::warn!(delivery = d.id, target = ?d.target_id, user = ?d.user_id, attempts, error = %error, "notification attempt failed");
            let base = i64::try_from(settings.retry_base.as_millis()).unwrap_or(i64::MAX);
            Attempt {
                status: if last { "failed" } else { "pending" },
                next_attempt_ms: now + backoff_ms(base, attempts),
                response_code: code.map(i64::from),
                error: Some(error),
                duration_ms,
                finished_at_ms: last.then_some(now),
            }
        }
    };
    let finished = record.status != "pending";
    state.metrics().notification_attempt(match record.status {
        "pending" => "retry",
        other => other,
    });
    state
        .store()
        .record_attempt(d.id, attempts, &record)
        .await?;
    if finished {
        if record.status == "delivered" {
            tracing::debug!(
                delivery = d.id,
                target = ?d.target_id,
                user = ?d.user_id,
                attempts,
                "notification delivered"
            );
        }
        let keep = i64::from(settings.log_keep);
        if let Some(target_id) = d.target_id {
            state.store().prune_deliveries(target_id, keep).await?;
        } else if let Some(user_id) = d.user_id {
            state.store().prune_user_deliveries(user_id, keep).await?;
        }
    }
    Ok(())
}

/// The name a target's secret is sealed under (binds the ciphertext to the target).
pub fn secret_name(target_id: i64) -> String {
    format!("notify-target-{target_id}")
}

/// POSTs the body to the checked address. `Ok(status)` for a 2xx answer.
async fn send(
    url: &str,
    d: &DeliveryRow,
    secret: Option<&str>,
    allow: &[ipnet::IpNet],
) -> Result<u16, (Option<u16>, String)> {
    let dest = ssrf::check(url, allow).await.map_err(|e| (None, e))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .resolve(&dest.host, dest.addr)
        .user_agent("cove-notify")
        .build()
        .map_err(|e| {
            (
                None,
                format!("cannot build the HTTP client: {}", e.without_url()),
            )
        })?;
    let mut request = client
        .post(dest.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Cove-Event", &d.event)
        .header("X-Cove-Delivery", d.id.to_string());
    if let Some(secret) = secret {
        request = request.header("X-Cove-Signature", signature(secret, d.body.as_bytes()));
    }
    let response = request
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| (None, describe(&e)))?;
    let code = response.status().as_u16();
    if response.status().is_success() {
        Ok(code)
    } else if response.status().is_redirection() {
        Err((
            Some(code),
            format!("HTTP {code}: redirects are not followed"),
        ))
    } else {
        Err((Some(code), format!("HTTP {code}")))
    }
}

/// A transport error without the URL (it may hold a credential).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(100, 1), 100);
        assert_eq!(backoff_ms(100, 2), 200);
        assert_eq!(backoff_ms(100, 4), 800);
        assert_eq!(backoff_ms(5000, 40), MAX_BACKOFF_MS);
    }
}
