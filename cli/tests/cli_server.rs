//! The `cove` binary against a real in-process `cove-server` on 127.0.0.1:0.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::Result;

use common::{Served, ADMIN_TOKEN};

async fn start() -> Result<Served> {
    Ok(common::serve(|_| {}).await)
}

async fn cove(config_home: &Path, args: &[&str]) -> Result<Output> {
    Ok(common::cove_logged_in_async(config_home, args).await)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_repo_verbs() -> Result<()> {
    let env = start().await?;
    let home = env.home.path();

    let out = cove(home, &["login", &env.url, "--token", ADMIN_TOKEN]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("as admin"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(ADMIN_TOKEN));
    let config = home.join("cove/config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&config)?.permissions().mode() & 0o777,
            0o600
        );
    }

    let out = cove(home, &["repo", "create", "alpha", "--output", "json"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let repo: cove_api::Repo = serde_json::from_str(&stdout(&out))?;
    assert_eq!(repo.full_name, "admin/alpha");

    let out = cove(home, &["repo", "list", "--output", "json"]).await?;
    let repos: Vec<cove_api::Repo> = serde_json::from_str(&stdout(&out))?;
    assert_eq!(repos.len(), 1);
    let out = cove(home, &["repo", "list"]).await?;
    assert!(stdout(&out).contains("admin/alpha"));

    let out = cove(home, &["repo", "show", "alpha", "--output", "json"]).await?;
    let shown: cove_api::Repo = serde_json::from_str(&stdout(&out))?;
    assert_eq!(shown, repo);

    let out = cove(home, &["repo", "clone-url", "admin/alpha"]).await?;
    assert_eq!(
        stdout(&out).trim(),
        format!("{}/git/admin/alpha.git", env.url)
    );

    let out = cove(home, &["repo", "delete", "admin/alpha"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--yes"));
    let out = cove(home, &["repo", "delete", "admin/alpha", "--yes"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cove(home, &["repo", "show", "admin/alpha"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tell_the_user_what_to_do() -> Result<()> {
    let env = start().await?;
    let home = env.home.path();

    // Not logged in.
    let out = cove(home, &["repo", "list"]).await?;
    assert!(stderr(&out).contains("cove login"), "{}", stderr(&out));

    // Bad token at login.
    let out = cove(home, &["login", &env.url, "--token", "cove_nope"]).await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("token expired or invalid"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("cove_nope"));

    // Read-only token: creating a repository names the missing scope.
    let client = create_token_raw(&env.url, &["read"])?;
    let out = cove(home, &["login", &env.url, "--token", &client]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cove(home, &["repo", "create", "beta"]).await?;
    assert!(
        stderr(&out).contains("token lacks scope write"),
        "{}",
        stderr(&out)
    );

    // Server unreachable (env override of URL).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(["repo", "list"])
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", "http://127.0.0.1:9")
        .env("COVE_TOKEN", ADMIN_TOKEN)
        .output()
        .await?;
    assert!(
        stderr(&out).contains("is cove-server running at http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

/// Creates a token through the API with a minimal HTTP/1.1 request (the CLI's client is not a
/// library, so this uses a tiny request over std's TcpStream).
fn create_token_raw(url: &str, scopes: &[&str]) -> Result<String> {
    use std::io::{Read, Write};
    let host = url.trim_start_matches("http://");
    let body = serde_json::json!({"name": "ro", "scopes": scopes}).to_string();
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "POST /api/v1/tokens HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let created: cove_api::CreatedToken = serde_json::from_str(json)?;
    Ok(created.token)
}

#[test]
fn help_lists_login_and_repo() {
    let out = Command::new(env!("CARGO_BIN_EXE_cove"))
        .arg("--help")
        .output()
        .expect("cove runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("login") && text.contains("repo"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_create_reads_the_password_from_stdin_and_it_logs_in() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let env = start().await?;
    let home = env.home.path();
    let out = cove(home, &["login", &env.url, "--token", ADMIN_TOKEN]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let create = |password: &'static str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cove"));
        cmd.args(["user", "create", "alice"])
            .env("XDG_CONFIG_HOME", home)
            .env_remove("COVE_URL")
            .env_remove("COVE_TOKEN")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        async move {
            let mut child = cmd.spawn()?;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(password.as_bytes()).await?;
            drop(stdin);
            Ok::<_, anyhow::Error>(child.wait_with_output().await?)
        }
    };
    let short = create("short\n").await?;
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 8 characters"));
    let out = create("a long passphrase\n").await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "created user alice");
    assert!(!stdout(&out).contains("passphrase"));
    // The password opens a browser session.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/session", env.url))
        .basic_auth("alice", Some("a long passphrase"))
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(resp.headers().get("set-cookie").is_some());
    let list = cove(home, &["user", "list"]).await?;
    assert!(stdout(&list).contains("alice"), "{}", stdout(&list));
    Ok(())
}

/// `cove … | head`: the reader of stdout is gone before the command writes. The CLI must end
/// like other Unix tools — killed by SIGPIPE (the shell's status 141) or exit 0 — and print no
/// panic. Before the fix, `println!` panicked ("failed printing to stdout: Broken pipe", exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_pipe_ends_quietly() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let env = start().await?;
    let home = env.home.path();
    let out = cove(home, &["login", &env.url, "--token", ADMIN_TOKEN]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cove(home, &["repo", "create", "piped"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));

    for args in [
        &["repo", "list"][..],
        &["env", "list"][..],
        &["run", "list"][..],
    ] {
        // The read end is closed before the child starts: its first write meets no reader.
        let (reader, writer) = std::io::pipe()?;
        drop(reader);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cove"))
            .args(args)
            .env("XDG_CONFIG_HOME", home)
            .env_remove("COVE_URL")
            .env_remove("COVE_TOKEN")
            .stdout(std::process::Stdio::from(writer))
            .stderr(std::process::Stdio::piped())
            .spawn()?
            .wait_with_output()
            .await?;
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "cove {args:?} wrote to stderr: {err}"
        );
        let quiet = out.status.success() || out.status.signal() == Some(13);
        assert!(quiet, "cove {args:?} ended with {:?}: {err}", out.status);
    }
    Ok(())
}

/// `cove repo retention`: shows the default, sets one limit keeping the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_retention_shows_and_sets_the_policy() -> Result<()> {
    let env = start().await?;
    let home = env.home.path();
    let out = cove(home, &["login", &env.url, "--token", ADMIN_TOKEN]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cove(home, &["repo", "create", "kept"])
        .await?
        .status
        .success());
    let out = cove(home, &["repo", "retention", "kept"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("kept for 90 days, at most 100;"),
        "{}",
        stdout(&out)
    );
    let out = cove(
        home,
        &[
            "repo",
            "retention",
            "kept",
            "--runs",
            "5",
            "--output",
            "json",
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let set: serde_json::Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(set, serde_json::json!({"days": 90, "runs": 5}));
    let out = cove(home, &["repo", "retention", "admin/kept", "--days", "0"]).await?;
    assert!(
        stdout(&out).contains("kept of any age, at most 5;"),
        "{}",
        stdout(&out)
    );
    Ok(())
}

/// `cove` with stdin and extra environment (e.g. another user's `COVE_TOKEN`).
async fn cove_input(
    config_home: &Path,
    args: &[&str],
    input: &str,
    env: &[(&str, &str)],
) -> Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cove"));
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("COVE_URL")
        .env_remove("COVE_TOKEN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    Ok(child.wait_with_output().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_user_disable_and_passwd() -> Result<()> {
    let env = start().await?;
    let home = env.home.path();
    let out = cove(home, &["login", &env.url, "--token", ADMIN_TOKEN]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cove_input(
        home,
        &["user", "create", "alice"],
        "a long passphrase\n",
        &[],
    )
    .await?;
    assert!(out.status.success(), "{}", stderr(&out));

    // Tokens: an expiry by default or as asked; `never` for administrators only.
    let out = cove(home, &["token", "create", "ci", "--expires", "30d"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).trim().starts_with("cove_"));
    assert!(!stderr(&out).contains("expires: never"), "{}", stderr(&out));
    let out = cove(home, &["token", "create", "forever", "--expires", "never"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("expires: never"), "{}", stderr(&out));
    let out = cove(home, &["token", "create", "x", "--expires", "30"]).await?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unit"), "{}", stderr(&out));
    let list = stdout(&cove(home, &["token", "list"]).await?);
    assert!(
        list.contains("\tci\t") && list.contains("\tforever\t"),
        "{list}"
    );

    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/tokens", env.url))
        .basic_auth("alice", Some("a long passphrase"))
        .json(&serde_json::json!({"name": "cli", "scopes": ["read", "write"]}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let alice: cove_api::CreatedToken = resp.json().await?;
    let as_alice = [
        ("COVE_URL", env.url.as_str()),
        ("COVE_TOKEN", alice.token.as_str()),
    ];
    let out = cove_input(
        home,
        &["token", "create", "x", "--expires", "never"],
        "",
        &as_alice,
    )
    .await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only administrators"),
        "{}",
        stderr(&out)
    );

    // Alice changes her password: the old one stops working.
    let out = cove_input(
        home,
        &["user", "passwd"],
        "a long passphrase\nan even longer passphrase\n",
        &as_alice,
    )
    .await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let basic = |password: &'static str| {
        http.get(format!("{}/api/v1/user", env.url))
            .basic_auth("alice", Some(password))
            .send()
    };
    assert_eq!(basic("a long passphrase").await?.status(), 401);
    assert_eq!(basic("an even longer passphrase").await?.status(), 200);

    // Disabled: her token stops working at once; enabled: it works again.
    let out = cove(home, &["user", "disable", "alice"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&cove(home, &["user", "list"]).await?).contains("alice  disabled"));
    let out = cove_input(home, &["token", "list"], "", &as_alice).await?;
    assert!(!out.status.success(), "a disabled user's token still works");
    let out = cove(home, &["user", "enable", "alice"]).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cove_input(home, &["token", "list"], "", &as_alice).await?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}
