//! A user's personal settings (`/api/v1/user/settings`).

use serde::{Deserialize, Serialize};

/// The caller's personal settings (`GET` answer, and the `PUT` body: a PUT replaces them,
/// so an absent or null `dotfiles` is cleared; an absent `editor` is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Dotfiles repository: an http(s) git URL, or a Cove repository `owner/name`. Cloned
    /// into `~/.dotfiles` of every new environment, whose install script runs once.
    #[serde(default)]
    pub dotfiles: Option<String>,
    /// The editor of new environments when `cove env create` names none: `terminal` (the
    /// default) or `vscode` (docs/vscode.md). Always in a `GET` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<crate::Editor>,
}
