//! VS Code in the browser (docs/vscode.md), against a real in-process server whose embedded
//! agent runs the environment on the real Docker engine with the image `cove/code-server`
//! (built by `images/build.sh code-server`; without it creating the environment fails, and so
//! does this test — it never skips). The owner's `editor` setting picks `vscode` for
//! `cove env create`; code-server then answers through the server at `/env/{id}/vscode/` for
//! the owner (200, its workbench page), 403 for another member of the repository, 404 for a
//! stranger and for an environment created with `--editor terminal`; after stop and start,
//! and after a restart, it answers again.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cove_api::{Editor, EnvState, Environment, UserSettings};

use common::{git, ok};

const DEVFILE: &str = r#"schemaVersion: 2.2.0
metadata:
  name: code
components:
  - name: dev
    container:
      image: cove/universal:latest
      mountSources: true
      memoryLimit: 2Gi
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vscode_in_the_browser() {
    let s = common::serve_with_engine(|_| {}).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for (name, pw) in [
        ("alice", "alice-password-1"),
        ("bob", "bob-password-12"),
        ("carol", "carol-password-1"),
    ] {
        common::create_user(&http, &s.url, name, pw).await;
        let t = common::create_token(&http, &s.url, name, pw, "t", &["read", "write"]).await;
        tokens.push(t.token);
    }
    common::create_repo(&http, &s.url, &tokens[0], "code").await;
    // bob writes to the repository, carol has no role on it
    let r = common::put_member(&http, &s.url, "alice/code", "bob", "writer").await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run(&url, &tokens))
        .await
        .unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `status, body` of a GET (no redirects followed).
fn get(url: &str, token: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(90))
        .build();
    match agent
        .get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => {
            let status = r.status();
            (status, r.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Waits (bounded) until the editor answers and returns its page. code-server starts in a
/// few seconds once the environment runs; until then the proxy answers 503. Its root
/// redirects (relatively, so under the prefix) to `./?folder=<the project's folder>`.
fn editor_page(url: &str, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, body) = get(url, token);
        if status == 302 {
            assert!(
                body.contains("Redirecting to ./?folder=/projects/code"),
                "{body}"
            );
            let (status, page) = get(&format!("{url}?folder=/projects/code"), token);
            assert_eq!(status, 200, "{page}");
            return page;
        }
        assert!(
            status == 503 && Instant::now() < deadline,
            "{url}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn show(home: &Path, url: &str, token: &str, env: &str) -> Environment {
    let out = common::cove(home, url, token, &["env", "show", env, "--output", "json"]);
    serde_json::from_str(&ok(&out)).unwrap()
}

fn run(url: &str, tokens: &[String]) {
    let (alice, bob, carol) = (&tokens[0], &tokens[1], &tokens[2]);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    std::fs::write(w.join("devfile.yaml"), DEVFILE).unwrap();
    std::fs::write(w.join("hello.txt"), "hello\n").unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "code"]);
    let push = url.replace("http://", &format!("http://alice:{alice}@")) + "/git/alice/code.git";
    git(w, &["push", "-q", &push, "main"]);

    // the setting: terminal by default, vscode once set (an absent editor keeps it)
    let settings: UserSettings = ureq::get(&format!("{url}/api/v1/user/settings"))
        .set("Authorization", &format!("Bearer {alice}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(settings.editor, Some(Editor::Terminal));
    let settings: UserSettings = ureq::put(&format!("{url}/api/v1/user/settings"))
        .set("Authorization", &format!("Bearer {alice}"))
        .send_json(serde_json::json!({"editor": "vscode"}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(settings.editor, Some(Editor::Vscode));
    let out = common::cove(home, url, alice, &["user", "dotfiles", "clear"]);
    ok(&out);
    let settings: UserSettings = ureq::get(&format!("{url}/api/v1/user/settings"))
        .set("Authorization", &format!("Bearer {alice}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        settings.editor,
        Some(Editor::Vscode),
        "kept by a PUT without it"
    );

    // created without --editor: the setting's vscode
    let out = common::cove(
        home,
        url,
        alice,
        &[
            "env",
            "create",
            "alice/code",
            "--name",
            "code",
            "--output",
            "json",
        ],
    );
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.state, EnvState::Running, "{}", text(&out.stderr));
    assert_eq!(env.editor, Editor::Vscode);
    let id = env.id.clone();
    let editor_url = format!("{url}/env/{id}/vscode/");
    assert_eq!(env.editor_url.as_deref(), Some(editor_url.as_str()));
    let shown = ok(&common::cove(home, url, alice, &["env", "show", "code"]));
    assert!(shown.contains(&editor_url), "{shown}");

    // the owner gets code-server's workbench through the proxy
    let page = editor_page(&editor_url, alice);
    assert!(
        page.contains("vscode-workbench-web-configuration"),
        "{page}"
    );
    // its assets too (relative URLs under the prefix)
    let (status, _) = get(&format!("{url}/env/{id}/vscode"), alice);
    assert_eq!(status, 307, "the prefix without its slash redirects");
    // another member of the repository: 403; a stranger: 404; nobody: 401
    let (status, body) = get(&editor_url, bob);
    assert_eq!(status, 403, "bob: {body}");
    let (status, body) = get(&editor_url, carol);
    assert_eq!(status, 404, "carol: {body}");
    // not even an administrator: the page runs unsandboxed on Cove's origin
    let (status, body) = get(&editor_url, common::ADMIN_TOKEN);
    assert_eq!(status, 403, "admin: {body}");
    let anonymous = ureq::AgentBuilder::new().redirects(0).build();
    match anonymous.get(&editor_url).call() {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 401),
        other => panic!("anonymous: {other:?}"),
    }
    // code-server runs in the dev container, with its tools and /projects
    let out = common::cove(
        home,
        url,
        alice,
        &[
            "env", "exec", "code", "--no-tty", "--", "sh", "-c",
            "ps -eo args | grep -c '[c]ode-server/lib/code-server/out/node/entry.js' && test -r /projects/code/hello.txt && test ! -w /opt/cove/code-server/bin",
        ],
    );
    ok(&out);

    // stop and start: the editor comes back
    ok(&common::cove(home, url, alice, &["env", "stop", "code"]));
    let (status, _) = get(&editor_url, alice);
    assert_eq!(
        status, 503,
        "a stopped environment's editor does not answer"
    );
    ok(&common::cove(home, url, alice, &["env", "start", "code"]));
    assert_eq!(show(home, url, alice, "code").state, EnvState::Running);
    let page = editor_page(&editor_url, alice);
    assert!(
        page.contains("vscode-workbench-web-configuration"),
        "{page}"
    );

    // restart (new containers from the workspace devfile): mounted and started again
    ok(&common::cove(home, url, alice, &["env", "restart", "code"]));
    assert_eq!(show(home, url, alice, "code").state, EnvState::Running);
    let page = editor_page(&editor_url, alice);
    assert!(
        page.contains("vscode-workbench-web-configuration"),
        "{page}"
    );

    // an environment created with --editor terminal has no editor
    let out = common::cove(
        home,
        url,
        alice,
        &[
            "env",
            "create",
            "alice/code",
            "--name",
            "plain",
            "--editor",
            "terminal",
            "--output",
            "json",
        ],
    );
    let plain: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup2 = cove_tests::EnvCleanup(plain.id.clone());
    assert_eq!(plain.editor, Editor::Terminal);
    assert_eq!(plain.editor_url, None);
    let (status, body) = get(&format!("{url}/env/{}/vscode/", plain.id), alice);
    assert_eq!(status, 404, "{body}");
}
