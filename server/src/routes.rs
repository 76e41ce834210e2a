//! The route table: every REST route with the scope and repository role it needs. The router
//! and the OpenAPI document are both built from [`api_routes`], and authorization runs as one
//! middleware per route driven by its [`RouteSpec`], so no route can skip it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Router};
use cove_api::{
    CreateRepoRequest, CreateTokenRequest, CreateUserRequest, CreatedToken, Member, PushEvent,
    Repo, Role, Scope, SetMemberRequest, TokenInfo, User,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::agents;
use crate::auth::{self, Audience, Principal};
use crate::envs;
use crate::error::ApiError;
use crate::extract::{self, Json, Path, Query};
use crate::git;
use crate::metrics;
use crate::names::validate_name;
pub use crate::openapi::{all_paths, openapi_document};
use crate::openapi::{DocHandler, OpDoc, OutputDoc};
use crate::runs::http as runs;
use crate::store::{now_secs, PushEventRow, RepoRow, TokenRow};
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
            whoami,
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
            list_users,
        ),
        route(
            M::POST,
            "/api/v1/users",
            Admin,
            None,
            true,
            CREATED,
            "Create a user",
            create_user,
        )
        .answers(&[409]),
        route(
            M::GET,
            "/api/v1/tokens",
            Read,
            None,
            false,
            OK,
            "List the caller's tokens",
            list_tokens,
        ),
        route(
            M::POST,
            "/api/v1/tokens",
            Write,
            None,
            false,
            CREATED,
            "Create a token (shown once)",
            create_token,
        ),
        route(
            M::DELETE,
            "/api/v1/tokens/{id}",
            Write,
            None,
            false,
            GONE,
            "Revoke a token",
            delete_token,
        )
        .answers(&[404]),
        route(
            M::GET,
            "/api/v1/repos",
            Read,
            None,
            false,
            OK,
            "List repositories the caller can read",
            list_repos,
        ),
        route(
            M::POST,
            "/api/v1/repos",
            Write,
            None,
            false,
            CREATED,
            "Create a repository",
            create_repo,
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
            get_repo,
        ),
        route(
            M::DELETE,
            "/api/v1/repos/{owner}/{name}",
            Write,
            owner,
            false,
            GONE,
            "Delete a repository",
            delete_repo,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/branches",
            Read,
            reader,
            false,
            OK,
            "List branches",
            list_branches,
        ),
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/commits",
            Read,
            reader,
            false,
            OK,
            "List commits (?branch=&limit=)",
            list_commits,
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
            read_file,
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
            list_events,
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
        route(
            M::GET,
            "/api/v1/repos/{owner}/{name}/members",
            Read,
            reader,
            false,
            OK,
            "List members",
            list_members,
        ),
        route(
            M::PUT,
            "/api/v1/repos/{owner}/{name}/members/{username}",
            Write,
            owner,
            false,
            OK,
            "Add or change a member",
            set_member,
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
            remove_member,
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
        .answers(&[429]),
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
        // ---- environments: repository routes need a role on the environment's repository
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
        .answers(&[409, 503]),
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
        ),
        route(
            M::GET,
            "/api/v1/environments/{env}/terminal",
            Write,
            writer,
            false,
            StatusCode::SWITCHING_PROTOCOLS,
            "Interactive terminal (WebSocket; binary frames are terminal bytes, text frames JSON resize/exit)",
            envs::terminal,
        )
        .empty()
        .answers(&[409, 503]),
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

/// Builds the whole HTTP router.
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
        summary: "Prometheus metrics (administrators)",
        success: StatusCode::OK,
        extra_statuses: Vec::new(),
    };
    let metrics_auth =
        middleware::from_fn_with_state((state.clone(), Arc::new(metrics_spec)), authorize_route);
    router
        .route(
            "/metrics",
            axum::routing::get(metrics::http::metrics).route_layer(metrics_auth),
        )
        .route("/healthz", axum::routing::get(metrics::http::healthz))
        .route("/readyz", axum::routing::get(metrics::http::readyz))
        .route(GIT_ROUTES[0].1, axum::routing::get(git::info_refs))
        .route(GIT_ROUTES[1].1, axum::routing::post(git::upload_pack))
        .route(GIT_ROUTES[2].1, axum::routing::post(git::receive_pack))
        .fallback(ui::fallback)
        .layer(middleware::from_fn(ui::no_basic_prompt))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::http::track,
        ))
        .with_state(state)
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

/// The per-route authorization middleware.
async fn authorize_route(
    State((state, spec)): State<(AppState, Arc<RouteSpec>)>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller =
        auth::authenticate_request(state.store(), request.method(), request.headers()).await?;
    match spec.audience {
        Audience::Agents => {
            let agent = auth::require_agent(caller)?;
            request.extensions_mut().insert(agent);
            return Ok(next.run(request).await);
        }
        Audience::Registration => {
            let grant = auth::require_registration(caller)?;
            request.extensions_mut().insert(grant);
            return Ok(next.run(request).await);
        }
        Audience::Users => {}
    }
    let principal = auth::user_of(caller)?;
    let principal = auth::require_scope(principal.as_ref(), spec.scope, spec.admin_only)?.clone();
    if let Some(role) = spec.repo_role {
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let env_id = param("env");
        let run_id = param("run");
        let (owner, name) = if !run_id.is_empty() {
            crate::runs::http::repo_of_run(&state, &run_id).await?
        } else if env_id.is_empty() {
            (param("owner"), param("name"))
        } else {
            // environment routes: the role is checked on the environment's repository
            let env = state
                .store()
                .env(&env_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("environment {env_id}")))?;
            let repo = state
                .store()
                .repo_by_id(env.repo_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("environment {env_id}")))?;
            request.extensions_mut().insert(env);
            (repo.owner, repo.name)
        };
        let repo = auth::authorize_repo(
            state.store(),
            Some(&principal),
            &owner,
            &name,
            spec.scope,
            role,
        )
        .await?;
        request.extensions_mut().insert(repo);
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

// ---------------------------------------------------------------------------------------
// DTO conversions
// ---------------------------------------------------------------------------------------

fn repo_dto(state: &AppState, row: &RepoRow) -> Repo {
    Repo {
        owner: row.owner.clone(),
        name: row.name.clone(),
        full_name: format!("{}/{}", row.owner, row.name),
        visibility: row.visibility,
        default_branch: row.default_branch.clone(),
        clone_url: format!("{}/git/{}/{}.git", state.public_url(), row.owner, row.name),
        created_at: row.created_at,
    }
}

fn token_dto(row: TokenRow) -> TokenInfo {
    TokenInfo {
        id: row.id,
        name: row.name,
        scopes: row.scopes,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}

/// The wire form of a stored push event.
pub fn push_event_dto(full_name: &str, row: PushEventRow) -> PushEvent {
    PushEvent {
        id: row.id,
        repo: full_name.to_string(),
        ref_name: row.ref_name,
        old_sha: row.old_sha,
        new_sha: row.new_sha,
        pusher: row.pusher,
        created_at_ms: row.created_at_ms,
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

async fn openapi(State(state): State<AppState>) -> Response {
    Json(openapi_document(state.public_url())).into_response()
}

async fn whoami(Extension(principal): Extension<Principal>) -> Json<User> {
    Json(User {
        username: principal.user.username.clone(),
        is_admin: principal.user.is_admin,
        scopes: principal.scopes.clone(),
    })
}

async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<User>>, ApiError> {
    let users = state.store().list_users().await?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| User {
                username: u.username,
                is_admin: u.is_admin,
                scopes: Vec::new(),
            })
            .collect(),
    ))
}

async fn create_user(
    State(state): State<AppState>,
    Json(req): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    validate_name("username", &req.username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if req.password.chars().count() < 8 {
        return Err(ApiError::BadRequest(
            "password must have at least 8 characters".into(),
        ));
    }
    let password = req.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let user = state
        .store()
        .create_user(&req.username, Some(&hash), req.is_admin)
        .await?;
    tracing::info!(username = %user.username, is_admin = user.is_admin, "user created");
    let scopes = auth::user_scopes(&user);
    Ok((
        StatusCode::CREATED,
        Json(User {
            username: user.username,
            is_admin: user.is_admin,
            scopes,
        }),
    ))
}

async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let tokens = state.store().list_tokens(principal.user.id).await?;
    Ok(Json(tokens.into_iter().map(token_dto).collect()))
}

/// Longest token lifetime accepted: ten years.
const MAX_TOKEN_SECONDS: u64 = 10 * 365 * 24 * 3600;

async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "token name must be 1-100 printable characters".into(),
        ));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::BadRequest(
            "a token needs at least one scope".into(),
        ));
    }
    let mut scopes = req.scopes.clone();
    scopes.sort();
    scopes.dedup();
    if let Some(missing) = scopes.iter().find(|s| !principal.has_scope(**s)) {
        return Err(ApiError::Forbidden(format!(
            "cannot grant scope {} that the current credential lacks",
            missing.as_str()
        )));
    }
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(0) => {
            return Err(ApiError::BadRequest(
                "expires_in_seconds must be positive".into(),
            ))
        }
        Some(s) if s > MAX_TOKEN_SECONDS => {
            return Err(ApiError::BadRequest(
                "expires_in_seconds is at most ten years".into(),
            ))
        }
        Some(s) => Some(now_secs() + s as i64),
    };
    let token = auth::generate_token();
    let row = state
        .store()
        .create_token(
            principal.user.id,
            name,
            &auth::hash_token(&token),
            &scopes,
            expires_at,
        )
        .await?;
    tracing::info!(username = %principal.user.username, token_id = row.id, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: token_dto(row),
        }),
    ))
}

async fn delete_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest("token id must be a number".into()))?;
    if state.store().delete_token(principal.user.id, id).await? {
        tracing::info!(username = %principal.user.username, token_id = id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("token {id}")))
    }
}

async fn list_repos(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<Repo>>, ApiError> {
    let repos = state
        .store()
        .list_repos(principal.user.id, principal.user.is_admin)
        .await?;
    Ok(Json(repos.iter().map(|r| repo_dto(&state, r)).collect()))
}

async fn create_repo(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateRepoRequest>,
) -> Result<(StatusCode, Json<Repo>), ApiError> {
    validate_name("repository name", &req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let owner_name = req
        .owner
        .clone()
        .unwrap_or_else(|| principal.user.username.clone());
    validate_name("owner", &owner_name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let owner = if owner_name == principal.user.username {
        principal.user.clone()
    } else if principal.user.is_admin {
        state
            .store()
            .user_by_name(&owner_name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {owner_name}")))?
    } else {
        return Err(ApiError::Forbidden(
            "only administrators may create repositories for another user".into(),
        ));
    };
    let row = state
        .store()
        .create_repo(&owner, &req.name, req.visibility, "main")
        .await?;
    let path = git::repo_path(state.data_dir(), &row.owner, &row.name);
    if let Err(err) = git::init_bare(&path, &row.default_branch).await {
        let _ = state.store().delete_repo(row.id).await;
        return Err(err.into());
    }
    tracing::info!(repo = %format!("{}/{}", row.owner, row.name), by = %principal.user.username, "repository created");
    Ok((StatusCode::CREATED, Json(repo_dto(&state, &row))))
}

async fn get_repo(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Json<Repo> {
    Json(repo_dto(&state, &repo))
}

async fn delete_repo(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    let lock = state.repo_lock(repo.id);
    let _guard = lock.lock().await;
    // environments first (containers and volumes on the engine), then the rows
    envs::delete_repo_envs(&state, repo.id).await?;
    // runs, jobs and logs go with the row (foreign keys cascade); their artifact files here
    let runs = state.store().run_ids_of_repo(repo.id).await?;
    state.store().delete_repo(repo.id).await?;
    crate::retention::remove_run_files(&state, &runs).await;
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    git::remove_repo(state.data_dir(), &path, repo.id).await?;
    tracing::info!(repo = %format!("{}/{}", repo.owner, repo.name), by = %principal.user.username, "repository deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn repo_dir(state: &AppState, repo: &RepoRow) -> std::path::PathBuf {
    git::repo_path(state.data_dir(), &repo.owner, &repo.name)
}

async fn list_branches(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<cove_api::Branch>>, ApiError> {
    Ok(Json(git::branches(repo_dir(&state, &repo)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CommitsQuery {
    /// Branch (default: the repository's default branch).
    branch: Option<String>,
    /// How many commits, newest first: 1 or more (default 50; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

async fn list_commits(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<CommitsQuery>,
) -> Result<Json<Vec<cove_api::Commit>>, ApiError> {
    let branch = query.branch.unwrap_or_else(|| repo.default_branch.clone());
    let limit = extract::limit(query.limit, 50, 1000)? as usize;
    let rev = format!("refs/heads/{branch}");
    // git2 panics on interior NUL bytes, so they are refused first.
    if !rev.contains('\0') && git2::Reference::is_valid_name(&rev) {
        Ok(Json(
            git::commits(repo_dir(&state, &repo), rev, limit).await?,
        ))
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid branch name {branch:?}"
        )))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FileQuery {
    /// Branch, tag or commit (default: the default branch).
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    rev: Option<String>,
}

async fn read_file(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<FileQuery>,
) -> Result<Json<cove_api::FileContent>, ApiError> {
    let file = params.get("path").cloned().unwrap_or_default();
    let rev = query.rev.unwrap_or_else(|| repo.default_branch.clone());
    Ok(Json(
        git::read_file(repo_dir(&state, &repo), rev, file).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// How many, newest first: 1 or more (default 100; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

async fn list_events(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Vec<PushEvent>>, ApiError> {
    let limit = extract::limit(query.limit, 100, 1000)?;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let rows = state.store().list_push_events(repo.id, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| push_event_dto(&full_name, r))
            .collect(),
    ))
}

async fn list_members(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<Member>>, ApiError> {
    let members = state.store().list_members(repo.id).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|(username, role)| Member { username, role })
            .collect(),
    ))
}

async fn member_user(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<crate::store::UserRow, ApiError> {
    let username = params.get("username").cloned().unwrap_or_default();
    validate_name("username", &username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username}")))
}

async fn set_member(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<SetMemberRequest>,
) -> Result<Json<Member>, ApiError> {
    let user = member_user(&state, &params).await?;
    state.store().set_member(repo.id, user.id, req.role).await?;
    Ok(Json(Member {
        username: user.username,
        role: req.role,
    }))
}

async fn remove_member(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let user = member_user(&state, &params).await?;
    if state.store().remove_member(repo.id, user.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("member {}", user.username)))
    }
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
