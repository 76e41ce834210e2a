//! Projects and members (issue 16): a project groups repositories; its members hold a project
//! role from which their role on each of its repositories derives (unless a per-repository
//! role is set for them), join by invitation, and may leave.

use serde::{Deserialize, Serialize};

use crate::{BoardColumn, Role};

/// A member's role in a project (CodeCatalyst's project roles), weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProjectRole {
    /// Reads the project's repositories, issues and board.
    Reader,
    /// A reader who may also review pull requests (approve, request changes, comment).
    Reviewer,
    /// Writes: pushes, issues, the board, environments, runs.
    Contributor,
    /// Owns the project's repositories; manages members, repositories and settings.
    Administrator,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 4] = [
        ProjectRole::Reader,
        ProjectRole::Reviewer,
        ProjectRole::Contributor,
        ProjectRole::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Reader => "reader",
            ProjectRole::Reviewer => "reviewer",
            ProjectRole::Contributor => "contributor",
            ProjectRole::Administrator => "administrator",
        }
    }

    pub fn parse(s: &str) -> Option<ProjectRole> {
        ProjectRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The role on each of the project's repositories this project role gives (when no
    /// per-repository role is set for the member): administrator → owner, contributor →
    /// writer, reviewer and reader → reader (a reviewer may also review pull requests).
    pub fn repo_role(self) -> Role {
        match self {
            ProjectRole::Administrator => Role::Owner,
            ProjectRole::Contributor => Role::Writer,
            ProjectRole::Reviewer | ProjectRole::Reader => Role::Reader,
        }
    }
}

/// How a project's issues are estimated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EstimateKind {
    /// T-shirt sizes `XS`, `S`, `M`, `L`, `XL` ([`crate::ESTIMATES`]).
    #[default]
    Sizes,
    /// Points `0, 1, 2, 3, 5, 8, 13, 21` ([`ESTIMATE_POINTS`]).
    Points,
}

impl EstimateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EstimateKind::Sizes => "sizes",
            EstimateKind::Points => "points",
        }
    }

    pub fn parse(s: &str) -> Option<EstimateKind> {
        [EstimateKind::Sizes, EstimateKind::Points]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The estimates an issue of a project with `estimate_kind: points` may carry.
pub const ESTIMATE_POINTS: [&str; 8] = ["0", "1", "2", "3", "5", "8", "13", "21"];

/// `POST /api/v1/projects`: the caller becomes its first administrator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// A slug: letters, digits, `-`, `_`, `.`; unique without regard to case.
    pub name: String,
    /// At most 4 KiB.
    #[serde(default)]
    pub description: String,
    /// Default `sizes`.
    #[serde(default)]
    pub estimate_kind: Option<EstimateKind>,
}

/// `PATCH /api/v1/projects/{project}`: the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub estimate_kind: Option<EstimateKind>,
}

/// A project as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub name: String,
    pub description: String,
    pub estimate_kind: EstimateKind,
    /// Its repositories, `owner/name`, sorted.
    pub repos: Vec<String>,
    /// The caller's role; absent for an administrator of Cove who is not a member, and for an
    /// invitee (see `invited_as`).
    pub role: Option<ProjectRole>,
    /// The role of the caller's pending invitation, if any.
    pub invited_as: Option<ProjectRole>,
    pub created_at_ms: i64,
}

/// `POST /api/v1/projects/{project}/repos`: attach a repository the caller owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AttachRepo {
    /// `owner/name`.
    pub repo: String,
}

/// A member of a project, or a pending invitation (`pending: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectMember {
    pub user: String,
    pub role: ProjectRole,
    /// An invitation the user has not accepted yet: no access until they do.
    pub pending: bool,
    /// Who invited them.
    pub invited_by: Option<String>,
    pub since_ms: i64,
}

/// `POST /api/v1/projects/{project}/members`: invite a user by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InviteMember {
    pub user: String,
    pub role: ProjectRole,
}

/// `PUT /api/v1/projects/{project}/members/{user}`: change a member's role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMemberRole {
    pub role: ProjectRole,
}

/// `GET /api/v1/projects/{project}/board`: the boards of the project's repositories merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectBoard {
    pub project: String,
    /// Columns merged by name across the project's repositories (in the order they first
    /// appear, repositories sorted by name); each card's `repo` says where it lives, and
    /// within a column cards are grouped by repository in their board order.
    pub columns: Vec<BoardColumn>,
}
