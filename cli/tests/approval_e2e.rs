//! Approval gates (`aws/approval@v1`, issue 15) end to end: a real in-process server whose
//! embedded agent runs the other actions on the real Docker engine, repositories pushed with
//! the real `git`, decisions made with the real `cove` binary.
//!
//! Regression: an approval gate used to run as a no-op job that succeeded by itself. Here it
//! waits (no lease, no container) until people decide.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cove_api::{Job, JobState, Run, RunState};
use serde_json::json;

use common::{git, ok, Served, ADMIN_TOKEN};

type Setup = Served;

async fn start(approval_timeout: Option<Duration>) -> Option<Setup> {
    common::serve_jobs(|config| {
        config.runs.reap_interval = Duration::from_millis(300);
        if let Some(t) = approval_timeout {
            config.runs.approval_timeout = t;
        }
    })
    .await
}

impl Served {
    /// The real `cove` binary as the holder of `token`.
    async fn cove(&self, token: &str, args: &[&str]) -> Output {
        common::cove_async(self.home.path(), &self.url, token, args).await
    }

    /// A user with a read+write token, made a member of `admin/<repo>` with `role`.
    async fn user(&self, name: &str, repo: &str, role: &str) -> String {
        let password = "correct horse battery";
        common::create_user(&self.http, &self.url, name, password).await;
        let token = common::create_token(
            &self.http,
            &self.url,
            name,
            password,
            "t",
            &["read", "write"],
        )
        .await
        .token;
        let r =
            common::put_member(&self.http, &self.url, &format!("admin/{repo}"), name, role).await;
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        token
    }

    async fn run(&self, id: i64) -> Run {
        self.admin_get(&format!("/runs/{id}")).await
    }

    async fn runs(&self, repo: &str) -> Vec<Run> {
        self.admin_get(&format!("/repos/admin/{repo}/runs")).await
    }

    /// Waits (up to 120 s) until `done(run)` holds for run `id`.
    async fn wait_for(&self, id: i64, what: &str, done: impl Fn(&Run) -> bool) -> Run {
        let start = Instant::now();
        loop {
            let run = self.run(id).await;
            if done(&run) {
                return run;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "run {id}: still not {what}: {run:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 120 s) until action `action` of run `id` waits for people to decide.
    async fn wait_gate(&self, id: i64, action: &str) -> Run {
        self.wait_for(id, &format!("waiting at {action}"), |r| {
            state_of(r, action) == JobState::WaitingApproval
        })
        .await
    }

    /// The `n`-th run (1-based, oldest first) of `admin/<repo>`, once it exists.
    async fn nth_run(&self, repo: &str, n: usize) -> i64 {
        let start = Instant::now();
        loop {
            let mut runs = self.runs(repo).await;
            runs.sort_by_key(|r| r.id);
            if runs.len() >= n {
                return runs[n - 1].id;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no run {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_repo(&self, name: &str) {
        common::create_repo(&self.http, &self.url, ADMIN_TOKEN, name).await;
    }

    /// Writes `files` into the work tree `dir`, commits and pushes `main` to `admin/<repo>`.
    async fn push(&self, dir: &Path, repo: &str, files: &[(&str, &str)]) {
        for (f, text) in files {
            let path = dir.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let url = common::admin_git_url(&self.url, repo);
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if !dir.join(".git").exists() {
                git(&dir, &["init", "-q", "-b", "main"]);
            }
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "change"]);
            git(&dir, &["push", "-q", &url, "main"]);
        })
        .await
        .unwrap();
    }
}

fn job<'r>(run: &'r Run, action: &str) -> &'r Job {
    run.jobs.iter().find(|j| j.action == action).unwrap()
}

fn state_of(run: &Run, action: &str) -> JobState {
    job(run, action).state
}

/// Containers of job `id` on the engine (running or not).
fn containers_of(id: i64) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=cove.job={id}"),
            "--format",
            "{{.ID}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const GATED: &str = r#"Name: gated
SchemaVersion: "1.0"
RunMode: PARALLEL
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo built
  Approve:
    Identifier: aws/approval@v1
    DependsOn: [Build]
    Configuration:
      ApprovalsRequired: 1
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Approve]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_waits_for_an_owner_then_approval_runs_and_rejection_skips() {
    let Some(s) = start(None).await else { return };
    s.create_repo("app").await;
    let writer = s.user("wri", "app", "writer").await;
    let work = tempfile::tempdir().unwrap();
    s.push(
        work.path(),
        "app",
        &[(".codecatalyst/workflows/gated.yaml", GATED)],
    )
    .await;
    let id = s.nth_run("app", 1).await;
    let run = s.wait_gate(id, "Approve").await;
    assert_eq!(state_of(&run, "Build"), JobState::Succeeded);
    let gate_id = job(&run, "Approve").id;
    // The gate never completes by itself: it stays waiting, never leased, no container,
    // and Deploy does not start.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = s.run(id).await;
        assert_eq!(
            state_of(&run, "Approve"),
            JobState::WaitingApproval,
            "{run:#?}"
        );
        assert_eq!(job(&run, "Approve").attempt, 0, "the gate was leased");
        assert_eq!(state_of(&run, "Deploy"), JobState::Pending);
        assert_eq!(run.state, RunState::Running);
        assert!(
            containers_of(gate_id).is_empty(),
            "a container for the gate"
        );
    }
    let approval = job(&run, "Approve")
        .approval
        .clone()
        .expect("approval info");
    assert_eq!(approval.approvals_required, 1);
    assert!(approval.approvers.is_empty(), "owners decide");
    assert!(approval.expires_at_ms.is_some());

    // A writer who is not an owner may not decide.
    let out = s
        .cove(
            &writer,
            &[
                "run",
                "approve",
                &id.to_string(),
                "Approve",
                "--comment",
                "me",
            ],
        )
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") || err.contains("only the owners"),
        "{err}"
    );
    assert_eq!(
        state_of(&s.run(id).await, "Approve"),
        JobState::WaitingApproval
    );

    // The owner approves with the CLI: Deploy runs, the run succeeds.
    ok(&s
        .cove(
            ADMIN_TOKEN,
            &[
                "run",
                "approve",
                &id.to_string(),
                "Approve",
                "--comment",
                "looks right",
            ],
        )
        .await);
    let run = s.wait_for(id, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(state_of(&run, "Deploy"), JobState::Succeeded);
    let decisions = &job(&run, "Approve").approval.as_ref().unwrap().decisions;
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        (
            decisions[0].user.as_str(),
            decisions[0].decision.as_str(),
            decisions[0].comment.as_str()
        ),
        ("admin", "approve", "looks right")
    );
    let shown = ok(&s.cove(ADMIN_TOKEN, &["run", "show", &id.to_string()]).await);
    assert!(
        shown.contains("approved by admin") && shown.contains("looks right"),
        "{shown}"
    );
    // Deciding again on an ended gate is a conflict.
    let out = s
        .cove(ADMIN_TOKEN, &["run", "approve", &id.to_string(), "Approve"])
        .await;
    assert!(!out.status.success());

    // A second run, started by hand: rejected, Deploy skipped, the run failed.
    let started = ok(&s
        .cove(ADMIN_TOKEN, &["run", "start", "app", "--workflow", "gated"])
        .await);
    assert!(started.contains("started"), "{started}");
    let id2 = s.nth_run("app", 2).await;
    s.wait_gate(id2, "Approve").await;
    ok(&s
        .cove(
            ADMIN_TOKEN,
            &[
                "run",
                "reject",
                &id2.to_string(),
                "Approve",
                "--comment",
                "not today",
            ],
        )
        .await);
    let run = s.wait_for(id2, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state_of(&run, "Approve"), JobState::Failed);
    assert_eq!(state_of(&run, "Deploy"), JobState::Skipped);
    assert_eq!(job(&run, "Deploy").attempt, 0, "Deploy never ran");
    let err = job(&run, "Approve").error.clone().unwrap_or_default();
    assert!(
        err.contains("rejected by admin") && err.contains("not today"),
        "{err}"
    );
}

const TWO: &str = r#"Name: two
SchemaVersion: "1.0"
Actions:
  Approve:
    Identifier: aws/approval@v1
    Configuration:
      ApprovalsRequired: 2
      Approvers: [alice, bob]
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Approve]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvals_need_two_listed_users() {
    let Some(s) = start(None).await else { return };
    s.create_repo("two").await;
    let alice = s.user("alice", "two", "reader").await;
    let bob = s.user("bob", "two", "writer").await;
    let carol = s.user("carol", "two", "writer").await;
    let work = tempfile::tempdir().unwrap();
    s.push(
        work.path(),
        "two",
        &[(".codecatalyst/workflows/two.yaml", TWO)],
    )
    .await;
    ok(&s
        .cove(ADMIN_TOKEN, &["run", "start", "two", "--workflow", "two"])
        .await);
    let id = s.nth_run("two", 1).await;
    s.wait_gate(id, "Approve").await;
    let sid = id.to_string();
    // Not on the list: a writer, and even the owner, get 403.
    for token in [&carol, ADMIN_TOKEN] {
        let out = s.cove(token, &["run", "approve", &sid, "Approve"]).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("only alice, bob"), "{err}");
    }
    // A comment over 4096 bytes, or deciding on an action that is not a gate, changes nothing.
    let long = s
        .http
        .post(s.api(&format!("/runs/{id}/actions/Approve/approve")))
        .bearer_auth(&alice)
        .json(&json!({"comment": "x".repeat(5000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    let not_gate = s
        .http
        .post(s.api(&format!("/runs/{id}/actions/Deploy/approve")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"comment": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_gate.status(), 409);
    assert!(job(&s.run(id).await, "Approve")
        .approval
        .as_ref()
        .unwrap()
        .decisions
        .is_empty());
    // alice twice is one approval.
    ok(&s
        .cove(
            &alice,
            &["run", "approve", &sid, "Approve", "--comment", "1"],
        )
        .await);
    ok(&s
        .cove(
            &alice,
            &["run", "approve", &sid, "Approve", "--comment", "again"],
        )
        .await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let run = s.run(id).await;
    assert_eq!(state_of(&run, "Approve"), JobState::WaitingApproval);
    assert_eq!(job(&run, "Approve").approval.as_ref().unwrap().approvals, 1);
    assert_eq!(state_of(&run, "Deploy"), JobState::Pending);
    ok(&s
        .cove(&bob, &["run", "approve", &sid, "Approve", "--comment", "2"])
        .await);
    let run = s.wait_for(id, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    let a = job(&run, "Approve").approval.clone().unwrap();
    let who: Vec<&str> = a.decisions.iter().map(|d| d.user.as_str()).collect();
    assert_eq!(who, ["alice", "alice", "bob"]);
}

const CONDITIONAL: &str = r#"Name: cdk
SchemaVersion: "1.0"
RunMode: PARALLEL
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Synth:
    Identifier: aws/build@v1
    Outputs:
      Variables: [PermissionsBroadened]
    Configuration:
      Steps:
        - Run: PermissionsBroadened=$(cat broadened.txt)
  ApproveIam:
    Identifier: aws/approval@v1
    DependsOn: [Synth]
    Configuration:
      Condition:
        When: ${Synth.PermissionsBroadened} == true
        FilesChanged: ['infra/.*']
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [ApproveIam]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_gate_passes_when_false_and_waits_when_true() {
    let Some(s) = start(None).await else { return };
    s.create_repo("cdk").await;
    let work = tempfile::tempdir().unwrap();
    // 1: nothing broadened, no infra change: the gate passes by itself.
    s.push(
        work.path(),
        "cdk",
        &[
            (".codecatalyst/workflows/cdk.yaml", CONDITIONAL),
            ("broadened.txt", "false\n"),
        ],
    )
    .await;
    let id = s.nth_run("cdk", 1).await;
    let run = s.wait_for(id, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(state_of(&run, "Deploy"), JobState::Succeeded);
    let a = job(&run, "ApproveIam").approval.clone().unwrap();
    let why = a.condition.unwrap_or_default();
    assert!(why.contains("condition false"), "{why}");
    assert!(a.decisions.is_empty());

    // 2: the synth says permissions broadened: the gate waits.
    s.push(work.path(), "cdk", &[("broadened.txt", "true\n")])
        .await;
    let id = s.nth_run("cdk", 2).await;
    let run = s.wait_gate(id, "ApproveIam").await;
    let why = job(&run, "ApproveIam")
        .approval
        .clone()
        .unwrap()
        .condition
        .unwrap();
    assert!(
        why.contains("PermissionsBroadened") && why.contains("holds"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        state_of(&s.run(id).await, "ApproveIam"),
        JobState::WaitingApproval
    );
    ok(&s
        .cove(
            ADMIN_TOKEN,
            &["run", "reject", &id.to_string(), "ApproveIam"],
        )
        .await);

    // 3: not broadened, but a file under infra/ changed: the gate waits.
    s.push(
        work.path(),
        "cdk",
        &[("broadened.txt", "false\n"), ("infra/stack.ts", "x\n")],
    )
    .await;
    let id = s.nth_run("cdk", 3).await;
    let run = s.wait_gate(id, "ApproveIam").await;
    let why = job(&run, "ApproveIam")
        .approval
        .clone()
        .unwrap()
        .condition
        .unwrap();
    assert!(why.contains("infra/stack.ts"), "{why}");
    ok(&s
        .cove(
            ADMIN_TOKEN,
            &["run", "approve", &id.to_string(), "ApproveIam"],
        )
        .await);
    let run = s.wait_for(id, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_nobody_decides_on_times_out() {
    let Some(s) = start(Some(Duration::from_secs(3))).await else {
        return;
    };
    s.create_repo("slow").await;
    let work = tempfile::tempdir().unwrap();
    s.push(
        work.path(),
        "slow",
        &[(".codecatalyst/workflows/two.yaml", TWO)],
    )
    .await;
    ok(&s
        .cove(ADMIN_TOKEN, &["run", "start", "slow", "--workflow", "two"])
        .await);
    let id = s.nth_run("slow", 1).await;
    s.wait_gate(id, "Approve").await;
    let run = s.wait_for(id, "finished", |r| r.state.is_terminal()).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state_of(&run, "Approve"), JobState::TimedOut);
    assert_eq!(state_of(&run, "Deploy"), JobState::Skipped);
    let err = job(&run, "Approve").error.clone().unwrap_or_default();
    assert!(err.contains("timed out"), "{err}");
}
