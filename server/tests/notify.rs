#![allow(clippy::unwrap_used)]
//! Notifications (issue 15) against a real server, a real HTTP receiver on 127.0.0.1 and,
//! for runs, the embedded agent on real Docker: signed webhooks and Slack messages for run
//! and approval events, retries with a delivery log, SSRF refusals, and a pending delivery
//! that survives SIGKILL of the real binary.

mod common;
mod notify_receiver;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{spawn_server_with, Proc, SpawnOptions, TestServer, ADMIN_TOKEN};
use cove_api::{NotifyDelivery, NotifyTarget, Run, RunState};
use notify_receiver::{add_target, deliveries, settled_delivery, verify, Receiver};
use serde_json::{json, Value};

const WORKFLOW: &str = r#"Name: ship
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Gate:
    Identifier: aws/approval@v1
    Configuration:
      ApprovalsRequired: 1
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Gate]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

/// The run finishes: a signed `run_succeeded` to the webhook, the Slack message with a link
/// to the run to the Slack target, `approval_needed` (with who may approve) when the gate
/// opens, and a target answering 500 twice gets it on the third attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_notifies_webhooks_slack_and_retries() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    receiver.fail.lock().unwrap().insert("/flaky".into(), 2);
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        c.notify.retry_base = Duration::from_millis(200);
        c.public_url = Some("https://cove.test".into());
    })
    .await?;
    let http = reqwest::Client::new();
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let r = add_target(
        &http,
        &server.url,
        "app",
        json!({"kind": "webhook", "url": format!("{hook}/hook"),
               "events": ["run_succeeded", "run_failed", "approval_needed", "approval_decided"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let webhook: NotifyTarget = r.json().await?;
    let secret = webhook
        .secret
        .clone()
        .expect("the secret is shown at creation");
    assert_eq!(webhook.url, format!("{hook}/…"), "the path is hidden");
    let r = add_target(
        &http,
        &server.url,
        "app",
        json!({"kind": "slack", "url": format!("{hook}/slack"), "events": ["run_succeeded"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let slack: NotifyTarget = r.json().await?;
    assert!(slack.secret.is_none());
    let r = add_target(
        &http,
        &server.url,
        "app",
        json!({"kind": "webhook", "url": format!("{hook}/flaky"), "events": ["run_succeeded"]}),
    )
    .await?;
    let flaky: NotifyTarget = r.json().await?;
    // The list never shows a secret again.
    let list: Vec<NotifyTarget> = http
        .get(server.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|t| t.secret.is_none()));

    let work = server.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    common::git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    common::commit_file(
        &work,
        ".codecatalyst/workflows/ship.yaml",
        WORKFLOW.as_bytes(),
        "wf",
    )
    .await?;
    let url = server.git_url("admin/app", Some(ADMIN_TOKEN));
    common::git_ok(&work, &["push", "-q", &url, "main"]).await?;

    // The gate opens: approval_needed, signed, naming who may approve.
    let needed = receiver.wait_for("/hook", "approval_needed").await;
    verify(&secret, &needed);
    let body = needed.json();
    assert_eq!(body["event"], "approval_needed");
    assert_eq!(body["repository"], "admin/app");
    assert_eq!(body["data"]["action"], "Gate");
    assert_eq!(body["data"]["approvers"], json!(["admin"]));
    assert_eq!(
        body["delivery"].as_str().unwrap(),
        needed.headers["x-cove-delivery"].to_str().unwrap()
    );
    let run_id: i64 = body["data"]["run"].as_str().unwrap().parse()?;
    assert!(
        receiver.requests("/slack").is_empty(),
        "slack only subscribed to run_succeeded"
    );

    let r = http
        .post(server.api(&format!("/runs/{run_id}/actions/Gate/approve")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"comment": "go"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    let decided = receiver.wait_for("/hook", "approval_decided").await;
    verify(&secret, &decided);
    let body = decided.json();
    assert_eq!(body["data"]["user"], "admin");
    assert_eq!(body["data"]["decision"], "approve");
    assert_eq!(body["data"]["comment"], "go");

    let done = receiver.wait_for("/hook", "run_succeeded").await;
    verify(&secret, &done);
    let body = done.json();
    assert_eq!(body["data"]["run"], run_id.to_string());
    assert_eq!(body["data"]["state"], "succeeded");
    assert_eq!(body["url"], format!("https://cove.test/#/runs/{run_id}"));
    let run: Run = common::api_json(&server, &format!("/runs/{run_id}")).await?;
    assert_eq!(run.state, RunState::Succeeded);

    let slack_msg = receiver.wait_for("/slack", "run_succeeded").await;
    let text = slack_msg.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!("<https://cove.test/#/runs/{run_id}|Open in Cove>")),
        "{text}"
    );
    assert!(
        text.contains("admin/app: workflow ship succeeded on main"),
        "{text}"
    );
    assert!(slack_msg.headers.get("x-cove-signature").is_none());

    // 500, 500, then 200: delivered on the third attempt, and the log says so.
    let d = settled_delivery(&http, &server.url, "app", flaky.id).await?;
    assert_eq!(d.status, "delivered", "{d:#?}");
    assert_eq!(d.attempts, 3);
    assert_eq!(d.response_code, Some(200));
    assert_eq!(receiver.requests("/flaky").len(), 3);
    // Each attempt carries the same delivery id and body.
    let flaky_got = receiver.requests("/flaky");
    assert!(flaky_got.windows(2).all(|w| w[0].body == w[1].body
        && w[0].headers["x-cove-delivery"] == w[1].headers["x-cove-delivery"]));
    let d = settled_delivery(&http, &server.url, "app", webhook.id).await?;
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1));
    let metrics = http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("cove_notification_attempts_total{result=\"retry\"} 2"),
        "{metrics}"
    );

    // Settling the run again (a stale report, a retry of the settle) notifies nobody twice.
    cove_server::runs::settle_run(&server.state, run_id).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests("/slack").len(), 1);
    server.stop().await;
    Ok(())
}

/// A target on 127.0.0.1 is refused at creation (422) without `[notify] allow_private`, and
/// refused again at delivery when the allowance is withdrawn later. A delivery pending when the
/// real server is SIGKILLed is delivered after its restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_refusals_and_a_pending_delivery_survives_sigkill() -> Result<()> {
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let open = tmp.path().join("open.toml");
    let closed = tmp.path().join("closed.toml");
    // Retries far apart: only the restart makes the pending delivery due again.
    std::fs::write(
        &open,
        "[notify]\nallow_private = [\"127.0.0.1/32\"]\nretry_base_ms = 600000\n",
    )?;
    std::fs::write(&closed, "[notify]\nretry_base_ms = 600000\n")?;
    let receiver_port = common::free_port()?;
    let hook = format!("http://127.0.0.1:{receiver_port}");
    let port = common::free_port()?;
    let spawn = |config: std::path::PathBuf| {
        let data_dir = data_dir.clone();
        async move {
            let options = SpawnOptions {
                config: Some(&config),
                ready_within: Duration::from_secs(60),
                ..SpawnOptions::default()
            };
            spawn_server_with(&data_dir, port, options).await
        }
    };

    // Without the allowance: 127.0.0.1, localhost, metadata and private addresses are refused.
    let Proc { mut child, url } = spawn(closed.clone()).await?;
    common::create_repo_http(&http, &url, "app").await;
    for target in [
        format!("{hook}/hook"),
        format!("http://localhost:{receiver_port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x".to_string(),
        "http://[::1]/x".to_string(),
    ] {
        let r = add_target(
            &http,
            &url,
            "app",
            json!({"kind": "webhook", "url": target}),
        )
        .await?;
        assert_eq!(r.status(), 422, "{target}");
        let err: Value = r.json().await?;
        assert!(err.to_string().contains("allow_private"), "{target}: {err}");
    }
    let r = add_target(
        &http,
        &url,
        "app",
        json!({"kind": "webhook", "url": "ftp://x.example/"}),
    )
    .await?;
    assert_eq!(r.status(), 422);
    let r = add_target(
        &http,
        &url,
        "app",
        json!({"kind": "webhook", "url": "http://x.example/", "events": ["everything"]}),
    )
    .await?;
    assert_eq!(r.status(), 422);
    child.kill().await?;

    // With it: the target is accepted; the receiver is down, so the ping stays pending.
    let Proc { mut child, url } = spawn(open.clone()).await?;
    let r = add_target(
        &http,
        &url,
        "app",
        json!({"kind": "webhook", "url": format!("{hook}/hook")}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let target: NotifyTarget = r.json().await?;
    let secret = target.secret.unwrap();
    let r = http
        .post(format!(
            "{url}/api/v1/repos/admin/app/notifications/targets/{}/test",
            target.id
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let ping: NotifyDelivery = r.json().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(&http, &url, "app", target.id).await?;
        let d = list.iter().find(|d| d.id == ping.id).unwrap();
        if d.attempts >= 1 {
            assert_eq!(d.status, "pending", "{d:#?}");
            assert!(
                d.error.as_deref().unwrap_or_default().contains("connect"),
                "{d:#?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no attempt: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await?;
    child.wait().await?;

    // The receiver comes up, the server restarts: the pending ping is delivered.
    let receiver = Receiver::default();
    receiver.serve(receiver_port).await?;
    let Proc { mut child, url } = spawn(open.clone()).await?;
    let got = receiver.wait_for("/hook", "ping").await;
    verify(&secret, &got);
    assert_eq!(
        got.headers["x-cove-delivery"].to_str().unwrap(),
        ping.id.to_string()
    );
    let d = settled_delivery(&http, &url, "app", target.id).await?;
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 2));
    child.kill().await?;
    child.wait().await?;

    // The allowance is withdrawn: the existing target's deliveries are refused, not sent.
    let Proc { mut child, url } = spawn(closed.clone()).await?;
    let r = http
        .post(format!(
            "{url}/api/v1/repos/admin/app/notifications/targets/{}/test",
            target.id
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    let second: NotifyDelivery = r.json().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let list = deliveries(&http, &url, "app", target.id).await?;
        let d = list.iter().find(|d| d.id == second.id).unwrap().clone();
        if d.attempts >= 1 {
            break d;
        }
        assert!(Instant::now() < deadline, "no attempt: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        d.error
            .as_deref()
            .unwrap_or_default()
            .contains("allow_private"),
        "{d:#?}"
    );
    assert_eq!(receiver.requests("/hook").len(), 1, "nothing more was sent");

    // Deleting the target removes it and its log.
    let r = http
        .delete(format!(
            "{url}/api/v1/repos/admin/app/notifications/targets/{}",
            target.id
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let r = http
        .get(format!(
            "{url}/api/v1/repos/admin/app/notifications/targets/{}/deliveries",
            target.id
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    child.kill().await?;
    Ok(())
}

/// Only the repository's owners may see or change its targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_for_owners_only() -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let writer = server.create_user("wendy").await?;
    let r = server.put_member("admin/app", "wendy", "writer").await?;
    assert!(r.status().is_success());
    let r = server
        .http
        .get(server.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(&writer)
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    let r = server
        .http
        .post(server.api("/repos/admin/app/notifications/targets"))
        .bearer_auth(&writer)
        .json(&json!({"kind": "slack", "url": "http://127.0.0.1:9/x"}))
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    server.stop().await;
    Ok(())
}

const BENCH_WORKFLOW: &str = r#"Name: quick
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

/// Bench (scripts/bench-notify.sh): from a run's end (its stored `finished_at_ms`) to the
/// receiver holding its signed `run_succeeded`, over `COVE_BENCH_RUNS` (default 12) runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-notify.sh"]
async fn bench_notify_latency() -> Result<()> {
    let runs: usize = std::env::var("COVE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await?;
    let http = reqwest::Client::new();
    server.create_repo(ADMIN_TOKEN, "bench").await?;
    let r = add_target(
        &http,
        &server.url,
        "bench",
        json!({"kind": "webhook", "url": format!("{hook}/hook"), "events": ["run_succeeded"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let work = server.tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    common::git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url("admin/bench", Some(ADMIN_TOKEN));
    let mut latencies = Vec::new();
    for i in 0..runs {
        common::commit_file(
            &work,
            ".codecatalyst/workflows/quick.yaml",
            format!("{BENCH_WORKFLOW}# {i}\n").as_bytes(),
            "wf",
        )
        .await?;
        common::git_ok(&work, &["push", "-q", &url, "main"]).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let got = loop {
            let all = receiver.requests("/hook");
            if all.len() > i {
                break all[i].clone();
            }
            assert!(Instant::now() < deadline, "run {i}: no notification");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let run_id: i64 = got.json()["data"]["run"].as_str().unwrap().parse()?;
        let run: Run = common::api_json(&server, &format!("/runs/{run_id}")).await?;
        let ended = run.finished_at_ms.unwrap();
        latencies.push(got.at_ms - ended);
    }
    latencies.sort_unstable();
    let pct = |p: usize| latencies[((latencies.len() * p).div_ceil(100)).saturating_sub(1)];
    println!(
        "BENCH notification after run end: runs={} p50={} ms p95={} ms max={} ms all={latencies:?}",
        latencies.len(),
        pct(50),
        pct(95),
        latencies[latencies.len() - 1]
    );
    server.stop().await;
    Ok(())
}

/// The idle reaper stops an environment: `env_stopped_idle` with a link to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stop_notifies() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    let server = TestServer::start_configured(|c| {
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        c.public_url = Some("https://cove.test".into());
    })
    .await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let r = add_target(
        &reqwest::Client::new(),
        &server.url,
        "app",
        json!({"kind": "slack", "url": format!("{hook}/idle"), "events": ["env_stopped_idle"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let store = server.state.store();
    let repo = store.repo("admin", "app").await?.unwrap();
    let plan = serde_json::to_string(&devfiles::EnvironmentPlan::default())?;
    store
        .create_env(&cove_server::store::EnvRow {
            id: "notifyidle1".into(),
            name: "sleepy".into(),
            repo_id: repo.id,
            owner_id: repo.owner_id,
            branch: "main".into(),
            devfile_path: None,
            state: cove_api::EnvState::Running,
            reason: None,
            plan_json: plan,
            devfile_text: None,
            restart_required: false,
            devfile_changes: None,
            endpoints_json: "[]".into(),
            idle_timeout_secs: 60,
            last_activity_ms: 0,
            created_at: 0,
            agent_id: None,
            placement: None,
            pooled: None,
        })
        .await?;
    let stopped = cove_server::envs::reap_idle(&server.state, 10 * 60 * 1000).await?;
    assert_eq!(stopped, vec!["notifyidle1".to_string()]);
    let got = receiver.wait_for("/idle", "env_stopped_idle").await;
    let text = got.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("environment sleepy of admin on main was stopped after 60 s"),
        "{text}"
    );
    assert!(
        text.contains("<https://cove.test/#/envs/notifyidle1|Open in Cove>"),
        "{text}"
    );
    server.stop().await;
    Ok(())
}

/// A redirect is not followed: the attempt fails with the 307 and nothing reaches the
/// redirect's target; with `max_attempts = 1` the delivery ends `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() -> Result<()> {
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    let server = TestServer::start_configured(|c| {
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        c.notify.max_attempts = 1;
    })
    .await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let http = reqwest::Client::new();
    let r = add_target(
        &http,
        &server.url,
        "app",
        json!({"kind": "webhook", "url": format!("{hook}/redirect")}),
    )
    .await?;
    let target: NotifyTarget = r.json().await?;
    let r = http
        .post(server.api(&format!(
            "/repos/admin/app/notifications/targets/{}/test",
            target.id
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let d = settled_delivery(&http, &server.url, "app", target.id).await?;
    assert_eq!(d.status, "failed", "{d:#?}");
    assert_eq!(d.attempts, 1);
    assert_eq!(d.response_code, Some(307));
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .contains("redirects are not followed"),
        "{d:#?}"
    );
    assert_eq!(receiver.requests("/redirect").len(), 1);
    assert!(receiver.requests("/elsewhere").is_empty());
    server.stop().await;
    Ok(())
}

/// Pull requests notify too: opening one (with the reviewer it names) and merging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_notify_opened_review_requested_and_merged() -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.notify.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
        c.embedded_agent = false;
    })
    .await?;
    server.create_repo(ADMIN_TOKEN, "app").await?;
    let bob = server.create_user("bob").await?;
    let r = server.put_member("admin/app", "bob", "writer").await?;
    assert!(r.status().is_success());
    let receiver = Receiver::default();
    let hook = receiver.serve(0).await?;
    let r = add_target(
        &server.http,
        &server.url,
        "app",
        json!({"kind": "webhook", "url": format!("{hook}/hook"),
               "events": ["pr_opened", "review_requested", "pr_merged"]}),
    )
    .await?;
    assert_eq!(r.status(), 201);
    let target: Value = r.json().await?;
    let secret = target["secret"].as_str().unwrap_or_default().to_string();
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
    let opened = receiver.wait_for("/hook", "pr_opened").await;
    if !secret.is_empty() {
        verify(&secret, &opened);
    }
    assert_eq!(opened.json()["data"]["pr"], 1);
    let requested = receiver.wait_for("/hook", "review_requested").await;
    assert_eq!(requested.json()["data"]["reviewers"], json!(["bob"]));
    let r = server
        .http
        .post(server.api("/repos/admin/app/pulls/1/reviews"))
        .bearer_auth(&bob)
        .json(&json!({"verdict": "approve", "body": "ok"}))
        .send()
        .await?;
    assert!(r.status().is_success());
    let r = server
        .http
        .post(server.api("/repos/admin/app/pulls/1/merge"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"method": "merge"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let merged = receiver.wait_for("/hook", "pr_merged").await;
    assert!(merged.json()["text"]
        .as_str()
        .unwrap_or_default()
        .contains("#1"));
    server.stop().await;
    Ok(())
}
