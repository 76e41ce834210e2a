//! Deploy credentials of one job (issue 21, docs/deployments.md): the role of the job's
//! deployment-environment connection, assumed by the [`Broker`] with a session name that names
//! the run and action, a duration bounded by the job's timeout and session tags, and served to
//! the job's containers by its gateway with the container-credentials protocol the AWS SDKs
//! and CLI already speak (`AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
//!
//! Invariants: the endpoint answers only a request that carries the job's random token (and
//! the gateway is reachable only from the job's own network); credentials are cached and
//! refreshed [`REFRESH_MARGIN`] before they expire; no credential string is ever in a
//! `Debug` output, an error or a log line; every credential string handed out is in
//! [`DeployCredentials::secrets`] for the job's mask set.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cove_api::JobDeploy;

use crate::broker::{AssumeRequest, Broker, BrokerError, Secret, SessionCredentials};

/// The path of the credentials endpoint on the job's gateway.
pub const CREDENTIALS_PATH: &str = "/cove/credentials";

/// The container-credentials address of the AWS SDKs (ECS), redirected to the job's gateway
/// on the job's network ([`crate::private_net::PrivateNetwork::redirect`]).
pub const CREDENTIALS_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 170, 2);

/// Credentials are refreshed this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The deploy role of one job and its cached session.
pub struct DeployCredentials {
    broker: Arc<Broker>,
    request: AssumeRequest,
    token: Secret,
    cached: tokio::sync::Mutex<Option<SessionCredentials>>,
    /// Every credential string handed out so far (for the mask set); shared with the job's
    /// log shipper so credentials refreshed while the job runs are masked too.
    issued: crate::mask::LateSecrets,
}

impl fmt::Debug for DeployCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeployCredentials")
            .field("role_arn", &self.request.role_arn)
            .field("session_name", &self.request.session_name)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

/// A random 32-byte token, hex.
fn random_token() -> Result<String, BrokerError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| BrokerError::Config("no randomness for the job's credentials token".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `SystemTime` as ISO 8601 UTC (`2026-12-06T07:00:00Z`), what the protocol's `Expiration`
/// is.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Constant-time equality of two byte strings (the token check).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl DeployCredentials {
    /// The job's deploy role, with a fresh random token. Nothing is assumed yet.
    pub fn new(broker: Arc<Broker>, deploy: &JobDeploy) -> Result<Self, BrokerError> {
        Ok(DeployCredentials {
            broker,
            request: AssumeRequest {
                role_arn: deploy.role_arn.clone(),
                region: deploy.region.clone(),
                sts_endpoint: deploy.sts_endpoint.clone(),
                session_name: deploy.session_name.clone(),
                duration_secs: deploy.duration_secs,
                tags: deploy.tags.clone(),
            },
            token: Secret::new(random_token()?),
            cached: tokio::sync::Mutex::new(None),
            issued: crate::mask::LateSecrets::default(),
        })
    }

    /// The token a request must carry in `Authorization`.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The role this job assumes.
    pub fn role_arn(&self) -> &str {
        &self.request.role_arn
    }

    /// Credentials valid past [`REFRESH_MARGIN`]: from the cache, else a new AssumeRole. The
    /// flag says whether they came from the cache.
    pub async fn credentials(&self) -> Result<(SessionCredentials, bool), BrokerError> {
        let mut cached = self.cached.lock().await;
        let now = self.broker.clock().now();
        if let Some(c) = cached.as_ref() {
            if c.expires_at > now + REFRESH_MARGIN {
                return Ok((c.clone(), true));
            }
            tracing::info!(role = %self.request.role_arn, "deploy credentials near expiry, refreshing");
        }
        let fresh = self.broker.assume(&self.request).await?;
        self.issued.add([
            fresh.access_key_id.clone(),
            fresh.secret_access_key.expose().to_string(),
            fresh.session_token.expose().to_string(),
        ]);
        *cached = Some(fresh.clone());
        Ok((fresh, false))
    }

    /// Whether `authorization` (the request's `Authorization` header) is the job's token.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        authorization.is_some_and(|h| same(h, self.token.expose().as_bytes()))
    }

    /// The endpoint's answer to a request with `authorization`: status and JSON body. A
    /// failure says what failed without any credential.
    pub async fn answer(&self, authorization: Option<&[u8]>) -> (u16, String) {
        if !self.authorized(authorization) {
            return (
                401,
                serde_json::json!({"message": "cove: missing or wrong authorization token"})
                    .to_string(),
            );
        }
        match self.credentials().await {
            Ok((c, _)) => (
                200,
                serde_json::json!({
                    "AccessKeyId": c.access_key_id,
                    "SecretAccessKey": c.secret_access_key.expose(),
                    "Token": c.session_token.expose(),
                    "Expiration": iso8601(c.expires_at),
                    "RoleArn": self.request.role_arn,
                })
                .to_string(),
            ),
            Err(e) => {
                tracing::warn!(role = %self.request.role_arn, error = %e, "deploy credentials failed");
                (
                    502,
                    serde_json::json!({"message": format!("cove: {e}")}).to_string(),
                )
            }
        }
    }

    /// What the job's containers get: the endpoint (on the job's gateway at `gateway`,
    /// `http://ip:port`), the token and the region.
    pub fn env(&self, gateway: &str) -> Vec<(String, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("{gateway}{CREDENTIALS_PATH}"),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
                self.token.expose().to_string(),
            ),
            ("AWS_REGION".into(), self.request.region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.request.region.clone()),
        ]
    }

    /// The token and every credential string handed out so far, for the job's mask set.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out = vec![self.token.clone()];
        out.extend(self.issued.values().into_iter().map(Secret::new));
        out
    }

    /// The live list of credential strings handed out, growing as credentials are refreshed.
    pub fn late_secrets(&self) -> crate::mask::LateSecrets {
        self.issued.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_iso8601_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_540_400);
        assert_eq!(iso8601(t), "2026-12-06T07:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(random_token().unwrap().len(), 64);
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
