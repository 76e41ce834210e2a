//! The error type every HTTP handler returns, and its mapping to status codes.
//!
//! Invariant: messages never contain a credential; internal details are logged, not returned.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cove_api::{ErrorBody, Scope};

use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that are wrong, expired or revoked.
    #[error("missing, invalid or expired credentials")]
    Unauthorized,
    /// A 401 that says why (e.g. a used registration token); never contains the credential.
    #[error("{0}")]
    UnauthorizedBecause(String),
    /// The credential is valid but lacks a scope.
    #[error("token lacks scope {}", .0.as_str())]
    MissingScope(Scope),
    /// The caller may see the resource but not do this to it.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// A needed part (e.g. the agent) is not available.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooLarge(String),
    /// The request took longer than the server allows (e.g. a push past its deadline).
    #[error("{0}")]
    Timeout(String),
    /// A well-formed body of the wrong shape: wrong JSON type, unknown or missing field.
    #[error("{0}")]
    Unprocessable(String),
    /// A body without `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A bounded resource is used up (e.g. outstanding registration tokens).
    #[error("{0}")]
    TooMany(String),
    /// Too many failed password checks lately for this user name or client address: 429 with
    /// `Retry-After`.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// Anything else; the detail is logged, the client sees a generic message.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Wraps an unexpected failure.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized | ApiError::UnauthorizedBecause(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            ApiError::MissingScope(_) | ApiError::Forbidden(_) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
            ApiError::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let body = ErrorBody {
            error: code.to_string(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        // No `WWW-Authenticate` here: only the git routes ask for Basic credentials
        // (`git::ask_for_basic`), so a browser never caches Basic credentials for the API.
        if let ApiError::TooManyAttempts { retry_after_secs } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}
