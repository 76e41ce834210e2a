//! Branch rules (branch protection): `GET/PUT /api/v1/repos/{owner}/{name}/branch-rules`.

use serde::{Deserialize, Serialize};

use crate::Role;

/// One rule: what a branch whose name matches `pattern` requires. Rules are ordered; the
/// first rule whose pattern matches a branch is the one that applies to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BranchRule {
    /// Branch name pattern (without `refs/heads/`): `*` matches within one path segment,
    /// `**` across segments, `?` one character; everything else is literal
    /// (`main`, `release/*`, `team/**`).
    pub pattern: String,
    /// Updates go through pull requests only: a direct push that moves the branch is refused.
    #[serde(default)]
    pub require_pull_request: bool,
    /// Current (not stale) approvals a pull request into the branch needs before its merge.
    #[serde(default)]
    pub required_approvals: u32,
    /// Workflow names whose latest run on the pull request must have succeeded.
    #[serde(default)]
    pub required_checks: Vec<String>,
    /// Repository roles whose members may merge into the branch (with `merge_users`; both
    /// empty: everyone who may write to the repository).
    #[serde(default)]
    pub merge_roles: Vec<Role>,
    /// Users who may merge into the branch.
    #[serde(default)]
    pub merge_users: Vec<String>,
    /// Allows pushes that are not fast-forwards (history rewrites). Default: refused.
    #[serde(default)]
    pub allow_force_push: bool,
    /// Allows deleting the branch by a push. Default: refused.
    #[serde(default)]
    pub allow_deletion: bool,
    /// A pull request merges only when its source branch contains the destination's current
    /// head (it was rebased on, or merged with, the latest destination): what is merged is
    /// what its checks ran on. Default: not required.
    #[serde(default)]
    pub require_up_to_date: bool,
}

/// A repository's ordered branch rules (the body of `PUT` and the answer of `GET`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BranchRules {
    pub rules: Vec<BranchRule>,
}
