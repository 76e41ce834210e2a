//! [`JobTransport`] over HTTP(S): the agent protocol routes of the server
//! (`/api/v1/agent/…`), authenticated with the agent's own token, plus the one-time
//! registration call (`POST /api/v1/agents/register` with a registration token). The agent
//! only dials out. 409 answers are [`TransportError::Stale`]; a 401 (the token was revoked)
//! also cancels the token given to [`HttpTransport::on_unauthorized`], so the agent stops.
//!
//! Invariant: tokens are only ever put in the `Authorization` header; no log line or error
//! message of this module contains one (server messages never echo credentials).

use std::time::Duration;

use bytes::Bytes;
use cove_api::{
    AgentCapacity, AgentIdentity, AgentStatus, FinishRequest, HeartbeatRequest, HeartbeatResponse,
    JobLease, LeaseRequest, LogBatch, RegisterAgentRequest, RegisteredAgent,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::job_worker::{JobTransport, TransportError};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A request body streamed from a file (artifact uploads).
type FileBody = http_body_util::StreamBody<
    std::pin::Pin<
        Box<
            dyn futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, std::io::Error>>
                + Send,
        >,
    >,
>;
type UploadClient = Client<HttpsConnector<HttpConnector>, FileBody>;

/// The HTTP client of one agent.
pub struct HttpTransport {
    base: String,
    token: String,
    client: HttpClient,
    uploads: UploadClient,
    unauthorized: Option<CancellationToken>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> TransportError {
    TransportError::Other(e.to_string())
}

/// One request and its whole (small) answer, within `timeout`.
async fn exchange<B>(
    client: &Client<HttpsConnector<HttpConnector>, B>,
    req: Request<B>,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), TransportError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let fut = async {
        let resp = client.request(req).await.map_err(other)?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(other)?.to_bytes();
        Ok::<_, TransportError>((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| other(format!("{path}: no answer within {timeout:?}")))?
}

/// An HTTP and HTTPS client (system CA certificates; without any, only `http://` works).
pub(crate) fn client<B>() -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    // Name the crypto provider: several are compiled into a workspace build.
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: https:// servers will fail");
            // Panics never: aws-lc-rs supports rustls' default protocol versions.
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The server refused the registration token (unknown, used or expired).
    #[error("the server refused the registration token: {0}")]
    Refused(String),
    #[error("registering with {server} failed: {message}")]
    Failed { server: String, message: String },
}

/// Registers an agent named `name` with a one-time `registration_token`, its `labels` and
/// `capacity`; the answer holds the agent's id and its own token.
pub async fn register(
    server: &str,
    registration_token: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    capacity: &AgentCapacity,
) -> Result<RegisteredAgent, RegisterError> {
    let transport = HttpTransport::new(server, registration_token);
    let body = RegisterAgentRequest {
        name: name.to_string(),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        labels: labels.clone(),
        capacity: Some(capacity.clone()),
    };
    let failed = |message: String| RegisterError::Failed {
        server: transport.base.clone(),
        message,
    };
    let body = serde_json::to_vec(&body).map_err(|e| failed(e.to_string()))?;
    let (status, bytes) = transport
        .send(
            Method::POST,
            "/agents/register",
            "application/json",
            body,
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(RegisterError::Refused(error_message(&bytes)));
    }
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}: {}", text())));
    }
    serde_json::from_slice(&bytes).map_err(|e| failed(format!("bad answer: {e}")))
}

/// The `message` of a JSON error body, else the body.
fn error_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

impl HttpTransport {
    /// `base`: the server's URL (`http://host:port` or `https://…`); `token`: the agent's token.
    pub fn new(base: &str, token: &str) -> HttpTransport {
        HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: client(),
            uploads: client(),
            unauthorized: None,
        }
    }

    /// Cancels `token` when the server answers 401 (the agent token was revoked).
    pub fn on_unauthorized(mut self, token: CancellationToken) -> HttpTransport {
        self.unauthorized = Some(token);
        self
    }

    /// `GET /api/v1/agent/self`: checks the token. `Ok(None)` when the server refuses it
    /// (revoked or unknown).
    pub async fn identity(&self) -> Result<Option<AgentIdentity>, TransportError> {
        let (status, body) = self
            .send(
                Method::GET,
                "/agent/self",
                "application/json",
                Vec::new(),
                Duration::from_secs(30),
            )
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(other(format!(
                "/agent/self: HTTP {status}: {}",
                error_message(&body)
            )));
        }
        serde_json::from_slice(&body).map(Some).map_err(other)
    }

    /// `POST /api/v1/agent/status`: the agent's labels and capacity now (issue 20).
    pub async fn status(&self, status: &AgentStatus) -> Result<(), TransportError> {
        self.json("/agent/status", status, Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    /// One request; any status is returned.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(body.into()))
            .map_err(other)?;
        exchange(&self.client, req, path, timeout).await
    }

    /// One request of the agent protocol: 409 is [`TransportError::Stale`], any other
    /// failure status an error (a 401 also fires [`HttpTransport::on_unauthorized`]).
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let (status, body) = self.send(method, path, content_type, body, timeout).await?;
        self.check(path, status, body)
    }

    /// Status mapping of every call: 409 is stale, 401 fires `unauthorized`.
    fn check(
        &self,
        path: &str,
        status: StatusCode,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        if status == StatusCode::UNAUTHORIZED {
            if let Some(token) = &self.unauthorized {
                token.cancel();
            }
        }
        if status == StatusCode::CONFLICT {
            return Err(TransportError::Stale(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        if !status.is_success() {
            return Err(other(format!(
                "{path}: HTTP {status}: {}",
                error_message(&body)
            )));
        }
        Ok((status, body))
    }

    async fn json<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let body = serde_json::to_vec(body).map_err(other)?;
        self.call(Method::POST, path, "application/json", body, timeout)
            .await
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A download may take this long between two chunks.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

impl HttpTransport {
    /// `PUT path` with the file `src` as the body, streamed in 64 KiB chunks (an artifact
    /// can be large; nothing of it is held in memory). The deadline grows with the size.
    async fn upload_file(&self, path: &str, src: &std::path::Path) -> Result<(), TransportError> {
        let file = tokio::fs::File::open(src).await.map_err(other)?;
        let size = file.metadata().await.map_err(other)?.len();
        let timeout = CALL_TIMEOUT + Duration::from_secs(size / (1 << 20));
        let stream = futures_util::StreamExt::map(crate::jobs::file_chunks(file), |c| {
            c.map(hyper::body::Frame::data)
        });
        let body: FileBody = http_body_util::StreamBody::new(Box::pin(stream));
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/x-tar")
            .header("content-length", size)
            .body(body)
            .map_err(other)?;
        let (status, body) = exchange(&self.uploads, req, path, timeout).await?;
        self.check(path, status, body).map(|_| ())
    }

    /// `GET path` of the agent protocol, its body streamed into the file `dest` (created or
    /// truncated); statuses map like [`HttpTransport::call`].
    async fn download(&self, path: &str, dest: &std::path::Path) -> Result<(), TransportError> {
        use tokio::io::AsyncWriteExt;
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .map_err(other)?;
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| other(format!("{path}: no answer within {CALL_TIMEOUT:?}")))?
            .map_err(other)?;
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(CHUNK_TIMEOUT, resp.into_body().collect())
                .await
                .map_err(|_| other(format!("{path}: no answer within {CHUNK_TIMEOUT:?}")))?
                .map_err(other)?
                .to_bytes();
            if status == StatusCode::UNAUTHORIZED {
                if let Some(token) = &self.unauthorized {
                    token.cancel();
                }
            }
            if status == StatusCode::CONFLICT {
                return Err(TransportError::Stale(
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            return Err(other(format!(
                "{path}: HTTP {status}: {}",
                error_message(&body)
            )));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| other(format!("{}: {e}", dest.display())))?;
        let mut body = resp.into_body();
        loop {
            let frame = tokio::time::timeout(CHUNK_TIMEOUT, body.frame())
                .await
                .map_err(|_| other(format!("{path}: stalled for {CHUNK_TIMEOUT:?}")))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| other(format!("{path}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data)
                    .await
                    .map_err(|e| other(format!("{}: {e}", dest.display())))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| other(format!("{}: {e}", dest.display())))?;
        Ok(())
    }
}

impl JobTransport for HttpTransport {
    async fn lease(&self, wait: Duration) -> Result<Option<JobLease>, TransportError> {
        let req = LeaseRequest {
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let (status, body) = self
            .json("/agent/lease", &req, wait + Duration::from_secs(10))
            .await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&body).map(Some).map_err(other)
    }

    async fn heartbeat(&self, job: i64, attempt: u32) -> Result<HeartbeatResponse, TransportError> {
        let (_, body) = self
            .json(
                &format!("/agent/jobs/{job}/heartbeat"),
                &HeartbeatRequest { attempt },
                Duration::from_secs(10),
            )
            .await?;
        serde_json::from_slice(&body).map_err(other)
    }

    async fn logs(&self, job: i64, batch: LogBatch) -> Result<(), TransportError> {
        self.json(&format!("/agent/jobs/{job}/logs"), &batch, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn source(
        &self,
        job: i64,
        attempt: u32,
        dest: &std::path::Path,
    ) -> Result<(), TransportError> {
        self.download(&format!("/agent/jobs/{job}/source?attempt={attempt}"), dest)
            .await
    }

    async fn input(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        dest: &std::path::Path,
    ) -> Result<(), TransportError> {
        self.download(
            &format!("/agent/jobs/{job}/inputs/{name}?attempt={attempt}"),
            dest,
        )
        .await
    }

    async fn upload_artifact(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        tar: &std::path::Path,
    ) -> Result<(), TransportError> {
        self.upload_file(
            &format!("/agent/jobs/{job}/artifacts/{name}?attempt={attempt}"),
            tar,
        )
        .await
    }

    async fn finish(&self, job: i64, report: FinishRequest) -> Result<(), TransportError> {
        self.json(&format!("/agent/jobs/{job}/finish"), &report, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }
}
