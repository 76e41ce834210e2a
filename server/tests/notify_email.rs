#![allow(clippy::unwrap_used)]
//! Email notifications (issue 15) against a real server and a real SMTP server on 127.0.0.1
//! (aiosmtpd, `notify_receiver/smtp_sink.py`): an `email` target gets `run_succeeded` with its
//! subject, body and link; an approver with an address gets `approval_needed`; a reviewer gets
//! `review_requested`; an SMTP server that is down → the delivery is retried and logged as
//! failed, the run is unaffected, and a delivery still pending when it comes back is sent;
//! the idle reaper's stop mails the environment's owner.

mod common;
#[path = "notify_receiver/smtp.rs"]
mod smtp;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{TestServer, ADMIN_TOKEN};
use cove_api::{NotifyDelivery, NotifyTarget, Run, RunState, User};
use cove_server::notify::config::SmtpSettings;
use serde_json::json;
use smtp::{free_port, SmtpSink};

const GATED: &str = r#"Name: ship
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Gate:
    Identifier: aws/approval@v1
    Configuration:
      ApprovalsRequired: 1
      Approvers: [carol]
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Gate]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

const PLAIN: &str = r#"Name: build
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Configuration:
      Steps:
        - Run: echo built
"#;

fn smtp_on(port: u16) -> SmtpSettings {
    SmtpSettings::plain("127.0.0.1", port, "Cove <cove@example.test>").unwrap()
}

/// `PUT path` with `{"email": email}` as `token`.
async fn set_email(
    server: &TestServer,
    token: &str,
    path: &str,
    email: Option<&str>,
) -> Result<reqwest::Response> {
    Ok(server
        .http
        .put(server.api(path))
        .bearer_auth(token)
        .json(&json!({ "email": email }))
        .send()
        .await?)
}

async fn add_email_target(
    server: &TestServer,
    addresses: &[&str],
    events: &[&str],
) -> Result<reqwest::Response> {
    Ok(server
        .http
        .post(server.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "kind": "email", "addresses": addresses, "events": events }))
        .send()
        .await?)
}

async fn target_deliveries(server: &TestServer, target: i64) -> Result<Vec<NotifyDelivery>> {
    Ok(server
        .http
        .get(server.api(&format!(
            "/repos/admin/app/notifications/targets/{target}/deliveries"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits (90 s at most) until `target`'s delivery of `event` satisfies `done`.
async fn wait_delivery(
    server: &TestServer,
    target: i64,
    event: &str,
    done: impl Fn(&NotifyDelivery) -> bool,
) -> Result<NotifyDelivery> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = target_deliveries(server, target).await?;
        if let Some(d) = list.iter().find(|d| d.event == event && done(d)) {
            return Ok(d.clone());
        }
        assert!(Instant::now() < deadline, "{event}: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn push_workflow(server: &TestServer, name: &str, text: &str) -> Result<()> {
    let work = server.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    common::git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    common::commit_file(
        &work,
        &format!(".codecatalyst/workflows/{name}.yaml"),
        text.as_bytes(),
        "wf",
    )
    .await?;
    let url = server.git_url("admin/app", Some(ADMIN_TOKEN));
    common::git_ok(&work, &["push", "-q", &url, "main"]).await?;
    Ok(())
}

/// The run id in a message's link (`…/#/runs/ID`).
fn run_id_in(text: &str) -> i64 {
    let at = text.find("https://cove.test/#/runs/").expect("a run link") + 25;
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A gated run: the approver named in `Approvers` gets `approval_needed` at the address they
/// were given (and nobody else does); after the approval the `email` target gets
/// `run_succeeded` with a subject saying what happened and the run's link in the body. Both
/// delivery logs say delivered with the SMTP reply 250. Bad addresses are refused with 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_target_and_the_approver_get_mail() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let port = free_port();
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.notify.smtp = Some(smtp_on(port));
        c.public_url = Some("https://cove.test".into());
    })
    .await?;
    let sink = SmtpSink::start(port, server.tmp.path().join("mail")).await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let carol = server.create_user("carol").await?;
    assert!(server
        .put_member("admin/app", "carol", "reader")
        .await?
        .status()
        .is_success());
    // An administrator sets carol's address; admin sets their own.
    let r = set_email(
        &server,
        ADMIN_TOKEN,
        "/users/carol/email",
        Some("carol@example.test"),
    )
    .await?;
    assert_eq!(r.status(), 200);
    let u: User = r.json().await?;
    assert_eq!(u.email.as_deref(), Some("carol@example.test"));
    let r = set_email(
        &server,
        ADMIN_TOKEN,
        "/user/email",
        Some("admin@example.test"),
    )
    .await?;
    assert_eq!(r.status(), 200);
    // Header injection and non-addresses are refused; nothing changes.
    for bad in [
        "carol@example.test\r\nBcc: eve@example.test",
        "Carol <carol@example.test>",
        "carol",
        "a@example.test,eve@example.test",
    ] {
        let r = set_email(&server, &carol, "/user/email", Some(bad)).await?;
        assert_eq!(r.status(), 422, "{bad:?}");
    }
    let me: User = server
        .http
        .get(server.api("/user"))
        .bearer_auth(&carol)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me.email.as_deref(), Some("carol@example.test"));
    // Only administrators set someone else's address.
    let r = set_email(
        &server,
        &carol,
        "/users/admin/email",
        Some("x@example.test"),
    )
    .await?;
    assert_eq!(r.status(), 403);

    let r = add_email_target(&server, &["team@example.test\nBcc: eve@example.test"], &[]).await?;
    assert_eq!(r.status(), 422);
    let r = server
        .http
        .post(server.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "slack", "url": "https://chat.example/x", "addresses": ["a@example.test"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    let r = add_email_target(&server, &["team@example.test"], &["run_succeeded"]).await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let target: NotifyTarget = r.json().await?;
    assert_eq!(target.kind, "email");
    assert_eq!(target.addresses, vec!["team@example.test".to_string()]);

    push_workflow(&server, "ship", GATED).await?;

    let needed = sink
        .wait_for("carol@example.test", "waits for approval")
        .await;
    assert!(
        needed.subject.starts_with(
            "[Cove] admin/app: action Gate of workflow ship on main waits for approval"
        ),
        "{needed:#?}"
    );
    assert!(
        needed.text.contains("may approve: carol"),
        "{}",
        needed.text
    );
    assert_eq!(needed.mail_from, "cove@example.test");
    let run_id = run_id_in(&needed.text);
    assert!(
        sink.to("admin@example.test").is_empty(),
        "admin is not in Approvers"
    );
    assert!(
        sink.to("team@example.test").is_empty(),
        "the target subscribes to run_succeeded only"
    );

    let r = server
        .http
        .post(server.api(&format!("/runs/{run_id}/actions/Gate/approve")))
        .bearer_auth(&carol)
        .json(&json!({"comment": "go"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    let done = sink
        .wait_for("team@example.test", "workflow ship succeeded on main")
        .await;
    assert!(done
        .subject
        .starts_with("[Cove] admin/app: workflow ship succeeded on main ("));
    assert!(
        done.text
            .contains(&format!("\nhttps://cove.test/#/runs/{run_id}\n")),
        "{}",
        done.text
    );
    assert!(done.to.contains("team@example.test"), "{done:#?}");
    assert!(!done.headers.iter().any(|h| h == "bcc"));
    let run: Run = common::api_json(&server, &format!("/runs/{run_id}")).await?;
    assert_eq!(run.state, RunState::Succeeded);

    // The delivery logs: the target's (owners), carol's own.
    let d = wait_delivery(&server, target.id, "run_succeeded", |d| {
        d.status != "pending"
    })
    .await?;
    assert_eq!(
        (d.status.as_str(), d.attempts, d.response_code),
        ("delivered", 1, Some(250)),
        "{d:#?}"
    );
    let mine: Vec<NotifyDelivery> = server
        .http
        .get(server.api("/user/deliveries"))
        .bearer_auth(&carol)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].event, "approval_needed");
    assert_eq!(
        (mine[0].status.as_str(), mine[0].response_code),
        ("delivered", Some(250))
    );
    sink.stop().await;
    server.stop().await;
    Ok(())
}

/// A pull request names bob as a reviewer: bob, who set his own address, gets
/// `review_requested` with the pull request's link; the author gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_gets_mail() -> Result<()> {
    let port = free_port();
    let server = TestServer::start_configured(|c| {
        c.notify.smtp = Some(smtp_on(port));
        c.public_url = Some("https://cove.test".into());
        c.embedded_agent = false;
    })
    .await?;
    let sink = SmtpSink::start(port, server.tmp.path().join("mail")).await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let bob = server.create_user("bob").await?;
    assert!(server
        .put_member("admin/app", "bob", "writer")
        .await?
        .status()
        .is_success());
    let r = set_email(&server, &bob, "/user/email", Some("bob@example.test")).await?;
    assert_eq!(r.status(), 200);
    let r = set_email(
        &server,
        ADMIN_TOKEN,
        "/user/email",
        Some("admin@example.test"),
    )
    .await?;
    assert_eq!(r.status(), 200);
    let work = server.tmp.path().join("pr-work");
    std::fs::create_dir_all(&work)?;
    common::git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    common::commit_file(&work, "a.txt", b"a\n", "a").await?;
    let url = server.git_url("admin/app", Some(ADMIN_TOKEN));
    common::git_ok(&work, &["push", "-q", &url, "main"]).await?;
    common::git_ok(&work, &["checkout", "-q", "-b", "feature"]).await?;
    common::commit_file(&work, "a.txt", b"b\n", "b").await?;
    common::git_ok(&work, &["push", "-q", &url, "feature"]).await?;
    let r = server
        .http
        .post(server.api("/repos/admin/app/pulls"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"source": "feature", "title": "Change a", "reviewers": ["bob"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let mail = sink
        .wait_for("bob@example.test", "your review is requested on #1")
        .await;
    assert_eq!(
        mail.subject,
        "[Cove] admin/app: bob, your review is requested on #1 Change a"
    );
    assert!(
        mail.text
            .contains("\nhttps://cove.test/#/repos/admin/app/pulls/1\n"),
        "{}",
        mail.text
    );
    // Removing the address stops the mail: a second pull request reaches nobody.
    let r = set_email(&server, &bob, "/user/email", None).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<User>().await?.email, None);
    common::git_ok(&work, &["checkout", "-q", "-b", "second"]).await?;
    common::commit_file(&work, "b.txt", b"c\n", "c").await?;
    common::git_ok(&work, &["push", "-q", &url, "second"]).await?;
    let r = server
        .http
        .post(server.api("/repos/admin/app/pulls"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"source": "second", "title": "Second", "reviewers": ["bob"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.to("bob@example.test").len(), 1);
    assert!(sink.to("admin@example.test").is_empty(), "the author");
    sink.stop().await;
    server.stop().await;
    Ok(())
}

/// Without `[notify.smtp]` an email target is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_targets_need_an_smtp_server() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let r = add_email_target(&server, &["team@example.test"], &[]).await?;
    assert_eq!(r.status(), 422);
    assert!(r.text().await?.contains("[notify.smtp]"));
    server.stop().await;
    Ok(())
}

/// The SMTP server is down: the run still succeeds; its `run_succeeded` mail is tried
/// `max_attempts` times with back-off and logged as failed with the connection error. A ping
/// enqueued while it is down is sent once it is up again (nothing is lost while attempts are
/// left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_is_retried_and_logged() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let port = free_port();
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.notify.smtp = Some(smtp_on(port));
        c.notify.max_attempts = 3;
        c.notify.retry_base = Duration::from_millis(1500);
        c.public_url = Some("https://cove.test".into());
    })
    .await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let r = add_email_target(&server, &["team@example.test"], &["run_succeeded"]).await?;
    assert_eq!(r.status(), 201);
    let target: NotifyTarget = r.json().await?;
    push_workflow(&server, "build", PLAIN).await?;

    let d = wait_delivery(&server, target.id, "run_succeeded", |d| {
        d.status != "pending"
    })
    .await?;
    assert_eq!((d.status.as_str(), d.attempts), ("failed", 3), "{d:#?}");
    let error = d.error.clone().unwrap_or_default();
    assert!(!error.is_empty(), "{d:#?}");
    assert_eq!(d.response_code, None, "nothing answered");
    let runs: Vec<Run> = common::api_json(&server, "/repos/admin/app/runs").await?;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Succeeded, "the run is unaffected");

    // A ping while the server is down; it comes up after the first failed attempt.
    let r = server
        .http
        .post(server.api(&format!(
            "/repos/admin/app/notifications/targets/{}/test",
            target.id
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let first = wait_delivery(&server, target.id, "ping", |d| d.attempts >= 1).await?;
    assert_eq!(first.status, "pending", "{first:#?}");
    let sink = SmtpSink::start(port, server.tmp.path().join("mail")).await?;
    let ping = wait_delivery(&server, target.id, "ping", |d| d.status != "pending").await?;
    assert_eq!(ping.status, "delivered", "{ping:#?}");
    assert!(ping.attempts >= 2, "{ping:#?}");
    let mail = sink
        .wait_for("team@example.test", "test notification sent by admin")
        .await;
    assert!(mail.text.contains("https://cove.test/#/repos/admin/app"));
    assert_eq!(
        sink.messages().len(),
        1,
        "the failed delivery is not resent"
    );
    sink.stop().await;
    server.stop().await;
    Ok(())
}

/// The idle reaper (its own loop, checking every 200 ms) stops an environment idle past the
/// shortest timeout (1 s): its owner gets `env_stopped_idle` by email with the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_reaper_mails_the_environment_owner() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let port = free_port();
    let server = TestServer::start_configured(|c| {
        c.notify.smtp = Some(smtp_on(port));
        c.public_url = Some("https://cove.test".into());
        c.intervals.idle_check = Duration::from_millis(200);
    })
    .await?;
    let sink = SmtpSink::start(port, server.tmp.path().join("mail")).await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    server.create_user("dave").await?;
    assert!(server
        .put_member("admin/app", "dave", "writer")
        .await?
        .status()
        .is_success());
    let r = set_email(
        &server,
        ADMIN_TOKEN,
        "/users/dave/email",
        Some("dave@example.test"),
    )
    .await?;
    assert_eq!(r.status(), 200);
    let store = server.state.store();
    let repo = store.repo("admin", "app").await?.unwrap();
    let dave = store.user_by_name("dave").await?.unwrap();
    let plan = serde_json::to_string(&devfiles::EnvironmentPlan::default())?;
    store
        .create_env(&cove_server::store::EnvRow {
            id: "mailidle1".into(),
            name: "sleepy".into(),
            repo_id: repo.id,
            owner_id: dave.id,
            branch: "main".into(),
            devfile_path: None,
            state: cove_api::EnvState::Running,
            reason: None,
            plan_json: plan,
            devfile_text: None,
            restart_required: false,
            devfile_changes: None,
            endpoints_json: "[]".into(),
            idle_timeout_secs: 1,
            last_activity_ms: cove_server::store::now_ms(),
            created_at: 0,
            agent_id: None,
            placement: None,
            pooled: None,
        })
        .await?;
    let mail = sink
        .wait_for("dave@example.test", "environment sleepy of dave")
        .await;
    assert_eq!(
        mail.subject,
        "[Cove] admin/app: environment sleepy of dave on main was stopped after 1 s without activity"
    );
    assert!(
        mail.text.contains("\nhttps://cove.test/#/envs/mailidle1\n"),
        "{}",
        mail.text
    );
    let env = store.env("mailidle1").await?.unwrap();
    assert_ne!(
        env.state,
        cove_api::EnvState::Running,
        "the reaper stopped it"
    );
    sink.stop().await;
    server.stop().await;
    Ok(())
}
