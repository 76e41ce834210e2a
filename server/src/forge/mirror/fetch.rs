//! One fetch from a mirror's upstream: `git fetch --prune` of every branch and tag into the
//! bare repository, with a timeout. The address checked by the SSRF guard is pinned
//! (`http.curloptResolve`, so no second DNS answer is used), redirects are not followed,
//! only http(s) is allowed, git never prompts, and the token travels as an
//! `http.extraHeader` set through `GIT_CONFIG_*` environment variables — never in the URL,
//! the command line, a log or an error (git's output is scrubbed of it anyway).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncReadExt;

use crate::notify::ssrf::Destination;

/// Most bytes of git's error output kept (for the error message).
const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// What to fetch, from where, with which credentials.
pub struct Fetch<'a> {
    pub repo: &'a Path,
    pub destination: &'a Destination,
    /// HTTP Basic user name and token.
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

/// Why a fetch failed; never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching from the upstream took longer than {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("fetching from the upstream failed: {0}")]
    Failed(String),
    #[error("git could not be started: {0}")]
    Spawn(std::io::Error),
}

/// `host:port:address` for curl's resolve list (IPv6 addresses in brackets).
pub(crate) fn resolve_entry(d: &Destination) -> String {
    let ip = match d.addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("{}:{}:{ip}", d.host, d.addr.port())
}

/// Replaces every occurrence of the secret parts in `text`.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "<redacted>");
    }
    out
}

pub async fn fetch(f: Fetch<'_>) -> Result<(), FetchError> {
    // `git::git()`: no variable that could aim it at another repository; then nothing
    // that would trace the credential header or ask for one.
    let mut cmd = crate::git::git();
    for var in [
        "GIT_TRACE",
        "GIT_TRACE_CURL",
        "GIT_TRACE_PACKET",
        "GIT_CURL_VERBOSE",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_CONFIG_PARAMETERS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "http:https")
        // no user or system configuration (credential helpers, insteadOf rewrites)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    let header = f.credentials.as_ref().map(|(user, token)| {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}").as_bytes());
        format!("Authorization: Basic {basic}")
    });
    let mut config = vec![
        ("http.followRedirects", "false".to_string()),
        ("http.curloptResolve", resolve_entry(f.destination)),
        ("credential.helper", String::new()),
        ("core.askPass", String::new()),
    ];
    if let Some(header) = &header {
        config.push(("http.extraHeader", header.clone()));
    }
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), key);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    cmd.arg("--git-dir")
        .arg(f.repo)
        .args([
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--update-head-ok",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
        ])
        .arg(f.destination.url.as_str())
        .args(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(FetchError::Spawn)?;
    let stderr = child.stderr.take();
    let run = async {
        let mut err = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(MAX_STDERR_BYTES).read_to_end(&mut err).await;
        }
        let status = child.wait().await;
        (status, err)
    };
    let (status, err) = match tokio::time::timeout(f.timeout, run).await {
        Ok(done) => done,
        Err(_) => return Err(FetchError::Timeout(f.timeout)),
    };
    let status = status.map_err(FetchError::Spawn)?;
    if status.success() {
        return Ok(());
    }
    let token = f
        .credentials
        .as_ref()
        .map(|(_, t)| t.as_str())
        .unwrap_or("");
    let text = String::from_utf8_lossy(&err);
    let text = scrub(text.trim(), &[token, header.as_deref().unwrap_or("")]);
    let text: String = text.chars().take(2000).collect();
    Err(FetchError::Failed(if text.is_empty() {
        format!("git exited with {status}")
    } else {
        text
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn bare_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        dir
    }

    async fn destination(port: u16) -> Destination {
        let allow = vec!["127.0.0.1/32".parse().unwrap()];
        crate::notify::ssrf::check(&format!("http://127.0.0.1:{port}/up.git"), &allow)
            .await
            .unwrap()
    }

    /// The token goes to the upstream as HTTP Basic credentials, and the error of a refused
    /// fetch does not contain it.
    #[tokio::test]
    async fn the_token_is_sent_as_a_header_and_never_in_the_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let _ = conn
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            String::from_utf8_lossy(&got).into_owned()
        });
        let repo = bare_repo();
        let dest = destination(port).await;
        let err = fetch(Fetch {
            repo: repo.path(),
            destination: &dest,
            credentials: Some(("x-access-token".into(), "tok-SECRET-42".into())),
            timeout: Duration::from_secs(60),
        })
        .await
        .unwrap_err();
        let request = seen.await.unwrap();
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:tok-SECRET-42");
        assert!(
            request
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Basic {basic}"))),
            "{request}"
        );
        assert!(
            request.starts_with("GET /up.git/info/refs?service=git-upload-pack "),
            "{request}"
        );
        let text = err.to_string();
        assert!(
            !text.contains("tok-SECRET-42") && !text.contains(&basic),
            "{text}"
        );
    }

    /// An upstream that never answers costs at most the timeout.
    #[tokio::test]
    async fn a_silent_upstream_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        let repo = bare_repo();
        let dest = destination(port).await;
        let err = fetch(Fetch {
            repo: repo.path(),
            destination: &dest,
            credentials: None,
            timeout: Duration::from_secs(1),
        })
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
        hold.abort();
    }

    #[test]
    fn secrets_are_scrubbed_from_git_output() {
        assert_eq!(
            scrub("fatal: bad token s3cr3t here", &["s3cr3t", ""]),
            "fatal: bad token <redacted> here"
        );
    }
}
