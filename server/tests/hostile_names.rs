//! Property test: hostile repository names, owners and file paths are refused with 4xx by
//! the REST API and by git hosting, and nothing is created outside the data directory.

mod common;

use anyhow::Result;
use common::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::json;

/// Fragments that make any name invalid.
const HOSTILE: &[&str] = &[
    "..", "/", "\\", "\n", "\r", "\0", "%2e%2e", "%2f", "%00", " ", "é", "名", "\u{202e}", ":",
    "?", "#", "*", "~", "$", "'", "\"", "<", ">", "|", "\t",
];

fn hostile_name() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        proptest::sample::select(HOSTILE).prop_map(str::to_string),
        "[a-z0-9._-]{0,6}",
        Just(".git".to_string()),
        Just("hooks".to_string()),
        Just("etc/passwd".to_string()),
    ];
    let mixed = (
        proptest::collection::vec(fragment.clone(), 0..4),
        proptest::sample::select(HOSTILE),
        proptest::collection::vec(fragment, 0..4),
    )
        .prop_map(|(a, h, b)| format!("{}{h}{}", a.concat(), b.concat()));
    prop_oneof![
        4 => mixed,
        1 => "\\.[a-z]{0,8}".prop_map(|s| s),            // leading dot
        1 => "-[a-z]{0,8}",                              // leading dash
        1 => "[a-z]{101,300}",                           // too long
        1 => "[a-z]{1,8}\\.(git|lock)",                  // reserved suffix
        1 => "\\PC{1,12}".prop_filter("non-ascii", |s| !s.is_ascii()), // unicode
        1 => Just(String::new()),
        1 => proptest::sample::select(&[
            "..", ".", ".git/hooks", "../../etc", "/etc/passwd", "/tmp/x", "a/../../b",
            "%2e%2e", "%2E%2E%2Fetc", "..%2f..%2f", "a\nb", "C:\\x", "hooks/../..",
        ][..]).prop_map(str::to_string),
    ]
}

/// Percent-encodes everything but unreserved characters, so the server sees exactly `s`.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn check(server: &TestServer, name: &str) -> Result<(), TestCaseError> {
    let fail = |e: reqwest::Error| TestCaseError::fail(e.to_string());
    let token = &server.admin_token;
    let expect_4xx = |status: reqwest::StatusCode, what: &str| {
        if status.is_client_error() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{what} {name:?}: got {status}"
            )))
        }
    };
    for body in [json!({"name": name}), json!({"owner": name, "name": "ok"})] {
        let status = server
            .http
            .post(server.api("/repos"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(fail)?
            .status();
        expect_4xx(status, "create")?;
    }
    let e = enc(name);
    let urls = [
        server.api(&format!("/repos/admin/{e}")),
        server.api(&format!("/repos/{e}/real")),
        server.api(&format!("/repos/admin/{e}/branches")),
        server.api(&format!("/repos/admin/real/files/{e}")),
        server.api(&format!("/repos/admin/real/files/{e}?ref={e}")),
        server.api(&format!("/repos/admin/real/commits?branch={e}")),
        format!(
            "{}/git/admin/{e}.git/info/refs?service=git-upload-pack",
            server.url
        ),
        format!(
            "{}/git/{e}/real.git/info/refs?service=git-receive-pack",
            server.url
        ),
        format!(
            "{}/git/admin/{e}/info/refs?service=git-upload-pack",
            server.url
        ),
    ];
    for url in urls {
        let status = server
            .http
            .get(&url)
            .bearer_auth(token)
            .basic_auth("x", Some(token))
            .send()
            .await
            .map_err(fail)?
            .status();
        expect_4xx(status, &url)?;
    }
    let status = server
        .http
        .delete(server.api(&format!("/repos/admin/{e}")))
        .bearer_auth(token)
        .send()
        .await
        .map_err(fail)?
        .status();
    expect_4xx(status, "delete")
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn hostile_names_and_paths_are_refused_and_nothing_escapes_the_data_dir() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = rt.block_on(TestServer::start())?;
    rt.block_on(server.create_repo(&server.admin_token, "real"))?;
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&hostile_name(), |name| rt.block_on(check(&server, &name)));
    if let Err(e) = result {
        anyhow::bail!("{e}");
    }
    // Only the data directory exists in the server's temp root, and only the one repository.
    assert_eq!(listing(server.tmp.path()), vec!["data".to_string()]);
    assert_eq!(
        listing(&server.data_dir.join("repos")),
        vec!["admin".to_string()]
    );
    assert_eq!(
        listing(&server.data_dir.join("repos/admin")),
        vec!["real.git".to_string()]
    );
    let top: Vec<String> = listing(&server.data_dir)
        .into_iter()
        .filter(|n| !n.starts_with("cove.db"))
        .collect();
    // `secrets.key`: the workflow secrets' sealing key, created at start (mode 0600).
    assert_eq!(top, vec!["repos".to_string(), "secrets.key".to_string()]);
    rt.block_on(server.stop());
    Ok(())
}
