//! The team loop of issue 15, end to end, as a team would live it: a real in-process server
//! whose embedded agent runs environments and jobs on the real Docker engine, the real `git`
//! client, the real `cove` binary for every step a person takes, and two real HTTP receivers
//! on 127.0.0.1 (a signed webhook and a Slack-format one) allowed by the server's
//! configuration.
//!
//! alice (writer) works in a dev environment on a new branch, commits there, pushes, and
//! opens a pull request with bob (owner) as required reviewer. The PULLREQUEST workflow's
//! status shows on the pull request; the merge is refused while the check is red or the
//! approval missing (each reason asserted); bob checks the branch out and opens it in an
//! environment of his own, approves and merges; the merge starts the main-branch workflow,
//! whose deploy gate waits and notifies; bob approves with the CLI; the run succeeds and both
//! receivers hear of it.
//!
//! Why the push leaves the environment through the host: an environment holds no credential
//! (its clone's `origin` is the plain URL) and cannot reach the host, where the server listens
//! (docs/security.md "What an environment can reach"). So the commit made in the environment
//! is carried out as a `git bundle` over `cove env exec` and pushed by the host's git — the
//! same commit (its id is asserted), just transported.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cove_api::{
    Environment, JobState, Mergeability, PullCheck, PullRequest, Run, RunState, ZERO_SHA,
};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{git, ok, Served, ADMIN_TOKEN};

const REPO: &str = "admin/app";
const BRANCH: &str = "feature/greeting";

/// Runs on every pull request: the greeting must say hello.
const PR_CHECK: &str = r#"Name: pr-check
SchemaVersion: "1.0"
Triggers:
  - Type: PULLREQUEST
    Events: [OPEN, REVISION]
    Branches: [main]
Actions:
  Check:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: grep -q hello greeting.txt
"#;

/// Runs on main: build, a manual gate, deploy.
const SHIP: &str = r#"Name: ship
SchemaVersion: "1.0"
RunMode: PARALLEL
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo built
  Approve:
    Identifier: aws/approval@v1
    DependsOn: [Build]
    Configuration:
      ApprovalsRequired: 1
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Approve]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

// ------------------------------------------------------------------------------------------
// The notification receiver: a real HTTP server on 127.0.0.1 that keeps every request.

#[derive(Debug, Clone)]
struct Got {
    path: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

impl Receiver {
    /// Serves on 127.0.0.1:0; answers its base URL.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let got = self.0.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let got = got.clone();
                tokio::spawn(async move {
                    if let Some(request) = read_request(conn).await {
                        got.lock().unwrap().push(request);
                    }
                });
            }
        });
        url
    }

    /// Waits (up to 60 s) for a request to `path` for which `want` holds.
    async fn wait_for(&self, path: &str, what: &str, want: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(g) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|g| g.path == path && want(g))
            {
                return g.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} at {path}; got {:#?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads one HTTP/1.1 request (headers, then Content-Length bytes) and answers 200.
async fn read_request(mut conn: tokio::net::TcpStream) -> Option<Got> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            break (end, length);
        }
    };
    while buf.len() < head_end + 4 + length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = buf[head_end + 4..(head_end + 4 + length).min(buf.len())].to_vec();
    let _ = conn
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    Some(Got {
        path,
        headers,
        body,
    })
}

/// `X-Cove-Signature` is `sha256=` + hex(HMAC-SHA256(secret, the raw body)).
fn assert_signed(secret: &str, got: &Got) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&got.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        got.headers.get("x-cove-signature"),
        Some(&expected),
        "the signature over the raw body: {got:#?}"
    );
    assert!(!got.headers["x-cove-delivery"].is_empty());
}

// ------------------------------------------------------------------------------------------
// People and their tools.

impl Served {
    /// The real `cove` binary as the holder of `token`, in `dir`, with git's user and system
    /// configuration out of the way.
    async fn cove_in(&self, dir: &Path, token: &str, args: &[&str]) -> Output {
        let mut cmd = common::cove_command(self.home.path(), &self.url, token);
        cmd.args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    async fn cove(&self, token: &str, args: &[&str]) -> Output {
        common::cove_async(self.home.path(), &self.url, token, args).await
    }

    /// A user with a read+write token and `role` on [`REPO`].
    async fn member(&self, name: &str, role: &str) -> String {
        let password = "correct horse battery";
        common::create_user(&self.http, &self.url, name, password).await;
        let token = common::create_token(
            &self.http,
            &self.url,
            name,
            password,
            "t",
            &["read", "write"],
        )
        .await
        .token;
        let r = common::put_member(&self.http, &self.url, REPO, name, role).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        token
    }

    async fn get_as<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> T {
        let r = self
            .http
            .get(self.api(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Waits (up to 180 s) until `done` holds for run `id`.
    async fn wait_run(&self, id: i64, what: &str, done: impl Fn(&Run) -> bool) -> Run {
        let start = Instant::now();
        loop {
            let run: Run = self.admin_get(&format!("/runs/{id}")).await;
            if done(&run) {
                return run;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "run {id}: still not {what}: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 120 s) for a run of `workflow` on `commit`.
    async fn run_of(&self, workflow: &str, commit: &str) -> Run {
        let start = Instant::now();
        loop {
            let runs: Vec<Run> = self.admin_get(&format!("/repos/{REPO}/runs")).await;
            if let Some(run) = runs
                .into_iter()
                .find(|r| r.workflow == workflow && r.commit == commit)
            {
                return run;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no run of {workflow} on {commit}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 180 s) until pull request `number`'s `pr-check` on `head` has ended.
    async fn ended_check(&self, number: i64, head: &str) -> PullCheck {
        let start = Instant::now();
        loop {
            let checks: Vec<PullCheck> = self
                .admin_get(&format!("/repos/{REPO}/pulls/{number}/checks"))
                .await;
            if let Some(c) = checks
                .into_iter()
                .find(|c| c.name == "pr-check" && c.commit == head && c.state.is_terminal())
            {
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "pr-check on {head} did not end"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn mergeable(&self, token: &str, number: i64) -> Mergeability {
        self.get_as(token, &format!("/repos/{REPO}/pulls/{number}/mergeable"))
            .await
    }
}

/// Runs `script` with `sh -c` in the environment's project directory as the holder of `token`;
/// its stdout (the command must succeed).
async fn in_env(s: &Served, token: &str, env: &str, script: &str) -> String {
    let script = format!("cd \"$PROJECT_SOURCE\" && {script}");
    ok(&s
        .cove(token, &["env", "exec", env, "--", "sh", "-c", &script])
        .await)
}

/// Carries branch [`BRANCH`] of the environment's clone out (a `git bundle` over exec) into
/// the host repository `host` and pushes it with `push_url`; the pushed commit id.
async fn push_from_env(s: &Served, token: &str, env: &str, host: &Path, push_url: &str) -> String {
    let encoded = in_env(
        s,
        token,
        env,
        &format!("git bundle create /tmp/cove-pr.bundle {BRANCH} 2>/dev/null && base64 -w0 /tmp/cove-pr.bundle"),
    )
    .await;
    let bundle = host.join("pr.bundle");
    let b64 = host.join("pr.bundle.b64");
    std::fs::write(&b64, encoded.trim()).unwrap();
    let out = Command::new("base64").arg("-d").arg(&b64).output().unwrap();
    assert!(out.status.success());
    std::fs::write(&bundle, out.stdout).unwrap();
    let repo = host.join("repo");
    if !repo.exists() {
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
    }
    let bundle_path = bundle.to_str().unwrap().to_string();
    let push_url = push_url.to_string();
    tokio::task::spawn_blocking(move || {
        git(
            &repo,
            &[
                "fetch",
                "-q",
                &bundle_path,
                &format!("+{BRANCH}:refs/heads/{BRANCH}"),
            ],
        );
        git(&repo, &["push", "-q", &push_url, BRANCH]);
        git(&repo, &["rev-parse", BRANCH])
    })
    .await
    .unwrap()
}

fn git_url(s: &Served, user: &str, token: &str) -> String {
    format!(
        "http://{user}:{token}@{}/git/{REPO}.git",
        s.url.trim_start_matches("http://")
    )
}

fn failed_with(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_team_loop_from_an_environment_to_a_notified_gated_deploy() {
    let Some(s) = common::serve_jobs(|config| {
        config.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        config.notify.retry_base = Duration::from_millis(200);
        config.runs.reap_interval = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    assert!(
        s.state.envs().has_agent(),
        "no Docker engine answered the embedded agent (DOCKER_HOST)"
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // ---- the repository: workflows on main, members, the branch rule, the receivers
    common::create_repo(&s.http, &s.url, ADMIN_TOKEN, "app").await;
    let alice = s.member("alice", "writer").await;
    let bob = s.member("bob", "owner").await;
    let seed = w.join("seed");
    std::fs::create_dir_all(seed.join(".codecatalyst/workflows")).unwrap();
    std::fs::write(seed.join("README.md"), "# app\n").unwrap();
    std::fs::write(seed.join(".codecatalyst/workflows/pr-check.yaml"), PR_CHECK).unwrap();
    std::fs::write(seed.join(".codecatalyst/workflows/ship.yaml"), SHIP).unwrap();
    let admin_url = common::admin_git_url(&s.url, "app");
    {
        let seed = seed.clone();
        tokio::task::spawn_blocking(move || {
            git(&seed, &["init", "-q", "-b", "main"]);
            git(&seed, &["add", "."]);
            git(&seed, &["commit", "-q", "-m", "workflows"]);
            git(&seed, &["push", "-q", &admin_url, "main"]);
        })
        .await
        .unwrap();
    }
    // Creating main ran `ship` once: cancelled, so it waits for nobody.
    let seed_head = git(&seed, &["rev-parse", "HEAD"]);
    let first = s.run_of("ship", &seed_head).await;
    ok(&s
        .cove(ADMIN_TOKEN, &["run", "cancel", &first.id.to_string()])
        .await);
    s.wait_run(first.id, "ended", |r| r.state.is_terminal())
        .await;
    let rule = ok(&s
        .cove(
            ADMIN_TOKEN,
            &[
                "repo",
                "rules",
                "set",
                REPO,
                "main",
                "--require-pr",
                "--approvals",
                "1",
                "--check",
                "pr-check",
            ],
        )
        .await);
    assert!(rule.contains("pull requests only"), "{rule}");
    let receiver = Receiver::default();
    let hook = receiver.serve().await;
    let target: cove_api::NotifyTarget = serde_json::from_str(&ok(&s
        .cove(
            ADMIN_TOKEN,
            &[
                "repo",
                "notify",
                "add",
                REPO,
                "--kind",
                "webhook",
                "--url",
                &format!("{hook}/hook"),
                "--event",
                "approval_needed",
                "--event",
                "run_succeeded",
                "--output",
                "json",
            ],
        )
        .await))
    .unwrap();
    let secret = target.secret.expect("the signing secret, shown once");
    ok(&s
        .cove(
            ADMIN_TOKEN,
            &[
                "repo",
                "notify",
                "add",
                REPO,
                "--kind",
                "slack",
                "--url",
                &format!("{hook}/slack"),
                "--event",
                "run_succeeded",
            ],
        )
        .await);

    // ---- alice: an environment on a new branch, a commit made in it, pushed
    let env_a: Environment = serde_json::from_str(&ok(&s
        .cove(
            &alice,
            &[
                "env",
                "create",
                REPO,
                "--new-branch",
                BRANCH,
                "--size",
                "small",
                "--output",
                "json",
            ],
        )
        .await))
    .unwrap();
    let _cleanup_a = cove_tests::EnvCleanup(env_a.id.clone());
    assert_eq!(
        (env_a.branch.as_str(), env_a.owner.as_str()),
        (BRANCH, "alice")
    );
    let made = in_env(
        &s,
        &alice,
        &env_a.id,
        "printf 'helo, team\\n' > greeting.txt && git add greeting.txt \
         && git commit -q -m 'Add a greeting' && git rev-parse --abbrev-ref HEAD && git rev-parse HEAD",
    )
    .await;
    let mut lines = made.lines();
    assert_eq!(lines.next(), Some(BRANCH), "{made}");
    let commit_1 = lines.next().unwrap().to_string();
    // No push from inside: no credential there, and the server's host is out of reach.
    let inside = s
        .cove(
            &alice,
            &[
                "env",
                "exec",
                &env_a.id,
                "--",
                "sh",
                "-c",
                &format!("cd \"$PROJECT_SOURCE\" && GIT_TERMINAL_PROMPT=0 timeout 60 git push origin {BRANCH}"),
            ],
        )
        .await;
    assert!(
        !inside.status.success(),
        "a push from inside the environment"
    );
    let alice_host = w.join("alice");
    std::fs::create_dir_all(&alice_host).unwrap();
    let pushed = push_from_env(
        &s,
        &alice,
        &env_a.id,
        &alice_host,
        &git_url(&s, "alice", &alice),
    )
    .await;
    assert_eq!(
        pushed, commit_1,
        "the environment's commit is what was pushed"
    );

    // ---- alice opens the pull request, bob required
    let pr: PullRequest = serde_json::from_str(&ok(&s
        .cove(
            &alice,
            &[
                "pr",
                "create",
                REPO,
                BRANCH,
                "--title",
                "Add a greeting",
                "--description",
                "Says hello to the **team**.",
                "--reviewer",
                "bob",
                "--output",
                "json",
            ],
        )
        .await))
    .unwrap();
    assert_eq!(pr.number, 1);
    assert_eq!(pr.head_sha, commit_1);
    assert_eq!(pr.reviewers[0].username, "bob");

    // ---- the PULLREQUEST workflow runs; its status is on the pull request: red (a typo)
    let check = s.ended_check(1, &commit_1).await;
    assert_eq!(check.state, RunState::Failed, "{check:#?}");
    assert_eq!(check.trigger, "pullrequest");
    let pr_run: Run = s.admin_get(&format!("/runs/{}", check.run_id)).await;
    assert_eq!(pr_run.pr_number, Some(1), "the run names its pull request");
    assert_eq!(
        (pr_run.branch.as_str(), pr_run.commit.as_str()),
        (BRANCH, commit_1.as_str())
    );
    let shown = ok(&s
        .cove(&bob, &["run", "show", &check.run_id.to_string()])
        .await);
    assert!(shown.contains("pullrequest (PR #1)"), "{shown}");
    let shown = ok(&s.cove(&bob, &["pr", "show", REPO, "1"]).await);
    assert!(shown.contains("check       pr-check failed"), "{shown}");

    // ---- the merge is refused: no approval, check red
    let m = s.mergeable(&bob, 1).await;
    assert!(!m.mergeable);
    for reason in [
        "required reviewer bob has not approved the current revision",
        "1 approval required by rule `main`, 0 given",
        "required check `pr-check` is failed",
    ] {
        assert!(m.reasons.iter().any(|r| r == reason), "{reason}: {m:#?}");
    }
    let err = failed_with(&s.cove(&bob, &["pr", "merge", REPO, "1"]).await);
    assert!(
        err.contains("cannot merge") && err.contains("required check `pr-check` is failed"),
        "{err}"
    );

    // ---- bob reads the change: checked out in his clone, and in an environment of his own
    let bob_clone = w.join("bob");
    {
        let (url, plain, dir) = (
            git_url(&s, "bob", &bob),
            format!("{}/git/{REPO}.git", s.url),
            bob_clone.clone(),
        );
        tokio::task::spawn_blocking(move || {
            git(
                Path::new("/"),
                &["clone", "-q", &url, dir.to_str().unwrap()],
            );
            // no credential in the clone: `cove pr checkout` gives git its own
            git(&dir, &["remote", "set-url", "origin", &plain]);
        })
        .await
        .unwrap();
    }
    let out = ok(&s.cove_in(&bob_clone, &bob, &["pr", "checkout", "1"]).await);
    assert!(
        out.contains(&format!("switched to branch {BRANCH}")),
        "{out}"
    );
    assert_eq!(
        git(&bob_clone, &["rev-parse", "--abbrev-ref", "HEAD"]),
        BRANCH
    );
    assert_eq!(git(&bob_clone, &["rev-parse", "HEAD"]), commit_1);
    assert_eq!(
        std::fs::read_to_string(bob_clone.join("greeting.txt")).unwrap(),
        "helo, team\n"
    );
    let out = s
        .cove_in(
            &bob_clone,
            &bob,
            &[
                "pr", "checkout", "1", "--env", "--size", "small", "--output", "json",
            ],
        )
        .await;
    let env_b: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup_b = cove_tests::EnvCleanup(env_b.id.clone());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("creating environment"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (
            env_b.owner.as_str(),
            env_b.branch.as_str(),
            env_b.repo.as_str()
        ),
        ("bob", BRANCH, REPO)
    );
    assert_ne!(env_b.id, env_a.id, "bob's own environment, not alice's");
    assert_eq!(
        in_env(
            &s,
            &bob,
            &env_b.id,
            "cat greeting.txt && git rev-parse HEAD"
        )
        .await,
        format!("helo, team\n{commit_1}\n")
    );

    // ---- bob approves: still refused while the check is red
    ok(&s.cove(&bob, &["pr", "review", REPO, "1", "approve"]).await);
    let m = s.mergeable(&bob, 1).await;
    assert_eq!(m.reasons, ["required check `pr-check` is failed"], "{m:#?}");

    // ---- alice fixes the typo in her environment: a new revision, bob's approval stale
    in_env(
        &s,
        &alice,
        &env_a.id,
        "printf 'hello, team\\n' > greeting.txt && git commit -q -am 'Fix the greeting'",
    )
    .await;
    let commit_2 = push_from_env(
        &s,
        &alice,
        &env_a.id,
        &alice_host,
        &git_url(&s, "alice", &alice),
    )
    .await;
    assert_ne!(commit_2, commit_1);
    let check = s.ended_check(1, &commit_2).await;
    assert_eq!(check.state, RunState::Succeeded, "{check:#?}");
    let pr: PullRequest = s.admin_get(&format!("/repos/{REPO}/pulls/1")).await;
    assert_eq!((pr.revision, pr.head_sha.as_str()), (2, commit_2.as_str()));
    // green, but the approval was of the first revision
    let m = s.mergeable(&bob, 1).await;
    assert!(!m.mergeable);
    assert!(
        m.reasons
            .iter()
            .any(|r| r == "1 approval required by rule `main`, 0 given"),
        "{m:#?}"
    );
    assert!(!m.reasons.iter().any(|r| r.contains("pr-check")), "{m:#?}");
    let err = failed_with(&s.cove(&bob, &["pr", "merge", REPO, "1"]).await);
    assert!(err.contains("0 given"), "{err}");

    // bob's checkout moves to the new revision; his environment, stopped meanwhile, is
    // reused and started
    ok(&s.cove_in(&bob_clone, &bob, &["pr", "checkout", "1"]).await);
    assert_eq!(git(&bob_clone, &["rev-parse", "HEAD"]), commit_2);
    ok(&s.cove(&bob, &["env", "stop", &env_b.id]).await);
    let out = s
        .cove_in(
            &bob_clone,
            &bob,
            &["pr", "checkout", "1", "--env", "--output", "json"],
        )
        .await;
    let again: Environment = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(again.id, env_b.id, "bob's live environment is reused");
    assert_eq!(again.state, cove_api::EnvState::Running, "and started");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reusing your environment"));

    // ---- bob approves the current revision and merges
    ok(&s.cove(&bob, &["pr", "review", REPO, "1", "approve"]).await);
    let m = s.mergeable(&bob, 1).await;
    assert!(m.mergeable, "{m:#?}");
    let merged: PullRequest = serde_json::from_str(&ok(&s
        .cove(&bob, &["pr", "merge", REPO, "1", "--output", "json"])
        .await))
    .unwrap();
    let merge_sha = merged.merge_sha.clone().unwrap();
    assert_ne!(merge_sha, ZERO_SHA);

    // ---- the main-branch run starts from the merge commit; its gate waits
    let run = s.run_of("ship", &merge_sha).await;
    assert_eq!(
        (run.branch.as_str(), run.trigger.as_str(), run.pr_number),
        ("main", "push", None)
    );
    let state_of = |r: &Run, a: &str| r.jobs.iter().find(|j| j.action == a).unwrap().state;
    let run = s
        .wait_run(run.id, "waiting at Approve", |r| {
            state_of(r, "Approve") == JobState::WaitingApproval
        })
        .await;
    assert_eq!(state_of(&run, "Build"), JobState::Succeeded);
    assert_eq!(state_of(&run, "Deploy"), JobState::Pending);
    let run_id = run.id.to_string();
    let of_this_run = |g: &Got| g.json()["data"]["run"] == json!(run_id);

    // ---- the webhook hears that approval is needed, signed
    let needed = receiver
        .wait_for("/hook", "approval_needed", |g| {
            g.headers.get("x-cove-event").map(String::as_str) == Some("approval_needed")
                && of_this_run(g)
        })
        .await;
    assert_signed(&secret, &needed);
    let body = needed.json();
    assert_eq!(body["event"], "approval_needed");
    assert_eq!(body["repository"], REPO);
    assert_eq!(body["data"]["action"], "Approve");
    let approvers = body["data"]["approvers"].as_array().unwrap();
    assert!(approvers.contains(&json!("bob")), "{body}");

    // ---- bob approves with the CLI; the run succeeds
    ok(&s
        .cove(
            &bob,
            &["run", "approve", &run_id, "Approve", "--comment", "ship it"],
        )
        .await);
    let run = s.wait_run(run.id, "ended", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(state_of(&run, "Deploy"), JobState::Succeeded);

    // ---- the webhook hears it succeeded (signed), the Slack target gets its message
    let done = receiver
        .wait_for("/hook", "run_succeeded", |g| {
            g.headers.get("x-cove-event").map(String::as_str) == Some("run_succeeded")
                && of_this_run(g)
        })
        .await;
    assert_signed(&secret, &done);
    let body = done.json();
    assert_eq!(body["data"]["state"], "succeeded");
    assert_eq!(body["data"]["commit"], json!(merge_sha));
    let link = format!("/#/runs/{run_id}");
    let slack = receiver
        .wait_for("/slack", "the Slack message", |g| {
            g.json()["text"].as_str().is_some_and(|t| t.contains(&link))
        })
        .await;
    assert!(!slack.headers.contains_key("x-cove-signature"));
    let text = slack.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("admin/app: workflow ship succeeded on main")
            && text.contains(&format!("{link}|Open in Cove>")),
        "{text}"
    );

    for env in [&env_a.id, &env_b.id] {
        let token = if env == &env_a.id { &alice } else { &bob };
        ok(&s.cove(token, &["env", "delete", env, "--yes"]).await);
    }
}

/// "Open in environment" refuses what it cannot do before anything is created, and `cove pr
/// checkout` says what is wrong; no Docker engine needed (none is used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_in_environment_and_checkout_refusals() {
    let s = common::serve(|config| config.embedded_agent = false).await;
    common::create_repo(&s.http, &s.url, ADMIN_TOKEN, "app").await;
    let alice = s.member("alice", "writer").await;
    let rita = s.member("rita", "reader").await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("w");
    std::fs::create_dir_all(&w).unwrap();
    let admin_url = common::admin_git_url(&s.url, "app");
    {
        let (w, url) = (w.clone(), admin_url.clone());
        tokio::task::spawn_blocking(move || {
            git(&w, &["init", "-q", "-b", "main"]);
            std::fs::write(w.join("a"), "1").unwrap();
            git(&w, &["add", "a"]);
            git(&w, &["commit", "-q", "-m", "one"]);
            git(&w, &["push", "-q", &url, "main"]);
            for branch in ["topic", "other"] {
                git(&w, &["checkout", "-q", "-b", branch, "main"]);
                std::fs::write(w.join(branch), branch).unwrap();
                git(&w, &["add", branch]);
                git(&w, &["commit", "-q", "-m", branch]);
                git(&w, &["push", "-q", &url, branch]);
            }
        })
        .await
        .unwrap();
    }
    for branch in ["topic", "other"] {
        ok(&s
            .cove(&alice, &["pr", "create", REPO, branch, "--title", branch])
            .await);
    }
    let open = |number: i64, token: &str, body: Option<Value>| {
        let mut req = s
            .http
            .post(s.api(&format!("/repos/{REPO}/pulls/{number}/environment")))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    // a reader may not; a stranger's unknown pull request is 404
    assert_eq!(open(1, &rita, None).await.unwrap().status(), 403);
    assert_eq!(open(99, &alice, None).await.unwrap().status(), 404);
    // an unknown field is refused like every request body of the API (422)
    let r = open(1, &alice, Some(json!({"devfile": "x"})))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("unknown field"));
    // no body and a valid one both get as far as the agent (none here: 503)
    let r = open(1, &alice, None).await.unwrap();
    assert_eq!(r.status(), 503);
    let r = open(1, &alice, Some(json!({"size": "small"})))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // a closed pull request: 409
    ok(&s.cove(&alice, &["pr", "close", REPO, "2"]).await);
    let r = open(2, &alice, None).await.unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(text.contains("pull request #2 is closed"), "{text}");
    let err = failed_with(
        &s.cove(&alice, &["pr", "checkout", "2", "--env", "--repo", REPO])
            .await,
    );
    assert!(err.contains("pull request #2 is closed"), "{err}");

    // `cove pr checkout` outside a clone
    let outside = tempfile::tempdir().unwrap();
    let err = failed_with(
        &s.cove_in(outside.path(), &alice, &["pr", "checkout", "1"])
            .await,
    );
    assert!(err.contains("not inside a git clone"), "{err}");
    // in a clone whose remote is elsewhere
    let elsewhere = work.path().join("elsewhere");
    git(work.path(), &["init", "-q", elsewhere.to_str().unwrap()]);
    git(
        &elsewhere,
        &["remote", "add", "origin", "https://git.invalid/x/y.git"],
    );
    let err = failed_with(
        &s.cove_in(&elsewhere, &alice, &["pr", "checkout", "1"])
            .await,
    );
    assert!(err.contains("no remote of this clone"), "{err}");

    // the source branch deleted: 409, and checkout says so
    git(&w, &["push", "-q", &admin_url, ":topic"]);
    let r = open(1, &alice, None).await.unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("the source branch topic of pull request #1 no longer exists"),
        "{text}"
    );
    let clone = work.path().join("clone");
    git(
        work.path(),
        &[
            "clone",
            "-q",
            &format!("{}/git/{REPO}.git", s.url)
                .replace("http://", &format!("http://alice:{alice}@")),
            clone.to_str().unwrap(),
        ],
    );
    let err = failed_with(&s.cove_in(&clone, &alice, &["pr", "checkout", "1"]).await);
    assert!(
        err.contains("the source branch topic of pull request #1 no longer exists"),
        "{err}"
    );
    assert_eq!(git(&clone, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
}
