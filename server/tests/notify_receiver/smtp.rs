//! A real SMTP server on 127.0.0.1 for the email notification tests: `smtp_sink.py` (aiosmtpd,
//! Debian's python3-aiosmtpd, installed by scripts/test-env.sh) run as a child process that
//! writes each received message to a directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One message the SMTP server accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub to: String,
    pub from: String,
    pub headers: Vec<String>,
    pub text: String,
    pub raw: String,
}

/// A free TCP port on 127.0.0.1 (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Debian's python3 (where python3-aiosmtpd installs), else the one on PATH.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts the server on `port`, writing messages to `dir`; returns once it listens.
    pub async fn start(port: u16, dir: PathBuf) -> Result<SmtpSink> {
        std::fs::create_dir_all(&dir)?;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/notify_receiver/smtp_sink.py"
        );
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start the SMTP sink (python3 with aiosmtpd: scripts/test-env.sh installs python3-aiosmtpd)")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the SMTP sink did not start in 30 s")??;
        match line {
            Some(l) if l.starts_with("ready") => {}
            other => bail!("the SMTP sink did not start (aiosmtpd missing?): {other:?}"),
        }
        Ok(SmtpSink { port, dir, child })
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Waits (60 s at most) for a message to `rcpt` whose subject contains `needle`.
    pub async fn wait_for(&self, rcpt: &str, needle: &str) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(m) = self
                .messages()
                .into_iter()
                .find(|m| m.rcpt_tos.iter().any(|r| r == rcpt) && m.subject.contains(needle))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {rcpt} with {needle:?} in its subject; got {:#?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Messages to `rcpt`.
    pub fn to(&self, rcpt: &str) -> Vec<Mail> {
        self.messages()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == rcpt))
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
