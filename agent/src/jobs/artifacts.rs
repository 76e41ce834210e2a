//! Output artifacts: file globs over the job's source tree, collected from
//! the tar the engine hands back into a new tar. Pure (no Docker): the
//! runner downloads the tree, this module filters it.
//!
//! Glob syntax (CodeBuild/CodeCatalyst forms): `/`-separated segments; `**`
//! is zero or more whole segments, `*` any run of characters within one
//! segment, `?` one character. `**/*` is every file, `dir/*` the files
//! directly in `dir`, `dir/**/*` everything below `dir`. A pattern that
//! names a directory takes everything below it. Only files and symlinks are
//! collected (directories are implied by their contents).
//!
//! Rejected with an [`ArtifactError`]: absolute patterns or base
//! directories, any `..` segment, and a collected symlink whose target is
//! absolute or climbs out of the source tree.

use std::io::Read;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// One output artifact to collect (`Outputs.Artifacts` / buildspec
/// `artifacts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactSpec {
    pub name: String,
    /// Globs relative to `base_directory` (or the source dir).
    pub files: Vec<String>,
    /// A directory relative to the source dir; paths in the artifact are
    /// relative to it and it is not itself included.
    #[serde(default)]
    pub base_directory: Option<String>,
    /// Store every file under its file name only.
    #[serde(default)]
    pub discard_paths: bool,
    /// Globs (relative to `base_directory`) left out.
    #[serde(default)]
    pub exclude_paths: Vec<String>,
}

/// A collected artifact: a tar of the matched files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputArtifact {
    pub name: String,
    /// Paths inside the tar, in tree order.
    pub files: Vec<String>,
    pub tar: ArtifactFile,
}

/// The tar of an output artifact, in a temporary file (removed when the last clone goes):
/// an artifact can be as large as the server accepts, so it is never held in memory.
#[derive(Clone, Debug)]
pub struct ArtifactFile(std::sync::Arc<tempfile::TempPath>);

impl PartialEq for ArtifactFile {
    fn eq(&self, other: &ArtifactFile) -> bool {
        self.path() == other.path()
    }
}
impl Eq for ArtifactFile {}

impl ArtifactFile {
    pub(crate) fn from_temp(path: tempfile::TempPath) -> ArtifactFile {
        ArtifactFile(std::sync::Arc::new(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The whole tar (tests and small artifacts).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path())
    }

    /// Whether any of `needles` occurs in the tar, read in 64 KiB chunks (a needle across
    /// two chunks is found: each chunk keeps the previous one's last `longest - 1` bytes).
    pub fn contains_any(&self, needles: &[String]) -> std::io::Result<bool> {
        let needles: Vec<&[u8]> = needles
            .iter()
            .map(|n| n.as_bytes())
            .filter(|n| !n.is_empty())
            .collect();
        let Some(longest) = needles.iter().map(|n| n.len()).max() else {
            return Ok(false);
        };
        let mut file = std::fs::File::open(self.path())?;
        let mut window: Vec<u8> = Vec::with_capacity(CHUNK + longest);
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                return Ok(false);
            }
            window.extend_from_slice(&chunk[..n]);
            if needles
                .iter()
                .any(|needle| window.windows(needle.len()).any(|w| w == *needle))
            {
                return Ok(true);
            }
            let keep = window.len().min(longest - 1);
            window.drain(..window.len() - keep);
        }
    }
}

const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact `{artifact}`: pattern `{pattern}` is {why}; use a path relative to the source directory without `..`")]
    BadPattern {
        artifact: String,
        pattern: String,
        why: &'static str,
    },
    #[error("artifact `{artifact}`: `{path}` is a symlink to `{target}`, which points outside the source tree")]
    EscapingSymlink {
        artifact: String,
        path: String,
        target: String,
    },
    #[error("artifact `{artifact}`: reading the source tree failed: {source}")]
    Io {
        artifact: String,
        #[source]
        source: std::io::Error,
    },
}

/// Check a pattern or directory: relative, no `..`, not empty.
pub fn check_relative(artifact: &str, pattern: &str) -> Result<(), ArtifactError> {
    let bad = |why| {
        Err(ArtifactError::BadPattern {
            artifact: artifact.to_string(),
            pattern: pattern.to_string(),
            why,
        })
    };
    if pattern.is_empty() {
        return bad("empty");
    }
    if pattern.starts_with('/') || pattern.starts_with('\\') {
        return bad("absolute");
    }
    if pattern.split(['/', '\\']).any(|s| s == "..") {
        return bad("outside the source tree (`..`)");
    }
    Ok(())
}

impl ArtifactSpec {
    /// Reject patterns that could reach outside the source tree.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        for p in self.files.iter().chain(&self.exclude_paths) {
            check_relative(&self.name, p)?;
        }
        if let Some(b) = &self.base_directory {
            check_relative(&self.name, b)?;
        }
        Ok(())
    }
}

fn segments(p: &str) -> Vec<&str> {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect()
}

/// Does glob `pattern` match the whole of `path` (both `/`-separated)?
pub fn glob_match(pattern: &str, path: &str) -> bool {
    match_segments(&segments(pattern), &segments(path))
}

fn match_segments(pat: &[&str], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| match_segments(rest, &path[i..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, path_rest)) => {
                match_segment(first.as_bytes(), p.as_bytes()) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

fn match_segment(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_segment(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_segment(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_segment(rest, &s[1..]),
    }
}

/// `path` or one of its ancestors matches one of `patterns`.
fn selected(patterns: &[String], path: &str) -> bool {
    let segs = segments(path);
    (1..=segs.len()).any(|n| {
        patterns
            .iter()
            .any(|p| match_segments(&segments(p), &segs[..n]))
    })
}

/// True when `target`, a symlink at `link` (relative to the tree root), stays
/// inside the tree.
fn link_stays_inside(link: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = segments(link).len() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Collect `spec` from `tree`, a tar of the source directory whose entries
/// are relative to it (a leading `./` or a single top directory named
/// `strip` is removed).
pub fn collect<R: Read>(
    spec: &ArtifactSpec,
    tree: R,
    strip: Option<&str>,
) -> Result<OutputArtifact, ArtifactError> {
    spec.validate()?;
    let io = |source| ArtifactError::Io {
        artifact: spec.name.clone(),
        source,
    };
    let base: Vec<&str> = spec
        .base_directory
        .as_deref()
        .map(segments)
        .unwrap_or_default();
    let mut archive = tar::Archive::new(tree);
    let spool = tempfile::NamedTempFile::new().map_err(io)?;
    let (file, path) = spool.into_parts();
    let mut out = tar::Builder::new(std::io::BufWriter::new(file));
    out.mode(tar::HeaderMode::Deterministic);
    let mut files = Vec::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let raw = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let mut segs = segments(&raw);
        if let (Some(top), Some(first)) = (strip, segs.first()) {
            if *first == top {
                segs.remove(0);
            }
        }
        let kind = entry.header().entry_type();
        if segs.is_empty() || !(kind.is_file() || kind.is_symlink()) {
            continue;
        }
        let full = segs.join("/");
        if segs.len() <= base.len() || segs[..base.len()] != base[..] {
            continue;
        }
        let rel = segs[base.len()..].join("/");
        if !selected(&spec.files, &rel) || selected(&spec.exclude_paths, &rel) {
            continue;
        }
        let name = if spec.discard_paths {
            segs.last().map(|s| s.to_string()).unwrap_or_default()
        } else {
            rel
        };
        let mut header = entry.header().clone();
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(io)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if !link_stays_inside(&full, &target) {
                return Err(ArtifactError::EscapingSymlink {
                    artifact: spec.name.clone(),
                    path: full,
                    target: target.to_string_lossy().into_owned(),
                });
            }
            out.append_link(&mut header, &name, &target).map_err(io)?;
        } else {
            // Streamed entry by entry: the header's size is the entry's own.
            header.set_size(entry.size());
            out.append_data(&mut header, &name, &mut entry)
                .map_err(io)?;
        }
        files.push(name);
    }
    Ok(OutputArtifact {
        name: spec.name.clone(),
        files,
        tar: {
            let mut w = out.into_inner().map_err(io)?;
            std::io::Write::flush(&mut w).map_err(io)?;
            ArtifactFile(std::sync::Arc::new(path))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, path, want) in [
            ("**/*", "a/b/c.txt", true),
            ("**/*", "c.txt", true),
            ("dir/*", "dir/x", true),
            ("dir/*", "dir/sub/x", false),
            ("dir/**/*", "dir/sub/x", true),
            ("*.jar", "app.jar", true),
            ("*.jar", "lib/app.jar", false),
            ("**/*.jar", "lib/app.jar", true),
            ("target/app-?.jar", "target/app-1.jar", true),
            ("./dist/index.html", "dist/index.html", true),
        ] {
            assert_eq!(glob_match(p, path), want, "{p} vs {path}");
        }
        assert!(selected(&["dist".into()], "dist/a/b"));
    }

    #[test]
    fn symlink_containment() {
        assert!(link_stays_inside("a/l", Path::new("../b")));
        assert!(!link_stays_inside("a/l", Path::new("../../b")));
        assert!(!link_stays_inside("l", Path::new("/etc/passwd")));
        assert!(link_stays_inside("l", Path::new("./x/../y")));
    }

    fn tree(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).unwrap();
                }
                None => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn collects_relative_to_base_and_refuses_escapes() {
        let t = tree(&[
            ("src/dist/a.txt", None, b"a"),
            ("src/dist/deep/b.txt", None, b"b"),
            ("src/dist/in", Some("deep/b.txt"), b""),
            ("src/top.txt", None, b"t"),
        ]);
        let spec = ArtifactSpec {
            name: "x".into(),
            files: vec!["**/*.txt".into(), "in".into()],
            base_directory: Some("dist".into()),
            exclude_paths: vec!["deep/**/*".into()],
            ..Default::default()
        };
        let out = collect(&spec, t.as_slice(), Some("src")).unwrap();
        assert_eq!(out.files, vec!["a.txt", "in"]);
        let mut names = Vec::new();
        let bytes = out.tar.read().unwrap();
        for e in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(names, ["a.txt", "in"]);

        let t = tree(&[("src/dist/up", Some("../../etc"), b"")]);
        let spec = ArtifactSpec {
            name: "x".into(),
            files: vec!["dist/*".into()],
            ..Default::default()
        };
        let err = collect(&spec, t.as_slice(), Some("src")).unwrap_err();
        assert!(
            matches!(err, ArtifactError::EscapingSymlink { .. }),
            "{err}"
        );
        for bad in ["../x", "/abs", "a/../../b", ""] {
            let spec = ArtifactSpec {
                name: "x".into(),
                files: vec![bad.into()],
                ..Default::default()
            };
            assert!(spec.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_large_entry_is_streamed_and_secrets_are_found_across_chunks() {
        // 300 KiB file whose secret straddles the 64 KiB chunk boundaries of the scan.
        let mut data = vec![b'x'; 300 * 1024];
        let at = 2 * CHUNK - 3;
        data[at..at + 8].copy_from_slice(b"s3cr3t!!");
        let t = tree(&[("src/big.bin", None, &data)]);
        let spec = ArtifactSpec {
            name: "big".into(),
            files: vec!["**/*".into()],
            ..Default::default()
        };
        let out = collect(&spec, t.as_slice(), Some("src")).unwrap();
        let bytes = out.tar.read().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mut back = Vec::new();
        entry.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(out.tar.contains_any(&["s3cr3t!!".into()]).unwrap());
        assert!(!out.tar.contains_any(&["absent-value".into()]).unwrap());
        assert!(!out.tar.contains_any(&[]).unwrap());
        let path = out.tar.path().to_path_buf();
        assert!(path.exists());
        drop(out);
        assert!(!path.exists(), "the temporary tar goes with the artifact");
    }
}
