//! The route table: every REST route with the scope and repository role it needs. The router
//! and the OpenAPI document are both built from [`api_routes`], and authorization runs as one
//! middleware per route driven by its [`RouteSpec`], so no route can skip it.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use cove_api::{ProjectRole, Role, Scope};

use crate::agents;
use crate::auth::{self, Audience, Principal};
use crate::envs::{self, EnvAccess};
use crate::error::ApiError;
use crate::extract::Json;
use crate::forge::http as forge;
use crate::git;
use crate::live_auth;
use crate::metrics;
pub use crate::openapi::{all_paths, openapi_document};
use crate::openapi::{DocHandler, OpDoc, OutputDoc};
use crate::repos;
use crate::runs::http as runs;
use crate::ssh;
use crate::store::RepoRow;
use crate::ui;
use crate::AppState;

/// What a route needs from its caller.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    /// axum path syntax: `/api/v1/repos/{owner}/{name}`.
    pub path: &'static str,
    /// Who may call it: users (with `scope`, `repo_role`, `admin_only`), registered agents,
    /// or a registration token ([`auth::Audience`]).
    pub audience: Audience,
    /// Scope the credential must carry (user routes only).
    pub scope: Scope,
    /// Role on the repository `{owner}/{name}` the caller must hold, for repository routes.
    pub repo_role: Option<Role>,
    /// Only administrators.
    pub admin_only: bool,
    /// `{env}` routes: who may act on the environment beyond `repo_role` (its creator, an
    /// administrator, for some routes the repository's owners). `None`: `repo_role` alone.
    pub env_access: Option<EnvAccess>,
    /// `{project}` routes: the project role the caller must hold (Cove's administrators count
    /// as project administrators). Non-members get 404. `None`: no project role (a route
    /// that checks its caller itself, e.g. accepting an invitation).
    pub project_role: Option<ProjectRole>,
    /// Pull-request review routes: a reviewer of the repository's project (a reader there)
    /// may call them too, besides holders of `repo_role`.
    pub reviewers: bool,
    pub summary: &'static str,
    /// Status of a successful call.
    pub success: StatusCode,
    /// Statuses this route answers beyond the success and the ones every route of its kind
    /// answers ([`crate::openapi::statuses`]): e.g. 404 for a missing item, 409, 429, 503.
    pub extra_statuses: Vec<u16>,
}

/// A route: its spec, what its handler's types say (body, query, response) and the handler.
pub struct Route {
    pub spec: RouteSpec,
    pub doc: OpDoc,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// Statuses this route answers beyond the common ones (documented in the OpenAPI document).
    fn answers(mut self, statuses: &[u16]) -> Self {
        self.spec.extra_statuses.extend_from_slice(statuses);
        self
    }

    /// For a handler that builds its own `Response`: the JSON body of a success.
    fn json<T: utoipa::ToSchema>(mut self) -> Self {
        let schema = self.doc.schema::<T>();
        self.doc.output = OutputDoc::Json(schema);
        self
    }

    /// For a handler that builds its own `Response`: the content type of a success.
    fn produces(mut self, content_type: &'static str) -> Self {
        self.doc.output = OutputDoc::Raw(content_type);
        self
    }

    /// Another content type a success may have (e.g. `?format=json`).
    fn also_json<T: utoipa::ToSchema>(mut self) -> Self {
        let schema = self.doc.schema::<T>();
        self.doc.alternatives.push(("application/json", schema));
        self
    }

    /// An `{env}` route that needs more than its repository role (see [`EnvAccess`]).
    fn env(mut self, access: EnvAccess) -> Self {
        self.spec.env_access = Some(access);
        self
    }

    /// A `{project}` route that needs this project role.
    fn project(mut self, role: ProjectRole) -> Self {
        self.spec.project_role = Some(role);
        self
    }

    /// A pull-request review route a project reviewer may call too (see `RouteSpec`).
    fn reviewers(mut self) -> Self {
        self.spec.reviewers = true;
        self
    }

    /// For a handler that builds its own `Response`: a success has no body.
    fn empty(mut self) -> Self {
        self.doc.output = OutputDoc::Empty;
        self
    }
}

fn filter(method: &Method) -> MethodFilter {
    match *method {
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::DELETE => MethodFilter::DELETE,
        Method::PATCH => MethodFilter::PATCH,
        _ => MethodFilter::GET,
    }
}

#[allow(clippy::too_many_arguments)]
fn route<H, T, D>(
    method: Method,
    path: &'static str,
    scope: Scope,
    repo_role: Option<Role>,
    admin_only: bool,
    success: StatusCode,
    summary: &'static str,
    handler: H,
) -> Route
where
    H: Handler<T, AppState> + DocHandler<D>,
    T: 'static,
{
    Route {
        doc: H::describe(),
        handler: on(filter(&method), handler),
        spec: RouteSpec {
            method,
            path,
            audience: Audience::Users,
            scope,
            repo_role,
            admin_only,
            env_access: None,
            project_role: None,
            reviewers: false,
            summary,
            success,
            extra_statuses: Vec::new(),
        },
    }
}

/// A route of the agent protocol: only registered agents' tokens (users get 403).
fn agent_route<H, T, D>(
    method: Method,
    path: &'static str,
    success: StatusCode,
    summary: &'static str,
    handler: H,
) -> Route
where
    H: Handler<T, AppState> + DocHandler<D>,
    T: 'static,
{
    let mut r = route(
        method,
        path,
        Scope::Admin,
        None,
        false,
        success,
        summary,
        handler,
    );
    r.spec.audience = Audience::Agents;
    r
}

/// Every `/api/v1` route.
pub fn api_routes() -> Vec<Route> {
    use Method as M;
    use Scope::{Admin, Read, Write};
    const OK: StatusCode = StatusCode::OK;
    const CREATED: StatusCode = StatusCode::CREATED;
    const GONE: StatusCode = StatusCode::NO_CONTENT;
    const ACCEPTED: StatusCode = StatusCode::ACCEPTED;
    let reader = Some(Role::Reader);
    let writer = Some(Role::Writer);
    let owner = Some(Role::Owner);
    vec![
        route(
            M::GET,
            "/api/v1/openapi.json",
            Read,
            None,
            false,
            OK,
            "This OpenAPI document",
            openapi,
        )
        .produces("application/json"),
        route(
            M::GET,
            "/api/v1/user",
            Read,
            None,
            false,
            OK,
            "The authenticated user",
            auth::http::whoami,
        ),
        route(
            M::POST,
            "/api/v1/session",
            Read,
            None,
            false,
            CREATED,
            "Log in to the web UI: HTTP Basic user + password; sets the HttpOnly session cookie and answers the CSRF token",
            ui::login,
        )
        .answers(&[400])
        .json::<cove_api::SessionInfo>(),
        route(
            M::GET,
            "/api/v1/session",
            Read,
            None,
            false,
            OK,
            "The logged-in user and, for the session cookie, its CSRF token (send it as X-Cove-CSRF)",
            ui::session,
        )
        .json::<cove_api::SessionInfo>(),
        route(
            M::DELETE,
            "/api/v1/session",
            Read,
            None,
            false,
            GONE,
            "Log out: ends the session of the cookie and clears it",
            ui::logout,
        )
        .answers(&[400])
        .empty(),
        route(
            M::GET,
            "/api/v1/users",
            Admin,
            None,
            true,
            OK,
            "List users",
            auth::http::list_users,
        ),
        route(
            M::POST,
            "/api/v1/users",
            Admin,
            None,
            true,
            CREATED,
            "Create a user",
            auth::http::create_user,
        )
        .answers(&[409]),
        route(
            M::PUT,
            "/api/v1/user/password",
            Write,
            None,
            false,
            GONE,
            "Change the caller's own password (the current one is checked and throttled like a login); ends the user's browser sessions",
            auth::http::change_password,
        )
        .answers(&[400, 429]),
        route(
            M::POST,
            "/api/v1/users/{username}/disable",
            Admin,
            None,
            true,
            OK,
            "Disable a user: its tokens, sessions and password stop working at once",
            auth::http::disable_user,
        )
        .answers(&[400, 404]),
        route(
            M::POST,
            "/api/v1/users/{username}/enable",
            Admin,
            None,
            true,
            OK,
            "Enable a disabled user again",
            auth::http::enable_user,
        )
        .answers(&[404]),
        route(
            M::PUT,
            "/api/v1/users/{username}/password",
            Admin,
            None,
            true,
            GONE,
            "Set a user's password (administrators); ends the user's browser sessions",
            auth::http::set_password,
        )
        .answers(&[400, 404]),
        route(
            M::PUT,
            "/api/v1/user/email",
            Write,
            None,
            false,
            OK,
            "Set (or, with null, remove) the caller's own email address: where their approval, review and idle-stop emails go",
            crate::notify::users::set_own_email,
        )
        .answers(&[422]),
        route(
            M::GET,
            "/api/v1/user/settings",
            Read,
            None,
            false,
            OK,
            "The caller's personal settings (the dotfiles repository)",
            crate::dotfiles::http::get_settings,
        ),
        route(
            M::PUT,
            "/api/v1/user/settings",
            Write,
            None,
            false,
            OK,
            "Replace the caller's personal settings: `dotfiles`, an http(s) git URL or a Cove repository owner/name cloned into every new environment's ~/.dotfiles (null clears it)",
            crate::dotfiles::http::put_settings,
        )
        .answers(&[422]),
        route(
            M::PUT,
            "/api/v1/users/{username}/email",
            Admin,
            None,
            true,
            OK,
            "Set (or, with null, remove) a user's email address (administrators)",
            crate::notify::users::set_user_email,
        )
        .answers(&[404, 422]),
        route(
            M::GET,
            "/api/v1/user/deliveries",
            Read,
            None,
            false,
            OK,
            "The caller's email notifications, newest first: status, attempts, last SMTP reply and error",
            crate::notify::users::own_deliveries,
        ),
        route(
            M::GET,
            "/api/v1/tokens",
            Read,
            None,
            false,
            OK,
            "List the caller's tokens",
            auth::http::list_tokens,
        ),
        route(
            M::POST,
            "/api/v1/tokens",
            Write,
            None,
            false,
            CREATED,
            "Create a token (shown once); it expires after the server's default (90 days) unless `expires_in_seconds` or, for administrators, `never_expires` says otherwise",
            auth::http::create_token,
        ),
        route(
            M::DELETE,
            "/api/v1/tokens/{id}",
            Write,
            None,
            false,
            GONE,
            "Revoke a token",
            auth::http::delete_token,
        )
        .answers(&[404]),
        // ---- SSH keys: a user manages their own; administrators list and remove anyone's
        route(
            M::GET,
            "/api/v1/user/ssh-keys",
            Read,
            None,
            false,
            OK,
            "List the caller's SSH public keys",
            ssh::http::list_own_keys,
        ),
        route(
            M::POST,
            "/api/v1/user/ssh-keys",
            Write,
            None,
            false,
            CREATED,
            "Register an SSH public key (one OpenSSH line) for the caller; it authenticates them at Cove's SSH endpoint",
            ssh::http::add_key,
        )
        .answers(&[400, 409]),
        route(
            M::DELETE,
            "/api/v1/user/ssh-keys/{id}",
            Write,
            None,
            false,
            GONE,
            "Remove one of the caller's SSH keys",
            ssh::http::delete_own_key,
        )
        .answers(&[400, 404]),
        route(
            M::GET,
            "/api/v1/ssh/host-key",
            Read,
            None,
            false,
            OK,
            "The public host key of the server's SSH endpoint, to pin in a known-hosts file",
            ssh::http::host_key,
        )
        .answers(&[503]),
        route(
            M::GET,
            "/api/v1/ssh-keys",
            Admin,
            None,
            true,
            OK,
            "List every user's SSH public keys (administrators)",
            ssh::http::list_all_keys,
        ),
        route(
            M::DELETE,
            "/api/v1/ssh-keys/{id}",
            Admin,
            None,
            true,
            GONE,
            "Remove any user's SSH key (administrators)",
            ssh::http::delete_any_key,
        )
        .answers(&[400, 404]),
        route(
            M::GET,
            "/api/v1/repos",
            Read,
            None,
            false,
            OK,
            "List repositories the caller can read",
            repos::list_repos,
        ),
        route(
            M::POST,
            "/api/v1/repos",
            Write,
            None,
            false,
            CREATED,
            "Create a repository",
            repos::create_repo,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}",
            Read,
            reader,
            false,
            OK,
            "Show a repository",
            repos::get_repo,
        ),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}",
            Write,
            owner,
            false,
            GONE,
            "Delete a repository",
            repos::delete_repo,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/branches",
            Read,
            reader,
            false,
            OK,
            "List branches",
            repos::list_branches,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/commits",
            Read,
            reader,
            false,
            OK,
            "List commits (?branch=&limit=)",
            repos::list_commits,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/files/{*path}",
            Read,
            reader,
            false,
            OK,
            "Read a file at a commit (?ref=)",
            repos::read_file,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/tree",
            Read,
            reader,
            false,
            OK,
            "List a directory at a commit (?ref=&path=): directories first, at most 5,000 entries",
            repos::read_tree,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/events",
            Read,
            reader,
            false,
            OK,
            "List push events (?limit=)",
            repos::list_events,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/retention",
            Read,
            reader,
            false,
            OK,
            "The retention of runs, logs and artifacts that applies to the repository (its own or the server's default)",
            crate::retention::get_retention,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/retention",
            Write,
            owner,
            false,
            OK,
            "Set the repository's retention: finished runs older than `days` or beyond the newest `runs` are deleted with their logs and artifacts (0: no limit)",
            crate::retention::set_retention,
        ),
        // Prebuilds (envs/prebuild/, docs/prebuilds.md): readers list them and read their
        // logs, writers trigger one, owners choose which branches prebuild.
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/prebuilds",
            Read,
            reader,
            false,
            OK,
            "Prebuilds of the repository, newest first (at most 100): branch, commit, state, snapshot images",
            crate::envs::prebuild::http::list,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/prebuilds",
            Write,
            writer,
            false,
            ACCEPTED,
            "Queue a prebuild of a branch's head now (default: the default branch)",
            crate::envs::prebuild::http::trigger,
        )
        .answers(&[404, 503]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/prebuilds/settings",
            Read,
            reader,
            false,
            OK,
            "Which branches prebuild (empty: the default branch), whether prebuilds are on, how many each branch keeps",
            crate::envs::prebuild::http::get_settings,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/prebuilds/settings",
            Write,
            owner,
            false,
            OK,
            "Set which branches prebuild, turn prebuilds on or off, how many each branch keeps (1-20)",
            crate::envs::prebuild::http::set_settings,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/prebuilds/{prebuild}/logs",
            Read,
            reader,
            false,
            OK,
            "A prebuild's log (at most 1 MiB)",
            crate::envs::prebuild::http::logs,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/branch-rules",
            Read,
            reader,
            false,
            OK,
            "The repository's ordered branch rules (the first whose pattern matches a branch applies)",
            crate::forge::rules_http::get_rules,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/branch-rules",
            Write,
            owner,
            false,
            OK,
            "Replace the repository's branch rules: per branch name pattern, pull requests only, approvals, required checks, who may merge, force push and deletion",
            crate::forge::rules_http::set_rules,
        )
        .answers(&[400]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/notifications/targets",
            Read,
            owner,
            false,
            OK,
            "List the repository's notification targets (URLs shown without their path)",
            crate::notify::http::list_targets,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/notifications/targets",
            Write,
            owner,
            false,
            CREATED,
            "Add a notification target (`slack` or a signed `webhook`, whose secret is shown once); loopback, private and link-local destinations are refused unless the server allows them",
            crate::notify::http::create_target,
        )
        .answers(&[409, 422]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/notifications/targets/{id}",
            Write,
            owner,
            false,
            GONE,
            "Remove a notification target and its delivery log",
            crate::notify::http::delete_target,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/notifications/targets/{id}/deliveries",
            Read,
            owner,
            false,
            OK,
            "A notification target's delivery log, newest first: status, attempts, response code, error, duration",
            crate::notify::http::list_deliveries,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/notifications/targets/{id}/test",
            Write,
            owner,
            false,
            ACCEPTED,
            "Send a test notification (`ping`) to a target; answers its delivery",
            crate::notify::http::test_target,
        )
        .answers(&[404]),
        // ---- mirrors of external repositories (issue 15, forge/mirror)
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/mirror",
            Read,
            owner,
            false,
            OK,
            "The repository's mirror configuration: upstream URL, forge, webhook URL, last fetch (secrets are never shown)",
            crate::forge::mirror::http::get_mirror,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/mirror",
            Write,
            owner,
            false,
            OK,
            "Make the repository a mirror of an upstream on GitHub, GitLab or Gitea (or change it); a generated webhook secret is answered once; users can no longer push to it",
            crate::forge::mirror::http::set_mirror,
        ),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/mirror",
            Write,
            owner,
            false,
            GONE,
            "Stop mirroring: the repository becomes an ordinary one and keeps its refs",
            crate::forge::mirror::http::delete_mirror,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/mirror/sync",
            Write,
            owner,
            false,
            OK,
            "Fetch from the upstream now; answers the refs that moved (each recorded as a push event of `mirror:<forge>`)",
            crate::forge::mirror::http::sync_mirror,
        )
        .answers(&[503]),
        {
            let mut r = route(
                M::POST,
                "/api/v1/repos/{owner}/{name}/mirror/webhook",
                Read,
                None,
                false,
                ACCEPTED,
                "The upstream forge's push webhook (GitHub `X-Hub-Signature-256`, Gitea/Forgejo `X-Gitea-Signature`/`X-Forgejo-Signature`, GitLab `X-Gitlab-Token`): 202 once a fetch is queued, 200 for a ping, 202 `ignored` for other events; 401 when it does not verify",
                crate::forge::mirror::webhook::webhook,
            )
            .answers(&[200, 400]);
            r.spec.audience = Audience::Signature;
            r
        },
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/members",
            Read,
            reader,
            false,
            OK,
            "List members",
            repos::list_members,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/members/{username}",
            Write,
            owner,
            false,
            OK,
            "Add or change a member",
            repos::set_member,
        )
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/members/{username}",
            Write,
            owner,
            false,
            GONE,
            "Remove a member",
            repos::remove_member,
        )
        .answers(&[404]),
        // ---- pull requests (issue 15): handlers in forge/http.rs
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls",
            Read,
            reader,
            false,
            OK,
            "List pull requests, newest first (?state=open|merged|closed|all&limit=)",
            forge::list_pulls,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls",
            Write,
            writer,
            false,
            CREATED,
            "Open a pull request from a source branch into a destination branch (default: the default branch), with required reviewers",
            forge::create_pull,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}",
            Read,
            reader,
            false,
            OK,
            "Show a pull request with its reviewers' standing verdicts",
            forge::get_pull,
        )
        .answers(&[404]),
        route(
            M::PATCH,
            "/api/v1/repos/{owner}/{name}/pulls/{number}",
            Write,
            writer,
            false,
            OK,
            "Change a pull request's title, description or reviewers (its author or a repository owner)",
            forge::update_pull,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/close",
            Write,
            writer,
            false,
            OK,
            "Close a pull request without merging (its author or a repository owner)",
            forge::close_pull,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/diff",
            Read,
            reader,
            false,
            OK,
            "The diff against the merge base: files, unified diff per file, renames; capped (see `truncated`)",
            forge::pull_diff,
        )
        .answers(&[404, 409, 503]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/commits",
            Read,
            reader,
            false,
            OK,
            "The commits of the source that the destination does not have, oldest first",
            forge::pull_commits,
        )
        .answers(&[404, 503]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/checks",
            Read,
            reader,
            false,
            OK,
            "The checks: the latest run of each workflow on the head commit (name, state, run number)",
            forge::pull_checks,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/revisions",
            Read,
            reader,
            false,
            OK,
            "The revisions: one per push to the source branch",
            forge::pull_revisions,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/comments",
            Read,
            reader,
            false,
            OK,
            "The comments, oldest first",
            forge::list_comments,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/comments",
            Write,
            writer,
            false,
            CREATED,
            "Comment on the pull request, on a line of its diff (path, side, line, commit), or reply (parent_id)",
            forge::create_comment,
        )
        .reviewers()
        .answers(&[404]),
        route(
            M::PATCH,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/comments/{comment}",
            Write,
            writer,
            false,
            OK,
            "Edit a comment (its author)",
            forge::edit_comment,
        )
        .reviewers()
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/comments/{comment}",
            Write,
            writer,
            false,
            GONE,
            "Delete a comment and its replies (its author or an administrator)",
            forge::delete_comment,
        )
        .reviewers()
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/reviews",
            Read,
            reader,
            false,
            OK,
            "The reviews, oldest first (approvals of earlier revisions may be stale)",
            forge::list_reviews,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/reviews",
            Write,
            writer,
            false,
            CREATED,
            "Review: approve, request_changes or comment",
            forge::create_review,
        )
        .reviewers()
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/mergeable",
            Read,
            reader,
            false,
            OK,
            "Whether the caller could merge now, and every reason not",
            forge::mergeability,
        )
        .answers(&[404, 503]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/merge",
            Write,
            writer,
            false,
            OK,
            "Merge (fast_forward, merge or squash) on the server; recorded as a push to the destination by the merger. 409 with the reasons when not mergeable",
            forge::merge_pull,
        )
        .answers(&[404, 409, 503]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/environment",
            Write,
            writer,
            false,
            CREATED,
            "Open in environment: a dev environment of the caller's on the source branch — 201 when created (as `POST …/environments`), 200 when the caller's live one on that branch is reused (started if stopped); 409 when the pull request is not open or its source branch is gone",
            crate::forge::open_env::open_in_environment,
        )
        .json::<cove_api::Environment>()
        .answers(&[200, 404, 409, 422, 503]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pulls/{number}/events",
            Read,
            reader,
            false,
            OK,
            "The pull request's events: pr_opened, pr_revision, pr_merged, pr_closed, review_submitted, comment_added",
            forge::list_events,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/pull-settings",
            Read,
            reader,
            false,
            OK,
            "The repository's pull-request settings: allowed merge methods, whether new revisions make approvals stale",
            forge::get_settings,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/pull-settings",
            Write,
            owner,
            false,
            OK,
            "Set the repository's pull-request settings",
            forge::set_settings,
        ),
        // ---- issues, the board, in-browser edits (issue 16): handlers in issues/ and edits/
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/issues",
            Read,
            reader,
            false,
            OK,
            "List issues, newest first, with the total (?column=&assignee=&label=&q=&limit=&offset=)",
            crate::issues::http::list_issues,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/issues",
            Write,
            writer,
            false,
            CREATED,
            "Create an issue (title, Markdown description, column, assignees, labels, priority, estimate); @mentions and assignees are notified",
            crate::issues::http::create_issue,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/issues/{number}",
            Read,
            reader,
            false,
            OK,
            "Show an issue",
            crate::issues::http::get_issue,
        )
        .answers(&[404]),
        route(
            M::PATCH,
            "/api/v1/repos/{owner}/{name}/issues/{number}",
            Write,
            writer,
            false,
            OK,
            "Change an issue's title, description, assignees, labels, priority or estimate",
            crate::issues::http::update_issue,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/issues/{number}/move",
            Write,
            writer,
            false,
            OK,
            "Move an issue's card to a board column at a position (0 = top; none = bottom); 409 when the column holds its limit",
            crate::issues::http::move_issue,
        )
        .answers(&[404, 409]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/issues/{number}/close",
            Write,
            writer,
            false,
            OK,
            "Close an issue: its card to the bottom of the done column (the board's last)",
            crate::issues::http::close_issue,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/issues/{number}/links",
            Read,
            reader,
            false,
            OK,
            "Branches created from the issue and pull requests that mention #N (and whether they fix it)",
            crate::issues::http::issue_links,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/issues/{number}/branch",
            Write,
            writer,
            false,
            CREATED,
            "Create a branch from the default branch's head for the issue (default name issue-N-slug); recorded as a push by the caller",
            crate::issues::http::create_branch,
        )
        .answers(&[403, 404, 409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/issues/{number}/comments",
            Read,
            reader,
            false,
            OK,
            "The issue's comments, oldest first",
            crate::issues::comments::list_comments,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/issues/{number}/comments",
            Write,
            writer,
            false,
            CREATED,
            "Comment on an issue; @mentions are notified",
            crate::issues::comments::create_comment,
        )
        .answers(&[404]),
        route(
            M::PATCH,
            "/api/v1/repos/{owner}/{name}/issues/{number}/comments/{comment}",
            Write,
            writer,
            false,
            OK,
            "Edit an issue comment (its author); new @mentions are notified",
            crate::issues::comments::edit_comment,
        )
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/issues/{number}/comments/{comment}",
            Write,
            writer,
            false,
            GONE,
            "Delete an issue comment (its author or an administrator)",
            crate::issues::comments::delete_comment,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/board",
            Read,
            reader,
            false,
            OK,
            "The board: its columns in order (name, limit) with their issues in card order (without descriptions)",
            crate::issues::board::get_board,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/access",
            Read,
            reader,
            false,
            OK,
            "The caller's role on the repository and whether it may write (the web UI shows controls by it)",
            crate::issues::board::access,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/board/columns",
            Write,
            owner,
            false,
            OK,
            "Set the board's columns in order with optional limits; columns keep their cards by name, a removed column must be empty (409)",
            crate::issues::board::set_columns,
        )
        .answers(&[409]),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/contents/{*path}",
            Write,
            writer,
            false,
            CREATED,
            "Commit a new text of one file as the caller (branch, base_commit, content, message, new_branch); 409 when it changed since base_commit, 422 for binary files, 413 above 1 MiB; recorded as a push",
            crate::edits::http::edit_file,
        )
        .answers(&[403, 404, 409, 413, 422]),
        // ---- projects and members (issue 16): handlers in projects/; `{project}` routes need
        // the project role given by `.project(…)` (non-members 404)
        route(
            M::POST,
            "/api/v1/projects",
            Write,
            None,
            false,
            CREATED,
            "Create a project (name, description, estimate_kind); the caller becomes its administrator",
            crate::projects::http::create_project,
        )
        .answers(&[400, 409]),
        route(
            M::GET,
            "/api/v1/projects",
            Read,
            None,
            false,
            OK,
            "The caller's projects and pending invitations (administrators: every project)",
            crate::projects::http::list_projects,
        ),
        route(
            M::GET,
            "/api/v1/projects/{project}",
            Read,
            None,
            false,
            OK,
            "A project: description, estimate kind, repositories, the caller's role",
            crate::projects::http::get_project,
        )
        .project(ProjectRole::Reader)
        .answers(&[404]),
        route(
            M::PATCH,
            "/api/v1/projects/{project}",
            Write,
            None,
            false,
            OK,
            "Change a project's description or estimate kind (sizes|points)",
            crate::projects::http::update_project,
        )
        .project(ProjectRole::Administrator)
        .answers(&[400, 404]),
        route(
            M::GET,
            "/api/v1/projects/{project}/board",
            Read,
            None,
            false,
            OK,
            "The boards of the project's repositories merged by column name (cards keep their repository)",
            crate::projects::board::project_board,
        )
        .project(ProjectRole::Reader)
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/projects/{project}/repos",
            Write,
            None,
            false,
            CREATED,
            "Attach a repository the caller owns to the project (a repository is in at most one project: 409)",
            crate::projects::http::attach_repo,
        )
        .project(ProjectRole::Administrator)
        .answers(&[400, 404, 409]),
        route(
            M::DELETE,
            "/api/v1/projects/{project}/repos/{owner}/{name}",
            Write,
            None,
            false,
            GONE,
            "Take a repository out of the project: project roles no longer apply to it",
            crate::projects::http::detach_repo,
        )
        .project(ProjectRole::Administrator)
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/projects/{project}/members",
            Read,
            None,
            false,
            OK,
            "The members with their roles, then pending invitations",
            crate::projects::http::list_members,
        )
        .project(ProjectRole::Reader)
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/projects/{project}/members",
            Write,
            None,
            false,
            CREATED,
            "Invite a user by name with a role; they become a member when they accept",
            crate::projects::http::invite_member,
        )
        .project(ProjectRole::Administrator)
        .answers(&[400, 404, 409]),
        route(
            M::PUT,
            "/api/v1/projects/{project}/members/{user}",
            Write,
            None,
            false,
            OK,
            "Change a member's (or a pending invitation's) role; the last administrator keeps it (409)",
            crate::projects::http::set_member_role,
        )
        .project(ProjectRole::Administrator)
        .answers(&[400, 404, 409]),
        route(
            M::DELETE,
            "/api/v1/projects/{project}/members/{user}",
            Write,
            None,
            false,
            GONE,
            "Remove a member or withdraw an invitation (administrators), or leave / decline (the user); access ends within 30 s",
            crate::projects::http::remove_member,
        )
        .answers(&[400, 404, 409]),
        route(
            M::POST,
            "/api/v1/projects/{project}/invitations/accept",
            Write,
            None,
            false,
            OK,
            "Accept the caller's pending invitation: they become a member with its role",
            crate::projects::http::accept_invitation,
        )
        .answers(&[404]),
        // ---- workflow runs (issue 5): `{run}` routes check the role on the run's repository
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/runs",
            Read,
            reader,
            false,
            OK,
            "List runs, newest first (?branch=&limit=)",
            runs::list_runs,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/runs/stream",
            Read,
            reader,
            false,
            OK,
            "Server-sent events: the run list (?branch=&limit=) whenever it changes",
            runs::stream_runs,
        )
        .produces("text/event-stream"),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/runs",
            Write,
            writer,
            false,
            CREATED,
            "Start a workflow run by hand ({workflow, branch})",
            runs::start_run,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/runs/by-number/{number}",
            Read,
            reader,
            false,
            OK,
            "The run with this per-repository number (#N)",
            runs::get_run_by_number,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/schedules",
            Read,
            reader,
            false,
            OK,
            "The repository's SCHEDULE triggers per branch with their next fire time",
            crate::runs::schedules::list,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/workflow-errors",
            Read,
            reader,
            false,
            OK,
            "Invalid workflow files met on pushes (file:line:col)",
            runs::workflow_errors,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/commits/{sha}/status",
            Read,
            reader,
            false,
            OK,
            "The runs of a commit and their combined state",
            runs::commit_status,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/secrets",
            Read,
            writer,
            false,
            OK,
            "List secret names (never values)",
            runs::list_secrets,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/secrets/{secret}",
            Write,
            owner,
            false,
            OK,
            "Create or replace a secret (encrypted at rest)",
            runs::set_secret,
        )
        .answers(&[409]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/secrets/{secret}",
            Write,
            owner,
            false,
            GONE,
            "Delete a secret",
            runs::delete_secret,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/packages",
            Read,
            owner,
            false,
            OK,
            "CodeArtifact access of the repository's builds (role, domain, repositories, mode)",
            crate::runs::packages::list,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/packages",
            Write,
            owner,
            false,
            OK,
            "Set the CodeArtifact access of builds, as default or for one workflow environment",
            crate::runs::packages::put,
        ),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/packages",
            Write,
            owner,
            false,
            GONE,
            "Remove a package configuration (`?environment=`; none: the default)",
            crate::runs::packages::delete,
        )
        .answers(&[404]),
        // Deployment environments (deploy/): readers see them and their history, owners manage
        // them and their variables, only administrators set account connections (which roles
        // the agent's credentials may assume), writers roll back (under the same protections).
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/deploy/environments",
            Read,
            reader,
            false,
            OK,
            "Deployment environments: protection rules, account connections, variables (secret values never), what is deployed",
            crate::deploy::http::list_envs,
        ),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/deploy/environments",
            Write,
            owner,
            false,
            CREATED,
            "Create a deployment environment (name, description, protection rule)",
            crate::deploy::http::create_env,
        )
        .answers(&[409]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}",
            Read,
            reader,
            false,
            OK,
            "Show a deployment environment",
            crate::deploy::http::get_env,
        )
        .answers(&[404]),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}",
            Write,
            owner,
            false,
            OK,
            "Change a deployment environment's description and protection rule",
            crate::deploy::http::update_env,
        )
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}",
            Write,
            owner,
            false,
            GONE,
            "Delete a deployment environment with its connections, variables and history",
            crate::deploy::http::delete_env,
        )
        .answers(&[404]),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/connections/{connection}",
            Admin,
            owner,
            true,
            OK,
            "Administrators: set an AWS account connection (account, region, the role ARNs workflows may name, endpoint profile)",
            crate::deploy::http::put_connection,
        )
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/connections/{connection}",
            Admin,
            owner,
            true,
            GONE,
            "Administrators: remove an account connection",
            crate::deploy::http::delete_connection,
        )
        .answers(&[404]),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/variables/{variable}",
            Write,
            owner,
            false,
            OK,
            "Set an environment-scoped variable or secret (a secret is sealed, never shown, masked in logs)",
            crate::deploy::http::put_variable,
        )
        .answers(&[404]),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/variables/{variable}",
            Write,
            owner,
            false,
            GONE,
            "Delete an environment-scoped variable or secret",
            crate::deploy::http::delete_variable,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/deployments",
            Read,
            reader,
            false,
            OK,
            "The environment's deployments, newest first (run, action, commit, who, when, result)",
            crate::deploy::http::list_deployments,
        )
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/deploy/environments/{environment}/rollback",
            Write,
            writer,
            false,
            CREATED,
            "Deploy an earlier successful run again (body {run}: its number): a new run of its deploy actions for this environment, same protections",
            crate::deploy::http::rollback,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/runs/{run}",
            Read,
            reader,
            false,
            OK,
            "Show a run and its jobs",
            runs::get_run,
        ),
        route(
            M::GET,
            "/api/v1/runs/{run}/stream",
            Read,
            reader,
            false,
            OK,
            "Server-sent events: the run and its jobs (states, DAG) whenever they change, then `end`",
            runs::stream_run,
        )
        .produces("text/event-stream")
        .answers(&[404]),
        route(
            M::POST,
            "/api/v1/runs/{run}/cancel",
            Write,
            writer,
            false,
            OK,
            "Cancel a run",
            runs::cancel_run,
        )
        .answers(&[404, 409]),
        route(
            M::POST,
            "/api/v1/runs/{run}/retry",
            Write,
            writer,
            false,
            OK,
            "Run the jobs of an ended run that did not succeed again",
            runs::retry_run,
        )
        .answers(&[404, 409]),
        // Approval gates: any reader may be named in `Approvers`; the handler checks that
        // the caller is one of them (or, without a list, an owner of the repository).
        route(
            M::POST,
            "/api/v1/runs/{run}/actions/{action}/approve",
            Write,
            reader,
            false,
            OK,
            "Approve an approval gate that waits (body {comment}); enough distinct approvals let the run go on",
            crate::runs::approval::approve,
        )
        .answers(&[403, 404, 409]),
        route(
            M::POST,
            "/api/v1/runs/{run}/actions/{action}/reject",
            Write,
            reader,
            false,
            OK,
            "Reject an approval gate that waits (body {comment}): it fails and its dependents are skipped",
            crate::runs::approval::reject,
        )
        .answers(&[403, 404, 409]),
        route(
            M::GET,
            "/api/v1/runs/{run}/jobs/{job}/logs",
            Read,
            reader,
            false,
            OK,
            "A job's log (?after=&format=json; ?follow=true streams until the job ends)",
            runs::job_logs,
        )
        .produces("text/plain; charset=utf-8")
        .also_json::<Vec<cove_api::JobLogLine>>()
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/runs/{run}/jobs/{job}/logs/stream",
            Read,
            reader,
            false,
            OK,
            "Server-sent events: a job's log lines as they are stored (id = seq; Last-Event-ID resumes), then `end`",
            runs::stream_job_logs,
        )
        .produces("text/event-stream")
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/runs/{run}/reports",
            Read,
            reader,
            false,
            OK,
            "The run's test and coverage reports: totals, failed cases, coverage per file, failed success criteria",
            crate::runs::reports::list,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/runs/{run}/jobs/{job}/artifacts/{artifact}",
            Read,
            reader,
            false,
            OK,
            "Download an output artifact (tar)",
            runs::download_artifact,
        )
        .produces("application/x-tar")
        .answers(&[404]),
        // ---- registered agents (issue 6): administrators manage them; an agent registers
        // with a one-time registration token and then uses its own agent token
        route(
            M::POST,
            "/api/v1/agents/registration-tokens",
            Admin,
            None,
            true,
            CREATED,
            "Create a one-time agent registration token (shown once; ttl_secs, default 1 h)",
            agents::create_registration_token,
        )
        .answers(&[404, 429]),
        {
            let mut r = route(
                M::POST,
                "/api/v1/agents/register",
                Admin,
                None,
                false,
                CREATED,
                "Register an agent (bearer: a registration token, used once) → its agent token",
                agents::register,
            );
            r.spec.audience = Audience::Registration;
            r
        },
        route(
            M::GET,
            "/api/v1/agents",
            Admin,
            None,
            true,
            OK,
            "List registered agents",
            agents::list_agents,
        ),
        route(
            M::DELETE,
            "/api/v1/agents/{agent}",
            Admin,
            None,
            true,
            GONE,
            "Revoke an agent's token (its leases expire now)",
            agents::revoke_agent,
        )
        .answers(&[404]),
        // ---- agent pools (issue 20, docs/agents.md): administrators only
        route(
            M::POST,
            "/api/v1/agent-pools",
            Admin,
            None,
            true,
            CREATED,
            "Create an agent pool serving these repositories and owners",
            agents::pools::create_pool,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/agent-pools",
            Admin,
            None,
            true,
            OK,
            "List agent pools with their repositories, owners and agents",
            agents::pools::list_pools,
        ),
        route(
            M::DELETE,
            "/api/v1/agent-pools/{pool}",
            Admin,
            None,
            true,
            GONE,
            "Delete an agent pool (409 while it has agents or outstanding registration tokens)",
            agents::pools::delete_pool,
        )
        .answers(&[404, 409]),
        route(
            M::GET,
            "/api/v1/audit",
            Admin,
            None,
            true,
            OK,
            "The audit log, newest first (?user=&action=&target=&repo=&result=&since=&until=&limit=&cursor=)",
            crate::audit::list,
        ),
        // ---- agent protocol: only registered agents' tokens
        agent_route(
            M::GET,
            "/api/v1/agent/self",
            OK,
            "Agent: who this agent token belongs to",
            runs::agent_self,
        ),
        agent_route(
            M::POST,
            "/api/v1/agent/status",
            GONE,
            "Agent: report its labels and capacity (issue 20)",
            agents::agent_status,
        ),
        agent_route(
            M::GET,
            "/api/v1/agent/link",
            StatusCode::SWITCHING_PROTOCOLS,
            "Agent: the environment link (WebSocket the agent dials out; commands, reports and byte streams of environments placed on it; issue 20)",
            agents::link::agent_link,
        )
        .empty()
        .answers(&[400]),
        agent_route(
            M::POST,
            "/api/v1/agent/lease",
            OK,
            "Agent: long-poll for a ready job (204 when none within wait_ms)",
            runs::agent_lease,
        )
        .json::<cove_api::JobLease>()
        .answers(&[204]),
        agent_route(
            M::POST,
            "/api/v1/agent/jobs/{job}/heartbeat",
            OK,
            "Agent: renew a lease; the answer carries cancel (409 for a stale attempt)",
            runs::agent_heartbeat,
        )
        .answers(&[404, 409]),
        agent_route(
            M::POST,
            "/api/v1/agent/jobs/{job}/logs",
            GONE,
            "Agent: append masked log lines (409 for a stale attempt)",
            runs::agent_logs,
        )
        .answers(&[404, 409]),
        agent_route(
            M::POST,
            "/api/v1/agent/jobs/{job}/finish",
            GONE,
            "Agent: report how an attempt ended (409 for a stale attempt)",
            runs::agent_finish,
        )
        .answers(&[404, 409]),
        agent_route(
            M::GET,
            "/api/v1/agent/jobs/{job}/source",
            OK,
            "Agent: the source tar of the job's commit (?attempt=)",
            runs::agent_source,
        )
        .produces("application/x-tar")
        .answers(&[404, 409]),
        agent_route(
            M::GET,
            "/api/v1/agent/jobs/{job}/inputs/{artifact}",
            OK,
            "Agent: an input artifact of the job (?attempt=)",
            runs::agent_input,
        )
        .produces("application/x-tar")
        .answers(&[404, 409]),
        agent_route(
            M::PUT,
            "/api/v1/agent/jobs/{job}/artifacts/{artifact}",
            GONE,
            "Agent: upload an output artifact (tar body, ?attempt=)",
            runs::agent_upload_artifact,
        )
        .answers(&[404, 409]),
        // ---- environments: `{env}` routes need the role on the environment's repository, and
        // `.env(…)` says who may act on that environment (server/src/envs/access.rs):
        //
        //   route                     creator  admin  repo owner  other writer  reader  stranger
        //   create (writers)          -        yes    yes         yes           403     404
        //   list, stream, show        yes      yes    yes         yes           yes     hidden/404
        //   logs, events              yes      yes    403         403           403     404
        //   exec, terminal, ssh,      yes      yes    403         403           403     404
        //   port tunnel
        //   start, restart            yes      yes    403         403           403     404
        //   stop, delete              yes      yes    yes         403           403     404
        //
        // The terminal (and every SSE stream) re-checks its row every 5 s and ends when it no
        // longer holds (server/src/live_auth.rs).
        route(
            M::POST,
            "/api/v1/repos/{owner}/{name}/environments",
            Write,
            writer,
            false,
            CREATED,
            "Create a dev environment from the repository's devfile",
            envs::create_env,
        )
        .json::<cove_api::Environment>()
        .answers(&[404, 409, 422, 503]),
        route(
            M::GET,
            "/api/v1/environments",
            Read,
            None,
            false,
            OK,
            "List the environments of repositories you can read",
            envs::list_envs,
        ),
        route(
            M::GET,
            "/api/v1/environments/stream",
            Read,
            None,
            false,
            OK,
            "Server-sent events: the environment list (?repo=) whenever a state changes",
            envs::stream_envs,
        )
        .produces("text/event-stream"),
        route(
            M::GET,
            "/api/v1/environments/orphans",
            Admin,
            None,
            true,
            OK,
            "Environments on the engine that the store does not know",
            envs::orphans,
        )
        .answers(&[503]),
        route(
            M::GET,
            "/api/v1/environments/{env}",
            Read,
            reader,
            false,
            OK,
            "Show an environment",
            envs::show_env,
        ),
        route(
            M::DELETE,
            "/api/v1/environments/{env}",
            Write,
            writer,
            false,
            ACCEPTED,
            "Delete an environment and its volumes",
            envs::delete_env,
        )
        .env(EnvAccess::CreatorOrRepoOwner)
        .answers(&[409, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/start",
            Write,
            writer,
            false,
            OK,
            "Start a stopped environment",
            envs::start_env,
        )
        .env(EnvAccess::Creator)
        .answers(&[409, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/stop",
            Write,
            writer,
            false,
            OK,
            "Stop an environment (preStop first)",
            envs::stop_env,
        )
        .env(EnvAccess::CreatorOrRepoOwner)
        .answers(&[409, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/move",
            Write,
            writer,
            false,
            ACCEPTED,
            "Move a stopped environment to another agent: its volumes are copied there, it starts there, and the old agent's copy is removed (docs/agents.md \"Moving an environment\")",
            envs::move_env,
        )
        .env(EnvAccess::Creator)
        .json::<cove_api::Environment>()
        .answers(&[400, 409, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/restart",
            Write,
            writer,
            false,
            OK,
            "Restart from the devfile in the workspace; an invalid devfile is refused (422)",
            envs::restart_env,
        )
        .env(EnvAccess::Creator)
        .json::<cove_api::Environment>()
        .answers(&[409, 422, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/update",
            Write,
            writer,
            false,
            OK,
            "Restart onto the devfile of the environment's branch in the repository (an outdated environment); an invalid devfile is refused (422)",
            envs::update_env,
        )
        .env(EnvAccess::Creator)
        .json::<cove_api::Environment>()
        .answers(&[409, 422, 503]),
        route(
            M::POST,
            "/api/v1/environments/{env}/exec",
            Write,
            writer,
            false,
            OK,
            "Run a command in a component",
            envs::exec_env,
        )
        .env(EnvAccess::Creator)
        .answers(&[404, 409, 503]),
        route(
            M::GET,
            "/api/v1/environments/{env}/logs",
            Read,
            reader,
            false,
            OK,
            "A component's recent output",
            envs::env_logs,
        )
        .env(EnvAccess::Creator)
        .answers(&[404, 409, 503]),
        route(
            M::GET,
            "/api/v1/environments/{env}/events",
            Read,
            reader,
            false,
            OK,
            "Progress, postStart output and state changes",
            envs::env_events,
        )
        .env(EnvAccess::Creator),
        route(
            M::GET,
            "/api/v1/environments/{env}/terminal",
            Write,
            writer,
            false,
            StatusCode::SWITCHING_PROTOCOLS,
            "Interactive terminal (WebSocket; binary frames are terminal bytes, text frames JSON resize/exit/session/close); with `reconnect=ID` the shell outlives a dropped socket for a grace period and the same user reattaches to it",
            envs::terminal,
        )
        .env(EnvAccess::Creator)
        .empty()
        .answers(&[409, 503]),
        route(
            M::GET,
            "/api/v1/environments/{env}/ssh",
            Write,
            writer,
            false,
            StatusCode::SWITCHING_PROTOCOLS,
            "SSH over a WebSocket (binary frames carry the SSH byte stream; `cove env ssh --stdio` as OpenSSH's ProxyCommand); the SSH login inside needs a registered key",
            ssh::ws::ssh_websocket,
        )
        .env(EnvAccess::Creator)
        .empty()
        .answers(&[503]),
        route(
            M::GET,
            "/api/v1/environments/{env}/ports/{port}/tunnel",
            Write,
            writer,
            false,
            StatusCode::SWITCHING_PROTOCOLS,
            "One TCP connection to PORT in the environment (WebSocket; binary frames carry the bytes both ways; `cove env port-forward`)",
            crate::ports::tunnel::port_tunnel,
        )
        .env(EnvAccess::Creator)
        .empty()
        .answers(&[400, 409, 429, 503]),
    ]
}

/// The git smart HTTP routes (authorized by the git handlers through the same `auth` module).
pub const GIT_ROUTES: [(&str, &str, &str); 3] = [
    (
        "get",
        "/git/{owner}/{repo}/info/refs",
        "Ref advertisement (?service=git-upload-pack|git-receive-pack)",
    ),
    (
        "post",
        "/git/{owner}/{repo}/git-upload-pack",
        "Fetch / clone (streamed)",
    ),
    (
        "post",
        "/git/{owner}/{repo}/git-receive-pack",
        "Push (needs write access)",
    ),
];

/// Builds the whole HTTP router. Every request passes the audit layer ([`crate::audit`]),
/// which `authorize_route` tells who is calling and whether the route's checks passed.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for Route { spec, handler, .. } in api_routes() {
        let path = spec.path;
        let layer =
            middleware::from_fn_with_state((state.clone(), Arc::new(spec)), authorize_route);
        router = router.route(path, handler.route_layer(layer));
    }
    // Operations (crate::metrics::http says who may call them): /metrics needs an admin.
    let metrics_spec = RouteSpec {
        method: Method::GET,
        path: "/metrics",
        audience: Audience::Users,
        scope: Scope::Read,
        repo_role: None,
        admin_only: true,
        env_access: None,
        project_role: None,
        reviewers: false,
        summary: "Prometheus metrics (administrators)",
        success: StatusCode::OK,
        extra_statuses: Vec::new(),
    };
    let metrics_auth =
        middleware::from_fn_with_state((state.clone(), Arc::new(metrics_spec)), authorize_route);
    // Public devfile endpoints (crate::ports::proxy): any method, anyone who may see the
    // environment (a role on its repository; others 404 like every `{env}` route).
    let proxy_spec = RouteSpec {
        method: Method::GET,
        path: "/env/{env}/{endpoint}/{*rest}",
        audience: Audience::Users,
        scope: Scope::Read,
        repo_role: Some(Role::Reader),
        admin_only: false,
        env_access: None,
        project_role: None,
        reviewers: false,
        summary: "A public devfile endpoint through the reverse proxy",
        success: StatusCode::OK,
        extra_statuses: Vec::new(),
    };
    let proxy_auth =
        middleware::from_fn_with_state((state.clone(), Arc::new(proxy_spec)), authorize_route);
    // VS Code in the browser (crate::ports::proxy::editor): the environment's owner only, not
    // administrators (the page runs unsandboxed on Cove's origin: docs/security.md); others
    // with a role on the repository 403, the rest 404.
    let editor_spec = RouteSpec {
        method: Method::GET,
        path: "/env/{env}/vscode/{*rest}",
        audience: Audience::Users,
        scope: Scope::Write,
        repo_role: Some(Role::Reader),
        admin_only: false,
        env_access: Some(EnvAccess::CreatorOnly),
        project_role: None,
        reviewers: false,
        summary: "VS Code in the browser of an environment (its owner)",
        success: StatusCode::OK,
        extra_statuses: Vec::new(),
    };
    let editor_auth =
        middleware::from_fn_with_state((state.clone(), Arc::new(editor_spec)), authorize_route);
    router
        .route(
            "/metrics",
            axum::routing::get(metrics::http::metrics).route_layer(metrics_auth),
        )
        .route(
            "/env/{env}/vscode/{*rest}",
            axum::routing::any(crate::ports::proxy::editor).layer(editor_auth.clone()),
        )
        .route(
            "/env/{env}/vscode/",
            axum::routing::any(crate::ports::proxy::editor_root).layer(editor_auth.clone()),
        )
        .route(
            "/env/{env}/vscode",
            axum::routing::get(crate::ports::proxy::editor_root_redirect).route_layer(editor_auth),
        )
        .route(
            "/env/{env}/{endpoint}/{*rest}",
            axum::routing::any(crate::ports::proxy::proxy).layer(proxy_auth.clone()),
        )
        .route(
            "/env/{env}/{endpoint}/",
            axum::routing::any(crate::ports::proxy::proxy_root).layer(proxy_auth.clone()),
        )
        .route(
            "/env/{env}/{endpoint}",
            axum::routing::get(crate::ports::proxy::endpoint_root).route_layer(proxy_auth),
        )
        .route("/healthz", axum::routing::get(metrics::http::healthz))
        .route("/readyz", axum::routing::get(metrics::http::readyz))
        .merge(
            Router::new()
                .route(GIT_ROUTES[0].1, axum::routing::get(git::info_refs))
                .route(GIT_ROUTES[1].1, axum::routing::post(git::upload_pack))
                .route(GIT_ROUTES[2].1, axum::routing::post(git::receive_pack))
                // Only git asks for Basic credentials; API 401s never do.
                .layer(middleware::map_response(git::ask_for_basic)),
        )
        .fallback(ui::fallback)
        .layer(middleware::from_fn(ui::no_basic_prompt))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::map_response(close_after_refused_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::layer,
        ))
        // outside the audit layer: the audit log records the client address it finds
        // (the peer, or X-Forwarded-For from a trusted proxy)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::client::client_addr_layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::http::track,
        ))
        .with_state(state)
}

/// A body refused as too large was not read to its end, so the connection cannot carry
/// another request: say so (`Connection: close`), or a client that pools connections sends
/// its next request on a connection the server is closing and sees it fail.
async fn close_after_refused_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Logs every request and turns a panicking handler into a 500 for that request only.
async fn log_request(request: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    let method = request.method().clone();
    // The path only: query strings are not logged.
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(method = %method, path = %path, "request handler panicked");
            ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
        }
    };
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// The rules of route `spec` for a user: scope, administrators only, the role on the
/// repository (`{owner}/{name}`, the run's or the environment's) and the environment access.
/// Answers the repository and environment the route acts on. Used by the middleware and by
/// long-lived responses re-checking their caller ([`live_auth::Grant::recheck`]).
pub(crate) async fn authorize_user(
    state: &AppState,
    spec: &RouteSpec,
    principal: &Principal,
    params: &[(String, String)],
) -> Result<(Option<RepoRow>, Option<crate::store::EnvRow>), ApiError> {
    auth::require_scope(Some(principal), spec.scope, spec.admin_only)?;
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let project = param("project");
    if !project.is_empty() {
        crate::projects::authorize(state, spec.project_role, principal, &project).await?;
    } else if principal.project_id.is_some() && spec.repo_role.is_none() {
        return Err(ApiError::Forbidden(
            "this token is scoped to a project: it opens only that project's routes and its \
             repositories"
                .into(),
        ));
    }
    let Some(role) = spec.repo_role else {
        return Ok((None, None));
    };
    let env_id = param("env");
    let run_id = param("run");
    if !run_id.is_empty() {
        let (owner, name) = crate::runs::http::repo_of_run(state, &run_id).await?;
        crate::audit::note_repo(&owner, &name);
        let repo = auth::authorize_repo(
            state.store(),
            Some(principal),
            &owner,
            &name,
            spec.scope,
            role,
        )
        .await?;
        return Ok((Some(repo), None));
    }
    if env_id.is_empty() {
        crate::audit::note_repo(&param("owner"), &param("name"));
        let authorized = auth::authorize_repo(
            state.store(),
            Some(principal),
            &param("owner"),
            &param("name"),
            spec.scope,
            role,
        )
        .await;
        let repo = match authorized {
            Err(ApiError::Forbidden(why)) if spec.reviewers => {
                let (owner, name) = (param("owner"), param("name"));
                crate::projects::authorize_reviewer(
                    state, principal, spec.scope, &owner, &name, why,
                )
                .await?
            }
            other => other?,
        };
        return Ok((Some(repo), None));
    }
    // environment routes: the role is checked on the environment's repository; a caller who
    // cannot see that repository learns nothing about it (404 for the environment)
    let not_found = || ApiError::NotFound(format!("environment {env_id}"));
    // an environment in a warm pool is no one's until claimed (`crate::envs::pool`)
    let env = state
        .store()
        .env(&env_id)
        .await?
        .filter(|e| e.pooled.is_none())
        .ok_or_else(not_found)?;
    let repo = state
        .store()
        .repo_by_id(env.repo_id)
        .await?
        .ok_or_else(not_found)?;
    crate::audit::note_repo(&repo.owner, &repo.name);
    let repo = auth::authorize_repo(
        state.store(),
        Some(principal),
        &repo.owner,
        &repo.name,
        spec.scope,
        role,
    )
    .await
    .map_err(|e| match e {
        ApiError::NotFound(_) => not_found(),
        other => other,
    })?;
    if let Some(access) = spec.env_access {
        envs::access::authorize(state.store(), access, principal, spec.scope, &env, &repo).await?;
    }
    Ok((Some(repo), Some(env)))
}

/// The per-route authorization middleware. Besides the route's repository (and environment),
/// it hands the handler a [`live_auth::Grant`], with which a long-lived response checks the
/// same rules again while it lasts.
async fn authorize_route(
    State((state, spec)): State<(AppState, Arc<RouteSpec>)>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if spec.audience == Audience::Signature {
        // The handler verifies the request's signature (and marks it authorized) itself.
        return Ok(next.run(request).await);
    }
    let client = auth::client::of(request.extensions());
    let caller =
        auth::authenticate_request(&state, client, request.method(), request.headers()).await?;
    crate::audit::note_caller(caller.as_ref());
    match spec.audience {
        Audience::Agents => {
            let agent = auth::require_agent(caller)?;
            request.extensions_mut().insert(agent);
            crate::audit::authorized();
            return Ok(next.run(request).await);
        }
        Audience::Registration => {
            let grant = auth::require_registration(caller)?;
            request.extensions_mut().insert(grant);
            crate::audit::authorized();
            return Ok(next.run(request).await);
        }
        Audience::Users => {}
        Audience::Signature => unreachable!("answered above"),
    }
    let principal = auth::user_of(caller)?.ok_or(ApiError::Unauthorized)?;
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (repo, env) = authorize_user(&state, &spec, &principal, &params).await?;
    if let Some(env) = env {
        request.extensions_mut().insert(env);
    }
    let grant = live_auth::Grant::new(spec.clone(), &principal, params);
    request.extensions_mut().insert(grant);
    if let Some(repo) = repo {
        request.extensions_mut().insert(repo);
    }
    let renewed_cookie = principal
        .session
        .as_ref()
        .and_then(|s| s.renewed_cookie.clone());
    request.extensions_mut().insert(principal);
    crate::audit::authorized();
    let mut response = next.run(request).await;
    // A session renewed by this request gets its cookie's lifetime moved too, unless the
    // handler set the cookie itself (logout).
    if let Some(cookie) = renewed_cookie {
        if !response.headers().contains_key(header::SET_COOKIE) {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
    }
    Ok(response)
}

/// `GET /api/v1/openapi.json`.
async fn openapi(State(state): State<AppState>) -> Response {
    Json(openapi_document(state.public_url())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_api::API_PREFIX;

    #[test]
    fn every_api_route_is_under_the_prefix() {
        for route in api_routes() {
            assert!(
                route.spec.path.starts_with(API_PREFIX),
                "{}",
                route.spec.path
            );
        }
    }
}
