//! `[notify]` (and `[notify.smtp]`) of the server's TOML file.

use std::time::Duration;

use serde::Deserialize;

/// `[notify.smtp]` as written in the file: the SMTP server email notifications go through.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFileConfig {
    /// The SMTP server's host name or address.
    pub host: String,
    /// Default: 465 with `tls = "tls"`, 587 with `starttls`, 25 with `none`.
    pub port: Option<u16>,
    /// The sender, `cove@example.com` or `Cove <cove@example.com>`.
    pub from: String,
    /// `none` (plain SMTP: only for a relay on this host or a trusted network), `starttls`
    /// (default) or `tls` (implicit TLS).
    pub tls: Option<String>,
    /// SMTP AUTH user name (with `password`).
    pub username: Option<String>,
    /// SMTP AUTH password: never logged, never in an error or an API answer.
    pub password: Option<String>,
}

impl std::fmt::Debug for SmtpFileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpFileConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (tests, a relay on this host).
    None,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// `[notify.smtp]`, resolved.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: lettre::message::Mailbox,
    pub tls: SmtpTls,
    /// User name and password for SMTP AUTH.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.to_string())
            .field("tls", &self.tls)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Plain SMTP to `host:port` (tests: a receiver on 127.0.0.1).
    pub fn plain(host: &str, port: u16, from: &str) -> Result<SmtpSettings, String> {
        SmtpFileConfig {
            host: host.into(),
            port: Some(port),
            from: from.into(),
            tls: Some("none".into()),
            ..SmtpFileConfig::default()
        }
        .resolve()
    }
}

impl SmtpFileConfig {
    pub fn resolve(self) -> Result<SmtpSettings, String> {
        if self.host.trim().is_empty() {
            return Err("[notify.smtp] host is empty".into());
        }
        let tls = match self.tls.as_deref().unwrap_or("starttls") {
            "none" => SmtpTls::None,
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            other => {
                return Err(format!(
                    "[notify.smtp] tls must be none, starttls or tls, not {:?}",
                    other.chars().take(40).collect::<String>()
                ))
            }
        };
        let from: lettre::message::Mailbox = self.from.parse().map_err(|_| {
            format!(
                "[notify.smtp] from {:?} is not an email address",
                self.from.chars().take(100).collect::<String>()
            )
        })?;
        let credentials = match (self.username, self.password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err("[notify.smtp] username and password go together".into());
            }
        };
        let port = self.port.unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        });
        Ok(SmtpSettings {
            host: self.host,
            port,
            from,
            tls,
            credentials,
        })
    }
}

/// `[notify]` as written in the file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFileConfig {
    /// Addresses (CIDRs or single addresses) webhook targets may reach although they are
    /// loopback, private or link-local — e.g. `["127.0.0.1/32"]` for a receiver on this host.
    pub allow_private: Option<Vec<String>>,
    /// Attempts per delivery before it is marked failed (default 5).
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, in milliseconds; it doubles after each failure
    /// (default 5000).
    pub retry_base_ms: Option<u64>,
    /// Finished deliveries kept per target in its log (default 200).
    pub log_keep: Option<u32>,
    /// `[notify.smtp]`: the SMTP server of email notifications (none: no email is sent).
    pub smtp: Option<SmtpFileConfig>,
}

/// What is wrong in `[notify]`.
#[derive(Debug)]
pub enum NotifyConfigError {
    /// An `allow_private` entry that is not an address.
    Allow(String),
    /// `[notify.smtp]`.
    Smtp(String),
}

/// Notifications, resolved.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub allow_private: Vec<ipnet::IpNet>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub log_keep: u32,
    /// Email notifications go through this server; `None`: no email is sent.
    pub smtp: Option<SmtpSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            allow_private: Vec::new(),
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            log_keep: 200,
            smtp: None,
        }
    }
}

impl NotifyFileConfig {
    /// The settings, or the entry of `allow_private` that is not an address.
    pub fn resolve(self) -> Result<NotifySettings, NotifyConfigError> {
        let d = NotifySettings::default();
        let allow_private = super::ssrf::parse_allow_list(self.allow_private.unwrap_or_default())
            .map_err(NotifyConfigError::Allow)?;
        let smtp = self
            .smtp
            .map(SmtpFileConfig::resolve)
            .transpose()
            .map_err(NotifyConfigError::Smtp)?;
        Ok(NotifySettings {
            allow_private,
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts).clamp(1, 20),
            retry_base: self.retry_base_ms.map_or(d.retry_base, |ms| {
                Duration::from_millis(ms.clamp(10, 3_600_000))
            }),
            log_keep: self.log_keep.unwrap_or(d.log_keep).clamp(1, 10_000),
            smtp,
        })
    }
}
