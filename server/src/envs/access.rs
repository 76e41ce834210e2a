//! Who may act on an environment. An environment belongs to the user who created it: its
//! terminal, exec, logs, events, start and restart need that user or an administrator; stop
//! and delete also admit the owners of its repository. Everyone else with a role on the
//! repository sees that it exists (list, show), nothing more.
//!
//! The route table (`crate::routes`) says which rule each `{env}` route needs
//! (`RouteSpec::env_access`); its middleware calls [`authorize`] after the repository role.

use cove_api::{Role, Scope};

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::store::{EnvRow, RepoRow, Store};

/// What an `{env}` route needs beyond its repository role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvAccess {
    /// The environment's creator or an administrator.
    Creator,
    /// The creator, an administrator, or an owner of the environment's repository (its
    /// owner or a member with the `owner` role).
    CreatorOrRepoOwner,
    /// The creator only, not even an administrator: for pages served unsandboxed on Cove's
    /// origin from inside the environment (VS Code in the browser), whose code would act with
    /// the viewer's session — an administrator's would be worth more than the owner's own.
    CreatorOnly,
}

impl EnvAccess {
    /// Who may call, in words (OpenAPI descriptions, error messages).
    pub fn describe(self) -> &'static str {
        match self {
            EnvAccess::Creator => "the environment's creator or an administrator",
            EnvAccess::CreatorOrRepoOwner => {
                "the environment's creator, an owner of its repository or an administrator"
            }
            EnvAccess::CreatorOnly => "the environment's creator",
        }
    }
}

/// Whether `principal` may act on `env` (in `repo`) as `access` requires: 403 when not.
pub async fn authorize(
    store: &Store,
    access: EnvAccess,
    principal: &Principal,
    scope: Scope,
    env: &EnvRow,
    repo: &RepoRow,
) -> Result<(), ApiError> {
    if principal.user.id == env.owner_id
        || (principal.user.is_admin && access != EnvAccess::CreatorOnly)
    {
        return Ok(());
    }
    if access == EnvAccess::CreatorOrRepoOwner
        && auth::authorize_repo(
            store,
            Some(principal),
            &repo.owner,
            &repo.name,
            scope,
            Role::Owner,
        )
        .await
        .is_ok()
    {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "environment {} belongs to another user: only {} may do this",
        env.name,
        access.describe()
    )))
}
