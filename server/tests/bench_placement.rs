#![allow(clippy::unwrap_used)]
//! Benchmark (not a test; `#[ignore]`, run by `scripts/bench-placement.sh`): placing 1,000
//! jobs over 50 simulated agents, in process, at the store (issue 20, docs/benchmarks.md).
//!
//! Setup (not timed): 20 repositories, 5 agent pools serving 2 repositories each, 50 agents
//! registered through the API (10 pooled, 2 per pool; 40 unpooled, `region=eu|us`), 100 runs
//! of 10 PARALLEL jobs written to the store: every job of a pooled repository requires
//! `pool=<its pool>` (500), a quarter of the others `region=eu`, the rest nothing.
//!
//! Timed: all agents poll (one job each) in placement rounds until every job is placed; a round
//! is the lease path's placement (`runs::place_round`) — the polling agents' candidates, one
//! read of the active jobs, one `schedule::assign` pass with the placement rule, and one
//! transaction of conditional lease updates — without building the leases' job descriptions.
//! Also timed: single-poll decisions over one in-memory snapshot (the pure placement cost).
//! Every placement is checked against the rule.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::TestServer;
use cove_api::JobState;
use cove_server::agents::placement::JobNeeds;
use cove_server::store::{JobRow, RunRow};
use serde_json::json;

const REPOS: usize = 20;
const POOLS: usize = 5;
const AGENTS: usize = 50;
const RUNS: usize = 100;
const JOBS_PER_RUN: usize = 10;

/// 20 repositories, 5 agent pools serving 2 repositories each, 50 agents registered through
/// the API (10 pooled, 2 per pool; 40 unpooled, `region=eu|us`). Returns the server, the
/// repositories' ids and the agents' ids.
async fn setup() -> Result<(TestServer, Vec<i64>, Vec<i64>)> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let store = server.state.store();
    let mut repo_ids = Vec::new();
    for r in 0..REPOS {
        server
            .create_repo(&server.admin_token, &format!("b{r}"))
            .await?;
        repo_ids.push(store.repo("admin", &format!("b{r}")).await?.unwrap().id);
    }
    for p in 0..POOLS {
        server
            .http
            .post(server.api("/agent-pools"))
            .bearer_auth(&server.admin_token)
            .json(&json!({"name": format!("pool-{p}"), "repos": [format!("admin/b{}", 2 * p), format!("admin/b{}", 2 * p + 1)]}))
            .send()
            .await?
            .error_for_status()?;
    }
    let mut agents = Vec::new();
    for a in 0..AGENTS {
        let pool = (a < 2 * POOLS).then(|| format!("pool-{}", a / 2));
        let region = if a % 2 == 0 { "eu" } else { "us" };
        let reg = server
            .register_agent_in(
                &format!("sim-{a}"),
                pool.as_deref(),
                json!({"region": region}),
            )
            .await?;
        agents.push(reg.agent_id);
    }
    Ok((server, repo_ids, agents))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-placement.sh"]
async fn placement_bench() -> Result<()> {
    let (server, repo_ids, agents) = setup().await?;
    let store = server.state.store();
    let now = server.state.runs().clock().now_ms();
    for r in 0..RUNS {
        let repo = r % REPOS;
        let run = RunRow::queued(repo_ids[repo], "bench", now);
        let jobs: Vec<JobRow> = (0..JOBS_PER_RUN)
            .map(|j| {
                let mut labels = BTreeMap::new();
                if repo < 2 * POOLS {
                    labels.insert("pool".to_string(), format!("pool-{}", repo / 2));
                } else if j % 4 == 0 {
                    labels.insert("region".to_string(), "eu".to_string());
                }
                JobRow {
                    labels,
                    ..JobRow::pending(run.id, j as i64, &format!("A{j}"))
                }
            })
            .collect();
        store
            .create_numbered_run(&run, &jobs, &[], None, None)
            .await?;
    }
    let total = RUNS * JOBS_PER_RUN;

    // Pure placement over one snapshot: each poll decides among the still-pending jobs.
    let mut snapshot = store.active_jobs().await?;
    let mut candidates = Vec::new();
    for id in &agents {
        candidates.push(
            cove_server::agents::eligibility::candidate(&server.state, Some(*id))
                .await?
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut placed = 0;
    'rounds: loop {
        let mut any = false;
        for me in &candidates {
            let eligible = |j: &cove_server::store::ActiveJob| {
                me.may_run(JobNeeds {
                    repo_id: j.repo_id,
                    owner: &j.repo_owner,
                    labels: &j.job.labels,
                })
            };
            if let Some(job) = cove_server::runs::schedule::decide_for(&snapshot, &eligible).lease {
                let j = snapshot.iter_mut().find(|j| j.job.id == job).unwrap();
                j.job.state = JobState::Running;
                placed += 1;
                any = true;
                if placed == total {
                    break 'rounds;
                }
            }
        }
        assert!(any, "{placed} of {total} placed, then nothing");
    }
    let pure = started.elapsed();

    // At the store, in placement rounds: every agent polls for one job; the polls of a round
    // share one read of the active set, one decision pass and one lease transaction
    // (`runs::place_round`, what a lease poll does minus building the job's description).
    let started = Instant::now();
    let mut placed_on: BTreeMap<i64, i64> = BTreeMap::new();
    let polls: Vec<cove_server::runs::Poll> = agents
        .iter()
        .map(|id| cove_server::runs::Poll {
            agent: Some(*id),
            slots: 1,
        })
        .collect();
    let mut rounds = 0;
    while placed_on.len() < total {
        rounds += 1;
        let leased = cove_server::runs::place_round(&server.state, &polls).await?;
        let mut any = false;
        for (poll, jobs) in polls.iter().zip(leased) {
            for (job, attempt) in jobs {
                assert_eq!(attempt, 1);
                assert!(placed_on.insert(job, poll.agent.unwrap()).is_none());
                any = true;
            }
        }
        assert!(any, "{} of {total} placed, then nothing", placed_on.len());
    }
    let at_store = started.elapsed();

    // Every placement obeys the rule.
    let by_id: BTreeMap<i64, &cove_server::agents::placement::Candidate> =
        candidates.iter().map(|c| (c.id.unwrap(), c)).collect();
    let mut pooled_jobs = 0;
    for j in &snapshot {
        let agent = by_id[&placed_on[&j.job.id]];
        assert!(agent.may_run(JobNeeds {
            repo_id: j.repo_id,
            owner: &j.repo_owner,
            labels: &j.job.labels
        }));
        if j.job.labels.contains_key("pool") {
            pooled_jobs += 1;
            assert!(agent.pool.is_some());
        }
    }
    let per_agent = {
        let mut n: BTreeMap<i64, usize> = BTreeMap::new();
        for a in placed_on.values() {
            *n.entry(*a).or_default() += 1;
        }
        (
            n.values().min().copied().unwrap_or(0),
            n.values().max().copied().unwrap_or(0),
        )
    };
    println!(
        "placement: {total} jobs ({pooled_jobs} pool-bound) over {AGENTS} agents ({} pooled), {REPOS} repositories, {POOLS} pools",
        2 * POOLS
    );
    println!(
        "  pure decisions over one snapshot: {:.1} ms ({:.1} µs per placement)",
        pure.as_secs_f64() * 1e3,
        pure.as_secs_f64() * 1e6 / total as f64
    );
    println!(
        "  at the store ({rounds} rounds of {AGENTS} polls: candidates + one active jobs read + one decision pass + one lease transaction per round): {:.1} ms ({:.3} ms per placement; target <= 1000 ms for the {total}); jobs per agent min {} max {}",
        at_store.as_secs_f64() * 1e3,
        at_store.as_secs_f64() * 1e3 / total as f64,
        per_agent.0,
        per_agent.1
    );
    server.stop().await;
    Ok(())
}

/// Placing 1,000 environments over the same 50 agents, at the store: per environment what
/// `cove env create` does to choose its agent (`env_placement::candidates` — the agents with
/// their pools as the store keeps them (`Store::agents_and_pools`: re-read after a change or
/// 1 s) and one count of environments per agent — then the pure `place`) and the
/// write of its row with the chosen agent. The simulated agents have no sockets: their links
/// count as up. Environments of pooled repositories ask for `pool=<their pool>`, a quarter of
/// the others `region=eu`, the rest nothing (the server has no embedded agent, so those go to
/// any agent that may serve the repository).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-placement.sh"]
async fn env_placement_bench() -> Result<()> {
    use cove_server::agents::env_placement;
    let (server, repo_ids, agents) = setup().await?;
    let store = server.state.store();
    let admin = store.user_by_name("admin").await?.unwrap().id;
    let total = 1000;
    let mut placed_on: Vec<(usize, BTreeMap<String, String>, i64)> = Vec::new();
    let (mut in_candidates, mut in_insert) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    for i in 0..total {
        let repo = i % REPOS;
        let mut labels = BTreeMap::new();
        if repo < 2 * POOLS {
            labels.insert("pool".to_string(), format!("pool-{}", repo / 2));
        } else if i % 4 == 0 {
            labels.insert("region".to_string(), "eu".to_string());
        }
        let t_c = Instant::now();
        let candidates = env_placement::candidates_linked(&server.state, |_| true).await?;
        in_candidates += t_c.elapsed();
        let placed = env_placement::place(
            &candidates,
            &format!("admin/b{repo}"),
            JobNeeds {
                repo_id: repo_ids[repo],
                owner: "admin",
                labels: &labels,
            },
        )
        .map_err(anyhow::Error::msg)?;
        let agent = placed.agent_id.unwrap();
        let t_i = Instant::now();
        store
            .create_env(&cove_server::store::EnvRow {
                id: format!("e{i:011}"),
                name: format!("env-{i}"),
                repo_id: repo_ids[repo],
                owner_id: admin,
                branch: "main".into(),
                devfile_path: None,
                state: cove_api::EnvState::Creating,
                reason: None,
                plan_json: "{}".into(),
                devfile_text: Some("schemaVersion: 2.2.0\n".into()),
                restart_required: false,
                devfile_changes: None,
                endpoints_json: "[]".into(),
                idle_timeout_secs: 1800,
                last_activity_ms: 0,
                created_at: 0,
                agent_id: Some(agent),
                placement: Some(format!("{}: {}", placed.name, placed.why)),
                pooled: None,
            })
            .await?;
        in_insert += t_i.elapsed();
        placed_on.push((repo, labels, agent));
    }
    let elapsed = started.elapsed();

    // Every placement obeys the rule, and the load is spread.
    let mut candidates = BTreeMap::new();
    for id in &agents {
        let c = cove_server::agents::eligibility::candidate(&server.state, Some(*id))
            .await?
            .unwrap();
        candidates.insert(*id, c);
    }
    let mut per_agent: BTreeMap<i64, usize> = BTreeMap::new();
    for (repo, labels, agent) in &placed_on {
        assert!(candidates[agent].may_run(JobNeeds {
            repo_id: repo_ids[*repo],
            owner: "admin",
            labels,
        }));
        *per_agent.entry(*agent).or_default() += 1;
    }
    let stored = store.env_counts_by_agent().await?;
    assert_eq!(stored.values().map(|l| l.placed).sum::<usize>(), total);
    println!(
        "placement: {total} environments over {AGENTS} agents ({} pooled), {REPOS} repositories, {POOLS} pools",
        2 * POOLS
    );
    println!(
        "  environments, at the store (per create: candidates — agents and pools as kept by the store, one count of environments per agent — + place + the row's insert): {:.1} ms ({:.3} ms per placement; target <= 1000 ms for the {total}; candidates {:.1} ms, inserts {:.1} ms); environments per agent min {} max {}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3 / total as f64,
        in_candidates.as_secs_f64() * 1e3,
        in_insert.as_secs_f64() * 1e3,
        per_agent.values().min().unwrap(),
        per_agent.values().max().unwrap()
    );
    server.stop().await;
    Ok(())
}
