//! The client address of a request: the TCP peer, or — when the peer is a configured trusted
//! proxy (`[auth] trusted_proxies`) — the right-most `X-Forwarded-For` entry that is not a
//! trusted proxy itself. A client cannot choose its address by sending the header directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// The client address of a request, inserted by [`client_addr_layer`] for every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The address used when the peer is unknown (a router served without connect info).
    pub const UNKNOWN: ClientAddr = ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
}

/// Resolves the client address from the peer and the headers.
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let Some(peer) = peer else {
        return ClientAddr::UNKNOWN.0;
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Middleware: stores the request's [`ClientAddr`] in its extensions.
pub async fn client_addr_layer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical());
    let client = resolve(
        peer,
        request.headers(),
        &state.logins().settings().trusted_proxies,
    );
    request.extensions_mut().insert(ClientAddr(client));
    next.run(request).await
}

/// The client address of a request (unknown when the layer did not run).
pub fn of(request_extensions: &axum::http::Extensions) -> IpAddr {
    request_extensions
        .get::<ClientAddr>()
        .copied()
        .unwrap_or(ClientAddr::UNKNOWN)
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("header value"));
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer = IpAddr::from([203, 0, 113, 9]);
        assert_eq!(resolve(Some(peer), &headers("1.2.3.4"), &trusted), peer);
        let proxy = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(
            resolve(
                Some(proxy),
                &headers("1.2.3.4, 198.51.100.7, 10.0.0.3"),
                &trusted
            ),
            IpAddr::from([198, 51, 100, 7])
        );
        assert_eq!(resolve(Some(proxy), &HeaderMap::new(), &trusted), proxy);
        assert_eq!(resolve(Some(proxy), &headers("garbage"), &trusted), proxy);
        assert_eq!(
            resolve(None, &HeaderMap::new(), &trusted),
            ClientAddr::UNKNOWN.0
        );
    }
}
