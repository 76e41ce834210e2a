//! The `cove run` and `cove secret` commands against a real in-process server whose embedded
//! agent runs jobs on the real Docker engine; the repository is pushed with the real `git`.
//! A secret set with `cove secret set` and printed by a step (plain, base64, split across two
//! writes) never appears in stored logs, the CLI's output or API responses.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cove_api::{Run, RunState};

use common::{git, ok, Served, ADMIN_TOKEN};

const SECRET: &str = "s3cr3t-Value-9f2b7c1e";

async fn start() -> Option<Served> {
    common::serve_jobs(|_| {}).await
}

fn cove_with(home: &Path, url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = common::cove_command(home, url, ADMIN_TOKEN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

const WORKFLOW: &str = r#"Name: secrets
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Leak:
    Identifier: aws/build@v1
    Outputs:
      Variables: [LEAKED]
    Configuration:
      Steps:
        - Run: LEAKED="x-${Secrets.api_token}"
        - Run: echo "plain ${Secrets.api_token}"
        - Run: printf '%s' "${Secrets.api_token}" | base64
        - Run: printf 'split %s' "$(echo ${Secrets.api_token} | cut -c1-8)"; sleep 0.3; printf '%s\n' "$(echo ${Secrets.api_token} | cut -c9-)"
        - Run: echo "visible line"
  Slow:
    Identifier: aws/build@v1
    DependsOn: [Leak]
    Configuration:
      Steps:
        - Run: for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 1; done
"#;

fn base64_of(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_and_secret_commands_with_masking() {
    let Some(s) = start().await else { return };
    let (home, url) = (s.home.path().to_path_buf(), s.url.clone());
    let cove = move |args: &[&str], stdin: Option<&str>| cove_with(&home, &url, args, stdin);
    let cove = std::sync::Arc::new(cove);

    let c = cove.clone();
    tokio::task::spawn_blocking(move || {
        ok(&c(&["repo", "create", "app"], None));
        let out = ok(&c(
            &["secret", "set", "app", "api_token"],
            Some(&format!("{SECRET}\n")),
        ));
        assert!(!out.contains(SECRET));
        let listed = ok(&c(&["secret", "list", "app", "--output", "json"], None));
        assert!(
            listed.contains("api_token") && !listed.contains(SECRET),
            "{listed}"
        );
        // Issue 14: default branch only unless marked for all branches.
        let out = ok(&c(
            &["secret", "set", "app", "shared", "--all-branches"],
            Some("shared-value\n"),
        ));
        assert!(out.contains("(all branches)"), "{out}");
        let listed = ok(&c(&["secret", "list", "app"], None));
        assert!(
            listed.contains("api_token\tdefault branch only")
                && listed.contains("shared\tall branches"),
            "{listed}"
        );
        ok(&c(&["secret", "delete", "app", "shared"], None));
    })
    .await
    .unwrap();

    // The key file is private.
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(s.data.path().join("secrets.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // Not stored in clear anywhere in the database file.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let push_url = common::admin_git_url(&s.url, "app");
    {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            git(&dir, &["init", "-q", "-b", "main"]);
            std::fs::create_dir_all(dir.join(".codecatalyst/workflows")).unwrap();
            std::fs::write(dir.join(".codecatalyst/workflows/secrets.yaml"), WORKFLOW).unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "wf"]);
            git(&dir, &["push", "-q", &push_url, "main"]);
        })
        .await
        .unwrap();
    }

    let c = cove.clone();
    let secret_b64 = base64_of(SECRET);
    let data_dir = s.data.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // The push created a run; follow its logs to the end.
        let start = Instant::now();
        let run = loop {
            let out = ok(&c(
                &["run", "list", "--repo", "app", "--output", "json"],
                None,
            ));
            let runs: Vec<Run> = serde_json::from_str(&out).unwrap();
            if let Some(r) = runs.first() {
                break r.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no run");
            std::thread::sleep(Duration::from_millis(200));
        };
        let id = run.id.to_string();
        let followed = ok(&c(&["run", "logs", "-f", &id, "Leak"], None));
        assert!(followed.contains("visible line"), "{followed}");
        assert!(followed.contains("plain ***"), "{followed}");
        for leaked in [SECRET, secret_b64.as_str(), &SECRET[..8], &SECRET[8..]] {
            assert!(!followed.contains(leaked), "{leaked} in {followed}");
        }
        // Wait for the end; check every output and the database file.
        let all = ok(&c(&["run", "logs", "-f", &id], None));
        assert!(all.contains("tick 6"), "{all}");
        let shown_json = ok(&c(&["run", "show", &id, "--output", "json"], None));
        assert!(
            !shown_json.contains(SECRET),
            "exported variables are masked: {shown_json}"
        );
        assert!(shown_json.contains("x-***"), "{shown_json}");
        let shown: Run = serde_json::from_str(&shown_json).unwrap();
        assert_eq!(shown.state, RunState::Succeeded, "{shown:#?}");
        let text = ok(&c(&["run", "show", &id], None));
        assert!(
            text.contains("Leak") && text.contains("succeeded"),
            "{text}"
        );
        for out in [&all, &text] {
            assert!(!out.contains(SECRET) && !out.contains(&secret_b64));
        }
        for entry in std::fs::read_dir(&data_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "secret in clear in {}",
                    path.display()
                );
            }
        }

        // Manual start, cancel while Slow runs, retry.
        let out = ok(&c(
            &[
                "run",
                "start",
                "app",
                "--workflow",
                "secrets",
                "--output",
                "json",
            ],
            None,
        ));
        let manual: Run = serde_json::from_str(&out).unwrap();
        assert_eq!(manual.trigger, "manual");
        let mid = manual.id.to_string();
        let start = Instant::now();
        loop {
            let out = ok(&c(&["run", "show", &mid, "--output", "json"], None));
            let r: Run = serde_json::from_str(&out).unwrap();
            if r.jobs
                .iter()
                .any(|j| j.action == "Slow" && j.state == cove_api::JobState::Running)
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{r:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        ok(&c(&["run", "cancel", &mid], None));
        let start = Instant::now();
        let cancelled = loop {
            let out = ok(&c(&["run", "show", &mid, "--output", "json"], None));
            let r: Run = serde_json::from_str(&out).unwrap();
            if r.state.is_terminal() {
                break r;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{r:#?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(cancelled.state, RunState::Cancelled, "{cancelled:#?}");
        // Followed logs of a cancelled run end and exit non-zero.
        let f = c(&["run", "logs", "-f", &mid, "Slow"], None);
        assert!(!f.status.success());
        ok(&c(&["run", "retry", &mid], None));
        let start = Instant::now();
        loop {
            let out = ok(&c(&["run", "show", &mid, "--output", "json"], None));
            let r: Run = serde_json::from_str(&out).unwrap();
            if r.state.is_terminal() {
                assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{r:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        ok(&c(&["secret", "delete", "app", "api_token"], None));
        let listed = ok(&c(&["secret", "list", "app"], None));
        assert!(!listed.contains("api_token"));
    })
    .await
    .unwrap();
}
