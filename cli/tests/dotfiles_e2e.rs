//! Dotfiles end to end (issue 18): `cove user dotfiles set` with a Cove repository, then new
//! environments on the real Docker engine — an install.sh that writes ~/.cove-dotfiles-ok has
//! run; a failing install.sh leaves the environment running with the failure in its log; an
//! external URL the SSRF guard refuses is a warning, never a failure; an http URL (a public
//! repository of the test server, allowed by `[mirrors] allow_private`) is cloned by URL.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use cove_api::{EnvState, Environment};

use common::{cove_logged_in as cove, git, ok, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dotfiles_are_installed_and_failures_never_block() {
    // the test's own server stands for an external git host on 127.0.0.1: allowed here, so
    // the URL path (SSRF check, pinned address, anonymous clone) is exercised for real
    let s = common::serve_with_engine(|config| {
        config.mirrors.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let home = s.home.path().to_path_buf();
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run(&home, &url))
        .await
        .unwrap();
}

fn commit_and_push(dir: &Path, url: &str, repo: &str, message: &str) {
    git(dir, &["add", "."]);
    git(
        dir,
        &[
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
    let push_url = url.replace("http://", &format!("http://admin:{ADMIN_TOKEN}@"))
        + &format!("/git/{repo}.git");
    git(dir, &["push", "-q", &push_url, "main"]);
}

fn write_script(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `cove env create admin/app`: the environment and the progress/events printed on stderr.
fn create(home: &Path, name: &str) -> (Environment, String, cove_tests::EnvCleanup) {
    let out: Output = cove(
        home,
        &[
            "env",
            "create",
            "admin/app",
            "--name",
            name,
            "--output",
            "json",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.state, EnvState::Running, "{log}");
    (env, log, cleanup)
}

fn exec(home: &Path, env: &str, script: &str) -> Output {
    cove(
        home,
        &["env", "exec", env, "--no-tty", "--", "sh", "-c", script],
    )
}

fn run(home: &Path, url: &str) {
    ok(&cove(home, &["login", url, "--token", ADMIN_TOKEN]));

    // the dotfiles: a Cove repository with an install.sh (and a bootstrap that must not run)
    ok(&cove(home, &["repo", "create", "dots"]));
    let dots = tempfile::tempdir().unwrap();
    let d = dots.path();
    git(d, &["init", "-q", "-b", "main"]);
    write_script(
        d,
        "install.sh",
        "#!/bin/sh\necho installing from \"$PWD\"\necho ok > \"$HOME/.cove-dotfiles-ok\"\n",
    );
    write_script(
        d,
        "bootstrap",
        "#!/bin/sh\necho wrong > \"$HOME/.cove-dotfiles-ok\"\n",
    );
    commit_and_push(d, url, "admin/dots", "dotfiles");

    // the project
    ok(&cove(home, &["repo", "create", "app"]));
    let app = tempfile::tempdir().unwrap();
    let a = app.path();
    git(a, &["init", "-q", "-b", "main"]);
    std::fs::write(a.join("README.md"), "app\n").unwrap();
    commit_and_push(a, url, "admin/app", "app");

    // bad settings are refused and change nothing
    for bad in [
        "ftp://example.com/d.git",
        "https://u:p@example.com/d.git",
        "nobody/nothing",
    ] {
        let out = cove(home, &["user", "dotfiles", "set", bad]);
        assert!(!out.status.success(), "{bad} accepted");
    }
    assert!(ok(&cove(home, &["user", "dotfiles", "show"])).contains("no dotfiles repository"));
    let set = ok(&cove(home, &["user", "dotfiles", "set", "admin/dots"]));
    assert!(set.contains("dotfiles: admin/dots"), "{set}");

    // install.sh ran once in the new environment's home, ahead of bootstrap
    let (env, log, _c1) = create(home, "dots-ok");
    assert!(
        log.contains("dotfiles: ~/.dotfiles/install.sh succeeded"),
        "{log}"
    );
    assert!(log.contains("installing from"), "{log}");
    let marker = ok(&exec(home, &env.name, "cat \"$HOME/.cove-dotfiles-ok\""));
    assert_eq!(marker.trim(), "ok");
    let listed = ok(&exec(home, &env.name, "ls -a \"$HOME/.dotfiles\""));
    assert!(
        listed.contains("install.sh") && listed.contains(".git"),
        "{listed}"
    );
    // the clone credential stayed outside: origin is the plain URL
    let origin = ok(&exec(
        home,
        &env.name,
        "git -C \"$HOME/.dotfiles\" remote get-url origin",
    ));
    assert!(
        !origin.contains('@') && origin.contains("/git/admin/dots.git"),
        "{origin}"
    );

    // a failing install.sh: the environment still runs, the failure is in its log
    write_script(
        d,
        "install.sh",
        "#!/bin/sh\necho boom-from-dotfiles >&2\nexit 3\n",
    );
    commit_and_push(d, url, "admin/dots", "break");
    let (env2, log, _c2) = create(home, "dots-fail");
    assert!(
        log.contains("warning: dotfiles not installed: install.sh failed with exit code 3"),
        "{log}"
    );
    assert!(log.contains("boom-from-dotfiles"), "{log}");
    let up = ok(&exec(home, &env2.name, "echo up"));
    assert_eq!(up.trim(), "up");

    // an external URL the SSRF guard refuses (link-local, not allowed): a warning, the
    // environment runs
    ok(&cove(
        home,
        &["user", "dotfiles", "set", "http://169.254.169.254/dots.git"],
    ));
    let (_env3, log, _c3) = create(home, "dots-ssrf");
    assert!(log.contains("warning: dotfiles not installed"), "{log}");
    assert!(log.contains("link-local"), "{log}");

    // an http(s) URL outside Cove's repositories (a public repository cloned anonymously
    // by URL, the way any git host is): its bootstrap.sh runs
    ok(&cove(home, &["repo", "create", "pubdots", "--public"]));
    let pubdots = tempfile::tempdir().unwrap();
    let p = pubdots.path();
    git(p, &["init", "-q", "-b", "main"]);
    std::fs::write(
        p.join("bootstrap.sh"),
        "echo by-url > \"$HOME/.cove-dotfiles-url\"\n",
    )
    .unwrap();
    commit_and_push(p, url, "admin/pubdots", "dotfiles by URL");
    let by_url = format!("{url}/git/admin/pubdots.git");
    ok(&cove(home, &["user", "dotfiles", "set", &by_url]));
    let (env4, log, _c4) = create(home, "dots-url");
    assert!(
        log.contains("dotfiles: ~/.dotfiles/bootstrap.sh succeeded"),
        "{log}"
    );
    let marker = ok(&exec(home, &env4.name, "cat \"$HOME/.cove-dotfiles-url\""));
    assert_eq!(marker.trim(), "by-url");

    let cleared = ok(&cove(home, &["user", "dotfiles", "clear"]));
    assert!(cleared.contains("no dotfiles repository"), "{cleared}");
}
