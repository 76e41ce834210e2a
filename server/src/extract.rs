//! The request extractors every API handler uses: `Json`, `Query` and `Path` with the project's
//! error shape. axum's own extractors answer a rejection as `text/plain`; these answer it as
//! [`cove_api::ErrorBody`] JSON with a status that names the problem:
//!
//! | problem | status |
//! |---|---|
//! | body is not JSON (syntax) | 400 `bad_request` |
//! | not a JSON object (an array, a string …), wrong type, unknown field, missing field | 422 `invalid` |
//! | no `Content-Type: application/json` | 415 `unsupported_media_type` |
//! | body over the limit | 413 `too_large` |
//! | query string or path segment does not parse | 400 `bad_request` |
//!
//! Only these types implement [`crate::openapi::OpInput`], so a handler written with axum's
//! extractors does not compile into the route table: every route documents its body and
//! query from the handler's own types, and every rejection has the JSON shape.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// A JSON request body (or response), with JSON rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::Unprocessable(text),
        JsonRejection::JsonSyntaxError(_) => ApiError::BadRequest(text),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(text),
        _ => ApiError::BadRequest(text),
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        // serde reads a struct from a JSON array too (by position): every request body of
        // this API is an object, so anything else is refused before it is read.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    Err(err) if !err.is_data() => ApiError::BadRequest(format!(
                        "Failed to parse the request body as JSON: {err}"
                    )),
                    _ => ApiError::Unprocessable(format!(
                        "invalid type: the request body must be a JSON object, not {}",
                        match first {
                            Some(b'[') => "an array",
                            Some(b'"') => "a string",
                            Some(b'n') => "null",
                            Some(b't' | b'f') => "a boolean",
                            _ => "a number",
                        }
                    )),
                },
            );
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/…+json`, parameters (charset) allowed.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bytes_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(rejection.body_text())
    } else {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// An optional JSON body: absent when the request has no body and no content type.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            // No content type: an empty body means "no body"; anything else is refused (415).
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(bytes_rejection)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string, with JSON rejections (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(rejection.body_text())
}

/// Path parameters, with JSON rejections (400; a route whose template lacks the parameter is
/// a programming error: 500).
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        ApiError::internal(anyhow::anyhow!(rejection.body_text()))
    } else {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A WebSocket upgrade, refused with the JSON error (400) when the request is not one.
pub struct WebSocketUpgrade(axum::extract::ws::WebSocketUpgrade);

impl WebSocketUpgrade {
    /// Answers 101 and runs `callback` on the socket.
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(axum::extract::ws::WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.on_upgrade(callback)
    }

    /// Bounds the size of one message (and frame) the peer may send.
    pub fn max_message_size(self, max: usize) -> Self {
        WebSocketUpgrade(self.0.max_message_size(max).max_frame_size(max))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(WebSocketUpgrade)
            .map_err(|rejection| {
                ApiError::BadRequest(format!(
                    "a WebSocket upgrade request is expected: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// Validates a `limit` query parameter: absent → `default`; zero or negative → 400; above
/// `max` → clamped to `max` (documented in docs/server.md).
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if n <= 0 => Err(ApiError::BadRequest(format!(
            "limit must be a positive number (got {n}); at most {max} are answered"
        ))),
        Some(n) => Ok(n.min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_zero_and_negative_and_clamp_huge() {
        assert_eq!(limit(None, 50, 1000).ok(), Some(50));
        assert_eq!(limit(Some(7), 50, 1000).ok(), Some(7));
        assert_eq!(limit(Some(i64::MAX), 50, 1000).ok(), Some(1000));
        assert!(matches!(
            limit(Some(0), 50, 1000),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            limit(Some(-1), 50, 1000),
            Err(ApiError::BadRequest(_))
        ));
    }
}
