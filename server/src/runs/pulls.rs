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
//! - The unique index on (`pr_event_id`, `workflow_file`) makes an event start at most one
//!   run per workflow file.
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
    // A revision names its head ("revision N <sha>"); the others are at the recorded head.
    let head = match event.detail.rsplit(' ').next() {
        Some(sha)
            if event.kind == "pr_revision"
                && sha.len() == 40
                && sha.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            sha.to_string()
        }
        _ => pull.head_sha.clone(),
    };
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (commit, files) = source::workflow_files(path.clone(), head.clone()).await?;
    let changed = source::pull_changed_files(path, pull.base_sha.clone(), commit.clone()).await?;
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut created = Vec::new();
    for (file, text) in &files.workflows {
        let Ok((wf, _)) = parse_budget::workflow(file, text).await else {
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

/// Runs the pull request triggers of a just-stored event in the background; failures are
/// logged (the event stands).
pub fn spawn_on_pull_event(state: &AppState, repo: &RepoRow, number: i64, event: &PullEventRow) {
    if trigger_events(&event.kind).is_empty() {
        return;
    }
    let (state, repo, event) = (state.clone(), repo.clone(), event.clone());
    tokio::spawn(async move {
        match on_pull_event(&state, &repo, number, &event).await {
            Ok(runs) if !runs.is_empty() => {
                tracing::info!(
                    repo = %format!("{}/{}", repo.owner, repo.name),
                    number,
                    kind = %event.kind,
                    runs = runs.len(),
                    "pull request runs created"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::error!(
                repo = %format!("{}/{}", repo.owner, repo.name),
                number,
                kind = %event.kind,
                error = %error,
                "creating the runs of a pull request event failed"
            ),
        }
    });
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
