//! The scheduling decision, pure: from the pending and running jobs, which job to lease next
//! and which runs a SUPERSEDED workflow drops.
//!
//! Queues form at the entry of each action of a workflow (key: repository, workflow file,
//! action):
//! - **PARALLEL**: no queue; a job is ready when its dependencies succeeded.
//! - **QUEUED**: FIFO per action — a run enters an action only when no older unfinished run
//!   of the workflow still has that action ahead of it or inside it, and no run is inside it.
//! - **SUPERSEDED**: a run enters an action when no run is inside it; of the runs waiting at
//!   an action's entry only the newest stays, older waiting runs end `superseded`.
//!
//! A pending job whose dependencies are all gone from the active set has them all succeeded:
//! a dependency that ended any other way skipped its dependents already (`settle_run`).

use std::collections::{HashMap, HashSet};

use cove_api::JobState;
use workflows::RunMode;

use crate::store::ActiveJob;

/// The wire/storage name of a run mode.
pub fn mode_name(mode: RunMode) -> &'static str {
    match mode {
        RunMode::Queued => "QUEUED",
        RunMode::Superseded => "SUPERSEDED",
        RunMode::Parallel => "PARALLEL",
    }
}

/// What one scheduling pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The job to lease (oldest run first, then workflow order).
    pub lease: Option<i64>,
    /// Runs to end as superseded (handled before leasing).
    pub supersede: Vec<i64>,
}

type Key<'a> = (i64, &'a str, &'a str);

fn key(j: &ActiveJob) -> Key<'_> {
    (j.repo_id, j.workflow_file.as_str(), j.job.action.as_str())
}

/// Decides the next lease. `active` is every pending or running job, ordered by run id (=
/// creation order) and position in the workflow.
pub fn decide(active: &[ActiveJob]) -> Decision {
    decide_for(active, &|_| true)
}

/// [`decide`] for one polling agent: the job to lease is the first ready job (same order)
/// that `eligible` accepts — the agent's labels and pool (`agents::placement`). Supersession
/// does not depend on the agent.
pub fn decide_for(active: &[ActiveJob], eligible: &dyn Fn(&ActiveJob) -> bool) -> Decision {
    let a = assign(active, &[Want { slots: 1, eligible }]);
    Decision {
        lease: a.leases.first().map(|(_, job)| *job),
        supersede: a.supersede,
    }
}

/// One poll in a placement round: up to `slots` jobs for an agent that may run the jobs
/// `eligible` accepts.
pub struct Want<'a> {
    pub slots: usize,
    pub eligible: &'a dyn Fn(&ActiveJob) -> bool,
}

/// The decisions of one placement round over one snapshot of the active set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// `(index of the want, job id)`, in the scheduler's order.
    pub leases: Vec<(usize, i64)>,
    /// Runs a SUPERSEDED workflow drops first (nothing is leased in such a round).
    pub supersede: Vec<i64>,
}

/// Serves every want of a round in one pass over the active set (O(active jobs + leases ×
/// wants)): the ready jobs are taken in the scheduler's order (oldest run first, then
/// workflow order), each by the first want (in arrival order) with a free slot that may run
/// it; a leased QUEUED/SUPERSEDED job occupies its action for the rest of the round, exactly
/// as if the wants had polled one after the other.
pub fn assign(active: &[ActiveJob], wants: &[Want<'_>]) -> Assignment {
    let mut in_run: HashMap<i64, HashSet<&str>> = HashMap::new();
    let mut occupied: HashSet<Key<'_>> = HashSet::new();
    let mut oldest: HashMap<Key<'_>, i64> = HashMap::new();
    for j in active {
        in_run
            .entry(j.job.run_id)
            .or_default()
            .insert(j.job.action.as_str());
        if j.job.state == JobState::Running {
            occupied.insert(key(j));
        }
        let o = oldest.entry(key(j)).or_insert(j.job.run_id);
        *o = (*o).min(j.job.run_id);
    }
    let deps_done = |j: &ActiveJob| {
        let same_run = in_run.get(&j.job.run_id);
        !j.job
            .depends_on
            .iter()
            .any(|d| same_run.is_some_and(|s| s.contains(d.as_str())))
    };
    let mut waiting: HashMap<Key<'_>, Vec<i64>> = HashMap::new();
    for j in active {
        if j.run_mode == "SUPERSEDED" && j.job.state == JobState::Pending && deps_done(j) {
            waiting.entry(key(j)).or_default().push(j.job.run_id);
        }
    }
    let mut supersede: Vec<i64> = Vec::new();
    for runs in waiting.values() {
        if runs.len() > 1 {
            let newest = runs.iter().copied().max().unwrap_or_default();
            supersede.extend(runs.iter().copied().filter(|r| *r != newest));
        }
    }
    supersede.sort_unstable();
    supersede.dedup();
    if !supersede.is_empty() {
        return Assignment {
            leases: Vec::new(),
            supersede,
        };
    }
    let mut free: Vec<usize> = wants.iter().map(|w| w.slots).collect();
    let mut left: usize = free.iter().sum();
    let mut leases = Vec::new();
    for j in active {
        if left == 0 {
            break;
        }
        if j.job.state != JobState::Pending || j.gate || !deps_done(j) {
            continue;
        }
        let may_enter = match j.run_mode.as_str() {
            "PARALLEL" => true,
            "SUPERSEDED" => !occupied.contains(&key(j)),
            _ => {
                !occupied.contains(&key(j))
                    && oldest.get(&key(j)).is_none_or(|o| *o >= j.job.run_id)
            }
        };
        if !may_enter {
            continue;
        }
        let Some(w) = (0..wants.len()).find(|&w| free[w] > 0 && (wants[w].eligible)(j)) else {
            continue;
        };
        free[w] -= 1;
        left -= 1;
        leases.push((w, j.job.id));
        if j.run_mode != "PARALLEL" {
            occupied.insert(key(j));
        }
    }
    Assignment {
        leases,
        supersede: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobRow;

    fn job(
        run: i64,
        id: i64,
        action: &str,
        deps: &[&str],
        state: JobState,
        mode: &str,
    ) -> ActiveJob {
        ActiveJob {
            job: JobRow {
                id,
                run_id: run,
                idx: 0,
                action: action.into(),
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                state,
                attempt: 0,
                max_attempts: 1,
                lease_expires_ms: None,
                cancel_requested: false,
                timeout_ms: 1000,
                started_at_ms: None,
                finished_at_ms: None,
                error: None,
                variables_json: "{}".into(),
                artifacts_json: "[]".into(),
                on_failure: Default::default(),
                labels: Default::default(),
            },
            repo_id: 1,
            workflow_file: "w.yaml".into(),
            run_mode: mode.into(),
            gate: false,
            repo_owner: "admin".into(),
        }
    }

    #[test]
    fn approval_gates_are_never_leased_and_hold_their_dependents() {
        let mut gate = job(1, 10, "approve", &[], Pending, "PARALLEL");
        gate.gate = true;
        assert_eq!(decide(std::slice::from_ref(&gate)).lease, None);
        gate.job.state = JobState::WaitingApproval;
        let a = [
            gate,
            job(1, 11, "deploy", &["approve"], Pending, "PARALLEL"),
        ];
        assert_eq!(decide(&a).lease, None, "deploy waits for the gate");
    }

    use JobState::{Pending, Running};

    #[test]
    fn dependencies_gate_readiness() {
        let a = [
            job(1, 10, "build", &[], Running, "PARALLEL"),
            job(1, 11, "test", &["build"], Pending, "PARALLEL"),
        ];
        assert_eq!(decide(&a).lease, None);
        let a = [job(1, 11, "test", &["build"], Pending, "PARALLEL")];
        assert_eq!(decide(&a).lease, Some(11));
    }

    #[test]
    fn queued_is_fifo_per_action() {
        // Run 1 is inside A; run 2 waits at A even though A is ready for it.
        let a = [
            job(1, 10, "A", &[], Running, "QUEUED"),
            job(1, 11, "B", &["A"], Pending, "QUEUED"),
            job(2, 20, "A", &[], Pending, "QUEUED"),
            job(2, 21, "B", &["A"], Pending, "QUEUED"),
        ];
        assert_eq!(decide(&a), Decision::default());
        // Run 1 moved on to B: run 2 enters A.
        let a = [
            job(1, 11, "B", &["A"], Running, "QUEUED"),
            job(2, 20, "A", &[], Pending, "QUEUED"),
            job(2, 21, "B", &["A"], Pending, "QUEUED"),
        ];
        assert_eq!(decide(&a).lease, Some(20));
        // PARALLEL: both enter.
        let a = [
            job(1, 10, "A", &[], Running, "PARALLEL"),
            job(2, 20, "A", &[], Pending, "PARALLEL"),
        ];
        assert_eq!(decide(&a).lease, Some(20));
    }

    #[test]
    fn superseded_keeps_the_newest_waiting_run() {
        let a = [
            job(1, 10, "A", &[], Running, "SUPERSEDED"),
            job(2, 20, "A", &[], Pending, "SUPERSEDED"),
            job(3, 30, "A", &[], Pending, "SUPERSEDED"),
        ];
        assert_eq!(
            decide(&a),
            Decision {
                lease: None,
                supersede: vec![2]
            }
        );
        let a = [
            job(1, 10, "A", &[], Running, "SUPERSEDED"),
            job(3, 30, "A", &[], Pending, "SUPERSEDED"),
        ];
        assert_eq!(decide(&a), Decision::default());
    }

    #[test]
    fn a_round_serves_many_wants_like_polls_one_after_the_other() {
        let a = [
            job(1, 10, "A", &[], Pending, "QUEUED"),
            job(2, 20, "A", &[], Pending, "QUEUED"),
            job(3, 30, "X", &[], Pending, "PARALLEL"),
            job(3, 31, "Y", &[], Pending, "PARALLEL"),
            job(4, 40, "X", &[], Pending, "PARALLEL"),
        ];
        let any = |_: &ActiveJob| true;
        let not_31 = |j: &ActiveJob| j.job.id != 31;
        let wants = [
            Want {
                slots: 2,
                eligible: &not_31,
            },
            Want {
                slots: 5,
                eligible: &any,
            },
        ];
        // Run 2 waits behind run 1 at A (QUEUED, one run inside); job 31 only for want 1.
        assert_eq!(
            assign(&a, &wants).leases,
            vec![(0, 10), (0, 30), (1, 31), (1, 40)]
        );
        // The same as single polls one after the other.
        let mut polled = Vec::new();
        let mut snapshot = a.to_vec();
        for (w, slots) in [(0usize, 2usize), (1, 5)] {
            for _ in 0..slots {
                if let Some(id) = decide_for(&snapshot, wants[w].eligible).lease {
                    polled.push((w, id));
                    let j = snapshot.iter_mut().find(|j| j.job.id == id).unwrap();
                    j.job.state = Running;
                }
            }
        }
        polled.sort_by_key(|(_, id)| *id);
        assert_eq!(polled, assign(&a, &wants).leases);
    }
}
