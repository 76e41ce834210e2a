//! Job and run state: the run's state derived from its jobs, settling a run after a job ended
//! (skipping dependents of jobs that did not succeed, opening approval gates), cancel, retry
//! and supersede.

use std::collections::BTreeSet;

use cove_api::{JobState, RunState};

use super::{approval, RunsError};
use crate::store::{JobFailure, JobRow};
use crate::AppState;

/// The run's state from its jobs. A job whose failure is ignored (a batch build with
/// `ignore-failure`) does not fail the run, whether it failed or was skipped; a `fast-fail`
/// build's failure fails the run even though the builds it stopped ended cancelled.
pub fn derive_run_state(jobs: &[JobRow]) -> RunState {
    let all_terminal = jobs.iter().all(|j| j.state.is_terminal());
    if !all_terminal {
        let started = jobs.iter().any(|j| {
            matches!(j.state, JobState::Running | JobState::WaitingApproval)
                || j.state.is_terminal()
        });
        return if started {
            RunState::Running
        } else {
            RunState::Queued
        };
    }
    let any = |s: JobState| jobs.iter().any(|j| j.state == s);
    let fails_run = |j: &JobRow| {
        j.on_failure != JobFailure::Ignore
            && matches!(
                j.state,
                JobState::Failed | JobState::AgentLost | JobState::TimedOut | JobState::Skipped
            )
    };
    if any(JobState::Superseded) {
        RunState::Superseded
    } else if jobs
        .iter()
        .any(|j| fast_failed(j) && j.state != JobState::Skipped)
    {
        RunState::Failed
    } else if any(JobState::Cancelled) {
        RunState::Cancelled
    } else if jobs.iter().any(fails_run) {
        RunState::Failed
    } else {
        RunState::Succeeded
    }
}

/// A `fast-fail` build that failed: the run's other unfinished jobs stop.
fn fast_failed(j: &JobRow) -> bool {
    j.on_failure == JobFailure::FailFast
        && matches!(
            j.state,
            JobState::Failed | JobState::AgentLost | JobState::TimedOut
        )
}

/// After a job ended: skip pending dependents of jobs that did not succeed, stop the others
/// after a `fast-fail` build failed, store the run's state, wake pollers and followers.
pub async fn settle_run(state: &AppState, run_id: i64) -> Result<RunState, RunsError> {
    let store = state.store();
    let now = state.runs().clock.now_ms();
    loop {
        let jobs = store.jobs_of_run(run_id).await?;
        let bad: BTreeSet<&str> = jobs
            .iter()
            .filter(|j| j.state.is_terminal() && j.state != JobState::Succeeded)
            .map(|j| j.action.as_str())
            .collect();
        let mut changed = false;
        for j in &jobs {
            if j.state == JobState::Pending && j.depends_on.iter().any(|d| bad.contains(d.as_str()))
            {
                changed |= store
                    .end_job(
                        j.id,
                        JobState::Pending,
                        None,
                        JobState::Skipped,
                        Some("a dependency did not succeed"),
                        None,
                        now,
                    )
                    .await?;
            }
        }
        if changed || approval::open_ready_gates(state, run_id, &jobs).await? {
            continue;
        }
        if let Some(failed) = jobs.iter().find(|j| fast_failed(j)) {
            let unfinished = jobs.iter().any(|j| {
                j.state == JobState::Pending
                    || (j.state == JobState::Running && !j.cancel_requested)
            });
            if unfinished {
                let reason = format!("fast-fail: build `{}` failed", failed.action);
                end_unfinished(state, run_id, JobState::Skipped, &reason).await?;
                continue;
            }
        }
        let derived = derive_run_state(&jobs);
        let finished = derived.is_terminal().then_some(now);
        store.set_run_state(run_id, derived, finished).await?;
        crate::notify::run_finished(state, run_id, derived, &jobs).await;
        state.runs().wake();
        return Ok(derived);
    }
}

/// [`settle_run`] for the runs of several jobs that just ended, with one transaction for all
/// the run states: a run that needs more than its state set (a dependent to skip, a gate to
/// open, a fast-fail to apply) is settled on its own by [`settle_run`]. The caller took the
/// ended jobs out of the cached active set (`dispatch::ActiveCache::ended`).
pub async fn settle_runs(state: &AppState, run_ids: &[i64]) -> Result<(), RunsError> {
    let store = state.store();
    let now = state.runs().clock.now_ms();
    let mut ids = run_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut simple: Vec<(i64, RunState, Vec<JobRow>)> = Vec::new();
    let mut jobs_of = store.jobs_of_runs(&ids).await?;
    for run_id in ids {
        let jobs = jobs_of.remove(&run_id).unwrap_or_default();
        let bad: BTreeSet<&str> = jobs
            .iter()
            .filter(|j| j.state.is_terminal() && j.state != JobState::Succeeded)
            .map(|j| j.action.as_str())
            .collect();
        let to_skip = jobs.iter().any(|j| {
            j.state == JobState::Pending && j.depends_on.iter().any(|d| bad.contains(d.as_str()))
        });
        let to_fast_fail = jobs.iter().any(fast_failed)
            && jobs.iter().any(|j| {
                j.state == JobState::Pending
                    || (j.state == JobState::Running && !j.cancel_requested)
            });
        if to_skip || to_fast_fail || approval::open_ready_gates(state, run_id, &jobs).await? {
            settle_run(state, run_id).await?;
            continue;
        }
        simple.push((run_id, derive_run_state(&jobs), jobs));
    }
    let states: Vec<(i64, RunState, Option<i64>)> = simple
        .iter()
        .map(|(id, derived, _)| (*id, *derived, derived.is_terminal().then_some(now)))
        .collect();
    store.set_run_states(&states).await?;
    for (run_id, derived, jobs) in &simple {
        crate::notify::run_finished(state, *run_id, *derived, jobs).await;
    }
    // Only run states changed here (the finish batch took its ended jobs out of the cached
    // active set; runs settled on their own above woke with a re-read).
    state.runs().wake_kept();
    Ok(())
}

/// Cancels a run: pending jobs end `cancelled`, running ones are told in their next heartbeat
/// (and finalized by the reaper when their agent stays silent).
pub async fn cancel_run(state: &AppState, run_id: i64) -> Result<RunState, RunsError> {
    end_unfinished(state, run_id, JobState::Cancelled, "cancelled").await?;
    settle_run(state, run_id).await
}

/// Ends a run's pending jobs in `to` with `reason`; running ones are told to stop in their
/// next heartbeat (and finalized by the reaper when their agent stays silent).
async fn end_unfinished(
    state: &AppState,
    run_id: i64,
    to: JobState,
    reason: &str,
) -> Result<(), RunsError> {
    let now = state.runs().clock.now_ms();
    for j in state.store().jobs_of_run(run_id).await? {
        match j.state {
            JobState::Pending => {
                state
                    .store()
                    .end_job(j.id, JobState::Pending, None, to, Some(reason), None, now)
                    .await?;
            }
            JobState::WaitingApproval => {
                state
                    .store()
                    .end_job(
                        j.id,
                        JobState::WaitingApproval,
                        None,
                        to,
                        Some(reason),
                        None,
                        now,
                    )
                    .await?;
            }
            JobState::Running => state.store().request_cancel(j.id).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Retries an ended run: jobs that did not succeed run again (same commit, same workflow).
pub async fn retry_run(state: &AppState, run_id: i64) -> Result<RunState, RunsError> {
    let run = state
        .store()
        .run(run_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("run {run_id}")))?;
    if !run.state.is_terminal() {
        return Err(RunsError::Conflict(format!(
            "run {run_id} is still {}",
            run.state.as_str()
        )));
    }
    if run.state == RunState::Succeeded {
        return Err(RunsError::Conflict(format!(
            "run {run_id} already succeeded"
        )));
    }
    state.store().reset_run_jobs(run_id).await?;
    settle_run(state, run_id).await
}

/// Marks every unfinished job of a run `superseded` (running ones are also told to stop).
pub(super) async fn supersede_run(state: &AppState, run_id: i64) -> Result<(), RunsError> {
    end_unfinished(
        state,
        run_id,
        JobState::Superseded,
        "superseded by a newer run",
    )
    .await?;
    tracing::info!(run = run_id, "run superseded");
    settle_run(state, run_id).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(action: &str, state: JobState, on_failure: JobFailure) -> JobRow {
        JobRow {
            id: 1,
            run_id: 1,
            idx: 0,
            action: action.into(),
            depends_on: Vec::new(),
            state,
            attempt: 1,
            max_attempts: 1,
            lease_expires_ms: None,
            cancel_requested: false,
            timeout_ms: 1000,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            variables_json: "{}".into(),
            artifacts_json: "[]".into(),
            on_failure,
            labels: Default::default(),
        }
    }

    #[test]
    fn ignored_failures_do_not_fail_the_run() {
        use JobFailure::*;
        use JobState::*;
        let ok = job("a", Succeeded, Fail);
        let cases = [
            (
                vec![ok.clone(), job("b", Failed, Ignore)],
                RunState::Succeeded,
            ),
            (
                vec![ok.clone(), job("b", Skipped, Ignore)],
                RunState::Succeeded,
            ),
            (
                vec![ok.clone(), job("b", TimedOut, Ignore)],
                RunState::Succeeded,
            ),
            (vec![ok.clone(), job("b", Failed, Fail)], RunState::Failed),
            (
                vec![job("b", Failed, Ignore), job("c", Skipped, Fail)],
                RunState::Failed,
            ),
            // a fast-fail build's failure, and the build it stopped
            (
                vec![job("b", Failed, FailFast), job("c", Cancelled, FailFast)],
                RunState::Failed,
            ),
            // without fast-fail, a cancel is a cancel
            (
                vec![job("b", Failed, Fail), job("c", Cancelled, Fail)],
                RunState::Cancelled,
            ),
        ];
        for (jobs, want) in cases {
            assert_eq!(derive_run_state(&jobs), want, "{jobs:#?}");
        }
    }
}
