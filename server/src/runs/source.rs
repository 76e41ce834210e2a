//! What the workflow engine reads from a hosted repository: the workflow files at a commit,
//! the files a push changed, and the source tree as a tar.

use std::path::{Path, PathBuf};

use crate::git::GitError;

/// Workflow files at one commit.
#[derive(Debug, Default)]
pub struct WorkflowFiles {
    /// `.codecatalyst/workflows/*.yaml|yml` (path, text), by path.
    pub workflows: Vec<(String, String)>,
    /// A root `buildspec.yml`/`.yaml` (path, text).
    pub buildspec: Option<(String, String)>,
    /// Workflow files (or a buildspec) over [`MAX_WORKFLOW_BYTES`]: (path, size), not read.
    pub too_large: Vec<(String, usize)>,
}

const WORKFLOW_DIR: &str = ".codecatalyst/workflows";
/// Larger workflow files are reported as errors instead of being parsed.
pub const MAX_WORKFLOW_BYTES: usize = yamlmap::MAX_INPUT_BYTES;

/// The blob's text, or its size when it is over [`MAX_WORKFLOW_BYTES`] (read from the
/// object header, without inflating it).
fn blob_text(repo: &git2::Repository, id: git2::Oid) -> Result<Result<String, usize>, GitError> {
    let (size, _) = repo.odb()?.read_header(id)?;
    if size > MAX_WORKFLOW_BYTES {
        return Ok(Err(size));
    }
    let blob = repo.find_blob(id)?;
    Ok(Ok(String::from_utf8_lossy(blob.content()).into_owned()))
}

fn commit_of<'r>(repo: &'r git2::Repository, rev: &str) -> Result<git2::Commit<'r>, GitError> {
    if rev.starts_with('-') || rev.len() > 256 || rev.contains('\0') {
        return Err(GitError::NotFound(format!("revision {rev:?}")));
    }
    repo.revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| GitError::NotFound(format!("commit {rev:?}")))
}

/// The workflow files at `rev` (a sha or a branch name) and the commit id it resolved to.
pub async fn workflow_files(
    repo_path: PathBuf,
    rev: String,
) -> Result<(String, WorkflowFiles), GitError> {
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path)?;
        let commit = commit_of(&repo, &rev)?;
        let tree = commit.tree()?;
        let mut files = WorkflowFiles::default();
        if let Ok(entry) = tree.get_path(Path::new(WORKFLOW_DIR)) {
            if let Ok(dir) = entry.to_object(&repo).and_then(|o| o.peel_to_tree()) {
                for e in dir.iter() {
                    let Some(name) = e.name() else { continue };
                    if e.kind() != Some(git2::ObjectType::Blob)
                        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
                    {
                        continue;
                    }
                    let path = format!("{WORKFLOW_DIR}/{name}");
                    match blob_text(&repo, e.id())? {
                        Ok(text) => files.workflows.push((path, text)),
                        Err(size) => files.too_large.push((path, size)),
                    }
                }
            }
        }
        for name in ["buildspec.yml", "buildspec.yaml"] {
            if let Some(e) = tree.get_name(name) {
                if e.kind() == Some(git2::ObjectType::Blob) && files.buildspec.is_none() {
                    match blob_text(&repo, e.id())? {
                        Ok(text) => files.buildspec = Some((name.to_string(), text)),
                        Err(size) => files.too_large.push((name.to_string(), size)),
                    }
                }
            }
        }
        files.workflows.sort();
        Ok((commit.id().to_string(), files))
    })
    .await?
}

/// A repository at one commit: where a batch buildspec's builds read the buildspecs they
/// name (`workflows::BuildspecReader`). The repository is opened on the first read, so a
/// workflow that names no other file costs nothing.
#[derive(Clone, Debug)]
pub struct At {
    pub repo_path: PathBuf,
    pub commit: String,
}

/// [`At`] as a reader, on a blocking thread (git2 is synchronous).
pub struct CommitReader {
    at: At,
    tree: Option<(git2::Repository, git2::Oid)>,
}

impl CommitReader {
    pub fn new(at: At) -> Self {
        CommitReader { at, tree: None }
    }

    fn blob(&mut self, path: &str) -> Result<Result<String, usize>, GitError> {
        if self.tree.is_none() {
            let repo = git2::Repository::open_bare(&self.at.repo_path)?;
            let tree = commit_of(&repo, &self.at.commit)?.tree()?.id();
            self.tree = Some((repo, tree));
        }
        let Some((repo, tree)) = &self.tree else {
            return Err(GitError::NotFound("tree".into()));
        };
        let entry = repo
            .find_tree(*tree)?
            .get_path(Path::new(path))
            .map_err(|_| GitError::NotFound(path.to_string()))?;
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Err(GitError::NotFound(path.to_string()));
        }
        blob_text(repo, entry.id())
    }
}

impl workflows::BuildspecReader for CommitReader {
    fn read(&mut self, path: &str) -> Result<String, workflows::ReadError> {
        match self.blob(path) {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(size)) => Err(workflows::ReadError::TooLarge {
                path: path.to_string(),
                size: size as u64,
                max: MAX_WORKFLOW_BYTES as u64,
            }),
            Err(GitError::NotFound(_)) => Err(workflows::ReadError::NotFound(path.to_string())),
            Err(e) => {
                tracing::warn!(path, error = %e, "reading a batch build's buildspec failed");
                Err(workflows::ReadError::Unreadable(
                    path.to_string(),
                    "the repository could not be read".into(),
                ))
            }
        }
    }
}

/// Paths that differ between `old` and `new` (every path of `new` when `old` is the zero
/// id or unknown, i.e. a new branch).
pub async fn changed_files(
    repo_path: PathBuf,
    old: String,
    new: String,
) -> Result<Vec<String>, GitError> {
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path)?;
        let new_tree = commit_of(&repo, &new)?.tree()?;
        let old_tree = if old.bytes().all(|b| b == b'0') {
            None
        } else {
            commit_of(&repo, &old).ok().and_then(|c| c.tree().ok())
        };
        let diff = repo.diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)?;
        let mut paths = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path().and_then(Path::to_str) {
                    if !paths.iter().any(|x: &String| x == p) {
                        paths.push(p.to_string());
                    }
                }
            }
        }
        Ok(paths)
    })
    .await?
}

/// Paths a pull request changes: `head` against the merge base of `base` and `head` (against
/// `base` itself when they share no history).
pub async fn pull_changed_files(
    repo_path: PathBuf,
    base: String,
    head: String,
) -> Result<Vec<String>, GitError> {
    let (path, b, h) = (repo_path.clone(), base.clone(), head.clone());
    let merge_base = tokio::task::spawn_blocking(move || -> Result<String, GitError> {
        let repo = git2::Repository::open_bare(&path)?;
        let (b, h) = (commit_of(&repo, &b)?.id(), commit_of(&repo, &h)?.id());
        Ok(repo.merge_base(b, h).unwrap_or(b).to_string())
    })
    .await??;
    changed_files(repo_path, merge_base, head).await
}

/// A tar streamed from `git archive`; ends with an error when git failed.
pub type TarStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

/// `git archive --format=tar <commit>` of a bare repository as a stream of chunks (64 KiB
/// at most each, so memory stays bounded whatever the tree's size). The commit is checked
/// first (an unknown one is `NotFound`); a failure of git midway ends the stream with an
/// error, so a reader never takes a cut tar for a whole one.
pub async fn archive_stream(repo_path: &Path, commit: &str) -> Result<TarStream, GitError> {
    use tokio::io::AsyncReadExt;
    if !commit.bytes().all(|b| b.is_ascii_hexdigit()) || commit.is_empty() {
        return Err(GitError::NotFound(format!("commit {commit:?}")));
    }
    let git = |args: &[&str]| {
        let mut c = tokio::process::Command::new("git");
        c.arg("--git-dir")
            .arg(repo_path)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(std::process::Stdio::null());
        c
    };
    let spawn_err = |source| GitError::Io {
        context: "spawning git".into(),
        source,
    };
    let exists = git(&["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map_err(spawn_err)?;
    if !exists.success() {
        return Err(GitError::NotFound(format!("commit {commit}")));
    }
    let mut child = git(&["archive", "--format=tar", commit])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(GitError::Io {
            context: "git archive without a pipe".into(),
            source: std::io::Error::other("no stdout"),
        });
    };
    let stream = futures_util::stream::unfold(Some((stdout, child)), |st| async move {
        let (mut out, mut child) = st?;
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) => match child.wait().await {
                Ok(status) if status.success() => None,
                Ok(status) => Some((
                    Err(std::io::Error::other(format!(
                        "git archive failed: {status}"
                    ))),
                    None,
                )),
                Err(e) => Some((Err(e), None)),
            },
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some((out, child))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Box::pin(stream))
}
