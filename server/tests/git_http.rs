//! Git hosting over smart HTTP, driven by the real `git` CLI against an in-process server.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{clone, commit_file, git, git_ok, TestServer};
use cove_api::{Branch, PushEvent, Scope, ZERO_SHA};
use rand::RngCore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_empty_commit_push_clone_again_and_compare_trees() -> Result<()> {
    let server = TestServer::start().await?;
    let mut bus = server.state.subscribe();
    server.create_repo(&server.admin_token, "demo").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/demo", Some(&server.admin_token));

    let a = clone(work.path(), &url, "a", &[]).await?;
    let first = commit_file(&a, "README.md", b"hello\n", "first").await?;
    commit_file(&a, "src/lib.rs", b"pub fn x() {}\n", "second").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;

    let b = clone(work.path(), &url, "b", &[]).await?;
    let tree_a = git_ok(&a, &["rev-parse", "HEAD^{tree}"]).await?;
    let tree_b = git_ok(&b, &["rev-parse", "HEAD^{tree}"]).await?;
    assert_eq!(tree_a, tree_b);
    let head = git_ok(&b, &["rev-parse", "HEAD"]).await?;

    // One push event, from nothing to the pushed head, on the bus and in the store.
    let event = tokio::time::timeout(Duration::from_secs(5), bus.recv()).await??;
    assert_eq!(event.ref_name, "refs/heads/main");
    assert_eq!(event.old_sha, ZERO_SHA);
    assert_eq!(event.new_sha, head);
    assert_eq!(event.pusher.as_deref(), Some("admin"));

    // A second push: old = previous head.
    let third = commit_file(&a, "README.md", b"hello again\n", "third").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/demo/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[1].old_sha.as_str(), events[1].new_sha.as_str()),
        (head.as_str(), third.as_str())
    );
    assert_ne!(first, head);

    // The REST view through git2 agrees with git.
    let branches: Vec<Branch> = server
        .http
        .get(server.api("/repos/admin/demo/branches"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        branches,
        vec![Branch {
            name: "main".into(),
            commit: third.clone()
        }]
    );
    // src/lib.rs did not exist at the first commit…
    let resp = server
        .http
        .get(server.api(&format!("/repos/admin/demo/files/src/lib.rs?ref={first}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    // …but does at the head.
    let file: cove_api::FileContent = server
        .http
        .get(server.api("/repos/admin/demo/files/src/lib.rs?ref=main"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(file.content, "pub fn x() {}\n");
    let commits: Vec<cove_api::Commit> = server
        .http
        .get(server.api("/repos/admin/demo/commits?branch=main"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(commits.len(), 3);
    assert_eq!(commits[0].id, third);

    // The code browser's directory listing: directories first, then files with their sizes.
    let get_tree = |query: &'static str| {
        server
            .http
            .get(server.api(&format!("/repos/admin/demo/tree{query}")))
            .bearer_auth(&server.admin_token)
            .send()
    };
    let root: cove_api::TreeListing = get_tree("?ref=main").await?.json().await?;
    assert_eq!(root.commit, third);
    let names: Vec<_> = root
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        names,
        vec![
            ("src", cove_api::TreeEntryKind::Dir, None),
            ("README.md", cove_api::TreeEntryKind::File, Some(12)),
        ]
    );
    let src: cove_api::TreeListing = get_tree("?ref=main&path=src").await?.json().await?;
    assert_eq!(src.entries.len(), 1);
    assert_eq!(src.entries[0].path, "src/lib.rs");
    // The default branch when no ref is given; a file or a missing path is not a directory.
    let default: cove_api::TreeListing = get_tree("").await?.json().await?;
    assert_eq!(default.entries.len(), 2);
    assert_eq!(get_tree("?path=src/lib.rs").await?.status(), 404);
    assert_eq!(get_tree("?path=nope").await?.status(), 404);
    assert_eq!(get_tree("?path=../src").await?.status(), 404);
    assert_eq!(get_tree("?ref=nope").await?.status(), 404);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_without_token_or_with_read_only_token_is_refused_and_writes_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "locked").await?;
    let work = tempfile::tempdir()?;
    let admin_url = server.git_url("admin/locked", Some(&server.admin_token));
    let a = clone(work.path(), &admin_url, "a", &[]).await?;
    commit_file(&a, "f", b"1", "one").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let refs_before = server.disk_refs("admin/locked")?;
    let objects_before = count_objects(&server, "admin/locked")?;
    commit_file(&a, "f", b"2", "two").await?;

    // No credentials: 401 with a Basic challenge, so git would prompt.
    let resp = server
        .http
        .get(format!(
            "{}/git/admin/locked.git/info/refs?service=git-receive-pack",
            server.url
        ))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"cove\"");
    let out = git(&a, &["push", &server.git_url("admin/locked", None), "main"]).await?;
    assert!(!out.status.success());

    // Read-only token: 403 on advertisement and on the pack upload itself.
    let read_only = server
        .create_token(&server.admin_token, &[Scope::Read])
        .await?
        .token;
    for (method, path) in [
        ("GET", "info/refs?service=git-receive-pack"),
        ("POST", "git-receive-pack"),
    ] {
        let resp = server
            .http
            .request(
                method.parse()?,
                format!("{}/git/admin/locked.git/{path}", server.url),
            )
            .basic_auth("x", Some(&read_only))
            .body("0000")
            .send()
            .await?;
        assert_eq!(resp.status(), 403, "{method} {path}");
        let text = resp.text().await?;
        assert!(!text.contains(&read_only), "token leaked into error body");
    }
    let out = git(
        &a,
        &[
            "push",
            &server.git_url("admin/locked", Some(&read_only)),
            "main",
        ],
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );

    // Wrong token: 401.
    let out = git(
        &a,
        &[
            "push",
            &server.git_url("admin/locked", Some("cove_wrong")),
            "main",
        ],
    )
    .await?;
    assert!(!out.status.success());

    // Another user without membership: not even told the repository exists.
    let mallory = server.create_user("mallory").await?;
    let out = git(
        &a,
        &[
            "push",
            &server.git_url("admin/locked", Some(&mallory)),
            "main",
        ],
    )
    .await?;
    assert!(!out.status.success());
    let out = git(
        work.path(),
        &[
            "clone",
            &server.git_url("admin/locked", Some(&mallory)),
            "m",
        ],
    )
    .await?;
    assert!(!out.status.success());

    assert_eq!(server.disk_refs("admin/locked")?, refs_before);
    assert_eq!(count_objects(&server, "admin/locked")?, objects_before);
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/locked/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(events.len(), 1);
    server.stop().await;
    Ok(())
}

fn count_objects(server: &TestServer, repo: &str) -> Result<String> {
    let path = server.data_dir.join("repos").join(format!("{repo}.git"));
    let out = std::process::Command::new("git")
        .args(["count-objects", "-v"])
        .env("GIT_DIR", &path)
        .output()?;
    ensure!(out.status.success());
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabyte_incompressible_push_round_trips() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "big").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/big", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let mut data = vec![0u8; 5 * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut data);
    commit_file(&a, "blob.bin", &data, "big").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let b = clone(work.path(), &url, "b", &[]).await?;
    assert_eq!(std::fs::read(b.join("blob.bin"))?, data);
    git_ok(&b, &["fsck", "--strict"]).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_over_protocol_v0_and_v2_and_anonymous_public_reads() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "proto").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/proto", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let head = commit_file(&a, "x.txt", b"x\n", "x").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    for version in ["0", "1", "2"] {
        let setting = format!("protocol.version={version}");
        let dir = clone(work.path(), &url, &format!("v{version}"), &["-c", &setting]).await?;
        assert_eq!(git_ok(&dir, &["rev-parse", "HEAD"]).await?, head);
        // An incremental fetch too.
        git_ok(&dir, &["-c", &setting, "fetch", "-q", "origin"]).await?;
    }
    // A v2 advertisement has no service prefix; v0 has one.
    let v2 = server
        .http
        .get(format!(
            "{}/git/admin/proto.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .basic_auth("x", Some(&server.admin_token))
        .header("Git-Protocol", "version=2")
        .send()
        .await?
        .text()
        .await?;
    assert!(v2.starts_with("000eversion 2\n"), "{v2:?}");
    let v0 = server
        .http
        .get(format!(
            "{}/git/admin/proto.git/info/refs?service=git-upload-pack",
            server.url
        ))
        .basic_auth("x", Some(&server.admin_token))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        v0.starts_with("001e# service=git-upload-pack\n0000"),
        "{v0:?}"
    );

    // Private: anonymous clone refused. Public: anonymous clone allowed, push still refused.
    let anon = server.git_url("admin/proto", None);
    assert!(!git(work.path(), &["clone", "-q", &anon, "anon1"])
        .await?
        .status
        .success());
    let resp = server
        .http
        .post(server.api("/repos"))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({"name": "open", "visibility": "public"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    git_ok(
        &a,
        &[
            "push",
            "-q",
            &server.git_url("admin/open", Some(&server.admin_token)),
            "main",
        ],
    )
    .await?;
    let anon = clone(
        work.path(),
        &server.git_url("admin/open", None),
        "anon2",
        &[],
    )
    .await?;
    assert_eq!(git_ok(&anon, &["rev-parse", "HEAD"]).await?, head);
    commit_file(&anon, "y", b"y", "y").await?;
    assert!(!git(&anon, &["push", "origin", "main"])
        .await?
        .status
        .success());
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_encoded_upload_pack_request_is_decoded() -> Result<()> {
    use std::io::Write;
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "gz").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/gz", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let head = commit_file(&a, "x.txt", b"x\n", "x").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;

    let want = format!("want {head} ofs-delta\n");
    let body = format!("{:04x}{want}00000009done\n", want.len() + 4);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes())?;
    let resp = server
        .http
        .post(format!("{}/git/admin/gz.git/git-upload-pack", server.url))
        .basic_auth("x", Some(&server.admin_token))
        .header("content-type", "application/x-git-upload-pack-request")
        .header("content-encoding", "gzip")
        .body(gz.finish()?)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-git-upload-pack-result"
    );
    let bytes = resp.bytes().await?;
    assert!(
        bytes.windows(4).any(|w| w == b"PACK"),
        "no pack in response"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_to_two_branches_both_land() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "race").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/race", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let base = commit_file(&a, "base", b"base", "base").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let b = clone(work.path(), &url, "b", &[]).await?;

    git_ok(&a, &["checkout", "-q", "-b", "one"]).await?;
    let mut data = vec![0u8; 2 * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut data);
    let one = commit_file(&a, "one.bin", &data, "one").await?;
    git_ok(&b, &["checkout", "-q", "-b", "two"]).await?;
    rand::thread_rng().fill_bytes(&mut data);
    let two = commit_file(&b, "two.bin", &data, "two").await?;

    let (ra, rb) = tokio::join!(
        git_ok(&a, &["push", "-q", "origin", "one"]),
        git_ok(&b, &["push", "-q", "origin", "two"]),
    );
    ra?;
    rb?;
    let refs = server.disk_refs("admin/race")?;
    assert!(refs.contains(&format!("refs/heads/one {one}")), "{refs}");
    assert!(refs.contains(&format!("refs/heads/two {two}")), "{refs}");
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/race/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let mut got: Vec<(String, String, String)> = events
        .into_iter()
        .map(|e| (e.ref_name, e.old_sha, e.new_sha))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("refs/heads/main".into(), ZERO_SHA.into(), base),
            ("refs/heads/one".into(), ZERO_SHA.into(), one),
            ("refs/heads/two".into(), ZERO_SHA.into(), two),
        ]
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_changes_without_stored_events_are_recovered_at_start() -> Result<()> {
    let server = TestServer::start().await?;
    server.create_repo(&server.admin_token, "rec").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/rec", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    let head = commit_file(&a, "f", b"1", "one").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    // Simulate a push that landed while the server died before storing its events.
    let bare = server.data_dir.join("repos/admin/rec.git");
    let bare_str = bare.to_string_lossy().into_owned();
    git_ok(
        &a,
        &[
            "--git-dir",
            &bare_str,
            "update-ref",
            "refs/heads/lost",
            &head,
        ],
    )
    .await?;
    let server = server.restart().await?;
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/rec/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].ref_name, "refs/heads/lost");
    assert_eq!(
        (events[1].old_sha.as_str(), events[1].new_sha.as_str()),
        (ZERO_SHA, head.as_str())
    );
    assert_eq!(events[1].pusher, None);
    // Nothing more on the next start.
    let server = server.restart().await?;
    let events: Vec<PushEvent> = server
        .http
        .get(server.api("/repos/admin/rec/events"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(events.len(), 2);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_the_size_limit_is_refused_with_413_and_writes_nothing() -> Result<()> {
    let server = TestServer::start_configured(|c| c.max_push_bytes = 1024 * 1024).await?;
    server.create_repo(&server.admin_token, "small").await?;
    let work = tempfile::tempdir()?;
    let url = server.git_url("admin/small", Some(&server.admin_token));
    let a = clone(work.path(), &url, "a", &[]).await?;
    commit_file(&a, "ok.txt", b"fits\n", "fits").await?;
    git_ok(&a, &["push", "-q", "origin", "main"]).await?;
    let refs_before = server.disk_refs("admin/small")?;
    let mut data = vec![0u8; 3 * 1024 * 1024];
    rand::thread_rng().fill_bytes(&mut data);
    commit_file(&a, "big.bin", &data, "too big").await?;
    let out = git(&a, &["push", "origin", "main"]).await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("413"),
        "{out:?}"
    );
    assert_eq!(server.disk_refs("admin/small")?, refs_before);
    server.stop().await;
    Ok(())
}
