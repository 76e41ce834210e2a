//! A user's personal settings (`/api/v1/user/settings`).

use serde::{Deserialize, Serialize};

/// The caller's personal settings (`GET` answer, and the `PUT` body: a PUT replaces them,
/// so an absent or null field is cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Dotfiles repository: an http(s) git URL, or a Cove repository `owner/name`. Cloned
    /// into `~/.dotfiles` of every new environment, whose install script runs once.
    #[serde(default)]
    pub dotfiles: Option<String>,
}
