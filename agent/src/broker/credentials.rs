//! What the broker hands out and what a build gets: secrets that never print, session
//! credentials, CodeArtifact tokens and endpoints, and a job's variables and files in
//! token-free or compatible mode.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::*;

/// A string that never shows up in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Every call site is a place the secret leaves the broker.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Temporary credentials of the assumed role.
#[derive(Clone)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expires_at: SystemTime,
}

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One STS AssumeRole call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub region: String,
    /// STS endpoint (VPC endpoint, test double); `None`: AWS's regional endpoint.
    pub sts_endpoint: Option<String>,
    pub session_name: String,
    /// Clamped to 900..=43200.
    pub duration_secs: u64,
    /// Session tags (key, value).
    pub tags: Vec<(String, String)>,
}

/// A CodeArtifact authorization token and the session that minted it.
#[derive(Clone)]
pub struct AuthToken {
    pub token: Secret,
    pub expires_at: SystemTime,
    pub issued_at: SystemTime,
    pub session: SessionCredentials,
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthToken")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .field("issued_at", &self.issued_at)
            .field("session", &self.session)
            .finish()
    }
}

/// `GetRepositoryEndpoint`'s answer for one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryEndpoint {
    pub repository: String,
    pub format: PackageFormat,
    /// Ends with `/`.
    pub url: String,
}

/// Everything a job gets from the broker.
#[derive(Clone)]
pub struct JobCredentials {
    pub role_arn: String,
    pub domain: String,
    pub domain_owner: String,
    pub token: AuthToken,
    pub endpoints: Vec<RepositoryEndpoint>,
    /// True when the token came from the cache (no STS/CodeArtifact call).
    pub from_cache: bool,
}

impl fmt::Debug for JobCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobCredentials")
            .field("role_arn", &self.role_arn)
            .field("domain", &self.domain)
            .field("domain_owner", &self.domain_owner)
            .field("token", &self.token)
            .field("endpoints", &self.endpoints)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

/// A file the job runner writes into the build container.
#[derive(Clone, PartialEq, Eq)]
pub struct InjectedFile {
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
}

impl fmt::Debug for InjectedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("bytes", &self.contents.len())
            .finish()
    }
}

/// Environment variables and files for the build container, plus the values
/// the log masker must hide.
#[derive(Clone, Default)]
pub struct BuildInjection {
    /// Plain variables (may go into the container's configuration).
    pub env: BTreeMap<String, String>,
    /// Variables whose values contain a secret (`CODEARTIFACT_AUTH_TOKEN`,
    /// a `PIP_INDEX_URL` with the token): for the job runner's secret
    /// variables, never the container's configuration.
    pub secret_env: BTreeMap<String, String>,
    pub files: Vec<InjectedFile>,
    /// Every secret value, for the log masker (also ones in no variable).
    pub secrets: Vec<Secret>,
}

impl BuildInjection {
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&InjectedFile> {
        self.files.iter().find(|f| f.path == path.as_ref())
    }
}

impl fmt::Debug for BuildInjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildInjection")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl JobCredentials {
    /// Values the log masker must replace: the token and the session secrets.
    pub fn secrets(&self) -> Vec<Secret> {
        vec![
            self.token.token.clone(),
            self.token.session.secret_access_key.clone(),
            self.token.session.session_token.clone(),
        ]
    }

    fn first(&self, format: PackageFormat) -> Option<&RepositoryEndpoint> {
        self.endpoints.iter().find(|e| e.format == format)
    }

    /// What `aws codeartifact login --tool npm|pip|twine` writes, for a
    /// build whose home directory is `home`. The first npm repository becomes
    /// the npm registry, the first pypi repository pip's index.
    pub fn compatible(&self, home: &Path) -> BuildInjection {
        let token = self.token.token.expose();
        let mut out = BuildInjection {
            secrets: self.secrets(),
            ..BuildInjection::default()
        };
        out.secret_env
            .insert("CODEARTIFACT_AUTH_TOKEN".into(), token.to_string());
        let npm: Vec<&RepositoryEndpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.format == PackageFormat::Npm)
            .collect();
        if let Some(first) = npm.first() {
            let mut npmrc = format!("registry={}\n", first.url);
            for e in &npm {
                npmrc.push_str(&format!("{}:_authToken={token}\n", strip_scheme(&e.url)));
            }
            out.files.push(InjectedFile {
                path: home.join(".npmrc"),
                contents: npmrc,
                mode: 0o600,
            });
        }
        if let Some(pypi) = self.first(PackageFormat::Pypi) {
            let index = with_userinfo(&pypi.url, &format!("aws:{token}")) + "simple/";
            let mut pip_conf = format!("[global]\nindex-url = {index}\n");
            out.secret_env.insert("PIP_INDEX_URL".into(), index);
            if let Some(host) = plain_http_host(&pypi.url) {
                pip_conf.push_str(&format!("trusted-host = {host}\n"));
                out.env.insert("PIP_TRUSTED_HOST".into(), host);
            }
            out.files.push(InjectedFile {
                path: home.join(".config/pip/pip.conf"),
                contents: pip_conf,
                mode: 0o600,
            });
            out.files.push(InjectedFile {
                path: home.join(".pypirc"),
                contents: format!(
                    "[distutils]\nindex-servers =\n    pypi\n    codeartifact\n\n\
                     [codeartifact]\nrepository = {}\nusername = aws\npassword = {token}\n",
                    pypi.url
                ),
                mode: 0o600,
            });
        }
        out
    }

    /// Gateway URLs only: `gateway` is the base URL the build reaches the
    /// endpoint gateway at (e.g. `http://<bridge address>:<port>`). Nothing secret.
    pub fn token_free(&self, home: &Path, gateway: &str) -> BuildInjection {
        let gateway = gateway.trim_end_matches('/');
        let mut out = BuildInjection::default();
        if let Some(npm) = self.first(PackageFormat::Npm) {
            out.files.push(InjectedFile {
                path: home.join(".npmrc"),
                contents: format!("registry={gateway}/npm/{}/\n", npm.repository),
                mode: 0o644,
            });
        }
        if let Some(pypi) = self.first(PackageFormat::Pypi) {
            let index = format!("{gateway}/pypi/{}/simple/", pypi.repository);
            let mut pip_conf = format!("[global]\nindex-url = {index}\n");
            out.env.insert("PIP_INDEX_URL".into(), index);
            if let Some(host) = plain_http_host(gateway) {
                pip_conf.push_str(&format!("trusted-host = {host}\n"));
                out.env.insert("PIP_TRUSTED_HOST".into(), host);
            }
            out.files.push(InjectedFile {
                path: home.join(".config/pip/pip.conf"),
                contents: pip_conf,
                mode: 0o644,
            });
        }
        out
    }
}

/// An endpoint URL `SCHEME://HOST/PATH/` → `//HOST/PATH/` (the key npm matches credentials by).
pub(super) fn strip_scheme(url: &str) -> &str {
    url.find("://").map_or(url, |i| &url[i + 1..])
}

pub(super) fn with_userinfo(url: &str, userinfo: &str) -> String {
    match url.find("://") {
        Some(i) => format!("{}{userinfo}@{}", &url[..i + 3], &url[i + 3..]),
        None => url.to_string(),
    }
}

/// `host[:port]` of an `http://` URL (pip refuses plain-HTTP indexes unless trusted).
pub(super) fn plain_http_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    Some(rest.split('/').next().unwrap_or(rest).to_string())
}
