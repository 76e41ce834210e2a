//! Authorization that holds for the whole life of a long-lived response: server-sent-event
//! streams and terminal WebSockets.
//!
//! The route middleware (`crate::routes`) puts a [`Grant`] into every authorized user request:
//! the route, the credential that was used (token, browser session or password, by id) and the
//! path parameters. A stream re-checks it every [`RECHECK`]: the credential must still exist
//! and be unexpired (a revoked token, a logged-out or expired session, a removed user or a
//! changed password fail), and the same route rules ([`crate::routes::authorize_user`]: scope,
//! administrator, repository role, environment access) must still admit the caller, read
//! afresh from the store. When the check fails the stream ends with a reason: an SSE
//! `event: error`, a WebSocket close frame (1008), a last line of a followed log. So a stream
//! ends at most `RECHECK` plus one store round trip after the change — well inside 30 s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use crate::auth::{self, AuthMethod, Principal};
use crate::error::ApiError;
use crate::routes::{self, RouteSpec};
use crate::store::now_secs;
use crate::AppState;

/// How often a long-lived stream re-checks its caller's authorization.
pub const RECHECK: Duration = Duration::from_secs(5);

/// The credential behind a grant, by id (never the secret itself).
#[derive(Debug, Clone)]
enum Credential {
    Token(i64),
    Session(i64),
    /// HTTP Basic user + password: a digest of the stored password hash at the time of the
    /// request (so that a changed password ends the stream; the hash itself is not kept).
    Password(Option<String>),
}

/// What authorized a request, to be checked again while its response lasts.
#[derive(Debug, Clone)]
pub struct Grant {
    spec: Arc<RouteSpec>,
    user_id: i64,
    credential: Credential,
    params: Vec<(String, String)>,
}

impl Grant {
    /// The grant of a request `principal` made to the route `spec` with these path parameters.
    pub fn new(spec: Arc<RouteSpec>, principal: &Principal, params: Vec<(String, String)>) -> Self {
        let credential = match (principal.method, principal.token_id, &principal.session) {
            (AuthMethod::Token, Some(id), _) => Credential::Token(id),
            (AuthMethod::Session, _, Some(session)) => Credential::Session(session.id),
            _ => Credential::Password(password_digest(&principal.user)),
        };
        Grant {
            spec,
            user_id: principal.user.id,
            credential,
            params,
        }
    }

    /// The caller as the store says now, or why the credential no longer holds.
    async fn principal_now(&self, state: &AppState) -> Result<Principal, String> {
        let store = state.store();
        let failed = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "re-checking a stream's credential failed");
            "cannot re-check the credential (internal error)".to_string()
        };
        let now = now_secs();
        let (scopes, token_id, project_id) = match &self.credential {
            Credential::Token(id) => {
                let token = store
                    .token_by_id(*id)
                    .await
                    .map_err(failed)?
                    .ok_or("the token was revoked")?;
                if token.expires_at.is_some_and(|at| at <= now) {
                    return Err("the token expired".into());
                }
                (Some(token.scopes), Some(*id), token.project_id)
            }
            Credential::Session(id) => {
                let session = store
                    .session_by_id(*id)
                    .await
                    .map_err(failed)?
                    .ok_or("the session ended (logged out)")?;
                if session.expires_at <= now {
                    return Err("the session expired".into());
                }
                (None, None, None)
            }
            Credential::Password(_) => (None, None, None),
        };
        let user = store
            .user_by_id(self.user_id)
            .await
            .map_err(failed)?
            .ok_or("the user was removed")?;
        if user.disabled {
            return Err("the account was disabled".into());
        }
        if let Credential::Password(digest) = &self.credential {
            if password_digest(&user) != *digest {
                return Err("the password changed".into());
            }
        }
        let scopes = scopes.unwrap_or_else(|| auth::user_scopes(&user));
        let method = match self.credential {
            Credential::Token(_) => AuthMethod::Token,
            Credential::Session(_) => AuthMethod::Session,
            Credential::Password(_) => AuthMethod::Password,
        };
        Ok(Principal {
            user,
            scopes,
            token_id,
            project_id,
            method,
            // the session's details only matter to the session routes, never to a re-check
            session: None,
        })
    }

    /// Checks the grant again: `Err` says why it no longer holds.
    pub async fn recheck(&self, state: &AppState) -> Result<(), String> {
        let principal = self.principal_now(state).await?;
        match routes::authorize_user(state, &self.spec, &principal, &self.params).await {
            Ok(_) => Ok(()),
            Err(ApiError::Internal(e)) => {
                tracing::warn!(error = %e, "re-checking a stream's access failed");
                Err("cannot re-check the access (internal error)".into())
            }
            Err(e) => Err(format!("access withdrawn: {e}")),
        }
    }

    /// Resolves (with the reason) once the grant no longer holds; checks every [`RECHECK`].
    pub async fn revoked(self, state: AppState) -> String {
        loop {
            tokio::time::sleep(RECHECK).await;
            if let Err(reason) = self.recheck(&state).await {
                tracing::info!(user_id = self.user_id, path = self.spec.path, %reason,
                    "a long-lived response ends: its authorization no longer holds");
                return reason;
            }
        }
    }
}

fn password_digest(user: &crate::store::UserRow) -> Option<String> {
    user.password_hash.as_deref().map(auth::hash_token)
}

/// `stream` until `revoked` resolves; then `last(reason)` as the final item and the end.
pub fn until_revoked<S, F>(
    stream: S,
    revoked: F,
    last: impl FnOnce(String) -> S::Item + Send + 'static,
) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send,
    F: Future<Output = String> + Send + 'static,
{
    struct Watch<S, F, L> {
        stream: S,
        revoked: std::pin::Pin<Box<F>>,
        last: L,
    }
    let start = Some(Watch {
        stream,
        revoked: Box::pin(revoked),
        last,
    });
    futures_util::stream::unfold(start, |watch| async move {
        let mut w = watch?;
        tokio::select! {
            item = w.stream.next() => item.map(|item| (item, Some(w))),
            reason = &mut w.revoked => Some(((w.last)(reason), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_revoked_stream_ends_with_the_reason_and_an_ended_one_without() {
        // an endless stream whose access ends after its first item
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let endless = futures_util::stream::iter([1]).chain(futures_util::stream::pending());
        let revoked = async move {
            let _ = rx.await;
            "the token was revoked".to_string()
        };
        let mut s = Box::pin(until_revoked(endless, revoked, |r| r.len()));
        assert_eq!(s.next().await, Some(1));
        tx.send(()).unwrap();
        assert_eq!(s.next().await, Some("the token was revoked".len()));
        assert_eq!(s.next().await, None);

        // a stream that ends by itself ends without the last item
        let short = futures_util::stream::iter([1, 2]);
        let s = until_revoked(short, std::future::pending::<String>(), |_| 0);
        assert_eq!(s.collect::<Vec<_>>().await, vec![1, 2]);
    }
}
