//! Issues and the board (issue 16): per-repository issues (#1, #2, … — their own sequence),
//! their comments, the board's columns with ordered cards, links to branches and pull
//! requests, and in-browser file edits.

use serde::{Deserialize, Serialize};

/// An issue's priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    None,
    Low,
    Medium,
    High,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::None,
        Priority::Low,
        Priority::Medium,
        Priority::High,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::None => "none",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The estimates an issue may carry (T-shirt sizes).
pub const ESTIMATES: [&str; 5] = ["XS", "S", "M", "L", "XL"];

/// An issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Issue {
    /// Per-repository number (#1, #2, …), shared with nothing else.
    pub number: i64,
    /// `owner/name`.
    pub repo: String,
    pub title: String,
    /// Markdown source.
    pub description: String,
    /// The board column the issue is in: its state.
    pub column: String,
    /// Whether the issue is in the board's last column (Done by default).
    pub done: bool,
    /// Its place in its column (smaller first); an opaque number for ordering only.
    pub rank: i64,
    pub assignees: Vec<String>,
    pub labels: Vec<String>,
    pub priority: Priority,
    /// `XS`, `S`, `M`, `L` or `XL`, or in a project that estimates in points `0`, `1`, `2`,
    /// `3`, `5`, `8`, `13` or `21`; absent when not estimated.
    pub estimate: Option<String>,
    pub author: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A page of `GET /repos/{owner}/{name}/issues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssueList {
    /// How many issues match the filters (all pages).
    pub total: i64,
    /// This page, newest first.
    pub issues: Vec<Issue>,
}

/// `POST /repos/{owner}/{name}/issues`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateIssue {
    pub title: String,
    /// Markdown source, at most 64 KiB. `@user` mentions notify the user.
    #[serde(default)]
    pub description: String,
    /// The board column (default: the first, Backlog).
    #[serde(default)]
    pub column: Option<String>,
    /// Users who can read the repository.
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub estimate: Option<String>,
}

/// `PATCH /repos/{owner}/{name}/issues/{number}`: the fields given change. An empty
/// `estimate` clears it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateIssue {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub assignees: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub estimate: Option<String>,
}

/// `POST /repos/{owner}/{name}/issues/{number}/move`: into `column` at `position` (0 = top;
/// absent or past the end = the bottom).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveIssue {
    pub column: String,
    #[serde(default)]
    pub position: Option<u32>,
}

/// A comment on an issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssueComment {
    pub id: i64,
    pub author: String,
    /// Markdown source.
    pub body: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `POST …/issues/{number}/comments` and `PATCH …/comments/{comment}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssueCommentBody {
    /// Markdown source, at most 64 KiB. `@user` mentions notify the user.
    pub body: String,
}

/// A column of the board with its cards in order (their `description` is empty: a card does
/// not show it; `GET …/issues/{number}` has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BoardColumn {
    pub name: String,
    /// Most cards the column takes (moves past it are refused); absent: no limit.
    pub limit: Option<u32>,
    /// How many cards the column holds.
    pub count: u64,
    pub issues: Vec<Issue>,
}

/// The repository's board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Board {
    /// `owner/name`.
    pub repo: String,
    pub columns: Vec<BoardColumn>,
}

/// One column of `PUT …/board/columns`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `PUT /repos/{owner}/{name}/board/columns`: the columns in order. Columns keep their cards
/// by name; a column left out must be empty. The last column is the done column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetColumns {
    pub columns: Vec<ColumnSpec>,
}

/// `POST …/issues/{number}/branch`: a branch from the default branch's head.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateIssueBranch {
    /// The branch name; default `issue-N-slug-of-the-title`.
    #[serde(default)]
    pub name: Option<String>,
}

/// A pull request that mentions an issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuePullLink {
    pub number: i64,
    pub title: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// Its title or description says `Fixes #N` / `Closes #N` / `Resolves #N`.
    pub fixes: bool,
}

/// What an issue is linked to: branches created from it, pull requests that mention it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssueLinks {
    pub branches: Vec<String>,
    pub pulls: Vec<IssuePullLink>,
}

/// `PUT /repos/{owner}/{name}/contents/{path}`: commit a new text of one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EditFile {
    /// The branch the edit starts from (and is committed to unless `new_branch`).
    pub branch: String,
    /// The commit the editor read the file at (`FileContent.commit`). When the branch moved
    /// since and changed this file, the edit is refused (409); it never overwrites.
    pub base_commit: String,
    /// The file's new text (UTF-8, no NUL, at most 1 MiB).
    pub content: String,
    /// The commit message.
    pub message: String,
    /// Commit to this new branch (created from `branch`'s head) instead.
    #[serde(default)]
    pub new_branch: Option<String>,
}

/// The answer to an edit: the commit made and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditResult {
    pub commit: String,
    pub branch: String,
    pub path: String,
    /// The file's new blob id.
    pub blob: String,
}

/// `GET /repos/{owner}/{name}/access`: what the caller may do there (the web UI hides the
/// controls of what it may not; the server refuses them anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepoAccess {
    pub role: crate::Role,
    /// Writer or owner: may create and move issues and commit edits.
    pub can_write: bool,
    /// The project the repository belongs to, if any.
    #[serde(default)]
    pub project: Option<String>,
    /// How its issues are estimated (its project's setting; `sizes` without a project).
    #[serde(default)]
    pub estimate_kind: crate::EstimateKind,
}
