//! SCHEDULE triggers: the stored schedules of each branch, the scheduler task that fires them,
//! and `GET /api/v1/repos/{owner}/{name}/schedules`.
//!
//! - A push recomputes the schedules of its branch from the workflow files at the new commit
//!   ([`update_branch`], called from `on_push`): one row per workflow file whose SCHEDULE
//!   trigger's `Branches` match the branch. An unchanged expression keeps its stored next
//!   time; a deleted branch loses its schedules.
//! - Every [`TICK`] the scheduler fires the due schedules ([`fire_due`]): it reads the workflow
//!   at the branch head and creates its run (trigger `schedule`) in one transaction with a
//!   conditional update of `next_fire_at_ms` (`WHERE next_fire_at_ms = <the due time>`), so
//!   another server process, or this one after a restart, never fires the slot again.
//! - The next time is computed from *now*, not from the missed slot: slots missed while the
//!   server was down fire once when it is back, not once per slot.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::Extension;
use cove_api::Schedule;
use workflows::{Cron, Workflow};

use super::{insert_run, source, RunSource, RunsError};
use crate::error::ApiError;
use crate::extract::Json;
use crate::git::{self, GitError};
use crate::parse_budget;
use crate::store::{self, RepoRow, RunRow, ScheduleClaim, ScheduleRow};
use crate::AppState;

/// How often due schedules are looked for.
pub const TICK: Duration = Duration::from_secs(5);

/// Schedules fired per pass at most (the rest wait for the next pass).
const PASS_LIMIT: i64 = 100;

/// The schedule row of workflow `file` on `branch`, when its SCHEDULE trigger names the
/// branch; its next fire time is computed from `now_ms`.
pub fn schedule_of(wf: &Workflow, file: &str, branch: &str, now_ms: i64) -> Option<ScheduleRow> {
    let (expression, branches) = wf.scheduled_runs(&[branch])?;
    if branches.is_empty() {
        return None;
    }
    let next = Cron::parse(expression).ok()?.next_after(now_ms);
    Some(ScheduleRow {
        id: store::next_id(),
        repo_id: 0,
        workflow_file: file.to_string(),
        branch: branch.to_string(),
        workflow: wf.name.clone(),
        expression: expression.to_string(),
        next_fire_at_ms: next,
        last_fired_at_ms: None,
        last_run_id: None,
        updated_at_ms: now_ms,
    })
}

/// Makes `schedules` the schedules of `branch` (see [`crate::store::Store::replace_branch_schedules`]).
pub async fn update_branch(
    state: &AppState,
    repo: &RepoRow,
    branch: &str,
    schedules: &[ScheduleRow],
) -> Result<(), RunsError> {
    state
        .store()
        .replace_branch_schedules(repo.id, branch, schedules)
        .await?;
    Ok(())
}

/// Fires every schedule due now; returns the runs created. A schedule whose workflow is gone
/// or invalid at the branch head skips its slot (logged); a store failure ends the pass.
pub async fn fire_due(state: &AppState) -> Result<Vec<RunRow>, RunsError> {
    let now = state.runs().clock.now_ms();
    let due = state.store().due_schedules(now, PASS_LIMIT).await?;
    let mut fired = Vec::new();
    for schedule in &due {
        let Some(due_at) = schedule.next_fire_at_ms else {
            continue;
        };
        let next = Cron::parse(&schedule.expression)
            .ok()
            .and_then(|c| c.next_after(now));
        match fire_one(state, schedule, due_at, next, now).await {
            Ok(Some(run)) => fired.push(run),
            Ok(None) => {}
            Err(RunsError::Store(e)) => return Err(RunsError::Store(e)),
            Err(e) => {
                tracing::warn!(schedule = schedule.id, file = %schedule.workflow_file, branch = %schedule.branch, error = %e, "a scheduled run could not start; skipping this slot");
                state
                    .store()
                    .skip_schedule(schedule.id, due_at, next)
                    .await?;
            }
        }
    }
    Ok(fired)
}

async fn fire_one(
    state: &AppState,
    schedule: &ScheduleRow,
    due_at: i64,
    next: Option<i64>,
    now: i64,
) -> Result<Option<RunRow>, RunsError> {
    let repo = state
        .store()
        .repo_by_id(schedule.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound("repository".into()))?;
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (commit, files) =
        match source::workflow_files(path.clone(), format!("refs/heads/{}", schedule.branch)).await
        {
            Ok(found) => found,
            Err(GitError::NotFound(_)) => {
                // The branch is gone (its deletion removes its schedules too).
                update_branch(state, &repo, &schedule.branch, &[]).await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
    let Some((file, text)) = files
        .workflows
        .iter()
        .find(|(f, _)| *f == schedule.workflow_file)
    else {
        return Err(RunsError::NotFound(format!(
            "{} on branch {}",
            schedule.workflow_file, schedule.branch
        )));
    };
    let at = source::At {
        repo_path: path,
        commit: commit.clone(),
    };
    let wf = parse_budget::workflow(file, text, at)
        .await
        .map_err(|_| RunsError::BadRequest(format!("{file} is not a valid workflow")))?
        .0;
    if schedule_of(&wf, file, &schedule.branch, now).is_none() {
        return Err(RunsError::NotFound(format!(
            "a SCHEDULE trigger for branch {} in {file}",
            schedule.branch
        )));
    }
    let source = RunSource {
        file,
        text,
        implicit_branch: None,
        branch: &schedule.branch,
        commit: &commit,
        trigger: "schedule",
        actor: None,
        rollback_of: None,
    };
    let claim = ScheduleClaim {
        schedule_id: schedule.id,
        due_at_ms: due_at,
        next_fire_at_ms: next,
        fired_at_ms: now,
    };
    insert_run(state, &repo, &wf, &source, None, Some(&claim), None).await
}

/// Fires due schedules at start-up (missed slots: once) and every [`TICK`], on the leader
/// only (`crate::cluster`; the conditional claim still keeps a handover from firing a slot
/// twice). Errors are logged, never fatal.
pub fn spawn_scheduler(state: AppState) {
    crate::cluster::singleton(&state, "schedules", |state| async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match fire_due(&state).await {
                Ok(runs) if !runs.is_empty() => {
                    tracing::info!(runs = runs.len(), "scheduled runs started");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "firing schedules failed"),
            }
        }
    });
}

/// `GET /api/v1/repos/{owner}/{name}/schedules`: the repository's schedules with their next
/// fire times.
pub async fn list(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<Schedule>>, ApiError> {
    let rows = state.store().repo_schedules(repo.id).await?;
    let mut runs: BTreeMap<i64, i64> = BTreeMap::new();
    for row in &rows {
        if let Some(id) = row.last_run_id {
            if let Some(run) = state.store().run(id).await? {
                runs.insert(id, run.number);
            }
        }
    }
    Ok(Json(
        rows.into_iter()
            .map(|r| Schedule {
                workflow: r.workflow,
                workflow_file: r.workflow_file,
                branch: r.branch,
                expression: r.expression,
                next_fire_at_ms: r.next_fire_at_ms,
                last_fired_at_ms: r.last_fired_at_ms,
                last_run: r.last_run_id.and_then(|id| runs.get(&id).copied()),
            })
            .collect(),
    ))
}
