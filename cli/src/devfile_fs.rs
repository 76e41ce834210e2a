//! Devfiles on the local disk: a `parent.uri` relative to its child, and
//! loading a devfile file — the IO the pure `devfiles` crate leaves to its
//! callers. Self-contained (std and `devfiles` only): the devfiles and
//! agent tests include this file with `#[path]`, so there is one way to
//! read devfiles from disk.

use std::path::Path;

use devfiles::{Diagnostic, LoadOptions, Loaded, Pos, Rejected, Resolver};

/// Resolves local and relative `parent.uri`s on the filesystem; refuses
/// URLs.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsResolver;

impl Resolver for FsResolver {
    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String> {
        if uri.starts_with("http://") || uri.starts_with("https://") {
            return Err("fetching parents over the network is not supported; copy the parent into the repository".into());
        }
        let path = match Path::new(from_file).parent() {
            Some(dir) if !Path::new(uri).is_absolute() => dir.join(uri),
            _ => Path::new(uri).to_path_buf(),
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((path.display().to_string(), text))
    }

    /// The same file under two spellings (`a/../b.yaml`, a symlink) is one.
    fn same_file(&self, a: &str, b: &str) -> bool {
        let canon = |p: &str| std::fs::canonicalize(Path::new(p)).ok();
        a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
    }
}

/// Load the devfile at `path`; its parents come through `resolver`.
pub fn load_file(
    path: &Path,
    opts: &LoadOptions,
    resolver: &dyn Resolver,
) -> Result<Loaded, Rejected> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Rejected {
        errors: vec![Diagnostic::error(
            &file,
            Pos::START,
            format!("cannot read the devfile: {e}"),
        )],
        warnings: Vec::new(),
    })?;
    devfiles::load_str(&file, &text, resolver, opts)
}
