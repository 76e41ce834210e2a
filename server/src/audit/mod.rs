//! The audit log (issue 14, "Accountable"): who (user, token, agent), what (action, target,
//! repository), when, from where (the client's address) and with what result, for every
//! state-changing request, every failed authentication, every push and every terminal open.
//!
//! How it is recorded: [`layer`] wraps every request at the router level. It gives the request
//! a [`Context`] (a task-local) that the authorization code fills in with one-line calls —
//! [`note_caller`] once the credential is known, [`note_repo`] for the repository concerned,
//! [`authorized`] when the route's checks passed — and after the handler answered it writes
//! one row (one INSERT, awaited before the answer leaves, so a client that saw its answer
//! finds the row). Pushes are recorded by [`push`] with the refs they updated.
//!
//! What is recorded ([`classify`]): non-GET `/api/v1` routes as `METHOD template` (the agent
//! protocol's routine traffic — leases, heartbeats, log batches, uploads — only when refused;
//! an agent's job result always), `POST /api/v1/session` as `login`, the terminal WebSocket,
//! pushes as `git.push` (a refused push attempt with credentials too), and any request whose
//! credential was refused as `login` with result `denied` (for a password: the user name that
//! was tried). Never recorded: secrets, passwords, tokens, query strings, request bodies.
//! Every text is bounded ([`bounded`]).
//!
//! Results: `denied` — the caller was not authenticated or not allowed (401, 403, 429, or a
//! 404 from authorization that hides a repository); `ok` — any other status below 400;
//! `failed` — the rest.

mod http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;

pub use http::{list, AuditQuery};

use crate::auth::{Caller, Principal, AGENT_TOKEN_PREFIX, TOKEN_PREFIX};
use crate::store::{now_ms, AuditRow, RefUpdate, RepoRow};
use crate::AppState;

/// Longest user or agent name kept.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest action, target or repository kept.
pub const MAX_TARGET_CHARS: usize = 256;
/// Longest detail kept.
pub const MAX_DETAIL_CHARS: usize = 1024;

/// Who made a request, as far as it is known.
#[derive(Debug, Clone, Default)]
struct Who {
    username: Option<String>,
    token_id: Option<i64>,
    agent: Option<String>,
    auth: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Slot {
    who: Option<Who>,
    repo: Option<String>,
    authorized: bool,
    /// What the handler added (e.g. the id of the token it created).
    detail: Option<String>,
    /// Already written by an explicit call ([`push`]): the layer writes nothing more.
    recorded: bool,
}

/// What the audit layer knows about the request being served.
#[derive(Debug)]
pub struct Context {
    client: Option<String>,
    slot: Mutex<Slot>,
}

impl Context {
    fn with<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slot = match self.slot.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut slot)
    }
}

tokio::task_local! {
    static CONTEXT: Arc<Context>;
}

fn with_context(f: impl FnOnce(&Context)) {
    let _ = CONTEXT.try_with(|ctx| f(ctx));
}

/// Runs `future` (e.g. a task spawned by a handler) with the current request's context, so the
/// calls in it are recorded for that request.
pub fn carry<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    let ctx = CONTEXT.try_with(Arc::clone).ok();
    async move {
        match ctx {
            Some(ctx) => CONTEXT.scope(ctx, future).await,
            None => future.await,
        }
    }
}

fn who_of_principal(p: &Principal) -> Who {
    Who {
        username: Some(p.user.username.clone()),
        token_id: p.token_id,
        agent: None,
        auth: Some(match p.method {
            crate::auth::AuthMethod::Token => "token",
            crate::auth::AuthMethod::Password => "password",
            crate::auth::AuthMethod::Session => "session",
        }),
    }
}

/// The credential of the request was accepted: this is who is calling.
pub fn note_caller(caller: Option<&Caller>) {
    let who = match caller {
        None => return,
        Some(Caller::User(p)) => who_of_principal(p),
        Some(Caller::Agent(agent)) => Who {
            agent: Some(bounded(&agent.name, MAX_NAME_CHARS)),
            auth: Some("agent"),
            ..Who::default()
        },
        Some(Caller::Registration(_)) => Who {
            auth: Some("registration"),
            ..Who::default()
        },
    };
    with_context(|ctx| ctx.with(|slot| slot.who = Some(who)));
}

/// Like [`note_caller`] for a user principal (git routes).
pub fn note_principal(principal: Option<&Principal>) {
    if let Some(p) = principal {
        let who = who_of_principal(p);
        with_context(|ctx| ctx.with(|slot| slot.who = Some(who)));
    }
}

/// The request concerns the repository `owner/name`.
pub fn note_repo(owner: &str, name: &str) {
    let repo = bounded(&format!("{owner}/{name}"), MAX_TARGET_CHARS);
    with_context(|ctx| ctx.with(|slot| slot.repo = Some(repo)));
}

/// What the handler did beyond its route and path, e.g. `token 42 "laptop"` (never a secret).
pub fn note_detail(detail: String) {
    let detail = bounded(&detail, MAX_DETAIL_CHARS);
    with_context(|ctx| ctx.with(|slot| slot.detail = Some(detail)));
}

/// The route's authorization passed; an error from here on is the handler's.
pub fn authorized() {
    with_context(|ctx| ctx.with(|slot| slot.authorized = true));
}

/// `text` without control characters, cut to `max` characters (marked with `…`).
pub fn bounded(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut cut: String = clean.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What kind of record a request gets (before its answer is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `METHOD template`, whatever the result.
    Request,
    /// `login` (the web UI's password login).
    Login,
    /// Only when refused (agent protocol traffic).
    WhenDenied,
    /// A push (`git.push`), unless [`push`] recorded it; anonymous refusals are not recorded
    /// (git always asks without credentials first).
    Push,
    /// The ref advertisement before a push: only a refusal of a known caller (`git.push`).
    PushRefused,
    /// Nothing but a refused credential.
    Nothing,
}

fn classify(method: &Method, template: &str, query: Option<&str>) -> Kind {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if template.starts_with("/git/") {
        if template.ends_with("/git-receive-pack") {
            return Kind::Push;
        }
        let push_refs = template.ends_with("/info/refs")
            && query.is_some_and(|q| q.split('&').any(|p| p == "service=git-receive-pack"));
        return if push_refs {
            Kind::PushRefused
        } else {
            Kind::Nothing
        };
    }
    if !template.starts_with("/api/") {
        return Kind::Nothing;
    }
    if template == "/api/v1/environments/{env}/terminal" {
        return Kind::Request;
    }
    if read {
        return Kind::Nothing;
    }
    if template == "/api/v1/session" && *method == Method::POST {
        return Kind::Login;
    }
    if template.starts_with("/api/v1/agent/") && !template.ends_with("/finish") {
        return Kind::WhenDenied;
    }
    Kind::Request
}

/// The credential kind and, for a password, the user name of the `Authorization` header —
/// never the password or token itself.
fn presented_credential(value: &HeaderValue) -> Option<(&'static str, Option<String>)> {
    let value = value.to_str().ok()?;
    let (kind, rest) = value.split_once(' ')?;
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8_lossy(&decoded);
        let (user, password) = decoded.split_once(':')?;
        if password.starts_with(TOKEN_PREFIX) {
            return Some(("token", None));
        }
        return Some(("password", Some(bounded(user, MAX_NAME_CHARS))));
    }
    if rest.trim().starts_with(AGENT_TOKEN_PREFIX) {
        return Some(("agent", None));
    }
    Some(("token", None))
}

fn result_of(status: StatusCode, authorized: bool) -> &'static str {
    match status.as_u16() {
        401 | 403 | 429 => "denied",
        _ if !authorized => "denied",
        s if s < 400 => "ok",
        _ => "failed",
    }
}

/// Middleware (router level): sets up the request's [`Context`] and writes its audit row.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(template) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(request).await;
    };
    if !(template.starts_with("/api/") || template.starts_with("/git/")) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let kind = classify(&method, &template, request.uri().query());
    let path = bounded(request.uri().path(), MAX_TARGET_CHARS);
    // Looked at only when the credential is refused.
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    // the client address as the login throttle sees it: the peer, or the address a trusted
    // proxy forwarded (crate::auth::client)
    let client = request
        .extensions()
        .get::<crate::auth::ClientAddr>()
        .map(|c| c.0.to_string())
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
        });
    let ctx = Arc::new(Context {
        client,
        slot: Mutex::new(Slot::default()),
    });
    let response = CONTEXT.scope(ctx.clone(), next.run(request)).await;
    let status = response.status();
    let (who, repo, authorized, recorded, detail) = ctx.with(|slot| {
        (
            slot.who.take(),
            slot.repo.take(),
            slot.authorized,
            slot.recorded,
            slot.detail.take(),
        )
    });
    if recorded {
        return response;
    }
    let route = bounded(&format!("{method} {template}"), MAX_TARGET_CHARS);
    let mut row = AuditRow {
        at_ms: now_ms(),
        client: ctx.client.clone(),
        status: Some(i64::from(status.as_u16())),
        target: path,
        repo,
        ..AuditRow::default()
    };
    // A credential that was presented and refused: a failed login, whatever the route.
    let refused_credential = if who.is_none() && matches!(status.as_u16(), 401 | 429) {
        authorization.as_ref().and_then(presented_credential)
    } else {
        None
    };
    if let Some((auth, username)) = refused_credential {
        row.username = username;
        row.auth = Some(auth.to_string());
        row.action = "login".into();
        row.result = "denied".into();
        row.detail = Some(route);
        write(&state, row).await;
        return response;
    }
    let result = result_of(status, authorized);
    row.action = match kind {
        Kind::Nothing => return response,
        Kind::WhenDenied if result != "denied" => return response,
        Kind::Push | Kind::PushRefused if who.is_none() => return response,
        Kind::PushRefused if result != "denied" => return response,
        Kind::Push | Kind::PushRefused => {
            row.detail = Some(route);
            "git.push".into()
        }
        Kind::Login => {
            row.detail = Some(route);
            "login".into()
        }
        Kind::Request | Kind::WhenDenied => {
            row.detail = detail;
            route
        }
    };
    if let Some(who) = who {
        row.username = who.username;
        row.token_id = who.token_id;
        row.agent = who.agent;
        row.auth = who.auth.map(str::to_string);
    }
    row.result = result.into();
    write(&state, row).await;
    response
}

async fn write(state: &AppState, row: AuditRow) {
    if let Err(e) = state.store().insert_audit(&row).await {
        // The action already happened; the failure is logged (without the row's details).
        tracing::warn!(error = %e, action = %row.action, "cannot write the audit record");
    }
}

/// A push by the current request's caller to `repo` updated `updates` (`result`: `ok`, or why
/// git refused or stopped).
pub async fn push(
    state: &AppState,
    repo: &RepoRow,
    pusher: &str,
    updates: &[RefUpdate],
    result: &str,
) {
    let mut row = AuditRow {
        at_ms: now_ms(),
        action: "git.push".into(),
        target: bounded(&format!("{}/{}", repo.owner, repo.name), MAX_TARGET_CHARS),
        repo: Some(bounded(
            &format!("{}/{}", repo.owner, repo.name),
            MAX_TARGET_CHARS,
        )),
        username: Some(bounded(pusher, MAX_NAME_CHARS)),
        result: if result == "ok" { "ok" } else { "failed" }.into(),
        ..AuditRow::default()
    };
    let refs: Vec<String> = updates
        .iter()
        .map(|u| {
            format!(
                "{} {}..{}",
                u.ref_name,
                short(&u.old_sha),
                short(&u.new_sha)
            )
        })
        .collect();
    let detail = if refs.is_empty() {
        format!("no ref updated ({result})")
    } else if result == "ok" {
        refs.join(", ")
    } else {
        format!("{} ({result})", refs.join(", "))
    };
    row.detail = Some(bounded(&detail, MAX_DETAIL_CHARS));
    let _ = CONTEXT.try_with(|ctx| {
        row.client = ctx.client.clone();
        ctx.with(|slot| {
            if let Some(who) = &slot.who {
                row.token_id = who.token_id;
                row.auth = who.auth.map(str::to_string);
            }
            slot.recorded = true;
        });
    });
    write(state, row).await;
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Deletes audit rows older than `[retention] audit_days` (0: kept forever).
pub async fn expire(state: &AppState, now_ms: i64) -> Result<u64, crate::store::StoreError> {
    let days = state.limits().audit_days;
    if days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(days) * 86_400_000);
    let deleted = state.store().delete_audit_before(cutoff).await?;
    if deleted > 0 {
        tracing::info!(rows = deleted, days, "retention deleted audit records");
    }
    Ok(deleted)
}

/// An SSH login (`ssh.login`, target the environment) or a refused one (`result` `denied`,
/// no environment named back): recorded by the SSH server, which has no HTTP request.
pub async fn ssh_login(
    state: &AppState,
    username: Option<&str>,
    env: &str,
    client: Option<std::net::SocketAddr>,
    ok: bool,
) {
    let row = AuditRow {
        at_ms: now_ms(),
        action: "ssh.login".into(),
        target: bounded(env, MAX_TARGET_CHARS),
        username: username.map(|u| bounded(u, MAX_NAME_CHARS)),
        auth: Some("ssh-key".into()),
        client: client.map(|c| c.ip().to_string()),
        result: if ok { "ok" } else { "denied" }.into(),
        ..AuditRow::default()
    };
    write(state, row).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded() {
        let t = "/api/v1/environments/{env}/terminal";
        assert_eq!(classify(&Method::GET, t, None), Kind::Request);
        assert_eq!(classify(&Method::GET, "/api/v1/repos", None), Kind::Nothing);
        assert_eq!(
            classify(&Method::POST, "/api/v1/repos", None),
            Kind::Request
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/session", None),
            Kind::Login
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/agent/jobs/{job}/heartbeat", None),
            Kind::WhenDenied
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/agent/jobs/{job}/finish", None),
            Kind::Request
        );
        let refs = "/git/{owner}/{repo}/info/refs";
        assert_eq!(
            classify(&Method::GET, refs, Some("service=git-receive-pack")),
            Kind::PushRefused
        );
        assert_eq!(
            classify(&Method::POST, "/git/{owner}/{repo}/git-receive-pack", None),
            Kind::Push
        );
        assert_eq!(
            classify(&Method::GET, refs, Some("service=git-upload-pack")),
            Kind::Nothing
        );
        assert_eq!(
            classify(&Method::POST, "/git/{owner}/{repo}/git-upload-pack", None),
            Kind::Nothing
        );
    }

    #[test]
    fn texts_are_bounded_and_printable() {
        assert_eq!(bounded("a\nb", 10), "a?b");
        let long = "x".repeat(100);
        let cut = bounded(&long, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn only_the_user_name_of_a_credential_is_kept() {
        let basic = |text: &str| -> HeaderValue {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            format!("Basic {encoded}").parse().unwrap()
        };
        assert_eq!(
            presented_credential(&basic("mallory:hunter22")),
            Some(("password", Some("mallory".to_string())))
        );
        assert_eq!(
            presented_credential(&basic("x:cove_abc")),
            Some(("token", None))
        );
        let bearer: HeaderValue = "Bearer cove_agt_123".parse().unwrap();
        assert_eq!(presented_credential(&bearer), Some(("agent", None)));
    }

    #[test]
    fn results() {
        assert_eq!(result_of(StatusCode::OK, true), "ok");
        assert_eq!(result_of(StatusCode::NOT_FOUND, false), "denied");
        assert_eq!(result_of(StatusCode::NOT_FOUND, true), "failed");
        assert_eq!(result_of(StatusCode::FORBIDDEN, true), "denied");
        assert_eq!(result_of(StatusCode::SWITCHING_PROTOCOLS, true), "ok");
    }
}
