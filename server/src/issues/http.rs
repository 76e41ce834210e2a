//! The issue handlers. Their routes and roles (readers read; writers create, edit, move,
//! close and create branches) are in the one route table (`crate::routes`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    Branch, CreateIssue, CreateIssueBranch, Issue, IssueLinks, IssueList, IssuePullLink, MoveIssue,
    Priority, UpdateIssue, ESTIMATES, ZERO_SHA,
};
use cove_api::{EstimateKind, ESTIMATE_POINTS};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{done_column, issue_dto, text};
use super::{MAX_ASSIGNEES, MAX_BODY_BYTES, MAX_LABELS, MAX_LABEL_BYTES, MAX_TITLE_BYTES};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::extract::{self, Json, Path, Query};
use crate::forge::http::{check_text, param_i64};
use crate::store::{ColumnRow, IssueFilter, IssueRow, MoveRefusal, NewIssue, RefUpdate, RepoRow};
use crate::AppState;

pub(crate) type Params = Path<BTreeMap<String, String>>;

pub(crate) async fn load_issue(
    state: &AppState,
    repo: &RepoRow,
    params: &BTreeMap<String, String>,
) -> Result<IssueRow, ApiError> {
    let number = param_i64(params, "number")?;
    state
        .store()
        .issue(repo.id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("issue #{number}")))
}

pub(crate) fn find_column<'a>(
    columns: &'a [ColumnRow],
    name: &str,
) -> Result<&'a ColumnRow, ApiError> {
    columns
        .iter()
        .find(|c| c.name == name)
        .or_else(|| columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no column {name:?}; the board has {}",
                columns
                    .iter()
                    .map(|c| format!("{:?}", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Assignees must exist and be able to read the repository; distinct, in order.
async fn check_assignees(
    state: &AppState,
    repo: &RepoRow,
    names: &[String],
) -> Result<Vec<String>, ApiError> {
    if names.len() > MAX_ASSIGNEES {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_ASSIGNEES} assignees"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let user = state
            .store()
            .user_by_name(name)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("assignee {name:?} is not a user")))?;
        if auth::role_of_user(state.store(), &user, repo)
            .await?
            .is_none()
        {
            return Err(ApiError::BadRequest(format!(
                "assignee {name} cannot read {}/{}",
                repo.owner, repo.name
            )));
        }
        if !out.contains(&user.username) {
            out.push(user.username);
        }
    }
    Ok(out)
}

fn check_labels(labels: &[String]) -> Result<Vec<String>, ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!("at most {MAX_LABELS} labels")));
    }
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let label = label.trim();
        if label.is_empty()
            || label.len() > MAX_LABEL_BYTES
            || label.contains(',')
            || label.chars().any(char::is_control)
        {
            return Err(ApiError::BadRequest(format!(
                "label {label:?}: 1 to {MAX_LABEL_BYTES} bytes, no comma or control character"
            )));
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_string());
        }
    }
    Ok(out)
}

/// An estimate in the form the repository's project uses (`estimate_kind`; T-shirt sizes
/// without a project); empty clears it.
async fn check_estimate(
    state: &AppState,
    repo: &RepoRow,
    estimate: &str,
) -> Result<Option<String>, ApiError> {
    if estimate.is_empty() {
        return Ok(None);
    }
    let kind = state
        .store()
        .project_of_repo(repo.id)
        .await?
        .map(|p| p.estimate_kind)
        .unwrap_or_default();
    let (allowed, value): (&[&str], String) = match kind {
        EstimateKind::Sizes => (&ESTIMATES, estimate.to_ascii_uppercase()),
        EstimateKind::Points => (&ESTIMATE_POINTS, estimate.trim().to_string()),
    };
    if allowed.contains(&value.as_str()) {
        Ok(Some(value))
    } else {
        Err(ApiError::BadRequest(format!(
            "estimate must be one of {} in this repository's project ({} estimates; got \
             {estimate:?})",
            allowed.join(", "),
            kind.as_str()
        )))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only issues in this board column (e.g. `In progress`).
    column: Option<String>,
    /// Only issues assigned to this user.
    assignee: Option<String>,
    /// Only issues with this label.
    label: Option<String>,
    /// Only issues whose title or description contains this text (any case).
    q: Option<String>,
    /// Page size, newest first (default 50; above 500 answers 500).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// Issues to skip (the page's start).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

pub async fn list_issues(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<ListQuery>,
) -> Result<Json<IssueList>, ApiError> {
    let limit = extract::limit(query.limit, 50, 500)?;
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest(format!(
            "offset must be 0 or more (got {offset})"
        )));
    }
    let columns = state.store().board_columns(repo.id).await?;
    let mut filter = IssueFilter::default();
    if let Some(column) = &query.column {
        filter.column_id = Some(find_column(&columns, column)?.id);
    }
    for (what, value) in [("assignee", &query.assignee), ("label", &query.label)] {
        if let Some(v) = value {
            check_text(what, v, MAX_LABEL_BYTES.max(64), true)?;
        }
    }
    if let Some(q) = &query.q {
        check_text("q", q, 200, false)?;
    }
    filter.assignee = query.assignee.clone();
    filter.label = query.label.clone();
    filter.text = query.q.clone().filter(|q| !q.trim().is_empty());
    let (rows, total) = state
        .store()
        .list_issues(repo.id, &filter, limit, offset)
        .await?;
    let done = done_column(&columns);
    Ok(Json(IssueList {
        total,
        issues: rows.iter().map(|r| issue_dto(&repo, r, done)).collect(),
    }))
}

pub async fn create_issue(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateIssue>,
) -> Result<(StatusCode, Json<Issue>), ApiError> {
    check_text("title", &req.title, MAX_TITLE_BYTES, true)?;
    check_text("description", &req.description, MAX_BODY_BYTES, false)?;
    let assignees = check_assignees(&state, &repo, &req.assignees).await?;
    let labels = check_labels(&req.labels)?;
    let estimate =
        check_estimate(&state, &repo, req.estimate.as_deref().unwrap_or_default()).await?;
    let columns = state.store().board_columns(repo.id).await?;
    let column = match &req.column {
        Some(name) => find_column(&columns, name)?,
        None => columns
            .first()
            .ok_or_else(|| ApiError::Conflict("the board has no columns".into()))?,
    };
    let user = &principal.user;
    let issue = state
        .store()
        .insert_issue(&NewIssue {
            repo_id: repo.id,
            title: req.title.trim(),
            description: &req.description,
            column_id: column.id,
            assignees: &assignees,
            labels: &labels,
            priority: req.priority.unwrap_or(Priority::None),
            estimate: estimate.as_deref(),
            author_id: user.id,
            author: &user.username,
        })
        .await?;
    tracing::info!(
        repo = %format!("{}/{}", repo.owner, repo.name),
        number = issue.number,
        author = %user.username,
        "issue created"
    );
    super::notify_assigned(&state, &repo, &issue, &user.username, &assignees).await;
    super::notify_mentions(
        &state,
        &repo,
        &issue,
        &user.username,
        "",
        &issue.description,
        "issue",
    )
    .await;
    let done = done_column(&columns);
    Ok((StatusCode::CREATED, Json(issue_dto(&repo, &issue, done))))
}

pub async fn get_issue(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Issue>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let columns = state.store().board_columns(repo.id).await?;
    Ok(Json(issue_dto(&repo, &issue, done_column(&columns))))
}

pub async fn update_issue(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<UpdateIssue>,
) -> Result<Json<Issue>, ApiError> {
    let mut issue = load_issue(&state, &repo, &params).await?;
    let before = issue.clone();
    if let Some(title) = &req.title {
        check_text("title", title, MAX_TITLE_BYTES, true)?;
        issue.title = title.trim().to_string();
    }
    if let Some(description) = &req.description {
        check_text("description", description, MAX_BODY_BYTES, false)?;
        issue.description = description.clone();
    }
    if let Some(assignees) = &req.assignees {
        issue.assignees = check_assignees(&state, &repo, assignees).await?;
    }
    if let Some(labels) = &req.labels {
        issue.labels = check_labels(labels)?;
    }
    if let Some(priority) = req.priority {
        issue.priority = priority;
    }
    if let Some(estimate) = &req.estimate {
        issue.estimate = check_estimate(&state, &repo, estimate).await?;
    }
    state.store().update_issue(&issue).await?;
    let issue = load_issue(&state, &repo, &params).await?;
    let actor = &principal.user.username;
    let added: Vec<String> = issue
        .assignees
        .iter()
        .filter(|a| !before.assignees.contains(a))
        .cloned()
        .collect();
    super::notify_assigned(&state, &repo, &issue, actor, &added).await;
    super::notify_mentions(
        &state,
        &repo,
        &issue,
        actor,
        &before.description,
        &issue.description,
        "issue",
    )
    .await;
    let columns = state.store().board_columns(repo.id).await?;
    Ok(Json(issue_dto(&repo, &issue, done_column(&columns))))
}

async fn move_to(
    state: &AppState,
    repo: &RepoRow,
    issue: &IssueRow,
    column: &str,
    position: Option<u32>,
) -> Result<Issue, ApiError> {
    let columns = state.store().board_columns(repo.id).await?;
    let target = find_column(&columns, column)?;
    let moved = match state
        .store()
        .move_issue(repo.id, issue.id, target.id, position)
        .await
    {
        Ok(moved) => moved,
        Err(crate::store::StoreError::Conflict(message)) => {
            return Err(ApiError::Conflict(format!("{message}; reload the board")))
        }
        Err(e) => return Err(e.into()),
    };
    match moved {
        Ok(row) => Ok(issue_dto(repo, &row, done_column(&columns))),
        Err(MoveRefusal::ColumnFull { column, limit }) => Err(ApiError::Conflict(format!(
            "column {column:?} holds its limit of {limit} issue(s); move one out first"
        ))),
    }
}

pub async fn move_issue(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
    Json(req): Json<MoveIssue>,
) -> Result<Json<Issue>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    Ok(Json(
        move_to(&state, &repo, &issue, &req.column, req.position).await?,
    ))
}

/// Close: to the bottom of the done column (the board's last).
pub async fn close_issue(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Issue>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let columns = state.store().board_columns(repo.id).await?;
    let done = columns
        .last()
        .ok_or_else(|| ApiError::Conflict("the board has no columns".into()))?;
    if issue.column_id == done.id {
        return Ok(Json(issue_dto(&repo, &issue, done.id)));
    }
    Ok(Json(
        move_to(&state, &repo, &issue, &done.name.clone(), None).await?,
    ))
}

/// Branches created from the issue and pull requests that mention `#N`.
pub async fn issue_links(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<IssueLinks>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let branches = state.store().issue_branches(issue.id).await?;
    let mut pulls = Vec::new();
    for (number, title, description, pr_state) in state
        .store()
        .pulls_mentioning(repo.id, issue.number)
        .await?
    {
        let text = format!("{title}\n{description}");
        if !text::references(&text).contains(&issue.number) {
            continue;
        }
        pulls.push(IssuePullLink {
            number,
            title,
            state: pr_state,
            fixes: text::closing_references(&text).contains(&issue.number),
        });
    }
    Ok(Json(IssueLinks { branches, pulls }))
}

/// A branch from the default branch's head, named after the issue, created with git
/// (no working tree) and recorded as a push by the caller.
pub async fn create_branch(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<CreateIssueBranch>,
) -> Result<(StatusCode, Json<Branch>), ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| text::branch_name(issue.number, &issue.title));
    crate::edits::check_branch_name(&name)?;
    let ref_name = format!("refs/heads/{name}");
    let _guard = crate::cluster::lock_repo(&state, repo.id).await?;
    let path = crate::repos::repo_dir(&state, &repo);
    let base = crate::edits::head_of(path.clone(), repo.default_branch.clone())
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "the default branch {} has no commits yet",
                repo.default_branch
            ))
        })?;
    let update = RefUpdate {
        ref_name: ref_name.clone(),
        old_sha: ZERO_SHA.to_string(),
        new_sha: base.clone(),
    };
    crate::edits::check_rules(&state, &repo, &principal.user, &update).await?;
    crate::edits::update_ref(path, &ref_name, &base, None).await?;
    state.store().add_issue_branch(issue.id, &name).await?;
    crate::edits::record_push(&state, &repo, &principal.user, vec![update], "issue branch").await?;
    Ok((StatusCode::CREATED, Json(Branch { name, commit: base })))
}
