//! Pull requests (issue 15): a source branch proposed for a destination branch of the same
//! repository, with revisions, a diff against the merge base, comments, reviews and a merge.

use serde::{Deserialize, Serialize};

/// A pull request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PullState {
    Open,
    Merged,
    Closed,
}

impl PullState {
    pub fn as_str(self) -> &'static str {
        match self {
            PullState::Open => "open",
            PullState::Merged => "merged",
            PullState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<PullState> {
        [PullState::Open, PullState::Merged, PullState::Closed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    /// The destination moves to the source's head; refused when the destination moved.
    FastForward,
    /// A commit with two parents: the destination and the source's head.
    Merge,
    /// One commit with the destination as its only parent and the merged tree.
    Squash,
}

impl MergeMethod {
    pub const ALL: [MergeMethod; 3] = [
        MergeMethod::FastForward,
        MergeMethod::Merge,
        MergeMethod::Squash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::FastForward => "fast_forward",
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
        }
    }

    pub fn parse(s: &str) -> Option<MergeMethod> {
        MergeMethod::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A review's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    Approve,
    RequestChanges,
    Comment,
}

impl ReviewVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Approve => "approve",
            ReviewVerdict::RequestChanges => "request_changes",
            ReviewVerdict::Comment => "comment",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewVerdict> {
        [
            ReviewVerdict::Approve,
            ReviewVerdict::RequestChanges,
            ReviewVerdict::Comment,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// `POST /repos/{owner}/{name}/pulls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatePullRequest {
    /// Branch name (without `refs/heads/`).
    pub source: String,
    /// Branch name; the repository's default branch when absent.
    #[serde(default)]
    pub destination: Option<String>,
    pub title: String,
    /// Markdown source, at most 64 KiB.
    #[serde(default)]
    pub description: String,
    /// Users whose approval the merge needs (each must be able to read the repository).
    #[serde(default)]
    pub reviewers: Vec<String>,
}

/// `PATCH /repos/{owner}/{name}/pulls/{number}`: the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdatePullRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub reviewers: Option<Vec<String>>,
}

/// A required reviewer and where they stand on the current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewerStatus {
    pub username: String,
    /// The verdict of their latest non-stale approve/request_changes review, if any.
    pub verdict: Option<ReviewVerdict>,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullRequest {
    /// Per-repository number (#1, #2, …).
    pub number: i64,
    /// `owner/name`.
    pub repo: String,
    pub source: String,
    pub destination: String,
    pub title: String,
    pub description: String,
    pub author: String,
    pub state: PullState,
    /// The source branch's commit of the latest revision.
    pub head_sha: String,
    /// The destination's commit when the latest revision was recorded.
    pub base_sha: String,
    /// The commit the destination moved to, once merged.
    pub merge_sha: Option<String>,
    /// How many revisions (1 + pushes to the source branch while open).
    pub revision: i64,
    pub reviewers: Vec<ReviewerStatus>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One revision: the source branch's head after a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullRevision {
    pub revision: i64,
    pub head_sha: String,
    pub base_sha: String,
    pub created_at_ms: i64,
}

/// One file of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiffFile {
    /// `added`, `deleted`, `modified`, `renamed`, `copied`, `typechange`.
    pub status: String,
    /// Path before (absent for an added file).
    pub old_path: Option<String>,
    /// Path after (absent for a deleted file).
    pub new_path: Option<String>,
    pub additions: u64,
    pub deletions: u64,
    pub binary: bool,
    /// The unified diff of this file (empty for a binary file or past the byte cap).
    pub patch: String,
    /// The patch was cut (or left out) by the byte cap.
    pub truncated: bool,
}

/// A pull request's diff against the merge base of destination and source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullDiff {
    pub merge_base: String,
    pub head_sha: String,
    /// Files changed in total (may exceed `files.len()` when truncated).
    pub files_changed: u64,
    pub additions: u64,
    pub deletions: u64,
    pub files: Vec<DiffFile>,
    /// Some files or patch text were left out by the caps; `truncated_reason` says which.
    pub truncated: bool,
    pub truncated_reason: Option<String>,
}

/// A commit of a pull request (in the source, not in the destination), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullCommit {
    pub sha: String,
    pub summary: String,
    pub author: String,
    pub time: i64,
}

/// `POST …/pulls/{number}/comments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    pub body: String,
    /// A reply to this comment (its thread's position is inherited).
    #[serde(default)]
    pub parent_id: Option<i64>,
    /// A line comment: file path in the diff.
    #[serde(default)]
    pub path: Option<String>,
    /// `old` or `new` (default `new`).
    #[serde(default)]
    pub side: Option<String>,
    /// 1-based line number on that side.
    #[serde(default)]
    pub line: Option<u32>,
    /// The commit the line refers to (default: the current head).
    #[serde(default)]
    pub commit: Option<String>,
}

/// `PATCH …/comments/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EditComment {
    pub body: String,
}

/// A comment on a pull request or on a line of its diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullComment {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub author: String,
    pub body: String,
    pub path: Option<String>,
    pub side: Option<String>,
    pub line: Option<u32>,
    pub commit: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `POST …/pulls/{number}/reviews`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateReview {
    pub verdict: ReviewVerdict,
    #[serde(default)]
    pub body: String,
}

/// A review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullReview {
    pub id: i64,
    pub reviewer: String,
    pub verdict: ReviewVerdict,
    pub body: String,
    /// The revision it was given on.
    pub revision: i64,
    /// A later revision made this approval stale (it no longer counts).
    pub stale: bool,
    pub created_at_ms: i64,
}

/// `POST …/pulls/{number}/merge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    pub method: MergeMethod,
    /// Delete the source branch after the merge.
    #[serde(default)]
    pub delete_source: bool,
    /// The commit message of a merge or squash commit (a default names the PR).
    #[serde(default)]
    pub message: Option<String>,
}

/// Why a pull request cannot be merged now (the body of a 409 lists them too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mergeability {
    pub mergeable: bool,
    pub reasons: Vec<String>,
}

/// One check of a pull request: the latest run of a workflow on its head commit (a run of a
/// PULLREQUEST trigger, or of a push to the source branch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullCheck {
    /// The workflow's `Name` (what branch rules' required checks name).
    pub name: String,
    pub state: crate::RunState,
    /// The run's number in the repository (`owner/name#N`).
    pub run_number: i64,
    /// The run's id (`/api/v1/runs/{id}`).
    pub run_id: i64,
    /// `push`, `pullrequest`, `manual` or `schedule`.
    pub trigger: String,
    pub commit: String,
    pub created_at_ms: i64,
}

/// A recorded pull-request event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullEvent {
    pub id: i64,
    /// `pr_opened`, `pr_revision`, `pr_merged`, `pr_closed`, `review_submitted`,
    /// `comment_added`.
    pub kind: String,
    /// `owner/name`.
    pub repo: String,
    pub number: i64,
    pub actor: Option<String>,
    /// Kind-specific detail (revision number, merge sha, verdict, comment id).
    pub detail: String,
    pub created_at_ms: i64,
}

/// A repository's pull-request settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PullSettings {
    pub allowed_merge_methods: Vec<MergeMethod>,
    /// A new revision makes earlier approvals stale (default true).
    pub stale_approvals: bool,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            allowed_merge_methods: MergeMethod::ALL.to_vec(),
            stale_approvals: true,
        }
    }
}

/// Body of `POST /api/v1/repos/{owner}/{name}/pulls/{number}/environment` ("Open in
/// environment"); the body is optional. The environment works on the pull request's source
/// branch; these choose how a new one is made (an environment the caller already has on that
/// branch is reused as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OpenPullEnvironment {
    /// Devfile path in the repository (default: devfile.yaml, .devfile.yaml, … or Cove's
    /// default), read at the source branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devfile_path: Option<String>,
    /// `small`, `medium` (default) or `large`, as for `POST …/environments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}
