//! `/api/v1/repos/{owner}/{name}/notifications/targets…` (repository owners; the routes and
//! their authorization are in `routes.rs`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{CreateNotifyTarget, NotifyDelivery, NotifyTarget, NOTIFY_EVENTS};
use rand::RngCore;
use serde_json::json;

use super::{email, ssrf, worker, Event, EventKind};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{self, DeliveryRow, NotifyTargetRow, RepoRow};
use crate::AppState;

/// Targets per repository.
pub const MAX_TARGETS: usize = 20;
/// Longest target URL.
const MAX_URL: usize = 2048;
/// Deliveries listed per request.
const LIST_LIMIT: i64 = 200;

fn target_dto(t: &NotifyTargetRow, secret: Option<String>) -> NotifyTarget {
    let email = t.kind == "email";
    NotifyTarget {
        id: t.id,
        kind: t.kind.clone(),
        url: if email {
            t.url.clone()
        } else {
            ssrf::redact(&t.url)
        },
        addresses: if email {
            email::target_addresses(&t.url)
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        },
        events: t.events.clone(),
        created_by: t.created_by.clone(),
        created_at_ms: t.created_at_ms,
        secret,
    }
}

pub(crate) fn delivery_dto(d: &DeliveryRow) -> NotifyDelivery {
    NotifyDelivery {
        id: d.id,
        event: d.event.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        response_code: d.response_code.and_then(|c| u16::try_from(c).ok()),
        error: d.error.clone(),
        duration_ms: d.duration_ms,
        created_at_ms: d.created_at_ms,
        finished_at_ms: d.finished_at_ms,
    }
}

/// `GET …/notifications/targets`.
pub async fn list_targets(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<NotifyTarget>>, ApiError> {
    let targets = state.store().notify_targets(repo.id).await?;
    Ok(Json(targets.iter().map(|t| target_dto(t, None)).collect()))
}

/// `POST …/notifications/targets`: a `webhook` target answers its signing secret, once.
pub async fn create_target(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateNotifyTarget>,
) -> Result<(StatusCode, Json<NotifyTarget>), ApiError> {
    if !matches!(req.kind.as_str(), "slack" | "webhook" | "email") {
        return Err(ApiError::Unprocessable(format!(
            "kind must be slack, webhook or email, not {:?}",
            req.kind.chars().take(40).collect::<String>()
        )));
    }
    let url = if req.kind == "email" {
        email_target_url(&state, &req)?
    } else {
        if !req.addresses.is_empty() {
            return Err(ApiError::Unprocessable(
                "addresses are for email targets; slack and webhook targets take a url".into(),
            ));
        }
        if req.url.len() > MAX_URL {
            return Err(ApiError::Unprocessable(format!(
                "the URL is {} bytes; at most {MAX_URL}",
                req.url.len()
            )));
        }
        ssrf::check(&req.url, &state.notifier().settings().allow_private)
            .await
            .map_err(ApiError::Unprocessable)?;
        req.url.clone()
    };
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        if !NOTIFY_EVENTS.contains(&e.as_str()) {
            return Err(ApiError::Unprocessable(format!(
                "unknown event {:?}; one of {}",
                e.chars().take(40).collect::<String>(),
                NOTIFY_EVENTS.join(", ")
            )));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if state.store().notify_targets(repo.id).await?.len() >= MAX_TARGETS {
        return Err(ApiError::Conflict(format!(
            "a repository has at most {MAX_TARGETS} notification targets"
        )));
    }
    let id = store::next_id();
    let secret = (req.kind == "webhook").then(|| {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    });
    let secret_sealed = match &secret {
        Some(s) => Some(
            state
                .runs()
                .key()
                .seal(repo.id, &worker::secret_name(id), s)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot seal the secret: {e}")))?,
        ),
        None => None,
    };
    let row = NotifyTargetRow {
        id,
        repo_id: repo.id,
        kind: req.kind.clone(),
        url,
        secret_sealed,
        events,
        created_by: principal.user.username.clone(),
        created_at_ms: store::now_ms(),
    };
    state.store().create_notify_target(&row).await?;
    let shown = if row.kind == "email" {
        format!("{} address(es)", req.addresses.len())
    } else {
        ssrf::redact(&row.url)
    };
    tracing::info!(repo = %format!("{}/{}", repo.owner, repo.name), target = id, kind = %row.kind, to = %shown, "notification target created");
    Ok((StatusCode::CREATED, Json(target_dto(&row, secret))))
}

/// An `email` target's stored URL (`mailto:` and its checked addresses), or why not.
fn email_target_url(state: &AppState, req: &CreateNotifyTarget) -> Result<String, ApiError> {
    if state.notifier().settings().smtp.is_none() {
        return Err(ApiError::Unprocessable(
            "email targets need an SMTP server: the administrator sets [notify.smtp] in the server's configuration".into(),
        ));
    }
    if !req.url.is_empty() {
        return Err(ApiError::Unprocessable(
            "an email target takes addresses, not a url".into(),
        ));
    }
    if req.addresses.is_empty() || req.addresses.len() > email::MAX_ADDRESSES {
        return Err(ApiError::Unprocessable(format!(
            "an email target takes 1 to {} addresses, not {}",
            email::MAX_ADDRESSES,
            req.addresses.len()
        )));
    }
    let mut list = Vec::new();
    for a in &req.addresses {
        let address = email::parse_address(a.trim()).map_err(ApiError::Unprocessable)?;
        if !list.contains(&address) {
            list.push(address);
        }
    }
    Ok(email::target_url(&list))
}

fn target_id(params: &BTreeMap<String, String>) -> Result<i64, ApiError> {
    params
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::BadRequest("the target id must be a number".into()))
}

/// The repository's target `{id}`, else 404.
async fn target_of(
    state: &AppState,
    repo: &RepoRow,
    params: &BTreeMap<String, String>,
) -> Result<NotifyTargetRow, ApiError> {
    let id = target_id(params)?;
    state
        .store()
        .notify_target(id)
        .await?
        .filter(|t| t.repo_id == repo.id)
        .ok_or_else(|| ApiError::NotFound(format!("notification target {id}")))
}

/// `DELETE …/notifications/targets/{id}`: the target and its delivery log.
pub async fn delete_target(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id = target_id(&params)?;
    if state.store().delete_notify_target(repo.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("notification target {id}")))
    }
}

/// `GET …/notifications/targets/{id}/deliveries`: newest first.
pub async fn list_deliveries(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Vec<NotifyDelivery>>, ApiError> {
    let target = target_of(&state, &repo, &params).await?;
    let rows = state
        .store()
        .deliveries_of_target(target.id, LIST_LIMIT)
        .await?;
    Ok(Json(rows.iter().map(delivery_dto).collect()))
}

/// `POST …/notifications/targets/{id}/test`: enqueues a `ping` to this target.
pub async fn test_target(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<(StatusCode, Json<NotifyDelivery>), ApiError> {
    let target = target_of(&state, &repo, &params).await?;
    let at = store::next_id();
    let event = Event {
        kind: EventKind::Ping,
        key: format!("ping:{at}"),
        text: format!(
            "{}/{}: test notification sent by {}",
            repo.owner, repo.name, principal.user.username
        ),
        link: Some(format!("/repos/{}/{}", repo.owner, repo.name)),
        data: json!({ "user": principal.user.username }),
    };
    let rows = super::enqueue(&state, repo.id, &event, Some(target.id)).await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::NotFound(format!("notification target {}", target.id)))?;
    Ok((StatusCode::ACCEPTED, Json(delivery_dto(row))))
}
