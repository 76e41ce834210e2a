//! `cove repo rules list|set|delete` (the real binary) against a real in-process server, and a
//! real `git push` that the rule it set refuses with Cove's message.

#![allow(clippy::unwrap_used)]

mod common;

use cove_api::BranchRules;

use common::{cove, git, git_output, ok, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cove_repo_rules_set_list_delete_and_the_push_it_refuses() {
    let s = common::serve(|config| config.embedded_agent = false).await;
    let url = s.url.clone();
    common::create_repo(&s.http, &url, ADMIN_TOKEN, "app").await;
    let h = s.home.path();
    let url2 = url.clone();
    let run = move |args: &[&str]| cove(h, &url2, ADMIN_TOKEN, args);

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
    let remote = common::admin_git_url(&url, "app");
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::write(d.join("a"), "1").unwrap();
    git(d, &["add", "a"]);
    git(d, &["commit", "-q", "-m", "one"]);
    git(d, &["push", "-q", &remote, "main"]); // creating main is allowed
    std::fs::write(d.join("a"), "2").unwrap();
    git(d, &["commit", "-q", "-am", "two"]);
    let out = git_output(d, &["push", &remote, "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("! [remote rejected] main -> main (protected branch: changes to `main` must go through a pull request)"),
        "{stderr}"
    );

    // Deleting the rule lets the push through.
    let out = ok(&run(&["repo", "rules", "delete", "admin/app", "main"]));
    assert!(!out.contains(" main "), "{out}");
    git(d, &["push", "-q", &remote, "main"]);
}
