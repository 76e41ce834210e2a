//! [`JobTransport`] over HTTP: the agent protocol routes of the server
//! (`/api/v1/agent/…`), authenticated with the agent's token. 409 answers are
//! [`TransportError::Stale`]. Plain `http://` only for now (a remote agent behind TLS
//! comes with the remote-agent issue).

use std::time::Duration;

use bytes::Bytes;
use cove_api::{
    FinishRequest, HeartbeatRequest, HeartbeatResponse, JobLease, LeaseRequest, LogBatch,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::job_worker::{JobTransport, TransportError};

/// The HTTP client of one agent.
pub struct HttpTransport {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
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

impl HttpTransport {
    /// `base`: the server's URL (`http://host:port`); `token`: the agent's token.
    pub fn new(base: &str, token: &str) -> HttpTransport {
        HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}/api/v1{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(other)?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(other)?;
            let status = resp.status();
            let body = resp.into_body().collect().await.map_err(other)?.to_bytes();
            Ok::<_, TransportError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| other(format!("{path}: no answer within {timeout:?}")))??;
        if status == StatusCode::CONFLICT {
            return Err(TransportError::Stale(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        if !status.is_success() {
            return Err(other(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
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

    async fn source(&self, job: i64, attempt: u32) -> Result<Vec<u8>, TransportError> {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/agent/jobs/{job}/source?attempt={attempt}"),
                "application/json",
                Vec::new(),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(body.to_vec())
    }

    async fn input(&self, job: i64, attempt: u32, name: &str) -> Result<Vec<u8>, TransportError> {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/agent/jobs/{job}/inputs/{name}?attempt={attempt}"),
                "application/json",
                Vec::new(),
                CALL_TIMEOUT,
            )
            .await?;
        Ok(body.to_vec())
    }

    async fn upload_artifact(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        tar: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.call(
            Method::PUT,
            &format!("/agent/jobs/{job}/artifacts/{name}?attempt={attempt}"),
            "application/x-tar",
            tar,
            CALL_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    async fn finish(&self, job: i64, report: FinishRequest) -> Result<(), TransportError> {
        self.json(&format!("/agent/jobs/{job}/finish"), &report, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }
}
