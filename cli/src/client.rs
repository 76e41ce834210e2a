//! HTTP client for Cove's REST API and the CLI's stored credentials.
//!
//! Invariants: the token is never printed, logged or put in an error message; the config
//! file holding it is created with mode 0600. Every failure maps to a message that tells the
//! user what to do next.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cove_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What went wrong talking to the server or reading the CLI config.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: is cove-server running at {url}? ({detail})")]
    Unreachable { url: String, detail: String },
    #[error("token expired or invalid: run `cove login {url}` with a valid token")]
    Unauthorized { url: String },
    #[error("{message}: create a token with that scope (or ask an owner for access), then run `cove login`")]
    Forbidden { message: String },
    #[error("{message}")]
    NotFound { message: String },
    /// A rejected input that the server explained (e.g. an invalid devfile, with positions).
    #[error("{message}")]
    Invalid { message: String },
    #[error("the server refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("unexpected response from {url}: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("not logged in: run `cove login <url>` (or set COVE_URL and COVE_TOKEN)")]
    NotLoggedIn,
    #[error("cannot determine the config directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {detail}")]
    Config { path: PathBuf, detail: String },
}

/// `~/.config/cove/config.toml`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct CliConfig {
    pub url: Option<String>,
    pub token: Option<String>,
}

/// The config file path: `$XDG_CONFIG_HOME/cove/config.toml`, else `$HOME/.config/cove/config.toml`.
pub fn config_path() -> Result<PathBuf, ClientError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or(ClientError::NoConfigDir)?;
    Ok(base.join("cove").join("config.toml"))
}

impl CliConfig {
    pub fn load(path: &Path) -> Result<CliConfig, ClientError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| ClientError::Config {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
            Err(source) => Err(ClientError::Io {
                context: format!("reading {}", path.display()),
                source,
            }),
        }
    }

    /// Writes the file atomically with mode 0600 (directory 0700).
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let io = |context: String| move |source| ClientError::Io { context, source };
        let dir = path.parent().ok_or(ClientError::NoConfigDir)?;
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let text = toml::to_string(self).map_err(|e| ClientError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            options.mode(0o600);
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut file = options
            .open(&tmp)
            .map_err(io(format!("creating {}", tmp.display())))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io(format!("replacing {}", path.display())))
    }
}

/// A logged-in API client.
pub struct Client {
    pub url: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(url: &str, token: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build();
        Client {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent,
        }
    }

    /// A client from `COVE_URL`/`COVE_TOKEN`, falling back to the config file.
    pub fn from_env_or_config() -> Result<Client, ClientError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (mut url, mut token) = (env("COVE_URL"), env("COVE_TOKEN"));
        if url.is_none() || token.is_none() {
            let config = CliConfig::load(&config_path()?)?;
            url = url.or(config.url);
            token = token.or(config.token);
        }
        match (url, token) {
            (Some(url), Some(token)) => Ok(Client::new(&url, &token)),
            _ => Err(ClientError::NotLoggedIn),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}/api/v1{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Accept", "application/json")
    }

    fn handle(
        &self,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, ClientError> {
        match result {
            Ok(resp) => Ok(resp),
            Err(ureq::Error::Status(status, resp)) => {
                let message = resp
                    .into_json::<ErrorBody>()
                    .map(|b| b.message)
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                Err(match status {
                    401 => ClientError::Unauthorized {
                        url: self.url.clone(),
                    },
                    403 => ClientError::Forbidden { message },
                    404 => ClientError::NotFound { message },
                    422 => ClientError::Invalid { message },
                    _ => ClientError::Rejected { status, message },
                })
            }
            Err(ureq::Error::Transport(t)) => Err(ClientError::Unreachable {
                url: self.url.clone(),
                detail: t.kind().to_string(),
            }),
        }
    }

    fn decode<T: DeserializeOwned>(&self, resp: ureq::Response) -> Result<T, ClientError> {
        resp.into_json().map_err(|e| ClientError::BadResponse {
            url: self.url.clone(),
            detail: e.to_string(),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.handle(self.request("GET", path).call())?;
        self.decode(resp)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self.handle(self.request("POST", path).send_json(body))?;
        self.decode(resp)
    }

    /// [`Client::post`] that also answers the success's status (e.g. 201 created, 200 reused).
    pub fn post_with_status<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, T), ClientError> {
        let resp = self.handle(self.request("POST", path).send_json(body))?;
        let status = resp.status();
        Ok((status, self.decode(resp)?))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token, for protocols the client does not wrap (the terminal WebSocket).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A plain-text answer (logs).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.handle(self.request("GET", path).call())?;
        resp.into_string().map_err(|e| ClientError::BadResponse {
            url: self.url.clone(),
            detail: e.to_string(),
        })
    }

    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self.handle(self.request("PUT", path).send_json(body))?;
        self.decode(resp)
    }

    pub fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self.handle(self.request("PATCH", path).send_json(body))?;
        self.decode(resp)
    }

    /// A PUT whose success has no body (204).
    pub fn put_no_content<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        self.handle(self.request("PUT", path).send_json(body))
            .map(|_| ())
    }

    /// A streamed answer (followed logs): read until the server ends it.
    pub fn get_reader(&self, path: &str) -> Result<Box<dyn std::io::Read + Send>, ClientError> {
        let req = self
            .agent
            .request("GET", &format!("{}/api/v1{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
            .timeout(Duration::from_secs(24 * 60 * 60));
        let resp = self.handle(req.call())?;
        Ok(Box::new(resp.into_reader()))
    }

    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.handle(self.request("DELETE", path).call()).map(|_| ())
    }
}
