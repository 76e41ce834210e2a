//! Placement of environments on agents (issue 20; the rule is pure, `place`; `candidates`
//! reads the store). docs/agents.md "Environments on agents".
//!
//! An environment asks for labels (`labels` in the create request, `cove env create --pool
//! NAME` = `pool=NAME`). The rule:
//! 1. no labels asked and the server has an embedded agent → the embedded agent;
//! 2. else the agents that may serve it — the jobs' rule ([`placement::Candidate::check`]:
//!    its pool, if any, serves the repository; it carries every asked label) — and whose
//!    link is up; of those with room (fewer environments creating, starting or running than
//!    its `max_environments`, when it has one), the one with the fewest environments, then
//!    by name (deterministic);
//! 3. none → a clear error naming the labels (and, when agents carry them but may not serve
//!    the repository, are not linked or are full, which ones), never a wait.
//!
//! The embedded agent's room is `[environments] max_running`; when it is full an
//! environment that asked for no labels is refused with that reason (it does not spill
//! over to labelled agents, whose pools were chosen by their owners).
//!
//! The environment stays on the chosen agent across stop/start/restart (its volumes live
//! there); the choice and its reason are stored with it (`environments.agent_id`,
//! `placement`).

use super::placement::{self, Candidate, JobNeeds, Mismatch};

/// An agent as environment placement sees it.
#[derive(Debug, Clone)]
pub struct EnvCandidate {
    pub candidate: Candidate,
    /// Its environment link is up (always for the embedded agent).
    pub linked: bool,
    /// Environments placed on it now (not failed).
    pub environments: usize,
    /// Of those, creating, starting or running.
    pub active: usize,
    /// Environments it may run at once (`None`: no limit).
    pub max_active: Option<usize>,
}

impl EnvCandidate {
    /// It may take one more running environment.
    pub fn has_room(&self) -> bool {
        self.max_active.is_none_or(|max| self.active < max)
    }

    /// "NAME runs A of M environments" (for errors).
    fn fullness(&self) -> String {
        format!(
            "{} runs {} of {} environments",
            self.candidate.name,
            self.active,
            self.max_active.unwrap_or(usize::MAX)
        )
    }
}

/// Where an environment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// `None`: the embedded agent.
    pub agent_id: Option<i64>,
    pub name: String,
    /// The rule that chose it, for `cove env show`.
    pub why: String,
}

/// Chooses the agent of a new environment of repository `repo` (`owner/name`); `Err` is why
/// none may take it. `candidates` are unrevoked registered agents and, when the server has
/// one, the embedded agent (`id: None`).
pub fn place(
    candidates: &[EnvCandidate],
    repo: &str,
    needs: JobNeeds<'_>,
) -> Result<Placed, String> {
    let embedded = candidates.iter().find(|c| c.candidate.id.is_none());
    if needs.labels.is_empty() {
        if let Some(e) = embedded {
            if !e.has_room() {
                return Err(format!(
                    "no room on the server's embedded agent: it runs {} of {} environments ([environments] max_running); stop one, or ask for an agent's labels (--pool, --label)",
                    e.active,
                    e.max_active.unwrap_or(usize::MAX)
                ));
            }
            return Ok(Placed {
                agent_id: None,
                name: e.candidate.name.clone(),
                why: "no labels asked: the server's embedded agent".into(),
            });
        }
    }
    let eligible: Vec<&EnvCandidate> = candidates
        .iter()
        .filter(|c| c.candidate.may_run(needs))
        .collect();
    let linked: Vec<&EnvCandidate> = eligible.iter().copied().filter(|c| c.linked).collect();
    let wanted = if needs.labels.is_empty() {
        format!("no agent may run environments of {repo}")
    } else {
        format!(
            "no agent matches labels {}",
            placement::labels_text(needs.labels)
        )
    };
    let roomy: Vec<&EnvCandidate> = linked.iter().copied().filter(|c| c.has_room()).collect();
    if let Some(best) = roomy.iter().min_by(|a, b| {
        (a.environments, &a.candidate.name).cmp(&(b.environments, &b.candidate.name))
    }) {
        let asked = if needs.labels.is_empty() {
            "no labels asked, no embedded agent".to_string()
        } else {
            format!("labels {}", placement::labels_text(needs.labels))
        };
        let pool = match &best.candidate.pool {
            Some(p) => format!("; its pool {} serves {repo}", p.name),
            None => String::new(),
        };
        return Ok(Placed {
            agent_id: best.candidate.id,
            name: best.candidate.name.clone(),
            why: format!(
                "{asked}{pool}; {} of {} eligible linked agents with room, fewest environments ({}), then by name",
                best.candidate.name,
                roomy.len(),
                best.environments
            ),
        });
    }
    if !linked.is_empty() {
        let full: Vec<String> = linked.iter().take(5).map(|c| c.fullness()).collect();
        return Err(format!(
            "{wanted} with room: {} (max_environments); stop an environment there, or add an agent",
            full.join(", ")
        ));
    }
    if !eligible.is_empty() {
        let names: Vec<&str> = eligible
            .iter()
            .take(5)
            .map(|c| c.candidate.name.as_str())
            .collect();
        return Err(format!(
            "{wanted} with its environment link up: {} {} not linked (running without environments, or unreachable)",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        ));
    }
    let fenced: Vec<String> = candidates
        .iter()
        .filter_map(|c| match c.candidate.check(needs) {
            Err(Mismatch::Pool(pool)) => {
                let labels_ok = needs
                    .labels
                    .iter()
                    .all(|(k, v)| c.candidate.labels.get(k) == Some(v));
                labels_ok.then(|| format!("{} (pool {pool})", c.candidate.name))
            }
            _ => None,
        })
        .take(5)
        .collect();
    Err(if fenced.is_empty() {
        wanted
    } else {
        format!(
            "{wanted} for {repo}: {} may not serve this repository",
            fenced.join(", ")
        )
    })
}

/// Every agent that could take an environment now, with its link state and load: unrevoked
/// registered agents, and the embedded agent when the server has one.
pub async fn candidates(
    state: &crate::AppState,
) -> Result<Vec<EnvCandidate>, crate::store::StoreError> {
    let links = state.envs().links();
    candidates_linked(state, |id| links.get(id).is_some()).await
}

/// [`candidates`] with the link state from `linked` (the placement benchmark's simulated
/// agents have no sockets): the agents with their pools as the store keeps them
/// (`Store::agents_and_pools`, re-read after a change or 1 s) and one count of environments
/// per agent.
pub async fn candidates_linked(
    state: &crate::AppState,
    linked: impl Fn(i64) -> bool,
) -> Result<Vec<EnvCandidate>, crate::store::StoreError> {
    let counts = state.store().env_counts_by_agent().await?;
    let load = |id: Option<i64>| counts.get(&id).copied().unwrap_or_default();
    let snap = state.store().agents_and_pools().await?;
    let mut out: Vec<EnvCandidate> = snap
        .agents
        .iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|a| {
            let c = super::eligibility::candidate_of(a, &snap.pools);
            let l = load(c.id);
            EnvCandidate {
                linked: c.id.is_some_and(&linked),
                environments: l.placed,
                active: l.active,
                max_active: max_active(&a.capacity),
                candidate: c,
            }
        })
        .collect();
    if state.envs().has_agent() {
        let l = load(None);
        out.push(EnvCandidate {
            candidate: super::eligibility::embedded_candidate(),
            linked: true,
            environments: l.placed,
            active: l.active,
            max_active: state.limits().environments.max_running,
        });
    }
    Ok(out)
}

/// An agent's room as it reports it (`max_environments`, 0: no limit).
pub fn max_active(capacity: &cove_api::AgentCapacity) -> Option<usize> {
    (capacity.max_environments > 0)
        .then(|| usize::try_from(capacity.max_environments).unwrap_or(usize::MAX))
}

/// Refuses to start a stopped environment on agent `agent_id` (`None`: the embedded agent)
/// when the agent has no room: its volumes live there, so it cannot go elsewhere (`cove env
/// move` can).
pub async fn check_room_to_start(
    state: &crate::AppState,
    agent_id: Option<i64>,
) -> Result<(), crate::error::ApiError> {
    let (max, name) = match agent_id {
        None => (
            state.limits().environments.max_running,
            super::eligibility::EMBEDDED_NAME.to_string(),
        ),
        Some(id) => match state.store().agent(id).await? {
            Some(a) => (max_active(&a.capacity), a.name),
            None => return Ok(()),
        },
    };
    let Some(max) = max else { return Ok(()) };
    // the environment itself is stopped or failed: not counted
    let active = state
        .store()
        .env_counts_by_agent()
        .await?
        .get(&agent_id)
        .map_or(0, |l| l.active);
    if active >= max {
        return Err(crate::error::ApiError::Conflict(format!(
            "no room on agent {name}: it runs {active} of {max} environments; stop one there, or move this environment (cove env move)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::placement::{Labels, Pool};
    use super::*;

    fn agent(
        id: i64,
        name: &str,
        labels: &[(&str, &str)],
        pool: Option<Pool>,
        envs: usize,
    ) -> EnvCandidate {
        EnvCandidate {
            candidate: Candidate {
                id: Some(id),
                name: name.into(),
                pool,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                last_seen_at: Some(0),
            },
            linked: true,
            environments: envs,
            active: envs,
            max_active: None,
        }
    }

    fn embedded() -> EnvCandidate {
        EnvCandidate {
            candidate: super::super::eligibility::embedded_candidate(),
            linked: true,
            environments: 9,
            active: 9,
            max_active: None,
        }
    }

    fn needs(labels: &Labels) -> JobNeeds<'_> {
        JobNeeds {
            repo_id: 1,
            owner: "acme",
            labels,
        }
    }

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_labels_goes_to_the_embedded_agent() {
        let c = [agent(1, "a", &[], None, 0), embedded()];
        let p = place(&c, "acme/x", needs(&Labels::new())).unwrap();
        assert_eq!(p.agent_id, None);
        assert_eq!(p.name, "embedded");
    }

    #[test]
    fn labels_pick_the_matching_agent_with_fewest_environments_then_name() {
        let b = labels(&[("pool", "b")]);
        let c = [
            agent(1, "a1", &[("pool", "a")], None, 0),
            agent(2, "b2", &[("pool", "b")], None, 1),
            agent(3, "b3", &[("pool", "b")], None, 1),
            agent(4, "b4", &[("pool", "b")], None, 2),
            embedded(),
        ];
        let p = place(&c, "acme/x", needs(&b)).unwrap();
        assert_eq!((p.agent_id, p.name.as_str()), (Some(2), "b2"));
        assert!(p.why.contains("labels pool=b"), "{}", p.why);
        assert!(p.why.contains("fewest environments (1)"), "{}", p.why);
    }

    #[test]
    fn no_match_is_a_clear_error() {
        let x = labels(&[("pool", "x")]);
        let c = [agent(1, "a1", &[("pool", "a")], None, 0), embedded()];
        assert_eq!(
            place(&c, "acme/x", needs(&x)).unwrap_err(),
            "no agent matches labels pool=x"
        );
        // carrying the labels but not linked
        let mut off = agent(2, "x1", &[("pool", "x")], None, 0);
        off.linked = false;
        let e = place(&[off], "acme/x", needs(&x)).unwrap_err();
        assert!(e.contains("x1 is not linked"), "{e}");
        // a pool that does not serve the repository
        let pool = Pool {
            id: 1,
            name: "x".into(),
            repo_ids: BTreeSet::from([99]),
            owners: BTreeSet::new(),
        };
        let e = place(
            &[agent(3, "px", &[("pool", "x")], Some(pool), 0)],
            "acme/x",
            needs(&x),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "no agent matches labels pool=x for acme/x: px (pool x) may not serve this repository"
        );
    }

    #[test]
    fn only_agents_with_room_take_environments() {
        let b = labels(&[("pool", "b")]);
        let mut full = agent(1, "b1", &[("pool", "b")], None, 2);
        full.max_active = Some(2);
        let mut roomy = agent(2, "b2", &[("pool", "b")], None, 5);
        roomy.max_active = Some(6);
        // the fuller agent is chosen: the emptier one has no room
        let p = place(&[full.clone(), roomy.clone()], "acme/x", needs(&b)).unwrap();
        assert_eq!(p.name, "b2");
        assert!(
            p.why.contains("1 eligible linked agents with room"),
            "{}",
            p.why
        );
        // stopped environments do not count against the room
        let mut stopped = full.clone();
        stopped.active = 1;
        let p = place(&[stopped, roomy.clone()], "acme/x", needs(&b)).unwrap();
        assert_eq!(p.name, "b1");
        // all full: a clear error naming them, never a wait
        roomy.active = 6;
        let e = place(&[full, roomy], "acme/x", needs(&b)).unwrap_err();
        assert_eq!(
            e,
            "no agent matches labels pool=b with room: b1 runs 2 of 2 environments, b2 runs 6 of 6 environments (max_environments); stop an environment there, or add an agent"
        );
        // the embedded agent full, no labels asked
        let mut emb = embedded();
        emb.max_active = Some(9);
        let e = place(&[emb], "acme/x", needs(&Labels::new())).unwrap_err();
        assert!(
            e.starts_with("no room on the server's embedded agent: it runs 9 of 9"),
            "{e}"
        );
    }
}
