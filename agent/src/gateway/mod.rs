//! Endpoint gateway: the one thing a build container on its private network
//! can talk to (see `docs/private-subnet.md`).
//!
//! * **Package routes** (reverse proxy): `/npm/<repo>/…` and `/pypi/<repo>/…`
//!   go to that repository's CodeArtifact endpoint with the token added
//!   upstream (`Authorization: Bearer` for npm, basic `aws:<token>` for pypi).
//!   Links to the upstream endpoint inside npm packuments and PyPI simple
//!   pages are rewritten to point back at the gateway, and redirects are
//!   followed here, so no token or pre-signed URL ever reaches the build.
//! * **Forward proxy**: `CONNECT host:port` and absolute-URI requests, only
//!   to destinations on the [`AllowList`]; anything else gets 403 and a
//!   `gateway denied egress` warning naming the destination.
//!
//! Bodies stream both ways; only packuments and simple pages (JSON/HTML
//! that must be rewritten) are buffered, up to [`MAX_REWRITE_BYTES`].
//! One gateway serves one job: the listener identifies the job, so the
//! build needs no credential to be told apart. Tokens come from an
//! [`UpstreamSource`] per request (the broker's cache makes that cheap and
//! refreshes expired tokens mid-job).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

mod egress;
mod packages;

use egress::*;
use packages::*;

use crate::broker::{
    Broker, BrokerConfig, BrokerError, JobRef, PackageFormat, RepositoryRef, Secret,
};

/// Largest packument / simple page the gateway buffers to rewrite.
pub const MAX_REWRITE_BYTES: usize = 64 << 20;
/// Redirects followed upstream (CodeArtifact may redirect asset downloads).
const MAX_REDIRECTS: usize = 3;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Body = BoxBody<Bytes, hyper::Error>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway I/O on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "allow-list pattern `{0}` is not HOST:PORT (HOST may start with `*.`, PORT may be `*`)"
    )]
    BadPattern(String),
    #[error("no {format} repository `{repository}` is configured for this job")]
    UnknownRepository {
        format: PackageFormat,
        repository: String,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Where a package route goes: the repository endpoint (ends with `/`) and
/// the token to present there.
#[derive(Clone)]
pub struct Upstream {
    pub endpoint: String,
    pub token: Secret,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoint", &self.endpoint)
            .field("token", &"***")
            .finish()
    }
}

/// Resolves a package route to its upstream, called per request.
pub trait UpstreamSource: Send + Sync + 'static {
    fn upstream<'a>(
        &'a self,
        format: PackageFormat,
        repository: &'a str,
    ) -> BoxFuture<'a, Result<Upstream, GatewayError>>;

    /// The upstream answered 401/403 to `token`: forget it if it is cached.
    /// The gateway then asks [`UpstreamSource::upstream`] again and retries
    /// once when the token changed.
    fn refused<'a>(
        &'a self,
        _format: PackageFormat,
        _repository: &'a str,
        _token: &'a Secret,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The broker as an [`UpstreamSource`] for one job: only the job's
/// configured repositories, tokens from the broker's cache.
pub struct BrokerSource {
    pub broker: Arc<Broker>,
    pub config: BrokerConfig,
    pub job: JobRef,
}

impl UpstreamSource for BrokerSource {
    fn upstream<'a>(
        &'a self,
        format: PackageFormat,
        repository: &'a str,
    ) -> BoxFuture<'a, Result<Upstream, GatewayError>> {
        Box::pin(async move {
            let repo = RepositoryRef {
                name: repository.to_string(),
                format,
            };
            if !self.config.repositories.contains(&repo) {
                return Err(GatewayError::UnknownRepository {
                    format,
                    repository: repository.to_string(),
                });
            }
            let endpoint = self
                .broker
                .repository_endpoint(&self.config, &self.job, &repo)
                .await?;
            let token = self.broker.token(&self.config, &self.job).await?;
            Ok(Upstream {
                endpoint: endpoint.url,
                token: token.token,
            })
        })
    }

    fn refused<'a>(
        &'a self,
        _format: PackageFormat,
        _repository: &'a str,
        token: &'a Secret,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.broker.invalidate(&self.config, token).await })
    }
}

/// For jobs without CodeArtifact: every package route is a 404.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUpstream;

impl UpstreamSource for NoUpstream {
    fn upstream<'a>(
        &'a self,
        format: PackageFormat,
        repository: &'a str,
    ) -> BoxFuture<'a, Result<Upstream, GatewayError>> {
        Box::pin(async move {
            Err(GatewayError::UnknownRepository {
                format,
                repository: repository.to_string(),
            })
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    /// Lower-case; a leading `*.` matches any subdomain.
    host: String,
    /// `None` = any port.
    port: Option<u16>,
}

/// Destinations the forward proxy lets through: `host:port`,
/// `*.suffix:port`, `host:*`. Everything else is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<Pattern>);

impl AllowList {
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, GatewayError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            let bad = || GatewayError::BadPattern(p.to_string());
            let (host, port) = p.rsplit_once(':').ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.contains('/') || host[1..].contains('*') {
                return Err(bad());
            }
            let port = match port {
                "*" => None,
                n => Some(n.parse::<u16>().map_err(|_| bad())?),
            };
            out.push(Pattern {
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(AllowList(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Also allow `host:port` of each URL (e.g. repository endpoints a
    /// compatible-mode build talks to itself).
    pub fn with_urls<'a>(mut self, urls: impl IntoIterator<Item = &'a str>) -> Self {
        for url in urls {
            if let Ok(uri) = url.parse::<Uri>() {
                if let Some(host) = uri.host() {
                    let port = uri
                        .port_u16()
                        .unwrap_or(if uri.scheme_str() == Some("https") {
                            443
                        } else {
                            80
                        });
                    let p = Pattern {
                        host: host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_ascii_lowercase(),
                        port: Some(port),
                    };
                    if !self.0.contains(&p) {
                        self.0.push(p);
                    }
                }
            }
        }
        self
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.0.iter().any(|p| {
            let host_ok = match p.host.strip_prefix("*.") {
                Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
                None => p.host == host,
            };
            host_ok && (p.port.is_none() || p.port == Some(port))
        })
    }
}

/// Per-job gateway settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// For logs: which job this gateway serves.
    pub job_id: String,
    pub allow: AllowList,
    pub connect_timeout: Duration,
    /// The job's deploy role, served at [`crate::creds::CREDENTIALS_PATH`] (issue 21).
    pub credentials: Option<Arc<crate::creds::DeployCredentials>>,
}

impl GatewayConfig {
    pub fn new(job_id: impl Into<String>, allow: AllowList) -> Self {
        GatewayConfig {
            job_id: job_id.into(),
            allow,
            connect_timeout: Duration::from_secs(10),
            credentials: None,
        }
    }
}

struct State {
    addr: SocketAddr,
    config: GatewayConfig,
    source: Arc<dyn UpstreamSource>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
}

/// A running gateway; stops (and drops every open connection and tunnel)
/// on [`Gateway::shutdown`] or when dropped.
pub struct Gateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway").field("addr", &self.addr).finish()
    }
}

impl Gateway {
    /// Serve on `listener` (bind it where the job's containers can reach
    /// it, e.g. [`crate::private_net::PrivateNetwork::gateway_ip`]).
    pub fn start(
        listener: TcpListener,
        source: Arc<dyn UpstreamSource>,
        config: GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        let addr = listener.local_addr().map_err(|source| GatewayError::Io {
            what: "listener address".into(),
            source,
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        // Name the crypto provider: in a workspace build several providers are
        // compiled into rustls, and it then refuses to pick a process default.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|source| GatewayError::Io {
                what: "system CA certificates".into(),
                source,
            })?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        let state = Arc::new(State {
            addr,
            config,
            source,
            client,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, state, stopped));
        tracing::info!(%addr, "gateway listening");
        Ok(Gateway {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port` — the base for [`crate::broker::JobCredentials::token_free`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, close every connection, wait until done.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(error) => {
                        tracing::warn!(%error, "gateway accept failed");
                        continue;
                    }
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, peer, req).await) }
                    });
                    if let Err(error) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!(%peer, %error, "gateway connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

fn full(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.into() + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(state, peer, req).await;
    }
    if req.uri().scheme().is_some() && !is_self(&state, req.uri()) {
        return forward(state, peer, req).await;
    }
    let path = req.uri().path().to_string();
    if path == crate::creds::CREDENTIALS_PATH {
        return credentials(&state, peer, &req).await;
    }
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let format = match parts.next() {
        Some("npm") => PackageFormat::Npm,
        Some("pypi") => PackageFormat::Pypi,
        _ => {
            return full(
                StatusCode::NOT_FOUND,
                "cove gateway: use /npm/<repo>/ or /pypi/<repo>/",
            )
        }
    };
    let (Some(repo), rest) = (parts.next(), parts.next().unwrap_or("")) else {
        return full(StatusCode::NOT_FOUND, "cove gateway: missing repository");
    };
    let (repo, rest) = (repo.to_string(), rest.to_string());
    if has_dot_segments(&rest) {
        tracing::warn!(job = %state.config.job_id, %peer, path, "gateway refused a path with dot segments");
        return full(
            StatusCode::BAD_REQUEST,
            "cove gateway: `.` and `..` segments are not allowed",
        );
    }
    package(state, peer, format, &repo, &rest, req).await
}

/// `GET /cove/credentials`: the job's deploy role in the container-credentials protocol, for
/// a request that carries the job's token.
async fn credentials(state: &State, peer: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
    let Some(creds) = state.config.credentials.as_ref() else {
        return full(
            StatusCode::NOT_FOUND,
            "cove gateway: this job has no deploy role",
        );
    };
    if req.method() != Method::GET {
        return full(StatusCode::METHOD_NOT_ALLOWED, "cove gateway: GET only");
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let (status, body) = creds.answer(auth).await;
    if status == 401 {
        tracing::warn!(job = %state.config.job_id, %peer, "credentials request without the job's token refused");
    }
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An absolute-URI request for the gateway's own address (a client with
/// `HTTP_PROXY` set asking for a package route) is served locally.
fn is_self(state: &State, uri: &Uri) -> bool {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    port == state.addr.port() && host.parse::<std::net::IpAddr>().ok() == Some(state.addr.ip())
}

/// `.`/`..` segments, also percent-encoded (`%2e`, and `%2f` as a
/// separator): they would let a build climb out of its repository's path
/// on the upstream host, with the gateway's token.
fn has_dot_segments(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let decoded = lower
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    decoded.split('/').any(|seg| seg == "." || seg == "..")
}

/// `HTTP_PROXY`/`HTTPS_PROXY` for a build that must reach allow-listed
/// endpoints (STS, the Cove server) through the gateway.
pub fn proxy_env(gateway: &str) -> Vec<(String, String)> {
    ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .iter()
        .map(|k| (k.to_string(), gateway.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matching() {
        let a = AllowList::parse(&[
            "*.codeartifact.us-east-1.amazonaws.com:443",
            "sts.us-east-1.amazonaws.com:443",
            "127.0.0.1:*",
        ])
        .unwrap();
        assert!(a.allows("acme-1.d.codeartifact.us-east-1.amazonaws.com", 443));
        assert!(a.allows("STS.us-east-1.amazonaws.com.", 443));
        assert!(!a.allows("codeartifact.us-east-1.amazonaws.com", 443));
        assert!(!a.allows("evil.com", 443));
        assert!(!a.allows("sts.us-east-1.amazonaws.com", 80));
        assert!(a.allows("127.0.0.1", 9));
        assert!(!a.allows("169.254.169.254", 80));
        assert!(AllowList::parse(&["nohost"]).is_err());
        assert!(AllowList::parse(&["a.*.com:1"]).is_err());
        assert!(AllowList::parse(&["h:99999"]).is_err());
    }

    #[test]
    fn endpoint_spellings_cover_default_ports() {
        assert_eq!(
            endpoint_spellings("https://d-1.d.x.com/npm/r/"),
            vec![
                "https://d-1.d.x.com/npm/r/",
                "https://d-1.d.x.com:443/npm/r/"
            ]
        );
        assert_eq!(endpoint_spellings("http://h:81/p/"), vec!["http://h:81/p/"]);
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        assert!(!has_dot_segments("@acme%2fhello"));
        assert!(!has_dot_segments("@acme/hello/-/hello-1.0.0.tgz"));
        assert!(!has_dot_segments("simple/acme-hello/"));
        assert!(!has_dot_segments("a..b/.hidden"));
        assert!(has_dot_segments("../other/x"));
        assert!(has_dot_segments("a/%2e%2e/b"));
        assert!(has_dot_segments("a/%2E./b"));
        assert!(has_dot_segments("..%2fother"));
        assert!(has_dot_segments("a\\..\\b"));
        assert!(has_dot_segments("./x"));
    }

    #[test]
    fn redirects_resolve() {
        assert_eq!(resolve("http://h/a/b", "https://s3/x"), "https://s3/x");
        assert_eq!(resolve("http://h/a/b", "/c"), "http://h/c");
        assert_eq!(resolve("http://h/a/b", "c"), "http://h/a/c");
    }
}
