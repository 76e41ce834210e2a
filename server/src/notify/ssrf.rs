//! Where a webhook may go: `http`/`https` URLs whose every resolved address is public, or
//! allowed by `[notify] allow_private`. The delivery connects to the address checked here
//! (no second DNS lookup, so no rebinding) and follows no redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// Longest DNS lookup of a target's host.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Addresses that are never a public destination: this host, private networks, link-local
/// (cloud metadata at 169.254.169.254), carrier-grade NAT, multicast, reserved.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 64:ff9b::/96 may reach v4 inside
                || v6 == Ipv6Addr::from([0u8; 16])
        }
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
        || o[0] >= 240
}

/// May a webhook connect to `ip`?
pub fn allowed(ip: IpAddr, allow: &[ipnet::IpNet]) -> bool {
    !is_internal(ip) || allow.iter().any(|net| net.contains(&ip))
}

/// A checked destination: the URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Parses an `allow_private` list of the configuration (`[notify]`, `[mirrors]`): each entry
/// a network (`10.0.0.0/8`) or one address; `Err` is the first entry that is neither.
pub fn parse_allow_list(entries: Vec<String>) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .into_iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| text)
        })
        .collect()
}

/// Parses `text` as a target URL: http(s), a host, no user name or password in it.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "the URL's scheme is {}; only http and https are allowed",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not contain a user name or password".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

/// The URL with only its scheme, host and port: safe to show and log (an incoming-webhook
/// URL's path is a credential).
pub fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            match url.port() {
                Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
                None => format!("{}://{host}/…", url.scheme()),
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// Resolves the URL's host and checks every address; the first is the one to connect to.
pub async fn check(text: &str, allow: &[ipnet::IpNet]) -> Result<Destination, String> {
    let url = parse_url(text)?;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| format!("resolving {host} took longer than 5 s"))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip(), allow)) {
        return Err(format!(
            "{host} resolves to {}, a loopback, private or link-local address; an administrator \
             can allow it with [notify] allow_private",
            bad.ip()
        ));
    }
    Ok(Destination {
        host: bare.to_string(),
        addr: addrs[0],
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!allowed(ip, &[]), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(allowed(ip, &[]), "{ip}");
        }
        let allow: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &allow));
        assert!(!allowed("127.0.0.2".parse().unwrap(), &allow));
    }

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(parse_url("ftp://x.example/").is_err());
        assert!(parse_url("http://u:p@x.example/").is_err());
        assert!(parse_url("not a url").is_err());
        assert_eq!(
            redact("https://hooks.example/services/T0/B0/secret"),
            "https://hooks.example/…"
        );
        assert_eq!(redact("http://127.0.0.1:9/x"), "http://127.0.0.1:9/…");
    }

    #[tokio::test]
    async fn literal_loopback_is_refused() {
        let err = check("http://127.0.0.1:9/x", &[]).await.unwrap_err();
        assert!(err.contains("allow_private"), "{err}");
        let err = check("http://[::1]:9/x", &[]).await.unwrap_err();
        assert!(err.contains("::1"), "{err}");
        let err = check("http://localhost:9/x", &[]).await.unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let allow: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let d = check("http://127.0.0.1:9/x", &allow).await.unwrap();
        assert_eq!(d.addr.to_string(), "127.0.0.1:9");
    }
}
