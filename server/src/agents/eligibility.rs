//! The store side of placement (issue 20): agents and pools read as
//! [`placement::Candidate`]s for the lease of one polling agent and for the waiting reasons
//! of a run's jobs. The rules themselves are pure, in [`placement`].

use std::collections::{BTreeMap, BTreeSet};

use cove_api::JobState;

use super::placement::{self, Candidate, JobNeeds, Labels, Pool};
use crate::store::{AgentRow, JobRow, PoolRow, StoreError};
use crate::AppState;

/// The name the embedded agent has in runs and `cove agent list`.
pub const EMBEDDED_NAME: &str = "embedded";

/// The embedded agent's labels: `backend=docker` and the host's `arch`.
pub fn embedded_labels() -> Labels {
    cove_agent::labels::standard(&Labels::new())
}

fn pool_of(row: &PoolRow) -> Pool {
    Pool {
        id: row.id,
        name: row.name.clone(),
        repo_ids: row.repo_ids.clone(),
        owners: row.owners.clone(),
    }
}

pub(crate) fn candidate_of(agent: &AgentRow, pools: &[PoolRow]) -> Candidate {
    let names: BTreeSet<String> = pools.iter().map(|p| p.name.clone()).collect();
    let pool = agent
        .pool_id
        .and_then(|id| pools.iter().find(|p| p.id == id))
        .map(pool_of);
    // A pool deleted under its agent (refused while it has agents; kept safe anyway): the
    // agent serves nothing.
    let pool = match (agent.pool_id, pool) {
        (Some(id), None) => Some(Pool {
            id,
            name: format!("#{id} (deleted)"),
            repo_ids: BTreeSet::new(),
            owners: BTreeSet::new(),
        }),
        (_, p) => p,
    };
    Candidate {
        id: Some(agent.id),
        name: agent.name.clone(),
        labels: placement::effective_labels(
            &agent.labels,
            pool.as_ref().map(|p| p.name.as_str()),
            &names,
        ),
        pool,
        last_seen_at: agent.last_seen_at,
    }
}

/// The embedded agent as a candidate.
pub fn embedded_candidate() -> Candidate {
    Candidate {
        id: None,
        name: EMBEDDED_NAME.to_string(),
        pool: None,
        labels: embedded_labels(),
        last_seen_at: None,
    }
}

/// The polling agent as placement sees it; `None` when it is unknown (it gets nothing).
/// `agent`: `None` for the embedded agent. Revocation is the lease handler's check.
pub async fn candidate(
    state: &AppState,
    agent: Option<i64>,
) -> Result<Option<Candidate>, StoreError> {
    let Some(id) = agent else {
        return Ok(Some(embedded_candidate()));
    };
    let Some(row) = state.store().agent(id).await? else {
        return Ok(None);
    };
    // Pools matter only to a pooled agent or one that declares a `pool` label.
    let pools = if row.pool_id.is_some() || row.labels.contains_key(workflows::fleet::POOL_LABEL) {
        state.store().agent_pools().await?
    } else {
        Vec::new()
    };
    Ok(Some(candidate_of(&row, &pools)))
}

/// Every agent that could take jobs now: unrevoked registered agents, and the embedded agent
/// when it runs jobs.
pub async fn candidates(state: &AppState) -> Result<Vec<Candidate>, StoreError> {
    let snap = state.store().agents_and_pools().await?;
    let mut out: Vec<Candidate> = snap
        .agents
        .iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|a| candidate_of(a, &snap.pools))
        .collect();
    if state.runs().config().embedded_slots > 0 {
        out.push(embedded_candidate());
    }
    Ok(out)
}

/// Why each pending job of a run (repository `repo_id` of `owner`, named `repo`) waits, by
/// job id: only jobs no online agent may run have a reason.
pub async fn waiting_reasons(
    state: &AppState,
    repo: &str,
    repo_id: i64,
    owner: &str,
    jobs: &[JobRow],
) -> Result<BTreeMap<i64, String>, StoreError> {
    let mut out = BTreeMap::new();
    if !jobs.iter().any(|j| j.state == JobState::Pending) {
        return Ok(out);
    }
    let all = candidates(state).await?;
    let now = crate::store::now_secs();
    for job in jobs.iter().filter(|j| j.state == JobState::Pending) {
        let needs = JobNeeds {
            repo_id,
            owner,
            labels: &job.labels,
        };
        if let Some(reason) = placement::waiting_reason(&all, repo, needs, now) {
            out.insert(job.id, reason);
        }
    }
    Ok(out)
}
