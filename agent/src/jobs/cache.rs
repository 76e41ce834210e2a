//! File caches of a job (issue 17: CodeCatalyst `Caching.FileCaching`, buildspec
//! `cache.paths`). The server picks the cache tar to restore (by key, then restore keys); it
//! is unpacked at `/` of the job container before the steps, so each path comes back where it
//! was. After a successful job each cache's paths are read back out of the container into
//! one tar (entries relative to `/`), at most [`MAX_CACHE_BYTES`], and handed to the server as
//! an output artifact named like the cache, which stores it under the cache's key.

use std::io::Read;

use super::artifacts::{ArtifactFile, OutputArtifact};
use super::engine::{Downloaded, JobEngine};
use super::{Tar, SRC_DIR};

/// Largest cache saved; a larger one is not saved (the job still succeeds).
pub const MAX_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// One cache of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    /// Also the name of the output artifact that carries the saved tar.
    pub name: String,
    /// Directories or files; relative ones are under the source directory.
    pub paths: Vec<String>,
    /// The tar to unpack at `/` before the steps (a hit), if any.
    pub restore: Option<Tar>,
}

/// Where a cache path is in the container: relative paths are under the source directory; a
/// trailing `/**/*` or `/**` (buildspec style) means the directory itself.
pub fn container_path(p: &str) -> Option<String> {
    let p = p.trim();
    let p = p
        .strip_suffix("/**/*")
        .or_else(|| p.strip_suffix("/**"))
        .unwrap_or(p)
        .trim_end_matches('/');
    if p.is_empty() || p.contains('*') || p.split('/').any(|s| s == "..") {
        return None;
    }
    Some(if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{SRC_DIR}/{}", p.trim_start_matches("./"))
    })
}

/// The paths of `spec` read out of the job's container as one tar relative to `/`;
/// `Ok(None)` when none of them exists. Errors are messages for the job's log (a cache never
/// fails a job).
pub(crate) async fn save(
    engine: &dyn JobEngine,
    spec: &CacheSpec,
) -> Result<Option<OutputArtifact>, String> {
    let mut parts = Vec::new();
    let mut total = 0u64;
    let too_large = || format!("the cache is larger than {MAX_CACHE_BYTES} bytes; not saved");
    for p in &spec.paths {
        let Some(path) = container_path(p) else {
            return Err(format!("cache path `{p}` is not a plain path"));
        };
        let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let mut writer = tokio::fs::File::from_std(file.reopen().map_err(|e| e.to_string())?);
        let got = engine
            .download(&path, &mut writer, MAX_CACHE_BYTES - total)
            .await
            .map_err(|e| format!("reading `{path}`: {e}"))?;
        match got {
            Downloaded::Done(n) => {
                total += n;
                parts.push((path, file));
            }
            Downloaded::NotFound => {}
            Downloaded::TooLarge => return Err(too_large()),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let name = spec.name.clone();
    tokio::task::spawn_blocking(move || combine(name, parts))
        .await
        .map_err(|e| e.to_string())?
}

/// One tar of the downloaded parts, each entry re-rooted at its path's parent directory.
fn combine(
    name: String,
    parts: Vec<(String, tempfile::NamedTempFile)>,
) -> Result<Option<OutputArtifact>, String> {
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    {
        let mut builder = tar::Builder::new(out.as_file());
        builder.follow_symlinks(false);
        for (path, part) in &parts {
            let parent = std::path::Path::new(path.trim_start_matches('/'))
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let mut archive = tar::Archive::new(part.reopen().map_err(|e| e.to_string())?);
            for entry in archive.entries().map_err(|e| e.to_string())? {
                let mut entry = entry.map_err(|e| e.to_string())?;
                let rel = entry.path().map_err(|e| e.to_string())?.into_owned();
                if rel.components().any(|c| {
                    matches!(
                        c,
                        std::path::Component::ParentDir | std::path::Component::RootDir
                    )
                }) {
                    continue;
                }
                let dest = parent.join(&rel);
                let mut header = entry.header().clone();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| e.to_string())?;
                if header.entry_type().is_file() {
                    files.push(dest.display().to_string());
                }
                if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
                    let target = entry
                        .link_name()
                        .map_err(|e| e.to_string())?
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    builder
                        .append_link(&mut header, &dest, &target)
                        .map_err(|e| e.to_string())?;
                } else {
                    builder
                        .append_data(&mut header, &dest, data.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        builder.finish().map_err(|e| e.to_string())?;
    }
    Ok(Some(OutputArtifact {
        name,
        files,
        tar: ArtifactFile::from_temp(out.into_temp_path()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(
            container_path("node_modules").as_deref(),
            Some("/cove/src/node_modules")
        );
        assert_eq!(container_path("./deps/").as_deref(), Some("/cove/src/deps"));
        assert_eq!(
            container_path("/root/.m2/**/*").as_deref(),
            Some("/root/.m2")
        );
        assert_eq!(
            container_path("/root/.cache/**").as_deref(),
            Some("/root/.cache")
        );
        assert_eq!(container_path("*.jar"), None);
        assert_eq!(container_path("../x"), None);
    }
}
