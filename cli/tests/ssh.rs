//! SSH into environments with Debian's real OpenSSH client (`ssh`, `sftp`, `ssh -L`) against
//! a real in-process server (its SSH listener and its SSH WebSocket through
//! `cove env ssh --stdio`) whose embedded agent runs the environment on the real Docker
//! engine: keys registered with `cove ssh-key add`, a command's exit status, a PTY, `sftp`
//! put/get into /projects, `cove config-ssh` + `ssh cove.<env>` running the project's tests,
//! local forwarding to the DynamoDB sidecar, environment variables, the idle timer, a stopped
//! environment started on connect, and refusals (another writer's key, an unregistered key).

#![allow(clippy::unwrap_used)]

mod common;
mod ssh_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cove_api::{EnvState, Environment};
use cove_server::{AppState, Config, Server};

use common::{git, ok, ADMIN_TOKEN};
use ssh_support::{forward_and_ask, keygen, resize_under_tmux, ssh, ssh_base, text};

struct Setup {
    url: String,
    ssh: SocketAddr,
    state: AppState,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve() -> Setup {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::new(data.path());
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.ssh_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::new(config).await.unwrap();
    assert!(
        server.state().envs().has_agent(),
        "no Docker engine answered: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    let ssh = server.ssh_addr().unwrap();
    let state = server.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    Setup {
        url,
        ssh,
        state,
        _data: data,
        _stop: tx,
    }
}

const TEST_PY: &str = r#"import os, urllib.request

def test_runs_in_the_project():
    assert os.getcwd().startswith("/projects/todo")
    assert os.environ["IS_LOCAL"] == "true"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ssh_into_an_environment_with_openssh() {
    let s = serve().await;
    let http = reqwest::Client::new();
    common::create_user(&http, &s.url, "alice", "alice-password-1").await;
    common::create_user(&http, &s.url, "bob", "bob-password-12").await;
    let alice = common::create_token(
        &http,
        &s.url,
        "alice",
        "alice-password-1",
        "t",
        &["read", "write"],
    )
    .await
    .token;
    let bob = common::create_token(
        &http,
        &s.url,
        "bob",
        "bob-password-12",
        "t",
        &["read", "write"],
    )
    .await
    .token;
    common::create_repo(&http, &s.url, &alice, "todo").await;
    // bob writes to the repository but does not own alice's environment
    let r = http
        .put(format!("{}/api/v1/repos/alice/todo/members/bob", s.url))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"role": "writer"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (url, ssh_port, state) = (s.url.clone(), s.ssh.port(), s.state.clone());
    tokio::task::spawn_blocking(move || run(&url, ssh_port, &state, &alice, &bob))
        .await
        .unwrap();
}

fn cove(home: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    common::cove_command(home, url, token)
        .args(args)
        .output()
        .unwrap()
}

fn run(url: &str, port: u16, state: &AppState, alice: &str, bob: &str) {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let keys = tempfile::tempdir().unwrap();
    let alice_key = keygen(keys.path(), "alice_key");
    let bob_key = keygen(keys.path(), "bob_key");
    let stranger_key = keygen(keys.path(), "stranger_key");

    // keys: a .pub file, standard input; malformed ones are refused with a reason
    let added = ok(&cove(
        home,
        url,
        alice,
        &[
            "ssh-key",
            "add",
            alice_key.with_extension("pub").to_str().unwrap(),
        ],
    ));
    let fingerprint = text(
        &Command::new("ssh-keygen")
            .arg("-lf")
            .arg(alice_key.with_extension("pub"))
            .output()
            .unwrap()
            .stdout,
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    assert!(added.contains(&fingerprint), "{added} / {fingerprint}");
    let listed = ok(&cove(home, url, alice, &["ssh-key", "list"]));
    assert!(
        listed.contains(&fingerprint) && listed.contains("alice_key"),
        "{listed}"
    );
    let bad = common::cove_command(home, url, alice)
        .args(["ssh-key", "add", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"ssh-ed25519 AAAAnotakey x\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("not an OpenSSH public key"),
        "{}",
        text(&bad.stderr)
    );
    let bob_pub = std::fs::read_to_string(bob_key.with_extension("pub")).unwrap();
    let bob_add = common::cove_command(home, url, bob)
        .args(["ssh-key", "add"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bob_pub.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    ok(&bob_add);
    // the same key cannot belong to two users
    let again = cove(
        home,
        url,
        bob,
        &[
            "ssh-key",
            "add",
            alice_key.with_extension("pub").to_str().unwrap(),
        ],
    );
    assert!(
        !again.status.success(),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // alice's environment: the app + DynamoDB devfile
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q", "-b", "main"]);
    let devfile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfiles/examples/app-with-dynamodb.yaml"),
    )
    .unwrap();
    // the postStart pytest is not what this test is about: run ours through ssh instead
    let devfile = devfile.replace("events:\n  postStart:\n    - test\n", "");
    std::fs::write(w.join("devfile.yaml"), devfile).unwrap();
    std::fs::write(w.join("test_app.py"), TEST_PY).unwrap();
    git(w, &["add", "."]);
    git(w, &["commit", "-q", "-m", "app"]);
    let push = url.replace("http://", &format!("http://alice:{alice}@")) + "/git/alice/todo.git";
    git(w, &["push", "-q", &push, "main"]);
    let out = cove(
        home,
        url,
        alice,
        &[
            "env",
            "create",
            "alice/todo",
            "--name",
            "todo-ssh",
            "--output",
            "json",
        ],
    );
    let env: Environment = serde_json::from_str(&ok(&out)).unwrap();
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());
    assert_eq!(env.state, EnvState::Running, "{}", text(&out.stderr));
    let id = env.id.clone();

    // a command and its exit status, stdout and stderr apart
    let out = ssh(port, &alice_key, &id, &["echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
    // the environment's name works as the user name too
    let out = ssh(port, &alice_key, "todo-ssh", &["true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // stdin reaches the command and its end is the command's EOF
    let mut child = ssh_base("ssh", &alice_key)
        .args(["-p", &port.to_string(), &format!("{id}@127.0.0.1"), "wc -c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&[b'x'; 100_000])
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "100000");
    // environment variables (SetEnv → env requests)
    let out = ssh(
        port,
        &alice_key,
        &id,
        &["-o", "SetEnv=COVE_SSH_TEST=hello", "echo $COVE_SSH_TEST"],
    );
    assert_eq!(text(&out.stdout).trim(), "hello", "{}", text(&out.stderr));

    // keep-alives: OpenSSH's client asks every second on a connection that stays idle for 6 s
    // and gives up after 2 unanswered (as VS Code Remote-SSH configures it); the server
    // answers them, so the command's output arrives after the silence.
    let out = ssh(
        port,
        &alice_key,
        &id,
        &[
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=2",
            "sleep 6; echo still here",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "still here",
        "{}",
        text(&out.stderr)
    );

    // a PTY with -tt
    let out = ssh(port, &alice_key, &id, &["-tt", "tty; stty size"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    // without one, no TTY
    let out = ssh(port, &alice_key, &id, &["tty"]);
    assert!(
        text(&out.stdout).contains("not a tty"),
        "{}",
        text(&out.stdout)
    );

    // an interactive shell under a real terminal (tmux): its size, and a resize reaching it
    resize_under_tmux(port, &alice_key, &id);

    // sftp put and get into /projects
    let local = keys.path().join("up.txt");
    std::fs::write(&local, "sent by sftp\n").unwrap();
    let back = keys.path().join("back.txt");
    let batch = keys.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} /projects/up.txt\nget /projects/up.txt {}\n",
            local.display(),
            back.display()
        ),
    )
    .unwrap();
    let out = ssh_base("sftp", &alice_key)
        .args(["-P", &port.to_string(), "-b"])
        .arg(&batch)
        .arg(format!("{id}@127.0.0.1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sftp: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "sent by sftp\n");
    let seen = ok(&cove(
        home,
        url,
        alice,
        &[
            "env",
            "exec",
            &id,
            "--no-tty",
            "--",
            "cat",
            "/projects/up.txt",
        ],
    ));
    assert_eq!(seen, "sent by sftp\n");

    // cove config-ssh, then the stock client by host name, over the server's WebSocket
    let ssh_config = keys.path().join("config");
    std::fs::write(&ssh_config, "Host elsewhere\n  User me\n").unwrap();
    for _ in 0..2 {
        ok(&cove(
            home,
            url,
            alice,
            &["config-ssh", "--file", ssh_config.to_str().unwrap()],
        ));
    }
    let written = std::fs::read_to_string(&ssh_config).unwrap();
    assert_eq!(written.matches("# --- cove start").count(), 1, "{written}");
    assert!(written.starts_with("Host elsewhere\n"), "{written}");
    assert!(written.contains("Host cove.todo-ssh\n"), "{written}");
    let via_config = |args: &[&str]| {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&ssh_config)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-i",
            ])
            .arg(&alice_key)
            .args(args)
            .env("XDG_CONFIG_HOME", home)
            .env("COVE_URL", url)
            .env("COVE_TOKEN", alice)
            .stdin(Stdio::null());
        cmd
    };
    let out = via_config(&[
        "cove.todo-ssh",
        "cd $PROJECT_SOURCE && python3 -m pytest -q",
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 passed"),
        "{}",
        text(&out.stdout)
    );
    // scp (the sftp protocol) and git over ssh with the same host entry
    let scp_src = keys.path().join("scp.txt");
    std::fs::write(&scp_src, "copied by scp\n").unwrap();
    let out = Command::new("scp")
        .arg("-F")
        .arg(&ssh_config)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&alice_key)
        .arg(&scp_src)
        .arg("cove.todo-ssh:/projects/scp.txt")
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", alice)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "scp: {}", text(&out.stderr));
    let out = via_config(&["cove.todo-ssh", "cat /projects/scp.txt"])
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "copied by scp\n",
        "{}",
        text(&out.stderr)
    );
    let clone_dir = keys.path().join("clone");
    let out = Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg("cove.todo-ssh:/projects/todo")
        .arg(&clone_dir)
        .env(
            "GIT_SSH_COMMAND",
            format!(
                "ssh -F {} -o BatchMode=yes -o IdentitiesOnly=yes -i {}",
                ssh_config.display(),
                alice_key.display()
            ),
        )
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", alice)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git clone over ssh: {}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(clone_dir.join("test_app.py")).unwrap(),
        TEST_PY
    );

    // rsync over ssh
    let tree = keys.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/a.txt"), "synced\n").unwrap();
    let out = Command::new("rsync")
        .args(["-a", "-e"])
        .arg(format!(
            "ssh -F {} -o BatchMode=yes -o IdentitiesOnly=yes -i {}",
            ssh_config.display(),
            alice_key.display()
        ))
        .arg(format!("{}/", tree.display()))
        .arg("cove.todo-ssh:/projects/tree/")
        .env("XDG_CONFIG_HOME", home)
        .env("COVE_URL", url)
        .env("COVE_TOKEN", alice)
        .stdin(Stdio::null())
        .output()
        .expect("rsync must be installed (scripts/test-env.sh)");
    assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    let out = via_config(&["cove.todo-ssh", "cat /projects/tree/sub/a.txt"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "synced\n", "{}", text(&out.stderr));

    // the host key was pinned from the API: another key in its place is refused
    let known_hosts = home.join("cove").join("known_hosts");
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        pinned.starts_with("cove-server.") && pinned.contains("ssh-ed25519 "),
        "{pinned}"
    );
    let alias = pinned.split_whitespace().next().unwrap();
    let wrong = std::fs::read_to_string(bob_key.with_extension("pub")).unwrap();
    let wrong: Vec<&str> = wrong.split_whitespace().take(2).collect();
    std::fs::write(&known_hosts, format!("{alias} {}\n", wrong.join(" "))).unwrap();
    let out = via_config(&["cove.todo-ssh", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Host key verification failed")
            || text(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&known_hosts, &pinned).unwrap();

    // cove env ssh: the system ssh through the WebSocket; the exit status is cove's; another
    // container with --container (the sidecar has dynalite, the main container does not)
    let env_ssh = |extra: &[&str]| {
        let mut cmd = common::cove_command(home, url, alice);
        cmd.args(["env", "ssh", "-i", alice_key.to_str().unwrap()])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(extra)
            .stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let out = env_ssh(&["todo-ssh", "--", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = env_ssh(&["todo-ssh", "--", "command -v dynalite"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = env_ssh(&[
        "--container",
        "dynamodb",
        "todo-ssh",
        "--",
        "command -v dynalite",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = env_ssh(&["--container", "nope", "todo-ssh", "--", "true"]);
    assert!(
        text(&out.stderr).contains("no container nope"),
        "{}",
        text(&out.stderr)
    );
    // the same by user name straight to the listener; an unknown container is refused
    let out = ssh(
        port,
        &alice_key,
        &format!("{id}.dynamodb"),
        &["command -v dynalite"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ssh(port, &alice_key, &format!("{id}.nope"), &["true"]);
    assert_eq!(out.status.code(), Some(255));

    // ssh -L to the DynamoDB sidecar's port 8000 inside the environment (it listens on all
    // addresses)
    let body = "{}";
    let list_tables = format!(
        "POST / HTTP/1.1\r\nHost: localhost:8000\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = forward_and_ask(port, &alice_key, &id, 8000, &list_tables);
    // dynalite's own answer to an unsigned request: the sidecar was reached
    assert!(
        answer.contains("x-amzn-RequestId") && answer.contains("com.amazon.coral.service"),
        "{answer}"
    );
    // and to a server on the pod's loopback only (as editors' servers listen)
    let out = ssh(
        port,
        &alice_key,
        &id,
        &["cd /projects && (nohup python3 -m http.server --bind 127.0.0.1 8123 >/dev/null 2>&1 &) && sleep 1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer = forward_and_ask(
        port,
        &alice_key,
        &id,
        8123,
        "GET /up.txt HTTP/1.0\r\nHost: localhost\r\n\r\n",
    );
    assert!(answer.contains("sent by sftp"), "{answer}");
    // forwarding anywhere but the environment is refused
    let out = ssh(
        port,
        &alice_key,
        &id,
        &["-o", "ExitOnForwardFailure=yes", "-W", "169.254.169.254:80"],
    );
    assert_ne!(out.status.code(), Some(0));

    // refusals: another writer's registered key, an unregistered key
    for (who, key) in [("bob", &bob_key), ("stranger", &stranger_key)] {
        let out = ssh(port, key, &id, &["true"]);
        assert_eq!(out.status.code(), Some(255), "{who}: {out:?}");
        assert!(
            text(&out.stderr).contains("Permission denied"),
            "{who}: {}",
            text(&out.stderr)
        );
        let out = ssh(port, key, "todo-ssh", &["true"]);
        assert_eq!(out.status.code(), Some(255), "{who} by name: {out:?}");
    }
    // bob's own WebSocket is refused before SSH (not his environment)
    let out = cove(home, url, bob, &["env", "ssh", "--stdio", &id]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));

    // an SSH session is activity for the idle stop
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(state.store().touch_env(&id, 1_000)).unwrap();
    let out = ssh(port, &alice_key, &id, &["true"]);
    assert_eq!(out.status.code(), Some(0));
    let row = rt.block_on(state.store().env(&id)).unwrap().unwrap();
    assert!(row.last_activity_ms > 1_000_000, "{}", row.last_activity_ms);

    // logins and refusals are in the audit log, with the client address (also through the
    // WebSocket)
    let audit = rt
        .block_on(state.store().list_audit(
            &cove_server::store::AuditFilter {
                action: Some("ssh.login".into()),
                ..Default::default()
            },
            1000,
        ))
        .unwrap();
    let ok_rows: Vec<_> = audit.iter().filter(|r| r.result == "ok").collect();
    assert!(
        ok_rows
            .iter()
            .all(|r| r.username.as_deref() == Some("alice") && r.target == id),
        "{ok_rows:?}"
    );
    assert!(
        ok_rows
            .iter()
            .all(|r| r.client.as_deref() == Some("127.0.0.1")),
        "{ok_rows:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.result == "denied" && r.username.is_none()),
        "{audit:?}"
    );

    // a stopped environment is started on connect, with progress on stderr
    ok(&cove(home, url, alice, &["env", "stop", &id]));
    let out = ssh(port, &alice_key, &id, &["echo back"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "back\n");
    assert!(
        text(&out.stderr).contains("starting environment todo-ssh"),
        "{}",
        text(&out.stderr)
    );

    // an open session ends (with the reason) once its user is disabled
    let mut long = ssh_base("ssh", &alice_key)
        .args([
            "-p",
            &port.to_string(),
            &format!("{id}@127.0.0.1"),
            "sleep 300",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        long.try_wait().unwrap().is_none(),
        "the session ended early"
    );
    let admin = |path: &str| {
        let r = rt
            .block_on(
                reqwest::Client::new()
                    .post(format!("{url}/api/v1/users/alice/{path}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send(),
            )
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    };
    admin("disable");
    let disabled_at = Instant::now();
    let status = loop {
        if let Some(status) = long.try_wait().unwrap() {
            break status;
        }
        assert!(
            disabled_at.elapsed() < Duration::from_secs(30),
            "the session outlived its user's access by 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = long.wait_with_output().unwrap();
    assert!(!status.success());
    assert!(
        text(&out.stderr).contains("session closed: the account was disabled"),
        "{}",
        text(&out.stderr)
    );
    admin("enable");

    // a removed key no longer logs in
    let key_id = listed.split_whitespace().next().unwrap().to_string();
    ok(&cove(home, url, alice, &["ssh-key", "remove", &key_id]));
    let out = ssh(port, &alice_key, &id, &["true"]);
    assert_eq!(out.status.code(), Some(255));

    ok(&cove(home, url, alice, &["env", "delete", &id, "--yes"]));
}
