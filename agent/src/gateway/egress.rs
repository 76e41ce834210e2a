//! The forward proxy: `CONNECT` tunnels and absolute-URI requests to
//! destinations on the job's [`AllowList`]; everything else is denied and
//! logged.

use super::*;

pub(super) fn deny(
    state: &State,
    peer: SocketAddr,
    method: &Method,
    destination: &str,
) -> Response<Body> {
    crate::metrics::global().gateway_denied();
    tracing::warn!(
        job = %state.config.job_id,
        %peer,
        %method,
        destination,
        "gateway denied egress"
    );
    full(
        StatusCode::FORBIDDEN,
        format!("cove gateway: {destination} is not on this job's allow-list"),
    )
}

pub(super) async fn connect(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return full(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let (host, port) = (
        authority.host().to_string(),
        authority.port_u16().unwrap_or(443),
    );
    if !state.config.allow.allows(&host, port) {
        return deny(&state, peer, req.method(), authority.as_str());
    }
    let upstream = match tokio::time::timeout(
        state.config.connect_timeout,
        TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            tracing::warn!(job = %state.config.job_id, destination = %authority, %error, "gateway tunnel connect failed");
            return full(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach {authority}: {error}"),
            );
        }
        Err(_) => {
            return full(
                StatusCode::GATEWAY_TIMEOUT,
                format!("cannot reach {authority}: timeout"),
            )
        }
    };
    tracing::debug!(job = %state.config.job_id, %peer, destination = %authority, "gateway tunnel");
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(error) => tracing::debug!(%error, "CONNECT upgrade failed"),
        }
    });
    Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
    )
}

pub(super) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for h in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(h.as_str());
    }
}

pub(super) async fn forward(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let uri = req.uri().clone();
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    if !state.config.allow.allows(&host, port) {
        return deny(&state, peer, req.method(), &format!("{host}:{port}"));
    }
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let out = Request::from_parts(parts, body.boxed());
    match state.client.request(out).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Err(error) => {
            tracing::warn!(job = %state.config.job_id, %uri, %error, "gateway forward failed");
            full(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach {host}:{port}"),
            )
        }
    }
}
