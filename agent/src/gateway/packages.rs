//! Package routes: `/npm/<repo>/…` and `/pypi/<repo>/…` proxied to the
//! repository's CodeArtifact endpoint with the token added upstream,
//! upstream links rewritten back to the gateway, redirects followed here.

use super::*;

pub(super) fn authorization(format: PackageFormat, token: &Secret) -> Option<HeaderValue> {
    let value = match format {
        PackageFormat::Npm => format!("Bearer {}", token.expose()),
        PackageFormat::Pypi => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("aws:{}", token.expose()))
        ),
    };
    let mut v = HeaderValue::from_str(&value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

pub(super) fn is_rewritable(headers: &HeaderMap) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    ct.contains("json") || ct.contains("html")
}

/// Every spelling of `endpoint` that may appear in a document (with and
/// without the scheme's default port).
pub(super) fn endpoint_spellings(endpoint: &str) -> Vec<String> {
    let mut out = vec![endpoint.to_string()];
    if let Ok(uri) = endpoint.parse::<Uri>() {
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            let default = if scheme == "https" { 443 } else { 80 };
            let path = uri.path();
            match uri.port_u16() {
                None => out.push(format!("{scheme}://{host}:{default}{path}")),
                Some(p) if p == default => out.push(format!("{scheme}://{host}{path}")),
                Some(_) => {}
            }
        }
    }
    out
}

pub(super) async fn package(
    state: Arc<State>,
    peer: SocketAddr,
    format: PackageFormat,
    repo: &str,
    rest: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let upstream = match state.source.upstream(format, repo).await {
        Ok(u) => u,
        Err(e @ GatewayError::UnknownRepository { .. }) => {
            return full(StatusCode::NOT_FOUND, format!("cove gateway: {e}"))
        }
        Err(e) => {
            tracing::warn!(job = %state.config.job_id, %format, repo, error = %e, "gateway has no upstream");
            return full(StatusCode::BAD_GATEWAY, format!("cove gateway: {e}"));
        }
    };
    let gateway_base = format!(
        "http://{}/{format}/{repo}/",
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map_or_else(|| peer.to_string(), str::to_string)
    );
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let suffix = format!("{rest}{query}");
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    // Identity so packuments and simple pages can be rewritten; tarballs
    // and wheels are compressed already.
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let method = parts.method.clone();
    let mut upstream = upstream;
    let mut resp = match fetch(
        &state,
        &upstream,
        format,
        &method,
        &parts.headers,
        Some(body.boxed()),
        &suffix,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    // A refused token (expired early, clock skew, policy change): tell the
    // source, and retry once with a new one if it has one. Only for
    // requests without a body, which can be replayed.
    let refused =
        resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN;
    if refused && (method == Method::GET || method == Method::HEAD) {
        state.source.refused(format, repo, &upstream.token).await;
        if let Ok(fresh) = state.source.upstream(format, repo).await {
            if fresh.token != upstream.token {
                tracing::info!(job = %state.config.job_id, %format, repo, "retrying with a new token");
                upstream = fresh;
                resp = match fetch(
                    &state,
                    &upstream,
                    format,
                    &method,
                    &parts.headers,
                    None,
                    &suffix,
                )
                .await
                {
                    Ok(r) => r,
                    Err(r) => return r,
                };
            }
        }
    }
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        tracing::warn!(job = %state.config.job_id, %format, repo, %status, "upstream refused the gateway's token");
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::LOCATION);
    if !status.is_success() || !is_rewritable(&parts.headers) {
        return Response::from_parts(parts, body.boxed());
    }
    let bytes = match Limited::new(body, MAX_REWRITE_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(error) => {
            return full(
                StatusCode::BAD_GATEWAY,
                format!("cove gateway: reading upstream document failed: {error}"),
            )
        }
    };
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    for spelling in endpoint_spellings(&upstream.endpoint) {
        text = text.replace(&spelling, &gateway_base);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::ETAG);
    Response::from_parts(
        parts,
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// One upstream request (following redirects for GET/HEAD, the token only
/// for the repository endpoint). `Err` is the response to give the client.
pub(super) async fn fetch(
    state: &State,
    upstream: &Upstream,
    format: PackageFormat,
    method: &Method,
    headers: &HeaderMap,
    body: Option<Body>,
    suffix: &str,
) -> Result<Response<Incoming>, Response<Body>> {
    let Some(auth) = authorization(format, &upstream.token) else {
        return Err(full(
            StatusCode::BAD_GATEWAY,
            "cove gateway: token is not a valid header value",
        ));
    };
    let mut target = format!("{}{suffix}", upstream.endpoint);
    let mut body = body;
    let mut redirects = 0;
    loop {
        let uri: Uri = target
            .parse()
            .map_err(|_| full(StatusCode::BAD_GATEWAY, "cove gateway: bad upstream URL"))?;
        let mut out = Request::builder().method(method.clone()).uri(uri);
        if let Some(h) = out.headers_mut() {
            *h = headers.clone();
            if target.starts_with(&upstream.endpoint) {
                h.insert(header::AUTHORIZATION, auth.clone());
            }
        }
        let req_body = body.take().unwrap_or_else(|| {
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed()
        });
        let out = out.body(req_body).map_err(|_| {
            full(
                StatusCode::BAD_GATEWAY,
                "cove gateway: bad upstream request",
            )
        })?;
        let resp = state.client.request(out).await.map_err(|error| {
            tracing::warn!(job = %state.config.job_id, endpoint = %upstream.endpoint, %error, "gateway upstream failed");
            full(
                StatusCode::BAD_GATEWAY,
                format!("cove gateway: cannot reach {}", upstream.endpoint),
            )
        })?;
        let follow = resp.status().is_redirection()
            && (*method == Method::GET || *method == Method::HEAD)
            && redirects < MAX_REDIRECTS;
        match resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        {
            Some(location) if follow => {
                target = resolve(&target, location);
                redirects += 1;
            }
            _ => return Ok(resp),
        }
    }
}

/// `location` relative to `base` (absolute, absolute-path or relative).
pub(super) fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    if location.starts_with('/') {
        format!("{}{location}", &base[..origin_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir_end])
    }
}
