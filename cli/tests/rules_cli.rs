//! `cove repo rules list|set|delete` (the real binary) against a real in-process server, and a
//! real `git push` that the rule it set refuses with Cove's message.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use cove_api::BranchRules;
use cove_server::{Config, Server};
use serde_json::json;

const ADMIN_TOKEN: &str = "cove_rules_cli_admin_token_0123456789abcdef0123456";

fn cove(home: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cove failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap()
}

fn git_ok(dir: &Path, args: &[&str]) {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cove_repo_rules_set_list_delete_and_the_push_it_refuses() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut config = Config::new(data.path());
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.embedded_agent = false;
    let server = Server::new(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let h = home.path();
    let url2 = url.clone();
    let run = move |args: &[&str]| cove(h, &url2, args);

    assert!(ok(&run(&["repo", "rules", "list", "admin/app"])).contains("no branch rules"));
    let out = ok(&run(&[
        "repo",
        "rules",
        "set",
        "admin/app",
        "main",
        "--require-pr",
        "--approvals",
        "1",
        "--check",
        "ci",
        "--merge-role",
        "owner",
    ]));
    assert!(out.contains("pull requests only; 1 approval(s); checks: ci; merge: role owner; no force push; no deletion"), "{out}");
    ok(&run(&[
        "repo",
        "rules",
        "set",
        "admin/app",
        "release/*",
        "--allow-deletion",
    ]));
    ok(&run(&[
        "repo",
        "rules",
        "set",
        "admin/app",
        "hotfix/**",
        "--position",
        "1",
    ]));
    let listed: BranchRules = serde_json::from_str(&ok(&run(&[
        "repo",
        "rules",
        "list",
        "admin/app",
        "--output",
        "json",
    ])))
    .unwrap();
    let patterns: Vec<&str> = listed.rules.iter().map(|r| r.pattern.as_str()).collect();
    assert_eq!(patterns, ["hotfix/**", "main", "release/*"]);
    assert!(listed.rules[1].require_pull_request && listed.rules[1].required_approvals == 1);
    assert!(listed.rules[2].allow_deletion);
    let bad = run(&[
        "repo",
        "rules",
        "set",
        "admin/app",
        "main",
        "--merge-role",
        "boss",
    ]);
    assert!(!bad.status.success());
    let bad = run(&["repo", "rules", "delete", "admin/app", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no branch rule for \"nope\""));

    // The rule set through the CLI refuses a direct push to main.
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    let remote = format!(
        "http://cove:{ADMIN_TOKEN}@{}/git/admin/app.git",
        url.trim_start_matches("http://")
    );
    git_ok(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("a"), "1").unwrap();
    git_ok(d, &["add", "a"]);
    git_ok(d, &["commit", "-q", "-m", "one"]);
    git_ok(d, &["push", "-q", &remote, "main"]); // creating main is allowed
    std::fs::write(d.join("a"), "2").unwrap();
    git_ok(d, &["commit", "-q", "-am", "two"]);
    let out = git(d, &["push", &remote, "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("! [remote rejected] main -> main (protected branch: changes to `main` must go through a pull request)"),
        "{stderr}"
    );

    // Deleting the rule lets the push through.
    let out = ok(&run(&["repo", "rules", "delete", "admin/app", "main"]));
    assert!(!out.contains(" main "), "{out}");
    git_ok(d, &["push", "-q", &remote, "main"]);
}
