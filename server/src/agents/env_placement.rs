//! Placement of environments on agents (issue 20; the rule is pure, `place`; `candidates`
//! reads the store). docs/agents.md "Environments on agents".
//!
//! An environment asks for labels (`labels` in the create request, `cove env create --pool
//! NAME` = `pool=NAME`). The rule:
//! 1. no labels asked and the server has an embedded agent → the embedded agent;
//! 2. else the agents that may serve it — the jobs' rule ([`placement::Candidate::check`]:
//!    its pool, if any, serves the repository; it carries every asked label) — and whose
//!    link is up; the one with the fewest environments, then by name (deterministic);
//! 3. none → a clear error naming the labels (and, when agents carry them but may not serve
//!    the repository or are not linked, which ones), never a wait.
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
    if let Some(best) = linked.iter().min_by(|a, b| {
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
                "{asked}{pool}; {} of {} eligible linked agents, fewest environments ({}), then by name",
                best.candidate.name,
                linked.len(),
                best.environments
            ),
        });
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
    let load = |id: Option<i64>| counts.get(&id).copied().unwrap_or(0);
    let mut out: Vec<EnvCandidate> = super::eligibility::candidates(state)
        .await?
        .into_iter()
        .filter(|c| c.id.is_some())
        .map(|c| EnvCandidate {
            linked: c.id.is_some_and(&linked),
            environments: load(c.id),
            candidate: c,
        })
        .collect();
    if state.envs().has_agent() {
        out.push(EnvCandidate {
            candidate: super::eligibility::embedded_candidate(),
            linked: true,
            environments: load(None),
        });
    }
    Ok(out)
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
        }
    }

    fn embedded() -> EnvCandidate {
        EnvCandidate {
            candidate: super::super::eligibility::embedded_candidate(),
            linked: true,
            environments: 9,
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
}
