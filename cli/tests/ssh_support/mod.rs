//! Helpers of `ssh.rs`: keys by ssh-keygen, the OpenSSH client with no configuration but
//! the test's, a window resize under tmux, and a local forward asked over HTTP.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A new key pair by ssh-keygen in `dir`; the private key's path.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (Debian: openssh-client) must be installed");
    assert!(out.status.success(), "{out:?}");
    key
}

/// `ssh` with no configuration but ours: batch mode, no host key prompts, key `key`.
pub fn ssh_base(program: &str, key: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
        "-i",
    ])
    .arg(key)
    .stdin(Stdio::null());
    cmd
}

/// `ssh -p PORT -i key USER@127.0.0.1 ARGS…` straight to the SSH listener.
pub fn ssh(port: u16, key: &Path, user: &str, args: &[&str]) -> Output {
    ssh_base("ssh", key)
        .args(["-p", &port.to_string(), &format!("{user}@127.0.0.1")])
        .args(args)
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `ssh -tt` with a login shell in a tmux pane, asks `stty size`, resizes the window and
/// asks again: the shell sees each size of the pane (pty-req, then window-change).
pub fn resize_under_tmux(port: u16, key: &Path, id: &str) {
    let socket = format!("cove-ssh-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let out = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux must be installed (scripts/test-env.sh)");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["-L", &self.0, "kill-server"])
                .output();
        }
    }
    let _kill = Kill(socket.clone());
    let command = format!(
        "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR -i {} -p {port} -tt {id}@127.0.0.1",
        key.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    tmux(&["set-option", "-t", "t", "status", "off"]);
    let screen_has = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = tmux(&["capture-pane", "-p", "-t", "t"]);
            if screen.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {want:?} on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let pane = || {
        let dims = tmux(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_height} #{pane_width}",
        ]);
        dims.trim().to_string()
    };
    // the prompt of the login shell, then the size it sees
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["send-keys", "-t", "t", "echo size=$(stty size)=", "Enter"]);
    screen_has(&format!("size={}=", pane()));
    tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    assert_eq!(pane(), "40 120");
    // the window-change travels ssh -> Cove -> the exec's pty while the keys are typed: ask
    // again until the shell sees the new size (each try clears the screen)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tmux(&[
            "send-keys",
            "-t",
            "t",
            "clear; echo size=$(stty size)=",
            "Enter",
        ]);
        std::thread::sleep(Duration::from_millis(500));
        let screen = tmux(&["capture-pane", "-p", "-t", "t"]);
        if screen.contains("size=40 120=") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shell never saw the new size 40 120:\n{screen}"
        );
    }
    tmux(&["send-keys", "-t", "t", "exit", "Enter"]);
}

/// Opens `ssh -L LOCAL:localhost:REMOTE` and sends `request` to LOCAL until an HTTP answer
/// comes back (the forward takes a moment to listen); the answer.
pub fn forward_and_ask(port: u16, key: &Path, id: &str, remote: u16, request: &str) -> String {
    let local_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut forward = ssh_base("ssh", key)
        .args([
            "-p",
            &port.to_string(),
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args(["-L", &format!("{local_port}:localhost:{remote}")])
        .arg(format!("{id}@127.0.0.1"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let reply = (|| -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(("127.0.0.1", local_port))?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            c.write_all(request.as_bytes())?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        })();
        match reply {
            Ok(s) if s.starts_with("HTTP/1.") => break s,
            _ if Instant::now() > deadline => {
                panic!("ssh -L to port {remote} never answered: {reply:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    let _ = forward.kill();
    let _ = forward.wait();
    answer
}
