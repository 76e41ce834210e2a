#![allow(clippy::unwrap_used)]
//! Issue 15, mirrors of external repositories: a real upstream (a bare repository served by
//! plain `git http-backend` on 127.0.0.1, allowed by `[mirrors] allow_private`), a real
//! server, and hand-built push webhooks in GitHub's, GitLab's and Gitea's/Forgejo's own formats
//! and signatures. A verified push webhook fetches the upstream's commit into Cove's repository
//! and its PUSH workflow gets a run, with the pusher `mirror:<forge>`; a wrong signature gets
//! 401 and fetches nothing; a user's push to the mirror is refused with Cove's message; the
//! secrets never come back; only owners configure. Runs on SQLite and, when
//! `COVE_TEST_POSTGRES_URL` is set (required with `CI=true`), on PostgreSQL too.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{commit_file, git, git_ok, TestServer};
use cove_api::{Branch, Mirror, MirrorSync, PushEvent};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const WORKFLOW: &str = r#"Name: ci
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo hi
"#;

/// `git http-backend` behind the repository's small CGI front, on 127.0.0.1.
struct Upstream {
    child: tokio::process::Child,
    root: PathBuf,
    port: u16,
}

impl Upstream {
    async fn start(root: PathBuf) -> Result<Upstream> {
        std::fs::create_dir_all(&root)?;
        let port = common::free_port()?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/git-http-backend-cgi.py");
        let child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&root)
            .kill_on_drop(true)
            .spawn()
            .context("starting git-http-backend-cgi.py")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("the git http-backend front did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Upstream { child, root, port })
    }

    /// A new bare repository `name.git` with one commit of the workflow on `main`; answers the
    /// work tree that pushes to it and its URL.
    async fn repo(&self, name: &str) -> Result<(PathBuf, String)> {
        let bare = self.root.join(format!("{name}.git"));
        git_ok(
            &self.root,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                &bare.to_string_lossy(),
            ],
        )
        .await?;
        let work = self.root.join(format!("{name}-work"));
        std::fs::create_dir_all(&work)?;
        git_ok(&work, &["init", "-q", "-b", "main"]).await?;
        commit_file(
            &work,
            ".codecatalyst/workflows/ci.yaml",
            WORKFLOW.as_bytes(),
            "ci",
        )
        .await?;
        git_ok(&work, &["push", "-q", &bare.to_string_lossy(), "main"]).await?;
        Ok((work, format!("http://127.0.0.1:{}/{name}.git", self.port)))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Commits a change in `work` and pushes it to the upstream's bare repository; its id.
async fn upstream_commit(up: &Upstream, work: &Path, name: &str, text: &str) -> Result<String> {
    let sha = commit_file(work, "README.md", text.as_bytes(), text).await?;
    let bare = up.root.join(format!("{name}.git"));
    git_ok(work, &["push", "-q", &bare.to_string_lossy(), "main"]).await?;
    Ok(sha)
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

const ZERO: &str = "0000000000000000000000000000000000000000";

/// A push webhook as `forge` sends it: its real headers and payload shape, signed with
/// `secret` (or carrying it, for GitLab).
fn delivery(
    forge: &str,
    secret: &str,
    before: &str,
    after: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let commit = json!({
        "id": after, "message": "change\n", "timestamp": "2026-12-06T03:00:00Z",
        "url": format!("https://example.test/o/r/commit/{after}"),
        "author": {"name": "Dev", "email": "dev@example.test", "username": "dev"},
        "committer": {"name": "Dev", "email": "dev@example.test", "username": "dev"},
        "added": [], "removed": [], "modified": ["README.md"],
    });
    let (body, headers) = match forge {
        "github" => (
            json!({
                "ref": "refs/heads/main", "before": before, "after": after,
                "created": false, "deleted": false, "forced": false, "base_ref": null,
                "compare": format!("https://github.com/o/r/compare/{before}...{after}"),
                "commits": [commit], "head_commit": commit,
                "repository": {"id": 1, "name": "r", "full_name": "o/r", "private": false,
                               "clone_url": "https://github.com/o/r.git", "default_branch": "main"},
                "pusher": {"name": "dev", "email": "dev@example.test"},
                "sender": {"login": "dev", "id": 7, "type": "User"},
            }),
            vec![
                ("X-GitHub-Event", "push".to_string()),
                (
                    "X-GitHub-Delivery",
                    "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
                ),
                ("X-GitHub-Hook-ID", "292430182".to_string()),
                ("User-Agent", "GitHub-Hookshot/044aadd".to_string()),
            ],
        ),
        "gitlab" => (
            json!({
                "object_kind": "push", "event_name": "push",
                "before": before, "after": after, "ref": "refs/heads/main",
                "ref_protected": true, "checkout_sha": after,
                "user_id": 4, "user_name": "Dev", "user_username": "dev",
                "project_id": 15,
                "project": {"id": 15, "name": "r", "path_with_namespace": "o/r",
                            "default_branch": "main",
                            "git_http_url": "https://gitlab.example.test/o/r.git"},
                "commits": [commit], "total_commits_count": 1,
                "repository": {"name": "r", "homepage": "https://gitlab.example.test/o/r"},
            }),
            vec![
                ("X-Gitlab-Event", "Push Hook".to_string()),
                ("X-Gitlab-Token", secret.to_string()),
                (
                    "X-Gitlab-Instance",
                    "https://gitlab.example.test".to_string(),
                ),
                (
                    "X-Gitlab-Event-UUID",
                    "13792a34-cac6-4fda-95a8-c58e00a3954e".to_string(),
                ),
                ("User-Agent", "GitLab/17.5.0".to_string()),
            ],
        ),
        _ => (
            json!({
                "ref": "refs/heads/main", "before": before, "after": after,
                "compare_url": format!("https://gitea.example.test/o/r/compare/{before}...{after}"),
                "commits": [commit], "total_commits": 1, "head_commit": commit,
                "repository": {"id": 3, "name": "r", "full_name": "o/r",
                               "clone_url": "https://gitea.example.test/o/r.git"},
                "pusher": {"id": 1, "login": "dev", "username": "dev"},
                "sender": {"id": 1, "login": "dev", "username": "dev"},
            }),
            vec![
                ("X-Gitea-Event", "push".to_string()),
                ("X-Gitea-Event-Type", "push".to_string()),
                (
                    "X-Gitea-Delivery",
                    "f6266f16-1bf3-46a5-9ea4-602e06ead473".to_string(),
                ),
                ("X-Gogs-Event", "push".to_string()),
                ("X-GitHub-Event", "push".to_string()),
            ],
        ),
    };
    let body = serde_json::to_vec_pretty(&body).unwrap();
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    headers.push(("Content-Type".into(), "application/json".into()));
    match forge {
        "github" => headers.push((
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_hex(secret, &body)),
        )),
        "gitea" => {
            let sig = hmac_hex(secret, &body);
            headers.push(("X-Gitea-Signature".into(), sig.clone()));
            headers.push(("X-Gogs-Signature".into(), sig.clone()));
            headers.push(("X-Hub-Signature-256".into(), format!("sha256={sig}")));
        }
        _ => {}
    }
    (headers, body)
}

async fn post_webhook(
    server: &TestServer,
    repo: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, String)> {
    let mut req = server
        .http
        .post(server.api(&format!("/repos/admin/{repo}/mirror/webhook")))
        .body(body);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn main_of(server: &TestServer, repo: &str) -> Result<Option<String>> {
    let branches: Vec<Branch> =
        common::api_json(server, &format!("/repos/admin/{repo}/branches")).await?;
    Ok(branches
        .into_iter()
        .find(|b| b.name == "main")
        .map(|b| b.commit))
}

async fn wait_for_main(server: &TestServer, repo: &str, sha: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if main_of(server, repo).await?.as_deref() == Some(sha) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mirror: Value =
                common::api_json(server, &format!("/repos/admin/{repo}/mirror")).await?;
            bail!("{repo}: main never reached {sha}; mirror: {mirror}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_push_run(server: &TestServer, repo: &str, sha: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = common::runs_of(server, &format!("admin/{repo}")).await?;
        if runs
            .iter()
            .any(|r| r.commit == sha && r.trigger == "push" && r.branch == "main")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{repo}: no push run for {sha}: {runs:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put_mirror(
    server: &TestServer,
    token: &str,
    repo: &str,
    body: Value,
) -> Result<(u16, String)> {
    let resp = server
        .http
        .put(server.api(&format!("/repos/admin/{repo}/mirror")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn mirrors_follow_verified_webhooks(database_url: String) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.database_url = Some(database_url);
        c.embedded_agent = false;
        c.mirrors.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await?;
    let up = Upstream::start(server.tmp.path().join("upstream")).await?;
    let work_dir = server.tmp.path().join("work");
    std::fs::create_dir_all(&work_dir)?;

    for forge in ["github", "gitlab", "gitea"] {
        let name = format!("m-{forge}");
        let (work, url) = up.repo(&format!("up-{forge}")).await?;
        server.create_repo(&server.admin_token, &name).await?;
        // GitHub and Gitea: Cove generates the secret and shows it once; GitLab: the owner
        // sets it.
        let body = if forge == "gitlab" {
            json!({"url": url, "forge": forge, "webhook_secret": "gitlab-token-0123", "token": "fetch-token-abc"})
        } else {
            json!({"url": url, "forge": forge})
        };
        let (status, text) = put_mirror(&server, &server.admin_token, &name, body).await?;
        assert_eq!(status, 200, "{text}");
        let created: Mirror = serde_json::from_str(&text)?;
        let secret = match forge {
            "gitlab" => {
                assert!(
                    created.webhook_secret.is_none(),
                    "a secret the owner set is not echoed"
                );
                assert!(created.has_token);
                "gitlab-token-0123".to_string()
            }
            _ => created
                .webhook_secret
                .clone()
                .expect("generated secret shown once"),
        };
        assert!(created
            .webhook_url
            .ends_with(&format!("/api/v1/repos/admin/{name}/mirror/webhook")));
        // Never again: not in GET, not in a second PUT's answer.
        let shown = server
            .http
            .get(server.api(&format!("/repos/admin/{name}/mirror")))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .text()
            .await?;
        assert!(!shown.contains(&secret), "{shown}");
        assert!(!shown.contains("fetch-token-abc"), "{shown}");
        let (status, again) = put_mirror(
            &server,
            &server.admin_token,
            &name,
            json!({"url": url, "forge": forge}),
        )
        .await?;
        assert_eq!(status, 200, "{again}");
        assert!(!again.contains(&secret), "{again}");
        assert!(!again.contains("fetch-token-abc"), "{again}");

        // The upstream moves; the forge's push webhook arrives.
        let first = git_ok(&work, &["rev-parse", "HEAD"]).await?;
        let head =
            upstream_commit(&up, &work, &format!("up-{forge}"), &format!("{forge} 1")).await?;
        // A wrong signature: 401, nothing fetched.
        let (headers, body) = delivery(forge, "not-the-secret", &first, &head);
        let (status, text) = post_webhook(&server, &name, &headers, body).await?;
        assert_eq!(status, 401, "{forge}: {text}");
        assert!(!text.contains(&secret));
        // The verified delivery is queued (202); the commit arrives and its run starts.
        let (headers, body) = delivery(forge, &secret, &first, &head);
        let (status, text) = post_webhook(&server, &name, &headers, body).await?;
        assert_eq!(status, 202, "{forge}: {text}");
        assert!(text.contains("queued"), "{text}");
        wait_for_main(&server, &name, &head).await?;
        wait_for_push_run(&server, &name, &head).await?;
        let events: Vec<PushEvent> =
            common::api_json(&server, &format!("/repos/admin/{name}/events")).await?;
        assert!(
            events.iter().any(|e| e.new_sha == head
                && e.pusher.as_deref() == Some(&format!("mirror:{forge}") as &str)),
            "{events:?}"
        );
    }

    // The audit log has the verified delivery (with the forge's delivery id), the refused
    // one as denied, and the fetch as a push by `mirror:github`.
    let audit: cove_api::AuditPage =
        common::api_json(&server, "/audit?repo=admin/m-github&limit=100").await?;
    assert!(
        audit.entries.iter().any(|e| e.result == "ok"
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("delivery 72d3162e-cc78-11e3-81ab-4c9367dc0958"))),
        "{audit:?}"
    );
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.action == "git.push" && e.user.as_deref() == Some("mirror:github")),
        "{audit:?}"
    );
    let denied: cove_api::AuditPage = common::api_json(
        &server,
        "/audit?action=POST%20/api/v1/repos/{owner}/{name}/mirror/webhook&result=denied&limit=100",
    )
    .await?;
    assert!(
        !denied.entries.is_empty(),
        "the refused deliveries are audited"
    );

    // The wrong-signature delivery above fetched nothing: a later commit sent with a bad
    // signature leaves main where it is, and the mirror's last fetch unchanged.
    let work = server.tmp.path().join("upstream/up-github-work");
    let before_bad = main_of(&server, "m-github").await?.unwrap();
    // The queued fetch records its outcome just after its push events: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let synced = loop {
        let m: Mirror = common::api_json(&server, "/repos/admin/m-github/mirror").await?;
        if m.last_sync_at_ms.is_some() {
            assert_eq!(m.last_sync_result.as_deref(), Some("ok"));
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the fetch's outcome was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Issues (issue 16): the upstream's "Fixes #1" names the upstream's issue, not Cove's #1.
    let resp = server
        .http
        .post(server.api("/repos/admin/m-github/issues"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"title": "a Cove issue of the mirror"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let next = upstream_commit(&up, &work, "up-github", "github 2, Fixes #1").await?;
    let (mut headers, body) = delivery("github", "whatever", &before_bad, &next);
    let (status, _) = post_webhook(&server, "m-github", &headers, body.clone()).await?;
    assert_eq!(status, 401);
    headers.retain(|(k, _)| k != "X-Hub-Signature-256");
    let (status, _) = post_webhook(&server, "m-github", &headers, body).await?;
    assert_eq!(status, 401, "a missing signature");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(main_of(&server, "m-github").await?.unwrap(), before_bad);
    let still: Mirror = common::api_json(&server, "/repos/admin/m-github/mirror").await?;
    assert_eq!(
        still.last_sync_at_ms, synced.last_sync_at_ms,
        "no fetch ran"
    );

    // `sync` fetches now and answers what moved.
    let resp = server
        .http
        .post(server.api("/repos/admin/m-github/mirror/sync"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let moved: MirrorSync = resp.json().await?;
    assert_eq!(moved.updated.len(), 1, "{moved:?}");
    assert_eq!(moved.updated[0].ref_name, "refs/heads/main");
    assert_eq!(moved.updated[0].new_sha, next);
    wait_for_push_run(&server, "m-github", &next).await?;
    let issue: cove_api::Issue =
        common::api_json(&server, "/repos/admin/m-github/issues/1").await?;
    assert_eq!(issue.column, "Backlog", "a mirror's sync closes no issue");

    // A ping is answered; other events are ignored with a message (Forgejo headers too).
    let secret_gh = {
        let (status, text) = put_mirror(
            &server,
            &server.admin_token,
            "m-github",
            json!({"url": format!("http://127.0.0.1:{}/up-github.git", up.port), "forge": "github", "webhook_secret": "a-new-secret-1"}),
        )
        .await?;
        assert_eq!(status, 200, "{text}");
        "a-new-secret-1"
    };
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let sig = format!("sha256={}", hmac_hex(secret_gh, &ping));
    let hdr = |event: &str| {
        vec![
            ("X-GitHub-Event".to_string(), event.to_string()),
            ("X-Hub-Signature-256".to_string(), sig.clone()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ]
    };
    let (status, text) = post_webhook(&server, "m-github", &hdr("ping"), ping.clone()).await?;
    assert_eq!(status, 200, "{text}");
    let (status, text) = post_webhook(&server, "m-github", &hdr("issues"), ping.clone()).await?;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("ignored"), "{text}");
    // Forgejo signs with its own header names.
    let (_, body) = delivery("gitea", "unused", ZERO, &next);
    let fj_secret = {
        let (status, text) = put_mirror(&server, &server.admin_token, "m-gitea", json!({"url": format!("http://127.0.0.1:{}/up-gitea.git", up.port), "forge": "gitea", "webhook_secret": "forgejo-secret"})).await?;
        assert_eq!(status, 200, "{text}");
        "forgejo-secret"
    };
    let fj = vec![
        ("X-Forgejo-Event".to_string(), "push".to_string()),
        (
            "X-Forgejo-Signature".to_string(),
            hmac_hex(fj_secret, &body),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let (status, text) = post_webhook(&server, "m-gitea", &fj, body).await?;
    assert_eq!(status, 202, "{text}");

    // Too large: 413 before anything else, and the connection (whose body was not read to
    // its end) is closed, so a pooling client does not send its next request on it. (Its
    // own client: the upload may still be failing on that connection when the answer came.)
    let mut req = reqwest::Client::new()
        .post(server.api("/repos/admin/m-github/mirror/webhook"))
        .body(vec![b' '; 2 << 20]);
    for (k, v) in hdr("push") {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await?;
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(
        resp.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // Not a mirror, or no such repository: the same 401.
    server.create_repo(&server.admin_token, "plain").await?;
    let (status, _) = post_webhook(&server, "plain", &hdr("push"), ping.clone()).await?;
    assert_eq!(status, 401);
    let (status, _) = post_webhook(&server, "nope", &hdr("push"), ping).await?;
    assert_eq!(status, 401);

    // A user's push to the mirror is refused with Cove's message and changes nothing.
    let clone_url = server.git_url("admin/m-github", Some(&server.admin_token));
    let mine = work_dir.join("mine");
    git_ok(&work_dir, &["clone", "-q", &clone_url, "mine"]).await?;
    let tip = main_of(&server, "m-github").await?.unwrap();
    commit_file(&mine, "x.txt", b"x", "direct").await?;
    let out = git(&mine, &["push", "origin", "main"]).await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "this repository is a mirror of http://127.0.0.1:{}/up-github.git; push to the upstream",
        up.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("branch rules"), "{stderr}");
    assert_eq!(main_of(&server, "m-github").await?.unwrap(), tip);
    let out = git(&mine, &["push", "origin", "main:other"]).await?;
    assert!(!out.status.success(), "a new branch is refused too");

    // Unsafe upstream URLs are refused.
    for bad in [
        "file:///etc",
        "http://user:pw@127.0.0.1:1/x.git",
        "http://169.254.169.254/x.git",
        "ssh://example.test/x.git",
    ] {
        let (status, text) = put_mirror(
            &server,
            &server.admin_token,
            "plain",
            json!({"url": bad, "forge": "github"}),
        )
        .await?;
        assert_eq!(status, 422, "{bad}: {text}");
    }
    let (_, text) = put_mirror(
        &server,
        &server.admin_token,
        "plain",
        json!({"url": "http://169.254.169.254/x.git", "forge": "github"}),
    )
    .await?;
    assert!(text.contains("[mirrors] allow_private"), "{text}");
    let (status, _) = put_mirror(
        &server,
        &server.admin_token,
        "plain",
        json!({"url": "http://127.0.0.1:1/x.git", "forge": "bitbucket"}),
    )
    .await?;
    assert_eq!(status, 422);

    // A pull request in a mirror can be opened but not merged: the branch follows upstream.
    git_ok(&work, &["checkout", "-q", "-b", "topic"]).await?;
    commit_file(&work, "topic.txt", b"t", "topic").await?;
    let bare = up.root.join("up-github.git");
    git_ok(&work, &["push", "-q", &bare.to_string_lossy(), "topic"]).await?;
    let resp = server
        .http
        .post(server.api("/repos/admin/m-github/mirror/sync"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = server
        .http
        .post(server.api("/repos/admin/m-github/pulls"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"source": "topic", "title": "from upstream"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    let pr: Value = resp.json().await?;
    let number = pr["number"].as_i64().unwrap();
    let m: cove_api::Mergeability = common::api_json(
        &server,
        &format!("/repos/admin/m-github/pulls/{number}/mergeable"),
    )
    .await?;
    assert!(!m.mergeable);
    assert!(
        m.reasons.iter().any(|r| r.contains("is a mirror of")),
        "{:?}",
        m.reasons
    );

    // Only owners configure: a writer gets 403 on every mirror route.
    let bob = server.create_user("bob").await?;
    assert_eq!(
        server
            .put_member("admin/m-github", "bob", "writer")
            .await?
            .status(),
        200
    );
    let (status, _) = put_mirror(
        &server,
        &bob,
        "m-github",
        json!({"url": "http://127.0.0.1:1/x.git", "forge": "github"}),
    )
    .await?;
    assert_eq!(status, 403);
    for (method, path) in [
        (reqwest::Method::GET, "/repos/admin/m-github/mirror"),
        (reqwest::Method::DELETE, "/repos/admin/m-github/mirror"),
        (reqwest::Method::POST, "/repos/admin/m-github/mirror/sync"),
    ] {
        let resp = server
            .http
            .request(method, server.api(path))
            .bearer_auth(&bob)
            .send()
            .await?;
        assert_eq!(resp.status(), 403, "{path}");
    }
    let still: Mirror = common::api_json(&server, "/repos/admin/m-github/mirror").await?;
    assert_eq!(
        still.url,
        format!("http://127.0.0.1:{}/up-github.git", up.port)
    );

    // Unset: an ordinary repository again, which takes pushes.
    let resp = server
        .http
        .delete(server.api("/repos/admin/m-github/mirror"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    git_ok(&mine, &["push", "-q", "origin", "main"]).await?;
    // Deleting a mirror repository removes its configuration with it.
    let resp = server
        .http
        .delete(server.api("/repos/admin/m-gitlab"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_fetch_on_verified_webhooks_and_refuse_pushes() -> Result<()> {
    common::on_every_backend(mirrors_follow_verified_webhooks).await
}
