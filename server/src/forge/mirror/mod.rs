//! Mirrors (issue 15): a repository whose branches and tags follow an upstream repository on
//! GitHub, GitLab or Gitea/Forgejo. The upstream's push webhook (`webhook.rs`: signature or
//! token checked in constant time, payload bounded) queues a fetch; the fetch (`fetch.rs`:
//! `git fetch --prune` with a timeout, the token in an `http.extraHeader` given through the
//! environment, never in the URL) runs under the repository's lock, and every ref it moved is
//! stored as a push event of the system pusher `mirror:<forge>`, exactly as `crate::git`
//! stores a push, so PUSH workflows run. Users cannot push to a mirror (`crate::git` refuses
//! with the upstream's URL). Configuration handlers in `http.rs`; SQL in
//! `crate::store::mirrors`; docs/mirrors.md.

pub mod fetch;
pub mod http;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ApiError;
use crate::store::{MirrorRow, PushEventRow, RefUpdate, RepoRow};
use crate::AppState;

/// The name a mirror's webhook secret is sealed under (with the repository's id).
pub const SECRET_NAME: &str = "cove:mirror-webhook-secret";
/// The name a mirror's fetch token is sealed under.
pub const TOKEN_NAME: &str = "cove:mirror-token";

/// `[mirrors]` of the server's TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorsFileConfig {
    /// Addresses (CIDRs or single addresses) an upstream may have although they are loopback,
    /// private or link-local — e.g. `["127.0.0.1/32"]` for a forge on this host.
    pub allow_private: Option<Vec<String>>,
    /// Longest fetch from an upstream, in seconds (default 300).
    pub fetch_timeout_secs: Option<u64>,
}

/// Mirrors, resolved.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    pub allow_private: Vec<ipnet::IpNet>,
    pub fetch_timeout: Duration,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            allow_private: Vec::new(),
            fetch_timeout: Duration::from_secs(300),
        }
    }
}

impl MirrorsFileConfig {
    /// The settings, or the entry of `allow_private` that is not an address.
    pub fn resolve(self) -> Result<MirrorSettings, String> {
        let d = MirrorSettings::default();
        let allow_private =
            crate::notify::ssrf::parse_allow_list(self.allow_private.unwrap_or_default())?;
        Ok(MirrorSettings {
            allow_private,
            fetch_timeout: self
                .fetch_timeout_secs
                .map_or(d.fetch_timeout, |s| Duration::from_secs(s.clamp(5, 3600))),
        })
    }
}

/// Per repository: is a queued fetch running, and did another webhook arrive meanwhile?
#[derive(Debug, Default)]
struct Slot {
    again: bool,
}

/// Mirror settings and the fetch queue: at most one background fetch task per repository;
/// webhooks arriving while it runs make it fetch once more (they coalesce).
#[derive(Debug)]
pub struct Mirrors {
    settings: MirrorSettings,
    queued: Mutex<HashMap<i64, Slot>>,
}

impl Mirrors {
    pub fn new(settings: MirrorSettings) -> Mirrors {
        Mirrors {
            settings,
            queued: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &MirrorSettings {
        &self.settings
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        match self.queued.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Checks an upstream URL with the SSRF guard of notifications (`notify/ssrf.rs`) against
/// `[mirrors] allow_private`; the address to connect to, or why it is refused.
pub async fn check_upstream(
    state: &AppState,
    url: &str,
) -> Result<crate::notify::ssrf::Destination, String> {
    crate::notify::ssrf::check(url, &state.mirrors().settings().allow_private)
        .await
        .map_err(|e| e.replace("[notify] allow_private", "[mirrors] allow_private"))
}

/// The system identity recorded as the pusher of a mirror's fetched updates.
pub fn pusher_name(forge: &str) -> String {
    format!("mirror:{forge}")
}

/// Queues a fetch of `repo` from its upstream (the webhook's answer is 202 once this
/// returns). One task per repository runs the fetches one after another.
pub fn queue_fetch(state: &AppState, repo: RepoRow) {
    {
        let mut slots = state.mirrors().slots();
        if let Some(slot) = slots.get_mut(&repo.id) {
            slot.again = true;
            return;
        }
        slots.insert(repo.id, Slot::default());
    }
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(error) = sync(&state, &repo).await {
                tracing::warn!(repo = %format!("{}/{}", repo.owner, repo.name), error = %error, "mirror fetch failed");
            }
            let mut slots = state.mirrors().slots();
            match slots.get_mut(&repo.id) {
                Some(slot) if slot.again => slot.again = false,
                _ => {
                    slots.remove(&repo.id);
                    return;
                }
            }
        }
    });
}

/// Fetches `repo` from its upstream now (under the repository's lock, so fetches, pushes and
/// merges of one repository never overlap) and records every moved ref as a push event of
/// `mirror:<forge>`. Answers the stored events; the outcome is kept as the mirror's last sync.
pub async fn sync(state: &AppState, repo: &RepoRow) -> Result<Vec<PushEventRow>, ApiError> {
    let Some(mirror) = state.store().mirror(repo.id).await? else {
        return Err(ApiError::NotFound(format!(
            "mirror configuration of {}/{}",
            repo.owner, repo.name
        )));
    };
    let result = sync_locked(state, repo, &mirror).await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    state
        .store()
        .mirror_synced(repo.id, crate::store::now_ms(), &outcome)
        .await?;
    result
}

async fn sync_locked(
    state: &AppState,
    repo: &RepoRow,
    mirror: &MirrorRow,
) -> Result<Vec<PushEventRow>, ApiError> {
    let token = match &mirror.token_sealed {
        Some(sealed) => Some(
            state
                .runs()
                .key()
                .open(repo.id, TOKEN_NAME, sealed)
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    let destination = check_upstream(state, &mirror.url)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the upstream is refused: {e}")))?;
    let path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let _guard = crate::cluster::lock_repo(state, repo.id).await?;
    let before = crate::git::snapshot_refs(path.clone()).await?;
    fetch::fetch(fetch::Fetch {
        repo: &path,
        destination: &destination,
        credentials: token.map(|t| (mirror.username.clone(), t)),
        timeout: state.mirrors().settings().fetch_timeout,
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let after = crate::git::snapshot_refs(path).await?;
    let updates: Vec<RefUpdate> = crate::git::diff_refs(&before, &after);
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let pusher = pusher_name(&mirror.forge);
    let stored = state
        .store()
        .insert_system_push_events(repo, &pusher, &updates)
        .await?;
    super::after_push(state, repo, Some(&pusher), &stored).await;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    for event in &stored {
        tracing::info!(
            repo = %full_name,
            r#ref = %event.ref_name,
            old = %event.old_sha,
            new = %event.new_sha,
            pusher = %pusher,
            "push event stored (mirror fetch)"
        );
        state.publish(crate::repos::push_event_dto(&full_name, event.clone()));
    }
    crate::audit::push(state, repo, &pusher, &updates, "ok").await;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_section_of_the_config_file() {
        let file: crate::config::FileConfig = toml::from_str(
            "[mirrors]\nallow_private = [\"127.0.0.1\", \"10.0.0.0/8\"]\nfetch_timeout_secs = 1\n",
        )
        .unwrap();
        let settings = file.mirrors.unwrap().resolve().unwrap();
        assert_eq!(settings.allow_private.len(), 2);
        assert_eq!(settings.fetch_timeout, Duration::from_secs(5), "clamped");
        let bad: crate::config::FileConfig =
            toml::from_str("[mirrors]\nallow_private = [\"intranet\"]\n").unwrap();
        assert_eq!(bad.mirrors.unwrap().resolve().unwrap_err(), "intranet");
        assert!(toml::from_str::<crate::config::FileConfig>("[mirrors]\nnope = 1\n").is_err());
    }
}
