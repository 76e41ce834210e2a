//! `POST /api/v1/repos/{owner}/{name}/mirror/webhook`: the upstream forge's push webhook.
//! No session or token: the delivery is authenticated by the forge's signature — GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, Gitea's and Forgejo's
//! `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`, GitLab's
//! `X-Gitlab-Token: <secret>` — checked in constant time before anything of the body is read.
//! An unknown repository, a repository that is not a mirror and a wrong or missing signature
//! all get the same 401, which says nothing about the secret.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cove_api::MirrorWebhookAnswer;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::AppState;

/// Largest webhook body accepted (a push payload lists at most a few dozen commits).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The 401 of every delivery that does not verify.
fn refused() -> ApiError {
    ApiError::UnauthorizedBecause(
        "the webhook delivery could not be verified: check the repository's mirror \
         configuration and the webhook's secret"
            .into(),
    )
}

fn header<'h>(headers: &'h HeaderMap, names: &[&str]) -> Option<&'h str> {
    names
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Does `signature` (hex) equal HMAC-SHA256(secret, body)? Constant time.
fn hmac_matches(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(sent) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sent).is_ok()
}

/// Equal strings, compared in constant time (over their digests, so lengths leak nothing).
fn token_matches(secret: &str, sent: &str) -> bool {
    let a = Sha256::digest(secret.as_bytes());
    let b = Sha256::digest(sent.as_bytes());
    bool::from(a.ct_eq(&b))
}

/// The event name of a verified delivery, or `None` if it does not verify for `forge`.
pub fn verify(forge: &str, secret: &str, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    match forge {
        "github" => {
            let sig = header(headers, &["x-hub-signature-256"])?.strip_prefix("sha256=")?;
            hmac_matches(secret, body, sig)
                .then(|| header(headers, &["x-github-event"]).map(str::to_string))?
        }
        "gitea" => {
            let sig = match header(headers, &["x-forgejo-signature", "x-gitea-signature"]) {
                Some(sig) => sig,
                None => header(headers, &["x-hub-signature-256"])?.strip_prefix("sha256=")?,
            };
            hmac_matches(secret, body, sig).then(|| {
                header(
                    headers,
                    &["x-forgejo-event", "x-gitea-event", "x-gogs-event"],
                )
                .map(str::to_string)
            })?
        }
        "gitlab" => {
            let sent = header(headers, &["x-gitlab-token"])?;
            token_matches(secret, sent)
                .then(|| header(headers, &["x-gitlab-event"]).map(str::to_string))?
        }
        _ => None,
    }
}

/// Is `event` (of `forge`) a push? `Some(false)` for a ping.
fn is_push(forge: &str, event: &str) -> Option<bool> {
    match (forge, event) {
        ("github", "push") | ("gitea", "push") => Some(true),
        ("gitlab", "Push Hook") | ("gitlab", "Tag Push Hook") => Some(true),
        ("github", "ping") => Some(false),
        _ => None,
    }
}

/// The fields of a push payload Cove reads (the same names in all three forges); the rest is
/// ignored.
#[derive(Debug, Deserialize)]
pub struct PushPayload {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub before: String,
    pub after: String,
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The push payload, checked: a ref under `refs/` and two object ids.
pub fn parse_push(body: &[u8]) -> Result<PushPayload, String> {
    let payload: PushPayload = serde_json::from_slice(body)
        .map_err(|e| format!("the push payload is not the forge's JSON: {e}"))?;
    if !payload.ref_name.starts_with("refs/")
        || payload.ref_name.len() > 1024
        || payload.ref_name.chars().any(char::is_control)
    {
        return Err("the push payload's `ref` is not a ref name".into());
    }
    if !is_object_id(&payload.before) || !is_object_id(&payload.after) {
        return Err("the push payload's `before` and `after` must be object ids".into());
    }
    Ok(payload)
}

/// `POST …/mirror/webhook`: 202 once a fetch is queued (it runs in the background, one at a
/// time per repository), 200 for a ping, 202 with `ignored` for other events.
pub async fn webhook(
    State(state): State<AppState>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MirrorWebhookAnswer>), ApiError> {
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!("a webhook body is at most {MAX_BODY_BYTES} bytes"))
        })?;
    let repo = state
        .store()
        .repo(&owner, &name)
        .await?
        .ok_or_else(refused)?;
    let mirror = state.store().mirror(repo.id).await?.ok_or_else(refused)?;
    let secret = state
        .runs()
        .key()
        .open(repo.id, super::SECRET_NAME, &mirror.secret_sealed)
        .map_err(ApiError::internal)?;
    let event = verify(&mirror.forge, &secret, &headers, &body).ok_or_else(refused)?;
    crate::audit::note_repo(&repo.owner, &repo.name);
    crate::audit::authorized();
    let event: String = event.chars().take(64).collect();
    let answer = |code, status: &str, message: String| {
        Ok((
            code,
            Json(MirrorWebhookAnswer {
                status: status.into(),
                message,
            }),
        ))
    };
    match is_push(&mirror.forge, &event) {
        Some(true) => {}
        Some(false) => {
            crate::audit::note_detail(format!("{} ping", mirror.forge));
            return answer(StatusCode::OK, "pong", "the webhook is set up".into());
        }
        None => {
            crate::audit::note_detail(format!("{} {event} ignored", mirror.forge));
            return answer(
                StatusCode::ACCEPTED,
                "ignored",
                format!("event {event:?} is ignored: a mirror fetches on push events only"),
            );
        }
    }
    let push = parse_push(&body).map_err(ApiError::BadRequest)?;
    // The forge's delivery id, for matching Cove's audit record to the forge's delivery log.
    let delivery: String = header(
        &headers,
        &[
            "x-github-delivery",
            "x-forgejo-delivery",
            "x-gitea-delivery",
            "x-gitlab-event-uuid",
        ],
    )
    .unwrap_or("-")
    .chars()
    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
    .take(64)
    .collect();
    crate::audit::note_detail(format!(
        "{} push {} {}..{} delivery {delivery}",
        mirror.forge, push.ref_name, push.before, push.after
    ));
    tracing::info!(
        repo = %format!("{}/{}", repo.owner, repo.name),
        forge = %mirror.forge,
        r#ref = %push.ref_name,
        after = %push.after,
        delivery = %delivery,
        "mirror webhook: fetch queued"
    );
    let message = format!(
        "a fetch from the upstream is queued ({} moved to {})",
        push.ref_name, push.after
    );
    super::queue_fetch(&state, repo);
    answer(StatusCode::ACCEPTED, "queued", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn each_forge_verifies_its_own_signature() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut h = HeaderMap::new();
        h.insert("x-github-event", HeaderValue::from_static("push"));
        let sig = format!("sha256={}", sign("s3cret-value", body));
        h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).unwrap());
        assert_eq!(
            verify("github", "s3cret-value", &h, body).as_deref(),
            Some("push")
        );
        assert_eq!(verify("github", "other-secret", &h, body), None);
        assert_eq!(verify("github", "s3cret-value", &h, b"changed"), None);
        assert_eq!(verify("gitlab", "s3cret-value", &h, body), None);

        let mut g = HeaderMap::new();
        g.insert("x-forgejo-event", HeaderValue::from_static("push"));
        g.insert(
            "x-forgejo-signature",
            HeaderValue::from_str(&sign("k", body)).unwrap(),
        );
        assert_eq!(verify("gitea", "k", &g, body).as_deref(), Some("push"));
        g.insert("x-forgejo-signature", HeaderValue::from_static("zz"));
        assert_eq!(verify("gitea", "k", &g, body), None);

        let mut l = HeaderMap::new();
        l.insert("x-gitlab-event", HeaderValue::from_static("Push Hook"));
        l.insert("x-gitlab-token", HeaderValue::from_static("tok"));
        assert_eq!(
            verify("gitlab", "tok", &l, body).as_deref(),
            Some("Push Hook")
        );
        assert_eq!(verify("gitlab", "tok2", &l, body), None);
    }

    #[test]
    fn push_payloads_are_checked() {
        let a = "a".repeat(40);
        let ok = format!(r#"{{"ref":"refs/heads/main","before":"{a}","after":"{a}","x":[1]}}"#);
        assert_eq!(
            parse_push(ok.as_bytes()).unwrap().ref_name,
            "refs/heads/main"
        );
        let bad = format!(r#"{{"ref":"main","before":"{a}","after":"{a}"}}"#);
        assert!(parse_push(bad.as_bytes()).is_err());
        assert!(parse_push(b"[]").is_err());
    }
}
