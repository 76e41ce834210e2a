//! Authentication (who is calling) and authorization (may they do this).
//!
//! Invariant: every permission decision — token scopes, admin-only routes, per-repository roles,
//! public-repository reads — is made by [`require_scope`] and [`authorize_repo`] in this module;
//! the REST middleware and the git handlers only call them. Which *kind* of caller a route
//! admits — users, registered agents ([`require_agent`]) or a one-time registration token
//! ([`require_registration`]) — is decided here too; the kinds never stand in for one another.
//! Secrets never reach a log line or an error message: tokens are compared by their SHA-256,
//! passwords by argon2.
//!
//! Browser sessions (the web UI, `sessions.rs`): [`start_session`] turns a password login into
//! a random session secret sent as the `cove_session` cookie (HttpOnly, SameSite=Strict, Secure
//! over https); only its SHA-256 is stored, with an expiry that slides while the session is
//! used. [`authenticate_request`] accepts that cookie when no `Authorization` header is
//! present; a request other than GET/HEAD that carries a live session cookie needs the
//! `X-Cove-CSRF` header with [`csrf_token`] of the session (derived from the secret, handed to
//! the page by `GET /api/v1/session`) even when it also carries an `Authorization` header. The
//! git handlers never accept the cookie. A session is always a user, never an agent.
//!
//! Passwords (`password.rs`): argon2 with a bounded number of hashes at once, failed checks
//! throttled per user name and client address (`throttle.rs`, `client.rs`), unknown users
//! checked against a dummy hash. A disabled account's tokens, sessions and password all fail.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use base64::Engine;
use cove_api::{Role, Scope, Visibility};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::names::validate_name;
use crate::store::{now_secs, RegistrationRefusal, RepoRow, Store, UserRow};
use crate::AppState;

pub mod client;
pub mod http;
pub mod password;
mod sessions;
pub mod throttle;

pub use client::ClientAddr;
pub use password::{hash_password, login_outcome, LoginResult, Logins};
pub use sessions::*;

/// Prefix of every API token; lets HTTP Basic tell a token from a password.
pub const TOKEN_PREFIX: &str = "cove_";

pub use cove_api::{AGENT_TOKEN_PREFIX, REGISTRATION_TOKEN_PREFIX};

/// A new high-entropy token: the prefix and 32 random bytes in hex.
pub fn generate_token() -> String {
    generate_token_with(TOKEN_PREFIX)
}

/// A new high-entropy token with `prefix` (user, agent or registration token). User tokens
/// are `cove_` + hex, so the `cove_agt_`/`cove_reg_` kinds never collide with them.
pub fn generate_token_with(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// What is stored for a token: hex SHA-256 of the whole token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The 401 of a valid token or session whose account an administrator disabled.
pub fn account_disabled() -> ApiError {
    ApiError::UnauthorizedBecause("this account is disabled; ask an administrator".into())
}

/// An authenticated caller and what its credential allows.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRow,
    pub scopes: Vec<Scope>,
    /// The token used, when authenticated by token.
    pub token_id: Option<i64>,
    /// The project the token is scoped to: the credential opens only that project's routes
    /// and repositories, and only while the user is a member ([`check_token_project`]).
    pub project_id: Option<i64>,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The browser session, when authenticated by the session cookie.
    pub session: Option<SessionAuth>,
}

/// The kind of credential a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Token,
    Password,
    Session,
}

/// A browser session that authenticated a request.
#[derive(Clone)]
pub struct SessionAuth {
    pub id: i64,
    pub expires_at: i64,
    /// The session's CSRF token (never logged: `Debug` leaves it out).
    pub csrf_token: String,
    /// `Set-Cookie` value to send back when this request renewed the session (never logged).
    pub renewed_cookie: Option<String>,
}

impl std::fmt::Debug for SessionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAuth")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Principal {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A registered agent authenticated by its own token.
#[derive(Debug, Clone)]
pub struct AgentPrincipal {
    pub id: i64,
    pub name: String,
}

/// A valid, unused, unexpired registration token (consumed by the register handler).
#[derive(Debug, Clone)]
pub struct RegistrationGrant {
    /// SHA-256 of the token, to consume it.
    pub token_hash: String,
}

/// Who is calling: a user (token or password), a registered agent, or the holder of a
/// registration token. The kinds never stand in for one another.
#[derive(Debug, Clone)]
pub enum Caller {
    User(Principal),
    Agent(AgentPrincipal),
    Registration(RegistrationGrant),
}

/// What a route admits: users (with scopes and roles), agents, or registration tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Users,
    Agents,
    Registration,
    /// No credential: the handler authenticates the request itself by a signature over its
    /// body (a mirror's upstream webhook, `forge::mirror::webhook`).
    Signature,
}

/// The 401 message for an agent token that is unknown or revoked.
pub const AGENT_TOKEN_REFUSED: &str = "the agent token was revoked or is unknown; register \
     again with a new registration token (cove agent registration-token)";

/// `last_seen_at` is written at most this often per agent (seconds).
const LAST_SEEN_GRANULARITY: i64 = 15;

enum Credential {
    Token(String),
    Password { username: String, password: String },
}

fn parse_authorization(headers: &HeaderMap) -> Result<Option<Credential>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
    let (kind, rest) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let rest = rest.trim();
    if kind.eq_ignore_ascii_case("bearer") || kind.eq_ignore_ascii_case("token") {
        return Ok(Some(Credential::Token(rest.to_string())));
    }
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| ApiError::Unauthorized)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (username, password) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
        if password.starts_with(TOKEN_PREFIX) {
            // git sends any username with the token as password.
            return Ok(Some(Credential::Token(password.to_string())));
        }
        return Ok(Some(Credential::Password {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    Err(ApiError::Unauthorized)
}

/// Resolves the request's credentials to a **user**. `Ok(None)`: no credentials at all; any
/// credential that is present but wrong, expired, revoked or of a disabled account is
/// [`ApiError::Unauthorized`]; too many failed passwords lately is 429
/// ([`ApiError::TooManyAttempts`]); a valid agent or registration token is
/// [`ApiError::Forbidden`] (they only open their own routes). `client` is the request's
/// client address ([`client::of`]), which password checks are throttled by.
pub async fn authenticate(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    user_of(authenticate_caller(state, client, headers).await?)
}

/// Resolves the request's credentials to any kind of caller (see [`authenticate`]). An
/// agent's `last_seen_at` is refreshed here, at most every few seconds.
pub async fn authenticate_caller(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    let store = state.store();
    match parse_authorization(headers)? {
        None => Ok(None),
        Some(Credential::Token(token)) if token.starts_with(AGENT_TOKEN_PREFIX) => {
            let agent = store
                .agent_by_token_hash(&hash_token(&token))
                .await?
                .filter(|a| a.revoked_at.is_none())
                .ok_or_else(|| ApiError::UnauthorizedBecause(AGENT_TOKEN_REFUSED.into()))?;
            let now = now_secs();
            let stale = match agent.last_seen_at {
                Some(seen) => now - seen >= LAST_SEEN_GRANULARITY,
                None => true,
            };
            if stale {
                store.touch_agent(agent.id, now).await?;
            }
            Ok(Some(Caller::Agent(AgentPrincipal {
                id: agent.id,
                name: agent.name,
            })))
        }
        Some(Credential::Token(token)) if token.starts_with(REGISTRATION_TOKEN_PREFIX) => {
            let token_hash = hash_token(&token);
            let row = store
                .registration_token_by_hash(&token_hash)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            match row.refusal(now_secs()) {
                None => Ok(Some(Caller::Registration(RegistrationGrant { token_hash }))),
                Some(refusal) => Err(registration_refused(refusal)),
            }
        }
        Some(Credential::Token(token)) => {
            let Some((row, user)) = store.token_by_hash(&hash_token(&token)).await? else {
                return Err(ApiError::Unauthorized);
            };
            if row.expires_at.is_some_and(|at| at <= now_secs()) {
                return Err(ApiError::Unauthorized);
            }
            if user.disabled {
                return Err(account_disabled());
            }
            Ok(Some(Caller::User(Principal {
                user,
                scopes: row.scopes,
                token_id: Some(row.id),
                project_id: row.project_id,
                method: AuthMethod::Token,
                session: None,
            })))
        }
        Some(Credential::Password { username, password }) => {
            let user = state
                .logins()
                .check_password(store, client, &username, &password)
                .await?;
            let scopes = user_scopes(&user);
            Ok(Some(Caller::User(Principal {
                user,
                scopes,
                token_id: None,
                project_id: None,
                method: AuthMethod::Password,
                session: None,
            })))
        }
    }
}

/// The 401 for a registration token that cannot register (again).
pub fn registration_refused(refusal: RegistrationRefusal) -> ApiError {
    ApiError::UnauthorizedBecause(
        match refusal {
            RegistrationRefusal::Unknown => "unknown registration token",
            RegistrationRefusal::Used => {
                "this registration token was already used; create a new one \
                 (cove agent registration-token)"
            }
            RegistrationRefusal::Expired => {
                "this registration token has expired; create a new one \
                 (cove agent registration-token)"
            }
        }
        .into(),
    )
}

/// The user behind a caller: agent and registration tokens are refused (403) on user routes.
pub fn user_of(caller: Option<Caller>) -> Result<Option<Principal>, ApiError> {
    match caller {
        None => Ok(None),
        Some(Caller::User(p)) => Ok(Some(p)),
        Some(Caller::Agent(_)) => Err(ApiError::Forbidden(
            "an agent token only opens the agent protocol (/api/v1/agent/…)".into(),
        )),
        Some(Caller::Registration(_)) => Err(ApiError::Forbidden(
            "a registration token only registers an agent (POST /api/v1/agents/register)".into(),
        )),
    }
}

/// Requires a registered agent: no credential is 401, any other kind of credential 403.
pub fn require_agent(caller: Option<Caller>) -> Result<AgentPrincipal, ApiError> {
    match caller {
        None => Err(ApiError::Unauthorized),
        Some(Caller::Agent(agent)) => Ok(agent),
        Some(_) => Err(ApiError::Forbidden(
            "only registered agents may call the agent protocol; register one with a \
             registration token (cove agent registration-token)"
                .into(),
        )),
    }
}

/// Requires a valid registration token: no credential is 401, any other credential 403.
pub fn require_registration(caller: Option<Caller>) -> Result<RegistrationGrant, ApiError> {
    match caller {
        None => Err(ApiError::Unauthorized),
        Some(Caller::Registration(grant)) => Ok(grant),
        Some(_) => Err(ApiError::Forbidden(
            "registering an agent needs a registration token as the bearer credential".into(),
        )),
    }
}

/// The scopes a user may hold: everything but `admin` for non-admins.
pub fn user_scopes(user: &UserRow) -> Vec<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::Admin || user.is_admin)
        .collect()
}

/// Requires an authenticated caller whose credential has `scope` (and who is an admin when
/// `admin_only`).
pub fn require_scope(
    principal: Option<&Principal>,
    scope: Scope,
    admin_only: bool,
) -> Result<&Principal, ApiError> {
    let principal = principal.ok_or(ApiError::Unauthorized)?;
    if !principal.has_scope(scope) {
        return Err(ApiError::MissingScope(scope));
    }
    if admin_only && !principal.user.is_admin {
        return Err(ApiError::Forbidden(
            "only administrators may do this".into(),
        ));
    }
    Ok(principal)
}

/// The role `user` holds on `repo` (administrators and the owner: owner; public
/// repositories: at least reader), `None` when the user may not see it. For decisions about
/// someone other than the caller (e.g. a pull request's named reviewers).
pub async fn role_of_user(
    store: &Store,
    user: &UserRow,
    repo: &RepoRow,
) -> Result<Option<Role>, ApiError> {
    let member = if user.is_admin || user.id == repo.owner_id {
        Some(Role::Owner)
    } else {
        store.member_role(repo.id, user.id).await?
    };
    let public = (repo.visibility == Visibility::Public).then_some(Role::Reader);
    Ok(if user.disabled {
        None
    } else {
        member.max(public)
    })
}

/// The role a caller has on a repository, `None` when it may not even see it.
async fn effective_role(
    store: &Store,
    principal: Option<&Principal>,
    repo: &RepoRow,
) -> Result<Option<Role>, ApiError> {
    let member = match principal {
        Some(p) if p.user.is_admin || p.user.id == repo.owner_id => Some(Role::Owner),
        Some(p) => store.member_role(repo.id, p.user.id).await?,
        None => None,
    };
    let public = (repo.visibility == Visibility::Public).then_some(Role::Reader);
    Ok(member.max(public))
}

/// The single place that decides whether a caller may act on a repository: the credential
/// must carry `scope` and the caller must hold at least `role` on `owner/name`.
///
/// Anonymous callers may read public repositories. Callers that cannot see a repository get
/// 404 (its existence is not revealed); anonymous callers get 401 so git asks for credentials.
pub async fn authorize_repo(
    store: &Store,
    principal: Option<&Principal>,
    owner: &str,
    name: &str,
    scope: Scope,
    role: Role,
) -> Result<RepoRow, ApiError> {
    validate_name("owner", owner).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    validate_name("repository name", name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(p) = principal {
        if !p.has_scope(scope) {
            return Err(ApiError::MissingScope(scope));
        }
    }
    let full_name = format!("{owner}/{name}");
    let Some(repo) = store.repo(owner, name).await? else {
        return Err(match principal {
            None => ApiError::Unauthorized,
            Some(_) => ApiError::NotFound(format!("repository {full_name}")),
        });
    };
    if let Some(p) = principal {
        check_token_project(store, p, Some(&repo)).await?;
    }
    let have = effective_role(store, principal, &repo).await?;
    // Anonymous callers only ever read.
    let anonymous_ok = principal.is_some() || (scope == Scope::Read && role == Role::Reader);
    match have {
        Some(have) if have >= role && anonymous_ok => Ok(repo),
        _ if principal.is_none() => Err(ApiError::Unauthorized),
        None => Err(ApiError::NotFound(format!("repository {full_name}"))),
        Some(_) => Err(ApiError::Forbidden(format!(
            "this needs the {} role on {full_name}",
            role.as_str()
        ))),
    }
}

/// A credential scoped to a project (`Principal::project_id`) opens only that project's
/// repositories (`repo`) and routes (`project`), and only while its user is a member: 403
/// otherwise. Other credentials pass.
pub async fn check_token_project(
    store: &Store,
    principal: &Principal,
    repo: Option<&RepoRow>,
) -> Result<(), ApiError> {
    let Some(project_id) = principal.project_id else {
        return Ok(());
    };
    if let Some(repo) = repo {
        let in_project = store
            .project_of_repo(repo.id)
            .await?
            .is_some_and(|p| p.id == project_id);
        if !in_project {
            return Err(ApiError::Forbidden(format!(
                "this token is scoped to a project that {}/{} is not part of",
                repo.owner, repo.name
            )));
        }
    }
    if store
        .project_role(project_id, principal.user.id)
        .await?
        .is_none()
    {
        return Err(ApiError::Forbidden(
            "this token is scoped to a project you are no longer a member of".into(),
        ));
    }
    Ok(())
}

/// Whether `user` may review pull requests on `repo` though their role there is reader: they
/// are a reviewer of its project and no per-repository role overrides that.
pub async fn project_reviewer(
    store: &Store,
    user: &UserRow,
    repo: &RepoRow,
) -> Result<bool, ApiError> {
    Ok(!user.disabled
        && store.repo_member_role(repo.id, user.id).await?.is_none()
        && store.project_role_for_repo(repo.id, user.id).await?
            == Some(cove_api::ProjectRole::Reviewer))
}
