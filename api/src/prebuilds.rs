//! Prebuilds (issue 19, docs/prebuilds.md): wire types of `…/prebuilds` and
//! `…/prebuilds/settings`.

use serde::{Deserialize, Serialize};

/// State of a prebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PrebuildState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Replaced by a newer prebuild of the same branch before it ran.
    Superseded,
    /// Garbage-collected: its images are gone.
    Expired,
}

impl PrebuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrebuildState::Queued => "queued",
            PrebuildState::Running => "running",
            PrebuildState::Succeeded => "succeeded",
            PrebuildState::Failed => "failed",
            PrebuildState::Superseded => "superseded",
            PrebuildState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => PrebuildState::Queued,
            "running" => PrebuildState::Running,
            "succeeded" => PrebuildState::Succeeded,
            "failed" => PrebuildState::Failed,
            "superseded" => PrebuildState::Superseded,
            "expired" => PrebuildState::Expired,
            _ => return None,
        })
    }
}

/// One prebuild (`GET …/prebuilds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prebuild {
    pub id: i64,
    pub branch: String,
    /// The commit it was built from.
    pub sha: String,
    pub state: PrebuildState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Snapshot images, one per component (succeeded prebuilds).
    #[serde(default)]
    pub images: Vec<String>,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Environments of this prebuild in the warm pool: running and ready to claim, and being
    /// created.
    #[serde(default)]
    pub pool_ready: u32,
    #[serde(default)]
    pub pool_creating: u32,
}

/// A prebuild's log (`GET …/prebuilds/{id}/logs`), at most 1 MiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrebuildLog {
    pub id: i64,
    pub state: PrebuildState,
    pub log: String,
}

/// Which branches of a repository prebuild (`GET/PUT …/prebuilds/settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PrebuildSettings {
    /// Off: no prebuild is queued (existing ones are still used until collected).
    pub enabled: bool,
    /// Branches that prebuild; empty: the repository's default branch.
    #[serde(default)]
    pub branches: Vec<String>,
    /// Succeeded prebuilds kept per branch (1–20; default 3).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Warm pool (0–5, default 0): environments of each branch's current prebuild created and
    /// started ahead of time; `cove env create` of that commit claims one (docs/prebuilds.md).
    #[serde(default)]
    pub warm: u32,
}

fn default_keep() -> u32 {
    3
}

impl Default for PrebuildSettings {
    fn default() -> Self {
        PrebuildSettings {
            enabled: true,
            branches: Vec::new(),
            keep: default_keep(),
            warm: 0,
        }
    }
}

/// Body of `POST …/prebuilds`: prebuild a branch's head now (writers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TriggerPrebuild {
    /// Default: the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}
