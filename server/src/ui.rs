//! The web UI: browser sessions over HTTP (`/api/v1/session`, the decisions are in
//! [`crate::auth`]) and the single-page app's static files, built from `web/` into `web/dist`
//! and served at `/` (the app routes in the URL fragment, so only `/` answers with the page). Release builds embed the files; debug builds read them from disk, and a
//! missing `web/dist` gives a page that says how to build it instead of a build failure.

use crate::extract::Json;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cove_api::SessionInfo;

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "../web/dist/"]
#[allow_missing = true]
struct Assets;

/// Header the UI sends on its API calls, so that a 401 does not make the browser pop up its
/// own Basic login dialog.
pub const UI_HEADER: &str = "x-cove-ui";

fn secure(state: &AppState) -> bool {
    state.public_url().starts_with("https://")
}

fn info(principal: &Principal, session: Option<&auth::SessionAuth>) -> SessionInfo {
    SessionInfo {
        username: principal.user.username.clone(),
        is_admin: principal.user.is_admin,
        csrf_token: session.map(|s| s.csrf_token.clone()),
        expires_at: session.map(|s| s.expires_at),
    }
}

/// `POST /api/v1/session` (HTTP Basic user + password): starts a session, sets the cookie and
/// answers the CSRF token.
pub async fn login(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let new = auth::start_session(state.store(), &principal).await?;
    // Neither the session secret nor its CSRF token is ever logged.
    tracing::info!(username = %principal.user.username, "session started");
    let cookie = auth::session_cookie(&new.secret, auth::SESSION_TTL_SECS, secure(&state));
    let cookie = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(info(&principal, Some(&new.auth))),
    )
        .into_response())
}

/// `GET /api/v1/session`: who is logged in, and the CSRF token of the session cookie.
pub async fn session(Extension(principal): Extension<Principal>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(info(&principal, principal.session.as_ref())),
    )
        .into_response()
}

/// `DELETE /api/v1/session`: logout — the session row is deleted and the cookie cleared.
pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    auth::end_session(state.store(), &principal).await?;
    tracing::info!(username = %principal.user.username, "session ended");
    let cookie = HeaderValue::from_str(&auth::clear_session_cookie(secure(&state)))
        .map_err(ApiError::internal)?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// Drops `WWW-Authenticate` from answers to the UI's own calls (see [`UI_HEADER`]).
pub async fn no_basic_prompt(request: Request, next: Next) -> Response {
    let from_ui = request.headers().contains_key(UI_HEADER);
    let mut response = next.run(request).await;
    if from_ui {
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// esbuild names bundles `name-HASH.ext` (8 characters of base32): such files never change.
fn is_hashed(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split('.').next().unwrap_or(file);
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        hash.len() == 8
            && hash
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page_headers(response: &mut Response, path: &str) {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if path.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

fn asset(path: &str, file: rust_embed::EmbeddedFile) -> Response {
    let cache = if is_hashed(path) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(path)),
            (header::CACHE_CONTROL, cache),
        ],
        file.data.into_owned(),
    )
        .into_response();
    page_headers(&mut response, path);
    response
}

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Cove</title></head><body><main><h1>UI assets not built</h1>\
<p>Run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> (or \
<code>bash scripts/run.sh</code>), then reload. The API is served under <code>/api/v1</code>.</p>\
</main></body></html>";

/// Everything that is not an API or git route: the single-page app. `/` is `index.html`, the
/// built files are served as they are, anything else is a 404 — the app routes in the URL's
/// fragment (`/#/envs/…`), so no other path needs to answer with the page, and mistyped git or
/// API URLs keep getting a plain 404.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if method != Method::GET && method != Method::HEAD {
        return ApiError::NotFound("route".into()).into_response();
    }
    let rel = path.trim_start_matches('/');
    if !rel.is_empty() && rel != "index.html" {
        if path.starts_with("/api/") || path.starts_with("/git/") {
            return ApiError::NotFound("route".into()).into_response();
        }
        if rel.split('/').any(|seg| seg == ".." || seg.contains('\\')) {
            return ApiError::NotFound("file".into()).into_response();
        }
        return match Assets::get(rel) {
            Some(file) => asset(rel, file),
            None => ApiError::NotFound("route".into()).into_response(),
        };
    }
    match Assets::get("index.html") {
        Some(file) => asset("index.html", file),
        None => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                NOT_BUILT,
            )
                .into_response();
            page_headers(&mut response, "index.html");
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_hashed("assets/app-5XJ2KQ7M.js"));
        assert!(is_hashed("app-ABCDEFGH.css"));
        assert!(!is_hashed("index.html"));
        assert!(!is_hashed("favicon.svg"));
        assert!(!is_hashed("my-app.js"));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
