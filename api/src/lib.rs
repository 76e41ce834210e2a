//! `cove-api`: the wire types of Cove's REST API (`/api/v1`), shared by the server and the CLI.
//!
//! Architecture invariant: this crate holds plain data with serde derives only (plus
//! `utoipa::ToSchema` derives behind the `openapi` feature, for the server's OpenAPI
//! document: a pure derive). It must not depend on HTTP, async runtimes, databases or git (no
//! axum, tokio, sqlx, git2, reqwest, ureq). Request types refuse unknown fields.
//! Its one workspace dependency is `devfiles`, for the `EnvironmentPlan` the agent protocol
//! carries.

pub mod agent;
mod agents;
mod audit;
mod branch_rules;
mod deploy;
mod env;
mod issues;
mod mirrors;
mod notify;
mod packages;
mod prebuilds;
mod projects;
mod pulls;
mod runs;
mod session;
mod settings;
mod ssh;

pub use agents::*;
pub use audit::*;
pub use branch_rules::*;
pub use deploy::*;
pub use env::*;
pub use issues::*;
pub use mirrors::*;
pub use notify::*;
pub use packages::*;
pub use prebuilds::*;
pub use projects::*;
pub use pulls::*;
pub use runs::*;
pub use session::*;
pub use settings::*;
pub use ssh::*;

use serde::{Deserialize, Serialize};

/// Path prefix of every REST route.
pub const API_PREFIX: &str = "/api/v1";

/// What a token may do. Scopes are independent: a token has exactly the scopes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read repositories, events, tokens and the caller's own account.
    Read,
    /// Create and change repositories, push, create and revoke tokens.
    Write,
    /// Manage users (only for admin users).
    Admin,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A user's permission on one repository, from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May clone, fetch and read through the API.
    Reader,
    /// May also push.
    Writer,
    /// May also manage members and delete the repository.
    Owner,
}

impl Role {
    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Owner => "owner",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Reader, Role::Writer, Role::Owner]
            .into_iter()
            .find(|role| role.as_str() == s)
    }
}

/// Who may read a repository without being a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only members (and admins).
    #[default]
    Private,
    /// Anyone may clone; only members may push.
    Public,
}

impl Visibility {
    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "private" => Some(Visibility::Private),
            "public" => Some(Visibility::Public),
            _ => None,
        }
    }
}

/// Body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unauthorized`, `forbidden`, `not_found`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The authenticated caller (`GET /api/v1/user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub username: String,
    pub is_admin: bool,
    /// Scopes of the credential used for this request.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// An administrator disabled the account: none of its credentials work.
    #[serde(default)]
    pub disabled: bool,
    /// Where the user's email notifications go (approvals, reviews, idle stops), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// `POST /api/v1/users` (admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A label for the token, e.g. `laptop`.
    pub name: String,
    /// Must be a subset of the scopes of the credential creating it.
    pub scopes: Vec<Scope>,
    /// Lifetime in seconds; `None` means the server's default (90 days unless configured).
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
    /// A token that never expires (administrators only; not with `expires_in_seconds`).
    #[serde(default)]
    pub never_expires: bool,
    /// Scope the token to one project the caller is a member of: it then opens only that
    /// project's routes and its repositories, and stops working when the caller leaves or is
    /// removed from the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// `PUT /api/v1/user/password`: the caller changes its own password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password now (checked, and throttled, like a login).
    pub current_password: String,
    /// At least 8 characters.
    pub new_password: String,
}

/// `PUT /api/v1/users/{username}/password` (administrators): set a user's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// At least 8 characters.
    pub new_password: String,
}

/// A token as listed (never contains the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` when the token does not expire.
    pub expires_at: Option<i64>,
    /// The project the token is scoped to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// Response to `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `POST /api/v1/repos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRepoRequest {
    pub name: String,
    /// Defaults to the caller's username; only admins may create under another owner.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub visibility: Visibility,
}

/// A hosted repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Repo {
    pub owner: String,
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    pub visibility: Visibility,
    pub default_branch: String,
    /// URL for `git clone`.
    pub clone_url: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A branch and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Branch {
    pub name: String,
    pub commit: String,
}

/// One commit in a history listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Commit {
    pub id: String,
    pub summary: String,
    pub author_name: String,
    pub author_email: String,
    /// Unix seconds.
    pub time: i64,
    pub parents: Vec<String>,
}

/// How [`FileContent::content`] is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    /// The file is valid UTF-8 and `content` is the text itself.
    Utf8,
    /// `content` is standard base64 of the bytes.
    Base64,
}

/// A file read at a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileContent {
    pub path: String,
    /// The commit the file was read at.
    pub commit: String,
    pub size: u64,
    pub encoding: ContentEncoding,
    pub content: String,
}

/// What an entry of a directory listing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TreeEntryKind {
    Dir,
    File,
    Symlink,
    Submodule,
}

/// One entry of a directory at a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeEntry {
    pub name: String,
    /// Path from the repository's root.
    pub path: String,
    pub kind: TreeEntryKind,
    /// Bytes, for files and symlinks.
    pub size: Option<u64>,
}

/// A directory read at a commit (`GET …/tree?ref=&path=`): directories first, then by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeListing {
    /// The directory (empty for the root).
    pub path: String,
    /// The commit it was read at.
    pub commit: String,
    pub entries: Vec<TreeEntry>,
    /// More entries than the cap (5,000): the rest are left out.
    pub truncated: bool,
}

/// One ref update of a successful push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushEvent {
    pub id: i64,
    /// `owner/name`.
    pub repo: String,
    /// Full ref name, e.g. `refs/heads/main`.
    pub ref_name: String,
    /// 40 zeros when the ref was created.
    pub old_sha: String,
    /// 40 zeros when the ref was deleted.
    pub new_sha: String,
    /// Who pushed; `None` when the server recovered the update at start-up (the push landed
    /// but the server stopped before acknowledging it).
    pub pusher: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A repository member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub username: String,
    pub role: Role,
}

/// `PUT /api/v1/repos/{owner}/{name}/members/{username}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMemberRequest {
    pub role: Role,
}

/// The all-zero object id git uses for "no object".
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";
