//! The HTTP receiver of the notification tests (a real server on 127.0.0.1) and helpers
//! for the `…/notifications/targets` routes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use cove_api::NotifyDelivery;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::common::ADMIN_TOKEN;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    /// When it arrived (ms since the epoch).
    pub at_ms: i64,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Got>>>,
    /// Path → how many more requests answer 500.
    pub fail: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    /// Serves on `127.0.0.1:port` (0: any); answers the base URL.
    pub async fn serve(&self, port: u16) -> Result<String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(url)
    }

    pub fn requests(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }

    /// Waits (up to 60 s) for a request to `path` whose event is `event`.
    pub async fn wait_for(&self, path: &str, event: &str) -> Got {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(g) = self.requests(path).into_iter().find(|g| {
                g.headers.get("x-cove-event").and_then(|v| v.to_str().ok()) == Some(event)
            }) {
                return g;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} at {path}; got {:#?}",
                self.got.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_string();
    let failing = {
        let mut fail = r.fail.lock().unwrap();
        match fail.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    r.got.lock().unwrap().push(Got {
        at_ms: cove_server::store::now_ms(),
        path,
        headers,
        body,
    });
    if uri.path() == "/redirect" {
        (StatusCode::TEMPORARY_REDIRECT, [("location", "/elsewhere")]).into_response()
    } else if failing {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

pub fn verify(secret: &str, got: &Got) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let header = got.headers["x-cove-signature"].to_str().unwrap();
    assert_eq!(header, expected, "signature over the raw body");
    assert!(!got.headers["x-cove-delivery"].is_empty());
}

pub async fn add_target(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    body: Value,
) -> Result<reqwest::Response> {
    Ok(http
        .post(format!(
            "{base}/api/v1/repos/admin/{repo}/notifications/targets"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await?)
}

pub async fn deliveries(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    target: i64,
) -> Result<Vec<NotifyDelivery>> {
    Ok(http
        .get(format!(
            "{base}/api/v1/repos/admin/{repo}/notifications/targets/{target}/deliveries"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until `target`'s first delivery is no longer pending.
pub async fn settled_delivery(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    target: i64,
) -> Result<NotifyDelivery> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = deliveries(http, base, repo, target).await?;
        if let Some(d) = list.iter().find(|d| d.status != "pending") {
            return Ok(d.clone());
        }
        assert!(Instant::now() < deadline, "still pending: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
