//! `parent.id` parents of environment devfiles, from a devfile registry:
//! the registry the devfile names (`parent.registryUrl`) or
//! `[environments] devfile_registry`. Fetched before the devfile is parsed
//! (the parse runs off the async workers), through the SSRF guard (http(s)
//! only, no credentials in the URL, no loopback/private/link-local address
//! unless `devfile_registry_allow_private` allows it, the checked address
//! pinned, no redirects), bounded in time and size, and cached: a parent at
//! a named version for the life of the process, one the registry chose for
//! five minutes. Only the devfile's own parent is fetched; a registry parent
//! of a registry parent is refused by the resolver with what to do.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::EnvironmentsConfig;
use crate::notify::ssrf;

/// What the resolver hands back for the parent: display name and text, or why not.
pub(super) type Fetched = Result<(String, String), String>;

/// Largest registry index or devfile read.
const MAX_BYTES: usize = 1 << 20;
/// Longest wait for one registry request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a parent the registry chose (no version, `latest`) is reused.
const CHOSEN_TTL: Duration = Duration::from_secs(300);
/// Most parents kept.
const MAX_CACHED: usize = 256;

/// (registry, id, asked version) → (fetched at, pinned version, (name, text)).
type Cache = HashMap<(String, String, String), (Instant, bool, (String, String))>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `parent.id`, `parent.registryUrl` and `parent.version` of `text`, when
/// it names a registry parent (bounded parse; a broken file is left to the
/// real parse, which reports it).
fn registry_parent(text: &str) -> Option<(String, Option<String>, Option<String>)> {
    let node = yamlmap::parse(text).ok()??;
    let parent = node.get("parent")?;
    let field = |k: &str| parent.get(k).and_then(|n| n.as_str()).map(str::to_string);
    Some((field("id")?, field("registryUrl"), field("version")))
}

/// Fetch the registry parent `text` names, or `None` when it names none.
pub(super) async fn prefetch(text: &str, config: &EnvironmentsConfig) -> Option<Fetched> {
    let (id, url, version) = registry_parent(text)?;
    let Some(registry) = url.or_else(|| config.devfile_registry.clone()) else {
        return Some(Err(
            "`parent.id` needs `parent.registryUrl`, or an administrator sets [environments] devfile_registry"
                .into(),
        ));
    };
    let registry = registry.trim_end_matches('/').to_string();
    let key = (
        registry.clone(),
        id.clone(),
        version.clone().unwrap_or_default(),
    );
    if let Some((at, pinned, found)) = cache().lock().ok()?.get(&key).cloned() {
        if pinned || at.elapsed() < CHOSEN_TTL {
            return Some(Ok(found));
        }
    }
    let result = fetch(
        &registry,
        &id,
        version.as_deref(),
        &config.devfile_registry_allow,
    )
    .await;
    if let Ok(found) = &result {
        if let Ok(mut c) = cache().lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            let pinned = version.as_deref().is_some_and(|v| v != "latest");
            c.insert(key, (Instant::now(), pinned, found.clone()));
        }
    }
    Some(result)
}

async fn get(registry: &str, url: &str, allow: &[ipnet::IpNet]) -> Result<String, String> {
    let dest = ssrf::check(url, allow).await.map_err(|e| {
        format!(
            "registry URL {registry}: {}",
            e.replace(
                "[notify] allow_private",
                "[environments] devfile_registry_allow_private"
            )
        )
    })?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .resolve(&dest.host, dest.addr)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(dest.url)
        .send()
        .await
        .map_err(|e| format!("cannot reach registry URL {registry}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "registry URL {registry} answered {} for {url}",
            resp.status()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| format!("{url} is not UTF-8 text"))
}

async fn fetch(registry: &str, id: &str, version: Option<&str>, allow: &[ipnet::IpNet]) -> Fetched {
    let index = get(registry, &format!("{registry}/index"), allow).await?;
    let available = devfiles::registry::index_versions(&index, id)
        .map_err(|e| format!("registry URL {registry}: {e}"))?;
    let chosen = devfiles::registry::select_version(id, &available, version)?;
    let text = get(
        registry,
        &format!("{registry}/devfiles/{id}/{chosen}"),
        allow,
    )
    .await?;
    Ok((format!("{registry}/devfiles/{id}/{chosen}"), text))
}
