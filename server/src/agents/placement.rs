//! Placement of jobs on agents (issue 20; pure — no IO, no clock): which agents may run a job,
//! and why a job waits. docs/agents.md "Placement".
//!
//! The rule: an agent may run a job when
//! 1. it is not revoked;
//! 2. when it belongs to an agent pool, that pool serves the job's repository (the repository
//!    is listed, or its owner is);
//! 3. it carries every label the job requires (`Compute.Fleet`, `workflows::fleet`).
//!
//! Jobs are pulled: an agent asks for work when one of its slots is free, and gets the first
//! ready job, in the scheduler's order (oldest run first, then workflow order), that it may
//! run. So the choice is deterministic for a given poll, and a job no agent may run waits,
//! with the reason from [`waiting_reason`] on the run, never silently.
//!
//! Labels: an agent declares its own (`--label region=eu`; the agent adds `backend` and
//! `arch`). The `pool` label is the administrator's: a pooled agent's `pool` is its pool's
//! name whatever it declared, and an unpooled agent's own `pool=NAME` is ignored when an
//! administrator's pool is named NAME, so only that pool's agents receive that fleet's jobs.

use std::collections::{BTreeMap, BTreeSet};

use workflows::fleet::{valid_label_key, valid_label_value, POOL_LABEL};

/// Labels: key → value.
pub type Labels = BTreeMap<String, String>;

/// Most labels one agent may declare.
pub const MAX_LABELS: usize = 32;
/// An agent seen within this many seconds counts as online.
pub const ONLINE_WITHIN_SECS: i64 = 120;

/// What a pool allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: i64,
    pub name: String,
    pub repo_ids: BTreeSet<i64>,
    pub owners: BTreeSet<String>,
}

impl Pool {
    /// Whether the pool's agents may serve repository `repo_id` of `owner`.
    pub fn serves(&self, repo_id: i64, owner: &str) -> bool {
        self.repo_ids.contains(&repo_id) || self.owners.contains(owner)
    }
}

/// An agent as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `None`: the server's embedded agent.
    pub id: Option<i64>,
    pub name: String,
    pub pool: Option<Pool>,
    /// Effective labels ([`effective_labels`]).
    pub labels: Labels,
    /// Unix seconds (`None` for the embedded agent: always online).
    pub last_seen_at: Option<i64>,
}

/// The job side of placement.
#[derive(Debug, Clone, Copy)]
pub struct JobNeeds<'a> {
    pub repo_id: i64,
    pub owner: &'a str,
    pub labels: &'a Labels,
}

/// Why an agent may not run a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The agent's pool does not serve the job's repository.
    Pool(String),
    /// Labels the job requires that the agent lacks (`k=v`).
    Labels(Vec<String>),
}

/// Checks label syntax and count (keys `[a-z0-9][a-z0-9._/-]*`, values
/// `[A-Za-z0-9._-]+`, both at most 63 bytes; at most [`MAX_LABELS`]).
pub fn validate_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        if !valid_label_key(k) {
            return Err(format!(
                "label key {k:?}: 1-63 lower-case letters, digits, `.`, `_`, `-`, `/`, starting with a letter or digit"
            ));
        }
        if !valid_label_value(v) {
            return Err(format!(
                "label {k}={v:?}: the value is 1-63 letters, digits, `.`, `_`, `-`"
            ));
        }
    }
    Ok(())
}

/// The labels placement uses for an agent that declared `declared`, in pool `pool` (its
/// name), when the administrators' pools are named `pool_names`.
pub fn effective_labels(
    declared: &Labels,
    pool: Option<&str>,
    pool_names: &BTreeSet<String>,
) -> Labels {
    let mut labels = declared.clone();
    match pool {
        Some(name) => {
            labels.insert(POOL_LABEL.to_string(), name.to_string());
        }
        None => {
            if labels
                .get(POOL_LABEL)
                .is_some_and(|p| pool_names.contains(p))
            {
                labels.remove(POOL_LABEL);
            }
        }
    }
    labels
}

/// `k=v,k=v` in key order.
pub fn labels_text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Candidate {
    /// Whether this agent may run the job, and if not why.
    pub fn check(&self, job: JobNeeds<'_>) -> Result<(), Mismatch> {
        if let Some(pool) = &self.pool {
            if !pool.serves(job.repo_id, job.owner) {
                return Err(Mismatch::Pool(pool.name.clone()));
            }
        }
        let missing: Vec<String> = job
            .labels
            .iter()
            .filter(|(k, v)| self.labels.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Mismatch::Labels(missing))
        }
    }

    pub fn may_run(&self, job: JobNeeds<'_>) -> bool {
        self.check(job).is_ok()
    }

    fn online(&self, now: i64) -> bool {
        match (self.id, self.last_seen_at) {
            (None, _) => true,
            (Some(_), Some(seen)) => now - seen <= ONLINE_WITHIN_SECS,
            (Some(_), None) => false,
        }
    }
}

/// Why a pending job of `repo` (`owner/name`) cannot be placed now, given every agent that
/// could take jobs (unrevoked registered agents, and the embedded agent when it runs jobs);
/// `None` when an online agent may run it (it waits only for a free slot or its turn).
pub fn waiting_reason(
    candidates: &[Candidate],
    repo: &str,
    job: JobNeeds<'_>,
    now: i64,
) -> Option<String> {
    let eligible: Vec<&Candidate> = candidates.iter().filter(|c| c.may_run(job)).collect();
    let wanted = if job.labels.is_empty() {
        format!("no agent may run jobs of {repo}")
    } else {
        format!("no agent matches labels {}", labels_text(job.labels))
    };
    if eligible.is_empty() {
        if candidates.is_empty() {
            return Some(format!(
                "{wanted}: no agent is registered and the embedded agent runs no jobs"
            ));
        }
        // Agents that carry the labels but whose pool does not serve the repository.
        let fenced: Vec<String> = candidates
            .iter()
            .filter_map(|c| match c.check(job) {
                Err(Mismatch::Pool(pool)) => {
                    let labels_ok = job.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v));
                    labels_ok.then(|| format!("{} (pool {pool})", c.name))
                }
                _ => None,
            })
            .take(5)
            .collect();
        return Some(if fenced.is_empty() {
            wanted
        } else {
            format!(
                "{wanted} for {repo}: {} may not serve this repository",
                fenced.join(", ")
            )
        });
    }
    if eligible.iter().any(|c| c.online(now)) {
        return None;
    }
    let seen: Vec<String> = eligible
        .iter()
        .take(5)
        .map(|c| match c.last_seen_at {
            Some(at) => format!("{} last seen {}s ago", c.name, (now - at).max(0)),
            None => format!("{} never seen", c.name),
        })
        .collect();
    let what = if job.labels.is_empty() {
        "no agent that may run it is online".to_string()
    } else {
        format!(
            "no agent matching labels {} is online",
            labels_text(job.labels)
        )
    };
    Some(format!("{what} ({})", seen.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pool(name: &str, repos: &[i64], owners: &[&str]) -> Pool {
        Pool {
            id: 1,
            name: name.into(),
            repo_ids: repos.iter().copied().collect(),
            owners: owners.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn agent(name: &str, pool: Option<Pool>, l: &[(&str, &str)], seen: i64) -> Candidate {
        let names: BTreeSet<String> = pool.iter().map(|p| p.name.clone()).collect();
        Candidate {
            id: Some(1),
            name: name.into(),
            labels: effective_labels(&labels(l), pool.as_ref().map(|p| p.name.as_str()), &names),
            pool,
            last_seen_at: Some(seen),
        }
    }

    #[test]
    fn a_pooled_agent_serves_only_its_repositories_and_owners() {
        let gpu = agent("g", Some(pool("gpu", &[7], &["acme"])), &[], 100);
        let none = Labels::new();
        let job = |repo_id, owner| JobNeeds {
            repo_id,
            owner,
            labels: &none,
        };
        assert!(gpu.may_run(job(7, "bob")));
        assert!(gpu.may_run(job(8, "acme")));
        assert_eq!(gpu.check(job(8, "bob")), Err(Mismatch::Pool("gpu".into())));
        assert!(agent("free", None, &[], 100).may_run(job(8, "bob")));
    }

    #[test]
    fn labels_must_all_match_and_the_pool_label_is_the_administrators() {
        let need = labels(&[("pool", "gpu"), ("region", "eu")]);
        let job = JobNeeds {
            repo_id: 7,
            owner: "bob",
            labels: &need,
        };
        let a = agent(
            "a",
            Some(pool("gpu", &[7], &[])),
            &[("region", "eu"), ("pool", "x")],
            0,
        );
        assert_eq!(a.labels.get("pool").map(String::as_str), Some("gpu"));
        assert!(a.may_run(job));
        let b = agent("b", None, &[("region", "us"), ("pool", "gpu")], 0);
        assert_eq!(
            b.check(job),
            Err(Mismatch::Labels(vec!["region=eu".into()]))
        );
        // An unpooled agent's own pool label naming an administrator's pool is ignored.
        let names = BTreeSet::from(["gpu".to_string()]);
        let own = effective_labels(&labels(&[("pool", "gpu")]), None, &names);
        assert!(!own.contains_key("pool"));
        let own = effective_labels(&labels(&[("pool", "mine")]), None, &names);
        assert_eq!(own.get("pool").map(String::as_str), Some("mine"));
    }

    #[test]
    fn waiting_reasons_name_the_labels_and_the_fence() {
        let need = labels(&[("pool", "gpu")]);
        let job = JobNeeds {
            repo_id: 8,
            owner: "bob",
            labels: &need,
        };
        assert_eq!(
            waiting_reason(&[], "bob/r", job, 1000).as_deref(),
            Some("no agent matches labels pool=gpu: no agent is registered and the embedded agent runs no jobs")
        );
        let plain = agent("plain", None, &[], 1000);
        assert_eq!(
            waiting_reason(std::slice::from_ref(&plain), "bob/r", job, 1000).as_deref(),
            Some("no agent matches labels pool=gpu")
        );
        let gpu = agent("g1", Some(pool("gpu", &[7], &[])), &[], 1000);
        let reason = waiting_reason(&[plain.clone(), gpu.clone()], "bob/r", job, 1000).unwrap();
        assert_eq!(
            reason,
            "no agent matches labels pool=gpu for bob/r: g1 (pool gpu) may not serve this repository"
        );
        let job7 = JobNeeds { repo_id: 7, ..job };
        assert_eq!(
            waiting_reason(std::slice::from_ref(&gpu), "bob/r", job7, 1000),
            None
        );
        let reason = waiting_reason(std::slice::from_ref(&gpu), "bob/r", job7, 1500).unwrap();
        assert_eq!(
            reason,
            "no agent matching labels pool=gpu is online (g1 last seen 500s ago)"
        );
    }

    #[test]
    fn label_validation_is_bounded_and_explained() {
        assert!(validate_labels(&labels(&[("pool", "gpu"), ("cove.dev/zone", "a-1")])).is_ok());
        assert!(validate_labels(&labels(&[("Pool", "gpu")]))
            .unwrap_err()
            .contains("Pool"));
        assert!(validate_labels(&labels(&[("pool", "a b")]))
            .unwrap_err()
            .contains("pool="));
        let many: Labels = (0..33)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(validate_labels(&many).unwrap_err().contains("32"));
    }
}
