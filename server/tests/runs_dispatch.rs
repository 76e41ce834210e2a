#![allow(clippy::unwrap_used)]
//! Batched dispatch (issue 19, docs/runs.md "Dispatch"), on SQLite and PostgreSQL: agents
//! polling concurrently for several jobs each, plus a second store on the same database
//! leasing the same jobs (another replica), never get one job twice; pool and label rules
//! hold for every job of a batch.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use common::TestServer;
use cove_api::{JobState, RunState};
use cove_server::store::{JobRow, LeaseWrite, RunRow, Store};
use serde_json::json;

/// `runs` PARALLEL runs of `per_run` jobs in repository `repo_id`, each job requiring
/// `labels`; the job ids.
async fn queue(
    server: &TestServer,
    repo_id: i64,
    runs: usize,
    per_run: usize,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<i64>> {
    let now = server.state.runs().clock().now_ms();
    let mut ids = Vec::new();
    for _ in 0..runs {
        let run = RunRow::queued(repo_id, "d", now);
        let jobs: Vec<JobRow> = (0..per_run)
            .map(|j| JobRow {
                labels: labels.clone(),
                ..JobRow::pending(run.id, j as i64, &format!("A{j}"))
            })
            .collect();
        ids.extend(jobs.iter().map(|j| j.id));
        server
            .state
            .store()
            .create_numbered_run(&run, &jobs, &[], None, None)
            .await?;
    }
    Ok(ids)
}

/// Agent `agent` polls for up to `slots` jobs at a time until none is left: the job ids it
/// got with their attempts (placement only: the leases' descriptions need a stored workflow,
/// these runs have none, so the store-level round is used).
async fn drain(server: &TestServer, agent: i64, slots: usize) -> Result<Vec<(i64, u32)>> {
    let mut got = Vec::new();
    loop {
        let polls = [cove_server::runs::Poll {
            agent: Some(agent),
            slots,
        }];
        let leased = cove_server::runs::place_round(&server.state, &polls).await?;
        if leased[0].is_empty() {
            return Ok(got);
        }
        got.extend(leased[0].iter().copied());
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batched_leases_never_give_one_job_twice() -> Result<()> {
    common::on_every_backend(|url| async move {
        let server = TestServer::start_configured(|c| {
            c.database_url = Some(url.clone());
            c.embedded_agent = false;
        })
        .await?;
        server.create_repo(&server.admin_token, "d").await?;
        let repo = server.state.store().repo("admin", "d").await?.unwrap();
        let jobs = queue(&server, repo.id, 40, 5, &BTreeMap::new()).await?;
        let mut agents = Vec::new();
        for a in 0..6 {
            agents.push(
                server
                    .register_agent_in(&format!("a{a}"), None, json!({}))
                    .await?
                    .agent_id,
            );
        }
        // Another replica on the same database leases through its own store, concurrently.
        let other = Store::open(&url).await?;
        let replica = {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for chunk in jobs.chunks(7).rev() {
                    let batch: Vec<LeaseWrite> = chunk
                        .iter()
                        .map(|j| LeaseWrite {
                            job_id: *j,
                            run_id: 0,
                            agent: None,
                        })
                        .collect();
                    let attempts = other.lease_jobs(&batch, 1, i64::MAX / 2).await.unwrap();
                    for (j, a) in chunk.iter().zip(attempts) {
                        if let Some(a) = a {
                            got.push((*j, a));
                        }
                    }
                    tokio::task::yield_now().await;
                }
                got
            })
        };
        let mut tasks = Vec::new();
        for (i, agent) in agents.iter().enumerate() {
            let server_state = server.state.clone();
            let agent = *agent;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let polls = [cove_server::runs::Poll {
                        agent: Some(agent),
                        slots: 1 + i % 4,
                    }];
                    let leased = cove_server::runs::place_round(&server_state, &polls)
                        .await
                        .unwrap();
                    if leased[0].is_empty() {
                        break;
                    }
                    got.extend(leased[0].iter().map(|(j, a)| (*j, *a, Some(agent))));
                    tokio::task::yield_now().await;
                }
                got
            }));
        }
        // And through the batcher: polls of several agents at once, several slots each.
        let mut batched = Vec::new();
        for agent in agents.iter().take(3) {
            let state = server.state.clone();
            let agent = *agent;
            batched.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let leases =
                        cove_server::runs::try_lease_many_for(&state, Some(agent), 3).await;
                    // These runs have no stored workflow: a leased job cannot start and fails
                    // visibly; what matters here is that it was leased once.
                    match leases {
                        Ok(l) if l.is_empty() => break,
                        Ok(l) => got.extend(l.iter().map(|l| (l.job_id, l.attempt, Some(agent)))),
                        Err(e) => panic!("{e}"),
                    }
                    tokio::task::yield_now().await;
                }
                got
            }));
        }
        let mut all: Vec<(i64, u32, Option<i64>)> = Vec::new();
        for t in tasks.into_iter().chain(batched) {
            all.extend(t.await?);
        }
        all.extend(replica.await?.into_iter().map(|(j, a)| (j, a, None)));
        let mut seen = BTreeSet::new();
        for (job, attempt, _) in &all {
            assert!(seen.insert(*job), "job {job} leased twice: {all:?}");
            assert_eq!(*attempt, 1, "job {job}");
        }
        // The batcher's leases failed to start (no workflow) and are not returned; every
        // job was leased exactly once (attempt 1) and none is pending.
        for job in &jobs {
            let row = server.state.store().job(*job).await?.unwrap();
            assert_eq!(row.attempt, 1, "job {job}: {:?}", row.state);
            assert_ne!(row.state, JobState::Pending);
        }
        server.stop().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_and_label_rules_hold_for_every_job_of_a_batch() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    for name in ["fenced", "open"] {
        server.create_repo(&server.admin_token, name).await?;
    }
    server
        .http
        .post(server.api("/agent-pools"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "gpu", "repos": ["admin/fenced"]}))
        .send()
        .await?
        .error_for_status()?;
    let store = server.state.store();
    let fenced = store.repo("admin", "fenced").await?.unwrap().id;
    let open = store.repo("admin", "open").await?.unwrap().id;
    let pool_jobs = queue(
        &server,
        fenced,
        10,
        3,
        &BTreeMap::from([("pool".to_string(), "gpu".to_string())]),
    )
    .await?;
    let eu_jobs = queue(
        &server,
        open,
        10,
        3,
        &BTreeMap::from([("region".to_string(), "eu".to_string())]),
    )
    .await?;
    let any_jobs = queue(&server, open, 10, 3, &BTreeMap::new()).await?;
    let gpu = server
        .register_agent_in("gpu-1", Some("gpu"), json!({"region": "eu"}))
        .await?
        .agent_id;
    let eu = server
        .register_agent_in("eu-1", None, json!({"region": "eu"}))
        .await?
        .agent_id;
    // An unpooled agent claiming the administrators' pool label gets none of its jobs.
    let us = server
        .register_agent_in("us-1", None, json!({"region": "us", "pool": "gpu"}))
        .await?
        .agent_id;
    let (g, e, u) = tokio::join!(
        drain(&server, gpu, 8),
        drain(&server, eu, 8),
        drain(&server, us, 8)
    );
    let (g, e, u) = (g?, e?, u?);
    let ids = |v: &[(i64, u32)]| v.iter().map(|(j, _)| *j).collect::<BTreeSet<i64>>();
    // The pooled agent serves only its pool's repository, and all of its jobs.
    assert_eq!(ids(&g), pool_jobs.iter().copied().collect());
    // `region=eu` jobs only on the eu agent; the unlabelled ones on eu or us.
    let e = ids(&e);
    let u = ids(&u);
    assert!(eu_jobs.iter().all(|j| e.contains(j)), "{e:?}");
    assert!(u.iter().all(|j| any_jobs.contains(j)), "{u:?}");
    assert_eq!(e.len() + u.len(), eu_jobs.len() + any_jobs.len());
    server.stop().await;
    Ok(())
}

/// A poll asks for at most `MAX_LEASES_PER_POLL` jobs; a larger ask is capped, never an
/// unbounded batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_takes_at_most_its_slots() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_repo(&server.admin_token, "d").await?;
    let repo = server.state.store().repo("admin", "d").await?.unwrap();
    queue(&server, repo.id, 30, 3, &BTreeMap::new()).await?;
    let agent = server
        .register_agent_in("a", None, json!({}))
        .await?
        .agent_id;
    for (slots, want) in [(5, 5), (1000, cove_server::runs::MAX_LEASES_PER_POLL)] {
        let leased = cove_server::runs::place_round(
            &server.state,
            &[cove_server::runs::Poll {
                agent: Some(agent),
                slots,
            }],
        )
        .await?;
        assert_eq!(leased[0].len(), want);
    }
    // An unknown agent gets nothing.
    let leased = cove_server::runs::place_round(
        &server.state,
        &[cove_server::runs::Poll {
            agent: Some(-7),
            slots: 5,
        }],
    )
    .await?;
    assert!(leased[0].is_empty());
    server.stop().await;
    Ok(())
}

/// Finish reports sent together are written in one batch: every report the server
/// acknowledged is still there after the real `cove-server` binary is SIGKILLed the moment the
/// acknowledgements arrived (a batch acknowledged before its commit would lose them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_batched_finishes_survive_a_sigkill() -> Result<()> {
    use common::{commit_file, free_port, git_ok, spawn_server_with, SpawnOptions, ADMIN_TOKEN};
    const ACTIONS: usize = 24;
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("cove.toml");
    std::fs::write(&config, "[jobs]\nembedded_slots = 0\n")?;
    let port = free_port()?;
    let spawn = || {
        let options = SpawnOptions {
            config: Some(&config),
            inherit_stderr: true,
            ready_within: std::time::Duration::from_secs(60),
            ..SpawnOptions::default()
        };
        spawn_server_with(&data_dir, port, options)
    };
    let mut server = spawn().await?;
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "fin"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let mut text =
        String::from("Name: fin\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nTriggers:\n  - Type: PUSH\n    Branches: [main]\nActions:\n");
    for a in 0..ACTIONS {
        text.push_str(&format!(
            "  A{a}:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo {a}\n"
        ));
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join(".codecatalyst/workflows"))?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    std::fs::write(work.join(".codecatalyst/workflows/fin.yaml"), text)?;
    git_ok(&work, &["add", "."]).await?;
    commit_file(&work, "README", b"x", "workflow").await?;
    let host = url.trim_start_matches("http://");
    git_ok(
        &work,
        &[
            "push",
            "-q",
            &format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/fin.git"),
            "main",
        ],
    )
    .await?;
    // A registered agent leases every job.
    let reg: cove_api::RegistrationToken = http
        .post(format!("{url}/api/v1/agents/registration-tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let agent: cove_api::RegisteredAgent = http
        .post(format!("{url}/api/v1/agents/register"))
        .bearer_auth(&reg.token)
        .json(&json!({"name": "fin"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut leases = Vec::new();
    while leases.len() < ACTIONS {
        let resp = http
            .post(format!("{url}/api/v1/agent/lease"))
            .bearer_auth(&agent.token)
            .json(&json!({"wait_ms": 10000}))
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "lease {}", leases.len());
        leases.push(resp.json::<cove_api::JobLease>().await?);
    }
    // All finishes at once (they form batches); SIGKILL as soon as they are acknowledged.
    let finishes = leases.iter().map(|l| {
        let http = http.clone();
        let url = url.clone();
        let token = agent.token.clone();
        let (job, attempt) = (l.job_id, l.attempt);
        async move {
            let resp = http
                .post(format!("{url}/api/v1/agent/jobs/{job}/finish"))
                .bearer_auth(&token)
                .json(&json!({"attempt": attempt, "outcome": "succeeded"}))
                .send()
                .await?;
            anyhow::Ok((job, resp.status()))
        }
    });
    let acked = futures_util::future::join_all(finishes).await;
    server.child.kill().await?;
    let acked: Vec<i64> = acked
        .into_iter()
        .map(|r| {
            let (job, status) = r.unwrap();
            assert!(status.is_success(), "finish of job {job}: {status}");
            job
        })
        .collect();
    assert_eq!(acked.len(), ACTIONS);

    let mut server = spawn().await?;
    let runs: Vec<cove_api::Run> =
        common::api_json_at(&server.url, "/repos/admin/fin/runs").await?;
    let run: cove_api::Run =
        common::api_json_at(&server.url, &format!("/runs/{}", runs[0].id)).await?;
    for job in &acked {
        let j = run.jobs.iter().find(|j| j.id == *job).unwrap();
        assert_eq!(j.state, JobState::Succeeded, "job {job} after the SIGKILL");
        assert_eq!(j.attempt, 1);
    }
    assert_eq!(run.state, RunState::Succeeded);
    server.child.kill().await?;
    Ok(())
}
