//! `cove repo mirror set|show|sync|unset` (the real binary) against a real in-process server
//! and a real upstream (a bare repository served by `git http-backend` on 127.0.0.1, allowed by
//! `[mirrors] allow_private`): the generated webhook secret is printed once, the token is read
//! from an environment variable and never printed, `sync` fetches the upstream's commit, a
//! push to the mirror is refused with Cove's message, and `unset` ends the mirroring.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{cove_command, git, git_output, ok, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cove_repo_mirror_set_show_sync_unset() {
    let s = common::serve(|config| {
        config.embedded_agent = false;
        config.mirrors.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let url = s.url.clone();
    common::create_repo(&s.http, &url, ADMIN_TOKEN, "app").await;

    // The upstream: a bare repository with one commit, served over plain git http-backend.
    let root = tempfile::tempdir().unwrap();
    let bare = root.path().join("up.git");
    git(
        root.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "README.md"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/git-http-backend-cgi.py");
    let _backend = KillOnDrop(
        std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(root.path())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git http-backend did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let upstream = format!("http://127.0.0.1:{port}/up.git");

    let h = s.home.path();
    let run = |args: &[&str]| {
        cove_command(h, &url, ADMIN_TOKEN)
            .env("UP_TOKEN", "tok-never-printed-123")
            .args(args)
            .output()
            .unwrap()
    };
    let out = ok(&run(&[
        "repo",
        "mirror",
        "set",
        "admin/app",
        &upstream,
        "--forge",
        "github",
        "--token-env",
        "UP_TOKEN",
    ]));
    assert!(out.contains("webhook secret (shown once): "), "{out}");
    assert!(
        out.contains("/api/v1/repos/admin/app/mirror/webhook"),
        "{out}"
    );
    assert!(!out.contains("tok-never-printed-123"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("webhook secret (shown once): "))
        .unwrap()
        .to_string();
    let shown = ok(&run(&["repo", "mirror", "show", "admin/app"]));
    assert!(
        shown.contains(&upstream) && shown.contains("fetch token:  yes"),
        "{shown}"
    );
    assert!(shown.contains("last fetch:   never"), "{shown}");
    let json = ok(&run(&[
        "repo",
        "mirror",
        "show",
        "admin/app",
        "--output",
        "json",
    ]));
    assert!(
        !json.contains(&secret) && !json.contains("tok-never-printed-123"),
        "{json}"
    );
    let bad = run(&[
        "repo",
        "mirror",
        "set",
        "admin/app",
        &upstream,
        "--forge",
        "github",
        "--token-env",
        "NOT_SET_ANYWHERE",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NOT_SET_ANYWHERE"));

    let synced = ok(&run(&["repo", "mirror", "sync", "admin/app"]));
    assert!(synced.contains("refs/heads/main"), "{synced}");
    assert!(synced.contains(&head[..12]), "{synced}");
    assert!(ok(&run(&["repo", "mirror", "sync", "admin/app"])).contains("up to date"));
    let shown = ok(&run(&["repo", "mirror", "show", "admin/app"]));
    assert!(shown.contains("last fetch:   ok"), "{shown}");

    // A push to the mirror is refused with Cove's message.
    let clone_dir = tempfile::tempdir().unwrap();
    git(
        clone_dir.path(),
        &["clone", "-q", &common::admin_git_url(&url, "app"), "c"],
    );
    let c = clone_dir.path().join("c");
    std::fs::write(c.join("x.txt"), "x").unwrap();
    git(&c, &["add", "x.txt"]);
    git(&c, &["commit", "-q", "-m", "direct"]);
    let pushed = git_output(&c, &["push", "origin", "main"]);
    assert!(!pushed.status.success());
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        stderr.contains(&format!(
            "this repository is a mirror of {upstream}; push to the upstream"
        )),
        "{stderr}"
    );

    assert!(ok(&run(&["repo", "mirror", "unset", "admin/app"])).contains("no longer a mirror"));
    let gone = run(&["repo", "mirror", "show", "admin/app"]);
    assert!(!gone.status.success());
    git(&c, &["push", "-q", "origin", "main"]);
}

/// The upstream's server process, ended however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
