//! Parents from a devfile registry (`parent.id`, `parent.registryUrl`,
//! `parent.version`) for `cove devfile validate|plan`: the IO side of
//! [`devfiles::Resolver::read_registry`].
//!
//! Registries:
//! - an HTTP devfile registry (`http(s)://…`): `GET <url>/index` lists the
//!   stacks and their versions; `GET <url>/devfiles/<id>/<version>` is the
//!   devfile;
//! - a local directory (a path or `file://…`) laid out as
//!   `<dir>/<id>/<version>/devfile.yaml` (or `<dir>/<id>/devfile.yaml` for a
//!   stack with one version).
//!
//! Version selection: `parent.version` when given (`latest` = the highest);
//! otherwise the registry's default version (`"default": true` in the index),
//! else the highest. A registry without a `registryUrl` in the file is the
//! `--registry` option or `COVE_DEVFILE_REGISTRY`.
//!
//! Cache: every parent read is kept for the process, and a parent read at
//! a named version is also kept on disk (`$XDG_CACHE_HOME/cove/devfile-parents`,
//! else `~/.cache/…`), so a parent pinned by version resolves offline once
//! it has been read. A version chosen by the registry (no `version`, or
//! `latest`) is asked for every time: the answer can change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devfiles::Resolver;

use crate::devfile_fs::FsResolver;

/// Largest devfile or index read from a registry.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// (registry, id, asked version) → (display name, text).
type Memo = HashMap<(String, String, String), (String, String)>;

pub struct RegistryResolver {
    default_registry: Option<String>,
    cache_dir: Option<PathBuf>,
    memo: RefCell<Memo>,
}

impl RegistryResolver {
    pub fn new(default_registry: Option<String>) -> Self {
        let cache_dir = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("cove/devfile-parents"));
        RegistryResolver {
            default_registry: default_registry
                .or_else(|| std::env::var("COVE_DEVFILE_REGISTRY").ok())
                .filter(|r| !r.is_empty()),
            cache_dir,
            memo: RefCell::new(HashMap::new()),
        }
    }

    fn cache_file(&self, registry: &str, id: &str, version: &str) -> Option<PathBuf> {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        self.cache_dir.as_ref().map(|d| {
            d.join(format!(
                "{}__{}__{}.yaml",
                safe(registry),
                safe(id),
                safe(version)
            ))
        })
    }
}

impl Resolver for RegistryResolver {
    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String> {
        FsResolver.read(from_file, uri)
    }

    fn same_file(&self, a: &str, b: &str) -> bool {
        FsResolver.same_file(a, b)
    }

    fn read_registry(
        &self,
        registry_url: Option<&str>,
        id: &str,
        version: Option<&str>,
    ) -> Result<(String, String), String> {
        let registry = registry_url
            .map(str::to_string)
            .or_else(|| self.default_registry.clone())
            .ok_or_else(|| {
                "`parent.id` needs `parent.registryUrl`, `--registry URL|DIR` or COVE_DEVFILE_REGISTRY"
                    .to_string()
            })?;
        let registry = registry.trim_end_matches('/').to_string();
        let pinned = version.filter(|v| *v != "latest");
        let key = (
            registry.clone(),
            id.to_string(),
            version.unwrap_or("").to_string(),
        );
        if let Some(hit) = self.memo.borrow().get(&key) {
            return Ok(hit.clone());
        }
        // a pinned version read before: from the disk cache
        if let Some(v) = pinned {
            if let Some(text) = self
                .cache_file(&registry, id, v)
                .and_then(|f| std::fs::read_to_string(f).ok())
            {
                let found = (format!("{registry}/devfiles/{id}/{v}"), text);
                self.memo.borrow_mut().insert(key, found.clone());
                return Ok(found);
            }
        }
        let (chosen, text) = if registry.starts_with("http://") || registry.starts_with("https://")
        {
            http_registry(&registry, id, version)?
        } else {
            dir_registry(&registry, id, version)?
        };
        if let Some(f) = self.cache_file(&registry, id, &chosen) {
            if let Some(dir) = f.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(f, &text);
        }
        let found = (format!("{registry}/devfiles/{id}/{chosen}"), text);
        self.memo.borrow_mut().insert(key, found.clone());
        Ok(found)
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .build()
}

fn get(agent: &ureq::Agent, registry: &str, url: &str) -> Result<Option<String>, String> {
    match agent.get(url).call() {
        Ok(resp) => {
            let mut body = String::new();
            resp.into_reader()
                .take(MAX_BYTES + 1)
                .read_to_string(&mut body)
                .map_err(|e| format!("reading {url}: {e}"))?;
            if body.len() as u64 > MAX_BYTES {
                return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
            }
            Ok(Some(body))
        }
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(ureq::Error::Status(code, _)) => Err(format!(
            "registry URL {registry} answered {url} with HTTP {code}"
        )),
        Err(ureq::Error::Transport(t)) => Err(format!("cannot reach registry URL {registry}: {t}")),
    }
}

fn http_registry(
    registry: &str,
    id: &str,
    version: Option<&str>,
) -> Result<(String, String), String> {
    let agent = agent();
    let index = get(&agent, registry, &format!("{registry}/index"))?.ok_or_else(|| {
        format!("registry URL {registry} has no /index; is it a devfile registry?")
    })?;
    let available = devfiles::registry::index_versions(&index, id)
        .map_err(|e| format!("registry URL {registry}: {e}"))?;
    let chosen = devfiles::registry::select_version(id, &available, version)?;
    let text = get(
        &agent,
        registry,
        &format!("{registry}/devfiles/{id}/{chosen}"),
    )?
    .ok_or_else(|| {
        format!("registry URL {registry} lists {id} {chosen} but has no devfile for it")
    })?;
    Ok((chosen, text))
}

fn dir_registry(
    registry: &str,
    id: &str,
    version: Option<&str>,
) -> Result<(String, String), String> {
    let dir = Path::new(registry.strip_prefix("file://").unwrap_or(registry)).join(id);
    if !dir.is_dir() {
        return Err(format!("registry directory {registry} has no stack `{id}`"));
    }
    let mut available = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
        if e.path().join("devfile.yaml").is_file() {
            available.push((e.file_name().to_string_lossy().into_owned(), false));
        }
    }
    let single = dir.join("devfile.yaml");
    if available.is_empty() && single.is_file() {
        let text =
            std::fs::read_to_string(&single).map_err(|e| format!("{}: {e}", single.display()))?;
        return Ok((version.unwrap_or("latest").to_string(), text));
    }
    let chosen = devfiles::registry::select_version(id, &available, version)?;
    let path = dir.join(&chosen).join("devfile.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((chosen, text))
}
