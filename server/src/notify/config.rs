//! `[notify]` of the server's TOML file.

use std::time::Duration;

use serde::Deserialize;

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
}

/// Notifications, resolved.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub allow_private: Vec<ipnet::IpNet>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub log_keep: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            allow_private: Vec::new(),
            max_attempts: 5,
            retry_base: Duration::from_secs(5),
            log_keep: 200,
        }
    }
}

impl NotifyFileConfig {
    /// The settings, or the entry of `allow_private` that is not an address.
    pub fn resolve(self) -> Result<NotifySettings, String> {
        let d = NotifySettings::default();
        let allow_private = self
            .allow_private
            .unwrap_or_default()
            .into_iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| text.clone())
            })
            .collect::<Result<_, _>>()?;
        Ok(NotifySettings {
            allow_private,
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts).clamp(1, 20),
            retry_base: self.retry_base_ms.map_or(d.retry_base, |ms| {
                Duration::from_millis(ms.clamp(10, 3_600_000))
            }),
            log_keep: self.log_keep.unwrap_or(d.log_keep).clamp(1, 10_000),
        })
    }
}
