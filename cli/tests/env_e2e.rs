//! End to end, as a user would: the `cove` CLI against a real in-process
//! server with its embedded agent on the real Docker engine, a repository
//! pushed with the real `git` client holding the app + DynamoDB devfile.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cove_api::{EnvState, Environment};

use common::{cove_logged_in as cove, git, ok, Served, ADMIN_TOKEN};

async fn start() -> Served {
    common::serve_with_engine(|config| {
        config.intervals.devfile_check = Duration::from_millis(500);
    })
    .await
}

const TEST_PY: &str = r#"import os, boto3

def test_items_roundtrip_on_local_dynamodb():
    assert os.environ["IS_LOCAL"] == "true"
    assert os.getcwd().startswith("/projects/todo")
    db = boto3.resource("dynamodb", endpoint_url="http://localhost:8000", region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")
    name = "todos-" + str(os.getpid())
    table = db.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
    table.wait_until_exists()
    table.put_item(Item={"id": "1", "title": "write tests"})
    assert table.get_item(Key={"id": "1"})["Item"]["title"] == "write tests"
"#;

fn show(home: &Path, env: &str) -> Environment {
    serde_json::from_str(&ok(&cove(home, &["env", "show", env, "--output", "json"]))).unwrap()
}

fn docker_labelled(kind: &str, env_id: &str) -> String {
    let out = Command::new("docker")
        .args([
            kind,
            "ls",
            "-q",
            "--filter",
            &format!("label=cove.env={env_id}"),
        ])
        .args(if kind == "ps" { vec!["-a"] } else { vec![] })
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_with_dynamodb_environment_end_to_end() {
    let s = start().await;
    let home = s.home.path().to_path_buf();
    let url = s.url.clone();
    let state = s.state.clone();
    tokio::task::spawn_blocking(move || run(&home, &url, &state))
        .await
        .unwrap();
}

fn run(home: &Path, url: &str, state: &cove_server::AppState) {
    ok(&cove(home, &["login", url, "--token", ADMIN_TOKEN]));
    ok(&cove(home, &["repo", "create", "todo"]));

    // push a repository holding the example devfile and a test that uses the sidecar
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    let devfile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfiles/examples/app-with-dynamodb.yaml"),
    )
    .unwrap();
    std::fs::write(w.join("devfile.yaml"), &devfile).unwrap();
    std::fs::write(w.join("test_app.py"), TEST_PY).unwrap();
    git(w, &["add", "."]);
    git(
        w,
        &[
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "-m",
            "app",
        ],
    );
    let push_url =
        url.replace("http://", &format!("http://admin:{ADMIN_TOKEN}@")) + "/git/admin/todo.git";
    git(w, &["push", "-q", &push_url, "main"]);

    // create: reaches running; postStart (pytest) ran against the sidecar
    let out = cove(
        home,
        &[
            "env",
            "create",
            "admin/todo",
            "--name",
            "todo-dev",
            "--idle-timeout",
            "30m",
            "--output",
            "json",
        ],
    );
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    let progress = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(env.state, EnvState::Running, "{progress}");
    assert!(
        progress.contains("creating containers") && progress.contains("cloning todo"),
        "{progress}"
    );
    assert!(
        progress.contains("postStart command test succeeded"),
        "{progress}"
    );
    assert_eq!(env.components, ["app", "dynamodb"]);

    // exec: the test passes — sidecar on localhost, IS_LOCAL, sources at /projects/todo
    let out = cove(
        home,
        &[
            "env",
            "exec",
            "todo-dev",
            "--",
            "sh",
            "-c",
            "cd $PROJECT_SOURCE && python3 -m pytest -q",
        ],
    );
    let stdout = ok(&out);
    assert!(stdout.contains("1 passed"), "{stdout}");
    // the clone credential is gone from the container and the token store
    let out = ok(&cove(
        home,
        &[
            "env",
            "exec",
            "todo-dev",
            "--",
            "sh",
            "-c",
            "cat /projects/todo/.git/config; env",
        ],
    ));
    assert!(
        !out.contains("cove_"),
        "a credential leaked into the environment: {out}"
    );

    // persistence across stop/start and three restarts
    ok(&cove(
        home,
        &[
            "env",
            "exec",
            "todo-dev",
            "--",
            "sh",
            "-c",
            "echo keep > /projects/keep.txt",
        ],
    ));
    ok(&cove(
        home,
        &[
            "env",
            "exec",
            "todo-dev",
            "--component",
            "dynamodb",
            "--",
            "sh",
            "-c",
            "echo vol > /data/keep.txt",
        ],
    ));
    ok(&cove(home, &["env", "stop", "todo-dev"]));
    assert_eq!(show(home, "todo-dev").state, EnvState::Stopped);
    ok(&cove(home, &["env", "start", "todo-dev"]));
    for _ in 0..3 {
        ok(&cove(home, &["env", "restart", "todo-dev"]));
    }
    assert_eq!(
        ok(&cove(
            home,
            &["env", "exec", "todo-dev", "--", "cat", "/projects/keep.txt"]
        )),
        "keep\n"
    );
    assert_eq!(
        ok(&cove(
            home,
            &[
                "env",
                "exec",
                "todo-dev",
                "--component",
                "dynamodb",
                "--",
                "cat",
                "/data/keep.txt"
            ]
        )),
        "vol\n"
    );

    // edit the devfile inside the environment: restart_required shows, restart applies it
    let edit = "sed -i 's/          value: \"true\"/          value: \"true\"\\n        - name: ADDED_BY_EDIT\\n          value: \"yes\"/' /projects/todo/devfile.yaml";
    ok(&cove(
        home,
        &["env", "exec", "todo-dev", "--", "sh", "-c", edit],
    ));
    let mut flagged = None;
    for _ in 0..40 {
        let e = show(home, "todo-dev");
        if e.restart_required {
            flagged = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let flagged = flagged.expect("restart_required within 10 s");
    assert!(
        flagged.devfile_changes.unwrap().contains("+ "),
        "diff shown"
    );
    let text = ok(&cove(home, &["env", "show", "todo-dev"]));
    assert!(text.contains("RESTART REQUIRED"), "{text}");
    ok(&cove(home, &["env", "restart", "todo-dev"]));
    assert!(!show(home, "todo-dev").restart_required);
    assert_eq!(
        ok(&cove(
            home,
            &[
                "env",
                "exec",
                "todo-dev",
                "--",
                "sh",
                "-c",
                "echo $ADDED_BY_EDIT; cat /projects/keep.txt"
            ]
        )),
        "yes\nkeep\n"
    );

    // break the devfile: restart refused with file:line:col, environment still running
    ok(&cove(
        home,
        &[
            "env",
            "exec",
            "todo-dev",
            "--",
            "sh",
            "-c",
            "sed -i 's/- name: app/- name: App Container/' /projects/todo/devfile.yaml",
        ],
    ));
    let out = cove(home, &["env", "restart", "todo-dev"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/projects/todo/devfile.yaml:")
            && err.contains(": error: name `App Container`"),
        "{err}"
    );
    assert_eq!(show(home, "todo-dev").state, EnvState::Running);
    assert_eq!(
        ok(&cove(
            home,
            &["env", "exec", "todo-dev", "--", "cat", "/projects/keep.txt"]
        )),
        "keep\n"
    );

    // interactive: a TTY through the terminal WebSocket (script(1) gives the CLI a terminal)
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} env exec todo-dev", env!("CARGO_BIN_EXE_cove")),
            "/dev/null",
        ])
        .env("XDG_CONFIG_HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo tty-$IS_LOCAL-$(tty | cut -c1-8) && ls /projects && pwd\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stdin.write_all(b"exit 3\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tty-true-/dev/pts"), "{text}");
    assert!(
        text.contains("keep.txt") && text.contains("/projects/todo"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "the remote exit code is ours: {text}"
    );

    // a WebSocket opened with a foreign Origin is refused
    let ws = format!(
        "{}/api/v1/environments/{}/terminal",
        url.replace("http://", "ws://"),
        env.id
    );
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(ws.as_str()).unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    match tungstenite::connect(req) {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "foreign origin must be refused, got {:?}",
            other.map(|_| ())
        ),
    }

    // list shows it; logs of the database component
    let list = ok(&cove(home, &["env", "list"]));
    assert!(
        list.contains("todo-dev") && list.contains("running"),
        "{list}"
    );
    let _ = ok(&cove(home, &["env", "logs", "todo-dev", "dynamodb"]));

    // idle stop with injected time
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = cove_server::store::now_ms();
    let stopped = rt
        .block_on(cove_server::envs::reap_idle(state, now + 10 * 60 * 1000))
        .unwrap();
    assert!(stopped.is_empty(), "not idle after 10 min (timeout 30 min)");
    let stopped = rt
        .block_on(cove_server::envs::reap_idle(state, now + 31 * 60 * 1000))
        .unwrap();
    assert_eq!(stopped, std::slice::from_ref(&env.id));
    for _ in 0..100 {
        if show(home, "todo-dev").state == EnvState::Stopped {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(show(home, "todo-dev").state, EnvState::Stopped);

    // delete leaves nothing labelled behind
    ok(&cove(home, &["env", "delete", "todo-dev", "--yes"]));
    assert_eq!(docker_labelled("ps", &env.id), "");
    assert_eq!(docker_labelled("volume", &env.id), "");
    let list = ok(&cove(home, &["env", "list", "--output", "json"]));
    assert_eq!(list.trim(), "[]");
}
