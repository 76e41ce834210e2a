//! Runs' workflows as parsed, kept with their rows: a job's lease, its finish, its run's
//! notification and approvals all need the run's workflow and its fixed facts (repository,
//! branch, commit), and reading and parsing them again each time (a store read, a blocking
//! parse, a repository read for buildspecs) was most of a one-action job's dispatch cost.
//!
//! A run's workflow text, file, branch, commit, repository and trigger never change after it
//! was created, so a kept entry is never stale for them (on any replica). Its state and
//! finish time are as first read: [`run_and_workflow`]'s callers read only the fixed fields.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use workflows::Workflow;

use super::{source, RunsError};
use crate::git;
use crate::parse_budget;
use crate::store::RunRow;
use crate::AppState;

/// The last [`ParsedWorkflows::KEEP`] runs' rows and parsed workflows, by run id.
#[derive(Default)]
pub(super) struct ParsedWorkflows {
    inner: Mutex<Kept>,
}

/// The kept entries and their run ids, oldest first.
#[derive(Default)]
struct Kept {
    map: HashMap<i64, (Arc<RunRow>, Arc<Workflow>)>,
    order: VecDeque<i64>,
}

impl ParsedWorkflows {
    const KEEP: usize = 256;

    fn get(&self, run: i64) -> Option<(Arc<RunRow>, Arc<Workflow>)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&run).cloned()
    }

    /// The kept workflow of `run`.
    pub(super) fn workflow(&self, run: i64) -> Option<Arc<Workflow>> {
        self.get(run).map(|(_, wf)| wf)
    }

    /// The kept row of `run`: read only its fixed fields (see the module's documentation).
    pub(crate) fn fixed_run(&self, run: i64) -> Option<Arc<RunRow>> {
        self.get(run).map(|(row, _)| row)
    }

    fn put(&self, run: Arc<RunRow>, wf: Arc<Workflow>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = run.id;
        if inner.map.insert(id, (run, wf)).is_none() {
            inner.order.push_back(id);
        }
        while inner.order.len() > Self::KEEP {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
    }
}

/// Parses a run's stored workflow again (the text is kept with the run), off the async
/// workers within the parse budget; kept for the run's next readers.
/// A batch buildspec's builds read their buildspecs at the run's commit again.
pub(crate) async fn parse_run_workflow(
    state: &AppState,
    run: &RunRow,
) -> Result<Arc<Workflow>, RunsError> {
    if let Some(wf) = state.runs().parsed.workflow(run.id) {
        return Ok(wf);
    }
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository of run {}", run.id)))?;
    let at = source::At {
        repo_path: git::repo_path(state.data_dir(), &repo.owner, &repo.name),
        commit: run.commit_sha.clone(),
    };
    let parsed = match &run.implicit_branch {
        Some(branch) => {
            parse_budget::implicit_buildspec(&run.workflow_file, &run.workflow_text, branch, at)
                .await
        }
        None => parse_budget::workflow(&run.workflow_file, &run.workflow_text, at).await,
    };
    let wf = Arc::new(parsed.map(|(w, _)| w).map_err(|diags| {
        RunsError::BadRequest(
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?);
    state.runs().parsed.put(Arc::new(run.clone()), wf.clone());
    Ok(wf)
}

/// Run `run_id`'s row (read only its fixed fields) and parsed workflow: kept ones without a
/// store read, else read and parsed.
pub(crate) async fn run_and_workflow(
    state: &AppState,
    run_id: i64,
) -> Result<(Arc<RunRow>, Arc<Workflow>), RunsError> {
    if let Some(kept) = state.runs().parsed.get(run_id) {
        return Ok(kept);
    }
    let run = state
        .store()
        .run(run_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("run {run_id}")))?;
    let wf = parse_run_workflow(state, &run).await?;
    Ok((Arc::new(run), wf))
}
