//! PULLREQUEST triggers (issue 15) and the checks of a pull request.
//!
//! - A stored pull request event (`crate::forge::published`) of kind `pr_opened`,
//!   `pr_revision`, `pr_closed` or `pr_merged` is [`on_pull_event`]: the workflow files are read
//!   at the pull request's **source** revision (CodeCatalyst: the run uses the source branch's
//!   workflow definition and files), and each workflow whose PULLREQUEST trigger matches the
//!   event, the **destination** branch (`Branches`; omitted or `[]`: all) and the files the pull
//!   request changes (`FilesChanged`, against the merge base) becomes a run of the source branch
//!   at that revision, with trigger `pullrequest` and the pull request's number stored on it.
//!   A merge is a `MERGED` and a `CLOSED` event (a merged pull request is closed).
//! - Durable like pushes: the event is stored with `runs_pending = 1` in its own transaction;
//!   [`process_pending`] (after each such event and at start-up) creates its runs and clears
//!   the flag. The unique index on (`pr_event_id`, `workflow_file`) makes an event start at
//!   most one run per workflow file, however often it is processed.
//! - [`checks`]: the latest run of each workflow on a commit — what the pull request page shows,
//!   and what branch rules' required checks read (`crate::forge::merge::requirements`).

use std::collections::BTreeMap;

use workflows::PullRequestEvent;

use super::{insert_run, source, RunSource, RunsError};
use crate::git;
use crate::parse_budget;
use crate::store::{PullEventRow, RepoRow, RunRow};
use crate::AppState;

/// The trigger events a stored pull request event kind stands for (none for the others).
pub fn trigger_events(kind: &str) -> &'static [PullRequestEvent] {
    match kind {
        "pr_opened" => &[PullRequestEvent::Open],
        "pr_revision" => &[PullRequestEvent::Revision],
        "pr_closed" => &[PullRequestEvent::Closed],
        "pr_merged" => &[PullRequestEvent::Merged, PullRequestEvent::Closed],
        _ => &[],
    }
}

/// Creates the runs pull request event `event` (of pull request `number`) starts.
pub async fn on_pull_event(
    state: &AppState,
    repo: &RepoRow,
    number: i64,
    event: &PullEventRow,
) -> Result<Vec<RunRow>, RunsError> {
    let events = trigger_events(&event.kind);
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let Some(pull) = state.store().pull(repo.id, number).await? else {
        return Ok(Vec::new());
    };
    // A revision names its head ("revision N <sha>"); an opening is revision 1's head (the
    // source may have moved since, when the event is processed after a restart); a close or
    // merge is at the recorded head, which no longer moves.
    let head = match event.detail.rsplit(' ').next() {
        Some(sha)
            if event.kind == "pr_revision"
                && sha.len() == 40
                && sha.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            sha.to_string()
        }
        _ if event.kind == "pr_opened" => state
            .store()
            .pull_revisions(pull.id)
            .await?
            .into_iter()
            .find(|r| r.revision == 1)
            .map_or_else(|| pull.head_sha.clone(), |r| r.head_sha),
        _ => pull.head_sha.clone(),
    };
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (commit, files) = source::workflow_files(path.clone(), head.clone()).await?;
    let at = source::At {
        repo_path: path.clone(),
        commit: commit.clone(),
    };
    let changed = source::pull_changed_files(path, pull.base_sha.clone(), commit.clone()).await?;
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut created = Vec::new();
    for (file, text) in &files.workflows {
        let Ok((wf, _)) = parse_budget::workflow(file, text, at.clone()).await else {
            // The push of the source branch recorded the error.
            continue;
        };
        if !events
            .iter()
            .any(|e| wf.matches_pull_request(*e, &pull.destination, &changed))
        {
            continue;
        }
        let source = RunSource {
            file,
            text,
            implicit_branch: None,
            branch: &pull.source,
            commit: &commit,
            trigger: "pullrequest",
            actor: None,
            rollback_of: None,
        };
        created.extend(
            insert_run(
                state,
                repo,
                &wf,
                &source,
                None,
                None,
                Some((number, event.id)),
            )
            .await?,
        );
    }
    Ok(created)
}

/// Creates the runs of every stored pull request event that has none yet, oldest first, and
/// moves the cursor past each (`pr_events.runs_pending`). Idempotent like the push cursor (the
/// unique index on (`pr_event_id`, `workflow_file`)). A store failure stops the pass and leaves
/// the event pending; any other failure is logged and the event is done. Returns the runs
/// created.
pub async fn process_pending(state: &AppState) -> Result<usize, RunsError> {
    let _one_pass = state.runs().pull_cursor.lock().await;
    let mut created = 0;
    loop {
        let pending = state.store().pending_pull_events(100).await?;
        if pending.is_empty() {
            return Ok(created);
        }
        for p in &pending {
            let repo = state.store().repo(&p.owner, &p.name).await?;
            let result = match &repo {
                Some(repo) => on_pull_event(state, repo, p.number, &p.event).await,
                None => Ok(Vec::new()),
            };
            match result {
                Ok(runs) => {
                    if !runs.is_empty() {
                        tracing::info!(
                            repo = %format!("{}/{}", p.owner, p.name),
                            number = p.number,
                            kind = %p.event.kind,
                            runs = runs.len(),
                            "pull request runs created"
                        );
                    }
                    created += runs.len();
                }
                Err(RunsError::Store(e)) => return Err(RunsError::Store(e)),
                Err(error) => tracing::error!(
                    repo = %format!("{}/{}", p.owner, p.name),
                    number = p.number,
                    kind = %p.event.kind,
                    error = %error,
                    "creating the runs of a pull request event failed"
                ),
            }
            state.store().pull_event_done(p.event.id).await?;
        }
    }
}

/// Runs [`process_pending`] in the background (after a pull request event is stored, and at
/// start-up); failures are logged, and the events stay pending for the next pass.
pub fn spawn_pending(state: AppState) {
    tokio::spawn(async move {
        if let Err(error) = process_pending(&state).await {
            tracing::error!(error = %error, "creating the runs of pull request events failed; they stay pending");
        }
    });
}

/// Called when pull request event `event` is stored and published: a pass of the cursor when
/// it is an event triggers look at.
pub fn spawn_on_pull_event(state: &AppState, event: &PullEventRow) {
    if !trigger_events(&event.kind).is_empty() {
        spawn_pending(state.clone());
    }
}

/// The latest run of each workflow on commit `sha` of repository `repo_id`, by workflow name.
pub async fn checks(
    state: &AppState,
    repo_id: i64,
    sha: &str,
) -> Result<Vec<RunRow>, crate::store::StoreError> {
    let mut latest: BTreeMap<String, RunRow> = BTreeMap::new();
    for run in state.store().runs_for_commit(repo_id, sha).await? {
        let newer = latest
            .get(&run.workflow)
            .is_none_or(|old| (run.created_at_ms, run.id) >= (old.created_at_ms, old.id));
        if newer {
            latest.insert(run.workflow.clone(), run);
        }
    }
    Ok(latest.into_values().collect())
}
