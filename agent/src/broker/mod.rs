//! Credential broker: STS `AssumeRole`, then CodeArtifact
//! `GetAuthorizationToken` and `GetRepositoryEndpoint`, cached per (role,
//! domain, owner) until shortly before expiry, turned into what a build needs.
//!
//! Two ways to hand packages to a build (see `docs/private-subnet.md`):
//! * [`JobCredentials::token_free`] (the default): the build only sees the
//!   endpoint gateway's URLs; the gateway adds the token upstream, fed by
//!   [`Broker::token`] through [`crate::gateway::UpstreamSource`].
//! * [`JobCredentials::compatible`]: the env and files `aws codeartifact login`
//!   would write (`CODEARTIFACT_AUTH_TOKEN`, `.npmrc`, `pip.conf`, `.pypirc`).
//!
//! Invariants: no secret (token, secret key, session token) is ever part of a
//! `Debug`/`Display` output or an error message; time comes from a [`Clock`],
//! so expiry is testable without sleeping; an expired token is never handed out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_codeartifact::config::Credentials;
use aws_sdk_codeartifact::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_codeartifact::types::PackageFormat as CaFormat;
use serde::{Deserialize, Serialize};

mod credentials;

pub use credentials::*;

/// Shortest and longest AssumeRole session and CodeArtifact token (seconds).
pub const MIN_DURATION_SECS: u64 = 900;
pub const MAX_DURATION_SECS: u64 = 43_200;
/// Longest role session name STS accepts.
pub const MAX_SESSION_NAME: usize = 64;

/// Package formats the broker and the gateway handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageFormat {
    Npm,
    Pypi,
}

impl PackageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageFormat::Npm => "npm",
            PackageFormat::Pypi => "pypi",
        }
    }

    fn sdk(self) -> CaFormat {
        match self {
            PackageFormat::Npm => CaFormat::Npm,
            PackageFormat::Pypi => CaFormat::Pypi,
        }
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One CodeArtifact repository a build reads from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepositoryRef {
    pub name: String,
    pub format: PackageFormat,
}

/// Per repository / workflow environment: which role to assume and which
/// CodeArtifact domain and repositories the build may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfig {
    pub role_arn: String,
    pub region: String,
    pub domain: String,
    /// AWS account id that owns the domain.
    pub domain_owner: String,
    pub repositories: Vec<RepositoryRef>,
    /// STS endpoint (a VPC endpoint, or a test double); default: the regional one.
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    /// CodeArtifact API endpoint (VPC endpoint or test double).
    #[serde(default)]
    pub codeartifact_endpoint: Option<String>,
    /// The role's maximum session duration, if below 12 h (AssumeRole fails
    /// when asked for more).
    #[serde(default)]
    pub max_session_secs: Option<u64>,
}

impl BrokerConfig {
    fn codeartifact_url(&self) -> String {
        self.codeartifact_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://codeartifact.{}.amazonaws.com", self.region))
    }

    fn cache_key(&self) -> CacheKey {
        CacheKey {
            role_arn: self.role_arn.clone(),
            domain: self.domain.clone(),
            domain_owner: self.domain_owner.clone(),
        }
    }
}

/// The job credentials are minted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    pub run_id: String,
    pub job_id: String,
    /// The job's timeout: the session and, in compatible mode, the token must
    /// outlive it.
    pub timeout: Duration,
}

/// How the build gets its packages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The token and endpoints go into the build (`aws codeartifact login`).
    Compatible,
    /// The build sees only gateway URLs; the gateway holds the token.
    #[default]
    TokenFree,
}

/// Where the broker's "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Role session name from run and job ids: only `[A-Za-z0-9+=,.@_-]`,
/// 2..=64 characters.
pub fn session_name(run_id: &str, job_id: &str) -> String {
    let raw = format!("cove-{run_id}-{job_id}");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(MAX_SESSION_NAME);
    name
}

/// `outer: inner: innermost` — the causes of a transport error, without
/// the SDK's Debug dump.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = inner.source();
    }
    parts.join(": ")
}

/// How long until `stated` (an absolute expiry from AWS, on the wall clock).
/// The broker re-bases it onto its own [`Clock`] so that tests can expire
/// tokens by moving that clock.
fn remaining(stated: SystemTime) -> Duration {
    stated
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Seconds clamped to what STS and CodeArtifact accept.
pub fn clamp_duration(d: Duration) -> u64 {
    d.as_secs().clamp(MIN_DURATION_SECS, MAX_DURATION_SECS)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("STS denied AssumeRole for role {role_arn}: {message}")]
    AssumeRoleDenied { role_arn: String, message: String },
    #[error("STS AssumeRole for role {role_arn} failed: {message}")]
    AssumeRole { role_arn: String, message: String },
    #[error(
        "CodeArtifact denied {operation} on domain {domain} (owner {domain_owner}): {message}"
    )]
    CodeArtifactDenied {
        operation: &'static str,
        domain: String,
        domain_owner: String,
        message: String,
    },
    #[error(
        "CodeArtifact {operation} on domain {domain} (owner {domain_owner}) failed: {message}"
    )]
    CodeArtifact {
        operation: &'static str,
        domain: String,
        domain_owner: String,
        message: String,
    },
    #[error("cannot reach the {service} endpoint {url}: {message}")]
    Unreachable {
        service: &'static str,
        url: String,
        message: String,
    },
    #[error("broker configuration: {0}")]
    Config(String),
}

/// Tunables; the defaults suit production.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// Attempts per call (1 = no retries; use 1 against test doubles).
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    /// A token is refreshed this long before it expires.
    pub refresh_margin: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    role_arn: String,
    domain: String,
    domain_owner: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EndpointKey {
    api: String,
    domain: String,
    domain_owner: String,
    repository: RepositoryRef,
}

type Slot = Arc<tokio::sync::Mutex<Option<AuthToken>>>;

/// Mints and caches credentials. Cheap to share (`Arc<Broker>`).
pub struct Broker {
    base: SdkConfig,
    clock: Arc<dyn Clock>,
    options: BrokerOptions,
    tokens: Mutex<HashMap<CacheKey, Slot>>,
    endpoints: Mutex<HashMap<EndpointKey, String>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("clock", &self.clock)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Base credentials from the standard AWS chain (environment, profile,
    /// web identity, ECS, IMDS). `region` only avoids a region lookup; every
    /// call uses its [`BrokerConfig::region`].
    pub async fn from_default_chain(
        region: &str,
        clock: Arc<dyn Clock>,
        options: BrokerOptions,
    ) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .load()
            .await;
        Broker::new(base, clock, options)
    }

    /// Base credentials (and HTTP client, if any) from `base`.
    pub fn new(base: SdkConfig, clock: Arc<dyn Clock>, options: BrokerOptions) -> Self {
        Broker {
            base,
            clock,
            options,
            tokens: Mutex::new(HashMap::new()),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn retry(&self) -> RetryConfig {
        if self.options.max_attempts <= 1 {
            RetryConfig::disabled()
        } else {
            RetryConfig::standard().with_max_attempts(self.options.max_attempts)
        }
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.options.connect_timeout)
            .operation_timeout(self.options.operation_timeout)
            .build()
    }

    /// Credentials for one job: a token valid for the whole job in
    /// compatible mode (as far as 12 h allow), or any fresh token in
    /// token-free mode (the gateway refreshes through [`Broker::token`]),
    /// and the endpoint of every configured repository.
    pub async fn job_credentials(
        &self,
        cfg: &BrokerConfig,
        job: &JobRef,
        mode: Mode,
    ) -> Result<JobCredentials, BrokerError> {
        let need = match mode {
            Mode::Compatible => job.timeout,
            Mode::TokenFree => Duration::ZERO,
        };
        let (token, from_cache) = self.token_for(cfg, job, need).await?;
        let mut endpoints = Vec::with_capacity(cfg.repositories.len());
        for repo in &cfg.repositories {
            endpoints.push(self.endpoint(cfg, repo, &token.session).await?);
        }
        Ok(JobCredentials {
            role_arn: cfg.role_arn.clone(),
            domain: cfg.domain.clone(),
            domain_owner: cfg.domain_owner.clone(),
            token,
            endpoints,
            from_cache,
        })
    }

    /// A token that stays valid past the refresh margin, from the cache when
    /// possible. What the gateway calls per upstream request.
    pub async fn token(&self, cfg: &BrokerConfig, job: &JobRef) -> Result<AuthToken, BrokerError> {
        Ok(self.token_for(cfg, job, Duration::ZERO).await?.0)
    }

    /// Drop the cached token for `cfg` if it is `token` (the upstream
    /// refused it); a newer token minted meanwhile is kept.
    pub async fn invalidate(&self, cfg: &BrokerConfig, token: &Secret) {
        let slot = {
            let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&cfg.cache_key()).cloned()
        };
        if let Some(slot) = slot {
            let mut cached = slot.lock().await;
            if cached.as_ref().is_some_and(|t| &t.token == token) {
                tracing::info!(role = %cfg.role_arn, domain = %cfg.domain, "codeartifact token refused upstream; dropped from the cache");
                *cached = None;
            }
        }
    }

    /// The repository endpoint (cached forever: endpoints do not change).
    pub async fn repository_endpoint(
        &self,
        cfg: &BrokerConfig,
        job: &JobRef,
        repo: &RepositoryRef,
    ) -> Result<RepositoryEndpoint, BrokerError> {
        if let Some(url) = self.cached_endpoint(cfg, repo) {
            return Ok(RepositoryEndpoint {
                repository: repo.name.clone(),
                format: repo.format,
                url,
            });
        }
        let token = self.token(cfg, job).await?;
        self.endpoint(cfg, repo, &token.session).await
    }

    fn fresh(&self, token: &AuthToken, need: Duration) -> bool {
        let now = self.clock.now();
        token.expires_at > now + need + self.options.refresh_margin
            && token.session.expires_at > now
    }

    async fn token_for(
        &self,
        cfg: &BrokerConfig,
        job: &JobRef,
        need: Duration,
    ) -> Result<(AuthToken, bool), BrokerError> {
        if cfg.domain.is_empty() || cfg.role_arn.is_empty() {
            return Err(BrokerError::Config(
                "role_arn and domain must not be empty".into(),
            ));
        }
        let slot = {
            let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(cfg.cache_key()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            if self.fresh(token, need) {
                tracing::debug!(role = %cfg.role_arn, domain = %cfg.domain, "codeartifact token cache hit");
                return Ok((token.clone(), true));
            }
            tracing::info!(role = %cfg.role_arn, domain = %cfg.domain, "codeartifact token stale, refreshing");
        }
        *cached = None;
        let session = self.assume_role(cfg, job).await?;
        let want = job.timeout + self.options.refresh_margin;
        if need > Duration::ZERO
            && need + self.options.refresh_margin > Duration::from_secs(MAX_DURATION_SECS)
        {
            tracing::warn!(
                role = %cfg.role_arn,
                timeout_secs = job.timeout.as_secs(),
                "job timeout exceeds the longest CodeArtifact token (12 h); the token expires during the job"
            );
        }
        let token = self
            .authorization_token(cfg, session, clamp_duration(want))
            .await?;
        *cached = Some(token.clone());
        Ok((token, false))
    }

    async fn assume_role(
        &self,
        cfg: &BrokerConfig,
        job: &JobRef,
    ) -> Result<SessionCredentials, BrokerError> {
        let mut secs = clamp_duration(job.timeout + self.options.refresh_margin);
        if let Some(max) = cfg.max_session_secs {
            secs = secs.min(max.max(MIN_DURATION_SECS));
        }
        self.assume(&AssumeRequest {
            role_arn: cfg.role_arn.clone(),
            region: cfg.region.clone(),
            sts_endpoint: cfg.sts_endpoint.clone(),
            session_name: session_name(&job.run_id, &job.job_id),
            duration_secs: secs,
            tags: Vec::new(),
        })
        .await
    }

    /// STS AssumeRole with the base credentials: the session's credentials and when they
    /// expire (by this broker's clock).
    pub async fn assume(&self, req: &AssumeRequest) -> Result<SessionCredentials, BrokerError> {
        let secs = req
            .duration_secs
            .clamp(MIN_DURATION_SECS, MAX_DURATION_SECS);
        let mut conf = aws_sdk_sts::config::Builder::from(&self.base)
            .region(Region::new(req.region.clone()))
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        if let Some(url) = &req.sts_endpoint {
            conf = conf.endpoint_url(url);
        }
        let sts_url = req
            .sts_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", req.region));
        let client = aws_sdk_sts::Client::from_conf(conf.build());
        let session_name = &req.session_name;
        let started = std::time::Instant::now();
        let mut call = client
            .assume_role()
            .role_arn(&req.role_arn)
            .role_session_name(session_name)
            .duration_seconds(i32::try_from(secs).unwrap_or(i32::MAX));
        for (key, value) in &req.tags {
            let tag = aws_sdk_sts::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| BrokerError::Config(format!("session tag {key}: {e}")))?;
            call = call.tags(tag);
        }
        let out = call.send().await.map_err(|e| {
            if let SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) = &e {
                return BrokerError::Unreachable {
                    service: "STS",
                    url: sts_url.clone(),
                    message: error_chain(&e),
                };
            }
            let code = e.code().unwrap_or_default().to_string();
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&e).to_string());
            if code == "AccessDenied" || code == "AccessDeniedException" {
                BrokerError::AssumeRoleDenied {
                    role_arn: req.role_arn.clone(),
                    message,
                }
            } else {
                BrokerError::AssumeRole {
                    role_arn: req.role_arn.clone(),
                    message: format!("{code} {message}").trim().to_string(),
                }
            }
        })?;
        let creds = out.credentials().ok_or_else(|| BrokerError::AssumeRole {
            role_arn: req.role_arn.clone(),
            message: "response has no credentials".into(),
        })?;
        let expires_at = self.clock.now()
            + SystemTime::try_from(*creds.expiration()).map_or(Duration::ZERO, remaining);
        tracing::info!(
            role = %req.role_arn,
            session = %session_name,
            duration_secs = secs,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "assumed role"
        );
        Ok(SessionCredentials {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token()),
            expires_at,
        })
    }

    fn codeartifact(
        &self,
        cfg: &BrokerConfig,
        session: &SessionCredentials,
    ) -> aws_sdk_codeartifact::Client {
        let creds = Credentials::new(
            session.access_key_id.clone(),
            session.secret_access_key.expose().to_string(),
            Some(session.session_token.expose().to_string()),
            Some(session.expires_at),
            "cove-broker",
        );
        let mut conf = aws_sdk_codeartifact::config::Builder::from(&self.base)
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(creds)
            .retry_config(self.retry())
            .timeout_config(self.timeouts());
        if let Some(url) = &cfg.codeartifact_endpoint {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_codeartifact::Client::from_conf(conf.build())
    }

    fn ca_error<E>(
        &self,
        cfg: &BrokerConfig,
        operation: &'static str,
        e: SdkError<E>,
    ) -> BrokerError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        SdkError<E>: ProvideErrorMetadata,
    {
        if let SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) = &e {
            return BrokerError::Unreachable {
                service: "CodeArtifact",
                url: cfg.codeartifact_url(),
                message: error_chain(&e),
            };
        }
        let code = e.code().unwrap_or_default().to_string();
        let message = e
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&e).to_string());
        if code == "AccessDeniedException" || code == "AccessDenied" {
            BrokerError::CodeArtifactDenied {
                operation,
                domain: cfg.domain.clone(),
                domain_owner: cfg.domain_owner.clone(),
                message,
            }
        } else {
            BrokerError::CodeArtifact {
                operation,
                domain: cfg.domain.clone(),
                domain_owner: cfg.domain_owner.clone(),
                message: format!("{code} {message}").trim().to_string(),
            }
        }
    }

    async fn authorization_token(
        &self,
        cfg: &BrokerConfig,
        session: SessionCredentials,
        duration_secs: u64,
    ) -> Result<AuthToken, BrokerError> {
        let client = self.codeartifact(cfg, &session);
        let issued_at = self.clock.now();
        let out = client
            .get_authorization_token()
            .domain(&cfg.domain)
            .domain_owner(&cfg.domain_owner)
            .duration_seconds(i64::try_from(duration_secs).unwrap_or(i64::MAX))
            .send()
            .await
            .map_err(|e| self.ca_error(cfg, "GetAuthorizationToken", e))?;
        let token = out
            .authorization_token()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BrokerError::CodeArtifact {
                operation: "GetAuthorizationToken",
                domain: cfg.domain.clone(),
                domain_owner: cfg.domain_owner.clone(),
                message: "response has no token".into(),
            })?;
        let requested = Duration::from_secs(duration_secs);
        let lifetime = out
            .expiration()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .map_or(requested, |stated| remaining(stated).min(requested));
        let expires_at = issued_at + lifetime;
        tracing::info!(
            role = %cfg.role_arn,
            domain = %cfg.domain,
            domain_owner = %cfg.domain_owner,
            duration_secs,
            "minted codeartifact token"
        );
        Ok(AuthToken {
            token: Secret::new(token),
            expires_at,
            issued_at,
            session,
        })
    }

    fn endpoint_key(cfg: &BrokerConfig, repo: &RepositoryRef) -> EndpointKey {
        EndpointKey {
            api: cfg.codeartifact_url(),
            domain: cfg.domain.clone(),
            domain_owner: cfg.domain_owner.clone(),
            repository: repo.clone(),
        }
    }

    fn cached_endpoint(&self, cfg: &BrokerConfig, repo: &RepositoryRef) -> Option<String> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&Self::endpoint_key(cfg, repo)).cloned()
    }

    async fn endpoint(
        &self,
        cfg: &BrokerConfig,
        repo: &RepositoryRef,
        session: &SessionCredentials,
    ) -> Result<RepositoryEndpoint, BrokerError> {
        if let Some(url) = self.cached_endpoint(cfg, repo) {
            return Ok(RepositoryEndpoint {
                repository: repo.name.clone(),
                format: repo.format,
                url,
            });
        }
        let out = self
            .codeartifact(cfg, session)
            .get_repository_endpoint()
            .domain(&cfg.domain)
            .domain_owner(&cfg.domain_owner)
            .repository(&repo.name)
            .format(repo.format.sdk())
            .send()
            .await
            .map_err(|e| self.ca_error(cfg, "GetRepositoryEndpoint", e))?;
        let mut url = out
            .repository_endpoint()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| BrokerError::CodeArtifact {
                operation: "GetRepositoryEndpoint",
                domain: cfg.domain.clone(),
                domain_owner: cfg.domain_owner.clone(),
                message: format!("no endpoint for repository {}", repo.name),
            })?
            .to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(Self::endpoint_key(cfg, repo), url.clone());
        Ok(RepositoryEndpoint {
            repository: repo.name.clone(),
            format: repo.format,
            url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_sanitized_and_bounded() {
        assert_eq!(session_name("r1", "build"), "cove-r1-build");
        assert_eq!(session_name("run/7", "job:a b"), "cove-run_7-job_a_b");
        let long = session_name(&"x".repeat(100), "j");
        assert_eq!(long.len(), MAX_SESSION_NAME);
    }

    #[test]
    fn durations_are_clamped() {
        assert_eq!(clamp_duration(Duration::from_secs(60)), 900);
        assert_eq!(clamp_duration(Duration::from_secs(3600)), 3600);
        assert_eq!(clamp_duration(Duration::from_secs(100_000)), 43_200);
    }

    #[test]
    fn url_helpers() {
        assert_eq!(strip_scheme("https://h/npm/r/"), "//h/npm/r/");
        assert_eq!(with_userinfo("https://h/p/", "aws:t"), "https://aws:t@h/p/");
        assert_eq!(plain_http_host("http://h:1/p/").as_deref(), Some("h:1"));
        assert_eq!(plain_http_host("https://h/p/"), None);
    }
}
