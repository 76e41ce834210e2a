//! `/env/{env}/{endpoint}/…`: the reverse proxy of a devfile endpoint with
//! `exposure: public`. The prefix is stripped, the request (body streamed, never buffered)
//! goes over a fresh connection from [`super::connect`] with `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Prefix`, and the response is
//! streamed back; an `Upgrade` (WebSocket) request is passed through once the service
//! answers 101 (and ends within 5 s of the caller losing access). Cove's own credentials (`Authorization`, the session cookie, the CSRF
//! header) never reach the service. Who may call: anyone who may see the environment (a role
//! on its repository; others get 404, as for every `{env}` route); `internal` and `none`
//! endpoints, unknown names and stopped environments are 404 / 503. See docs/ports.md.
//!
//! `/env/{env}/vscode/…` is the same proxy in front of the environment's VS Code in the
//! browser (code-server on the pod's loopback, `cove_agent::editor`), for the environment's
//! owner only (the terminal's rule), when its editor is `vscode`. Its pages are not put in
//! the sandbox (code-server needs its origin's storage, workers and service worker):
//! docs/vscode.md "Serving it" and docs/security.md say why that is acceptable.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use cove_api::EnvState;
use devfiles::EnvironmentPlan;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::auth::{CSRF_HEADER, SESSION_COOKIE};
use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// The path prefix of the proxy.
pub const PREFIX: &str = "/env";
/// Requests record activity on their environment at most this often.
pub const TOUCH_EVERY: Duration = Duration::from_secs(30);
/// How long the service may take to answer with its response head.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// The proxy's name of the editor (a static segment: it shadows a devfile endpoint of that name).
pub const EDITOR: &str = "vscode";

/// The URL of an environment's VS Code in the browser (ends with `/`).
pub fn editor_url(public_url: &str, env_id: &str) -> String {
    endpoint_url(public_url, env_id, EDITOR, None)
}

/// The URL of a public endpoint through the proxy (ends with `/`, plus the endpoint's path).
pub fn endpoint_url(public_url: &str, env_id: &str, endpoint: &str, path: Option<&str>) -> String {
    let path = path.unwrap_or("/").trim_start_matches('/');
    format!(
        "{}{PREFIX}/{env_id}/{endpoint}/{path}",
        public_url.trim_end_matches('/')
    )
}

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `/env/{env}/{endpoint}` without the trailing slash: a redirect to it, so the service's
/// relative links resolve under the prefix.
pub async fn endpoint_root(
    crate::extract::Path((env, endpoint)): crate::extract::Path<(String, String)>,
    uri: Uri,
) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::temporary(&format!("{PREFIX}/{env}/{endpoint}/{query}")).into_response()
}

/// Any method on `/env/{env}/{endpoint}/{*rest}`.
pub async fn proxy(
    State(state): State<AppState>,
    Extension(env): Extension<EnvRow>,
    Extension(client): Extension<crate::auth::ClientAddr>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Extension(principal): Extension<crate::auth::Principal>,
    crate::extract::Path((_env, endpoint, rest)): crate::extract::Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    refuse_cross_origin_upgrade(&state, &principal, request.headers())?;
    forward(state, env, client, grant, endpoint, rest, request).await
}

/// Any method on `/env/{env}/{endpoint}/`.
pub async fn proxy_root(
    State(state): State<AppState>,
    Extension(env): Extension<EnvRow>,
    Extension(client): Extension<crate::auth::ClientAddr>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Extension(principal): Extension<crate::auth::Principal>,
    crate::extract::Path((_env, endpoint)): crate::extract::Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    refuse_cross_origin_upgrade(&state, &principal, request.headers())?;
    forward(state, env, client, grant, endpoint, String::new(), request).await
}

/// A WebSocket (any `Upgrade`) through the proxy authenticated by a credential the browser
/// sends by itself — the session cookie, or cached HTTP Basic — must come from Cove's own
/// origin (or carry no `Origin`, as non-browser clients do). WebSockets are not subject to
/// CORS, so this is the check that stops another site from using the viewer's session
/// (cross-site WebSocket hijacking). That includes `Origin: null`: the proxied pages run
/// sandboxed in an opaque origin, but so does any site's sandboxed iframe, and the two cannot
/// be told apart. A token (`Authorization: Bearer`) is not sent by browsers on their own, so
/// token-authenticated upgrades are taken from any origin. See docs/ports.md "WebSockets and
/// Origin".
fn refuse_cross_origin_upgrade(
    state: &AppState,
    principal: &crate::auth::Principal,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if principal.method == crate::auth::AuthMethod::Token || !is_upgrade(headers) {
        return Ok(());
    }
    if crate::envs::origin_allowed(headers, state.public_url()) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "cross-origin WebSocket connections to endpoints are refused with the session cookie (Origin is not this server's)".into(),
    ))
}

/// `/env/{env}/vscode` without the trailing slash: a redirect to it.
pub async fn editor_root_redirect(
    crate::extract::Path(env): crate::extract::Path<String>,
    uri: Uri,
) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::temporary(&format!("{PREFIX}/{env}/{EDITOR}/{query}")).into_response()
}

/// Any method on `/env/{env}/vscode/{*rest}`: the environment's code-server.
pub async fn editor(
    State(state): State<AppState>,
    Extension(env): Extension<EnvRow>,
    Extension(client): Extension<crate::auth::ClientAddr>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Extension(principal): Extension<crate::auth::Principal>,
    crate::extract::Path((_env, rest)): crate::extract::Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    refuse_cross_origin_upgrade(&state, &principal, request.headers())?;
    forward_editor(state, env, client, grant, rest, request).await
}

/// Any method on `/env/{env}/vscode/`.
pub async fn editor_root(
    State(state): State<AppState>,
    Extension(env): Extension<EnvRow>,
    Extension(client): Extension<crate::auth::ClientAddr>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Extension(principal): Extension<crate::auth::Principal>,
    request: Request,
) -> Result<Response, ApiError> {
    refuse_cross_origin_upgrade(&state, &principal, request.headers())?;
    forward_editor(state, env, client, grant, String::new(), request).await
}

async fn forward_editor(
    state: AppState,
    env: EnvRow,
    client: crate::auth::ClientAddr,
    grant: crate::live_auth::Grant,
    rest: String,
    request: Request,
) -> Result<Response, ApiError> {
    if state.store().env_editor(&env.id).await? != cove_api::Editor::Vscode {
        return Err(ApiError::NotFound(format!(
            "VS Code of environment {} (it was created with the editor `terminal`)",
            env.name
        )));
    }
    running(&env)?;
    let target = Target {
        name: EDITOR,
        port: cove_agent::editor::PORT,
        sandbox: false,
    };
    forward_to(state, env, client, grant, target, rest, request).await
}

fn running(env: &EnvRow) -> Result<(), ApiError> {
    if env.state != EnvState::Running {
        return Err(ApiError::Unavailable(format!(
            "environment {} is {}: its endpoints answer while it runs",
            env.name,
            env.state.as_str()
        )));
    }
    Ok(())
}

/// Where a proxied request goes.
struct Target<'a> {
    /// The proxy's name of it (the second path segment).
    name: &'a str,
    /// The port in the environment's network namespace.
    port: u16,
    /// Whether its pages get [`SANDBOX_CSP`] (every devfile endpoint; not the editor).
    sandbox: bool,
}

async fn forward(
    state: AppState,
    env: EnvRow,
    client: crate::auth::ClientAddr,
    grant: crate::live_auth::Grant,
    endpoint: String,
    rest: String,
    request: Request,
) -> Result<Response, ApiError> {
    let plan: EnvironmentPlan = serde_json::from_str(&env.plan_json).map_err(ApiError::internal)?;
    let ep = plan
        .containers
        .iter()
        .flat_map(|c| c.endpoints.iter())
        .find(|e| e.name == endpoint && e.exposure == devfiles::Exposure::Public)
        .ok_or_else(|| ApiError::NotFound(format!("public endpoint {endpoint}")))?;
    running(&env)?;
    let target = Target {
        name: &endpoint,
        port: ep.port,
        sandbox: true,
    };
    forward_to(state, env, client, grant, target, rest, request).await
}

async fn forward_to(
    state: AppState,
    env: EnvRow,
    client: crate::auth::ClientAddr,
    grant: crate::live_auth::Grant,
    target: Target<'_>,
    rest: String,
    mut request: Request,
) -> Result<Response, ApiError> {
    let endpoint = target.name;
    let port = target.port;
    // activity for the idle stop, written at most every TOUCH_EVERY (a page loads many assets)
    if crate::store::now_ms() - env.last_activity_ms >= TOUCH_EVERY.as_millis() as i64 {
        super::touch(&state, &env).await;
    }

    let prefix = format!("{PREFIX}/{}/{endpoint}", env.id);
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let upstream_uri: Uri = format!("/{rest}{query}")
        .parse()
        .map_err(|_| ApiError::BadRequest("invalid request path".into()))?;
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    let original_host = parts.headers.get(header::HOST).cloned();
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    clean_request_headers(&mut parts.headers);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            parts.headers.insert(header::UPGRADE, v);
        }
    }
    forwarded_headers(
        &mut parts.headers,
        client.0,
        state.public_url(),
        original_host,
        &prefix,
    );
    parts.headers.insert(
        header::HOST,
        HeaderValue::from_str(&format!("localhost:{port}")).map_err(ApiError::internal)?,
    );
    parts.uri = upstream_uri;
    parts.version = axum::http::Version::HTTP_11;
    // the editor's GET/HEAD requests reuse idle connections (super::pool); a pooled one the
    // service closed meanwhile is retried once on a fresh connection
    let pooled = !target.sandbox
        && !upgrade
        && (parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD);
    let again = pooled.then(|| {
        let mut r = Request::new(Body::empty());
        *r.method_mut() = parts.method.clone();
        *r.uri_mut() = parts.uri.clone();
        *r.version_mut() = parts.version;
        *r.headers_mut() = parts.headers.clone();
        r
    });
    let upstream_request = Request::from_parts(parts, body);
    let reused = if pooled {
        super::pool::take(&env.id, port)
    } else {
        None
    };
    let (sender, mut response) = match (reused, again) {
        (Some(mut sender), Some(again)) => {
            match send(&mut sender, upstream_request, endpoint).await {
                Ok(response) => (sender, response),
                Err(_) => {
                    let mut sender = open(&state, &env, port, endpoint).await?;
                    let response = send(&mut sender, again, endpoint).await?;
                    (sender, response)
                }
            }
        }
        _ => {
            let mut sender = open(&state, &env, port, endpoint).await?;
            let response = send(&mut sender, upstream_request, endpoint).await?;
            (sender, response)
        }
    };
    if pooled && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        super::pool::give_back(&env.id, port, sender);
    } else {
        drop(sender);
    }

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::Unavailable(format!(
                "endpoint {endpoint} switched protocols unasked"
            )));
        };
        let service_upgrade = hyper::upgrade::on(&mut response);
        let (state2, env2) = (state.clone(), env.clone());
        // an open editor (its WebSocket) is activity for the idle stop, like an SSH session
        let keeps_active = !target.sandbox;
        tokio::spawn(async move {
            let (Ok(client), Ok(service)) = (client_upgrade.await, service_upgrade.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut service = TokioIo::new(service);
            let active = async {
                if !keeps_active {
                    return std::future::pending::<()>().await;
                }
                let mut every = tokio::time::interval(TOUCH_EVERY);
                loop {
                    every.tick().await;
                    super::touch(&state2, &env2).await;
                }
            };
            // until either side closes, or the caller loses access (checked every 5 s)
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut service) => {}
                _ = grant.revoked(state2.clone()) => {}
                _ = active => {}
            }
            super::touch(&state2, &env2).await;
        });
        let (mut parts, _) = response.into_parts();
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        clean_response_headers(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(v) = upgrade_value {
            parts.headers.insert(header::UPGRADE, v);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = response.into_parts();
    clean_response_headers(&mut parts.headers);
    confine(&mut parts.headers, target.sandbox);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// A new HTTP/1 connection to `port` in the environment (super::connect).
async fn open(
    state: &AppState,
    env: &EnvRow,
    port: u16,
    endpoint: &str,
) -> Result<SendRequest<Body>, ApiError> {
    let stream = super::connect(state, &env.id, port)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::Unavailable(format!("endpoint {endpoint}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Sends one request and waits (bounded) for the response head.
async fn send(
    sender: &mut SendRequest<Body>,
    request: Request,
    endpoint: &str,
) -> Result<Response<hyper::body::Incoming>, ApiError> {
    tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "endpoint {endpoint} did not answer within {} s",
                RESPONSE_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| ApiError::Unavailable(format!("endpoint {endpoint}: {e}")))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Drops hop-by-hop headers (and those `Connection` names).
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// What the service must not see: hop-by-hop headers and Cove's credentials.
fn clean_request_headers(headers: &mut HeaderMap) {
    drop_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(CSRF_HEADER);
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map_or(*pair, |(name, _)| name).trim() != SESSION_COOKIE
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "forwarded",
    ] {
        headers.remove(name);
    }
}

fn clean_response_headers(headers: &mut HeaderMap) {
    drop_hop_by_hop(headers);
}

/// The sandbox every proxied page runs in. The page is served from Cove's own origin, so
/// without it the environment's code could call Cove's API as whoever opens the page. With
/// `sandbox` and no `allow-same-origin` the browser gives the page an opaque origin: its
/// scripts cannot read Cove's cookies or pages, and its requests to Cove are cross-site (the
/// `SameSite=Strict` session cookie is not sent, CORS hides the answers). Cookies the
/// service sets are kept, except any that would shadow Cove's own (`cove_*`).
pub(crate) const SANDBOX_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

fn confine(headers: &mut HeaderMap, sandbox: bool) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .to_str()
                .unwrap_or("")
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            !name.starts_with("cove_")
                && !name.starts_with("__host-cove")
                && !name.starts_with("__secure-cove")
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
    if !sandbox {
        return;
    }
    // Added beside any policy of the service's own: browsers enforce every policy given.
    headers.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
}

fn forwarded_headers(
    headers: &mut HeaderMap,
    client: std::net::IpAddr,
    public_url: &str,
    host: Option<HeaderValue>,
    prefix: &str,
) {
    let proto = if public_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let fallback_host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let pairs = [
        (
            "x-forwarded-for",
            HeaderValue::from_str(&client.to_string()).ok(),
        ),
        ("x-forwarded-proto", Some(HeaderValue::from_static(proto))),
        (
            "x-forwarded-host",
            host.or_else(|| HeaderValue::from_str(fallback_host).ok()),
        ),
        ("x-forwarded-prefix", HeaderValue::from_str(prefix).ok()),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cove_credentials_never_reach_the_service() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer cove_x"),
        );
        h.insert(CSRF_HEADER, HeaderValue::from_static("t"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cove_session=secret; b=2"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("accept", HeaderValue::from_static("text/html"));
        clean_request_headers(&mut h);
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert!(h.get(CSRF_HEADER).is_none());
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        assert!(h.get("x-hop").is_none());
        assert!(
            h.get("x-forwarded-for").is_none(),
            "a client's own is dropped"
        );
        assert_eq!(h.get("accept").unwrap(), "text/html");
    }

    #[test]
    fn urls_of_endpoints() {
        assert_eq!(
            endpoint_url("http://cove:8080/", "e1", "web", None),
            "http://cove:8080/env/e1/web/"
        );
        assert_eq!(
            endpoint_url("http://cove:8080", "e1", "web", Some("/docs")),
            "http://cove:8080/env/e1/web/docs"
        );
    }
}
