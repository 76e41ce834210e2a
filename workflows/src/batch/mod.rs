//! CodeBuild batch buildspecs (`batch:` with `build-graph`, `build-list` or
//! `build-matrix`, design notes §2.1; CodeBuild's `batch-build-buildspec`
//! reference).
//!
//! [`read`] turns the `batch` section into [`Spec`]: the builds with their
//! identifiers, buildspec paths, environment overrides and dependencies
//! (errors and warnings at their positions in the batch file). A
//! batch-only buildspec (no `phases`) is then expanded by [`expand`] into
//! one [`Action`](crate::Action) per build: each build runs the phases of
//! its own buildspec, read through a [`BuildspecReader`] (the server reads
//! the run's commit, the CLI the working tree), with the build's `env`
//! overriding that buildspec's variables and image. `depend-on` becomes
//! the action's dependencies (a build runs when those succeeded);
//! `ignore-failure` a build whose failure does not fail the run; a matrix
//! the product of its dynamic values.

mod expand;
mod read;

pub(crate) use expand::expand;
pub(crate) use read::read;
#[cfg(test)]
pub(crate) use read::{BATCH_KEYS, ENTRY_KEYS, ENV_KEYS};

use yamlmap::Pos;

/// At most this many builds in one batch (CodeBuild's own default limit).
pub const MAX_BATCH_BUILDS: usize = 100;
/// At most this many different buildspec files referenced by one batch.
pub const MAX_BATCH_FILES: usize = 16;
/// The buildspec text all builds of one batch run, counted once per build
/// (each build keeps its own copy of its phases): at most this many bytes.
pub const MAX_BATCH_TEXT: usize = 8 * 1024 * 1024;

/// Reads the buildspec files a batch names, at the batch file's commit.
/// `path` is relative to the repository root, normalized (no leading `/`,
/// no `.` or `..` segments).
pub trait BuildspecReader {
    fn read(&mut self, path: &str) -> Result<String, ReadError>;
}

/// Why a referenced buildspec could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("there is no file `{0}` in the repository at this commit")]
    NotFound(String),
    #[error("`{path}` is {size} bytes; Cove reads buildspecs of at most {max} bytes")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("`{0}` could not be read: {1}")]
    Unreadable(String, String),
    #[error("other buildspec files cannot be read here")]
    Unavailable,
}

/// A reader that reads nothing: every batch build that names a buildspec
/// is an error (for callers that have no repository at hand).
pub struct NoBuildspecs;

impl BuildspecReader for NoBuildspecs {
    fn read(&mut self, _path: &str) -> Result<String, ReadError> {
        Err(ReadError::Unavailable)
    }
}

/// Which batch type the section uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Graph,
    List,
    Matrix,
}

/// One build of a batch, as written (a matrix already multiplied out).
#[derive(Clone, Debug)]
pub(crate) struct Build {
    pub id: String,
    /// Where the build is written (its entry, or the matrix).
    pub pos: Pos,
    /// The buildspec path as written, with the position of the value.
    pub buildspec: Option<(String, Pos)>,
    pub image: Option<String>,
    pub variables: Vec<(String, String)>,
    pub depend_on: Vec<String>,
    pub ignore_failure: bool,
}

/// The `batch` section.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// Where `batch:` is written.
    pub pos: Pos,
    pub kind: Option<Kind>,
    pub fast_fail: bool,
    pub timeout_minutes: Option<u32>,
    pub builds: Vec<Build>,
    /// Set when the builds could not all be listed (a matrix over the
    /// bound): expansion stops with the error already reported.
    pub too_many: bool,
}

/// `path` relative to the repository root, or why it cannot name a file
/// of the repository.
pub(crate) fn normalize_path(path: &str) -> Result<String, &'static str> {
    let p = path.trim();
    if p.starts_with("arn:") || p.starts_with("s3://") {
        return Err("a buildspec stored in S3");
    }
    if p.starts_with('/') || p.contains('\\') {
        return Err("an absolute path");
    }
    let mut parts = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err("a path that leaves the repository (`..`)"),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err("an empty path");
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(normalize_path("./ci//a.yml").unwrap(), "ci/a.yml");
        assert!(normalize_path("/etc/passwd").is_err());
        assert!(normalize_path("ci/../../x.yml").is_err());
        assert!(normalize_path("arn:aws:s3:::bucket/b.yml").is_err());
        assert!(normalize_path(" ").is_err());
    }
}
