//! The SSH server inside cove-server (russh): the host key, the listener, and each
//! connection's authentication. The SSH user name names the environment (its id, or its name
//! when the key's user owns exactly one environment of that name), optionally followed by
//! `.<component>` for another container than the main one; a login succeeds only
//! with a public key registered by a user who may open the environment's terminal (its
//! creator or an administrator, with the writer role on its repository: the very rule of
//! `GET /api/v1/environments/{env}/terminal`, `crate::routes::authorize_user`). Everyone
//! else is refused at authentication.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::Method;
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::channel;
use crate::auth::{self, AuthMethod, Principal};
use crate::routes::RouteSpec;
use crate::store::{now_secs, EnvRow, UserRow};
use crate::AppState;

/// File of the host key in the data directory (OpenSSH format, mode 0600).
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Most SSH connections at once (more wait for a free slot before their handshake).
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that has not authenticated within this time is closed.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(60);
/// Keep-alive interval; after [`KEEPALIVE_MAX`] unanswered ones the connection is dropped.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
pub const KEEPALIVE_MAX: usize = 4;

/// Reads the host key from `data_dir`, generating an Ed25519 key (0600) on first use.
pub fn load_or_create_host_key(data_dir: &Path) -> Result<PrivateKey, String> {
    let path = data_dir.join(HOST_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| format!("cannot read the SSH host key {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let mut key = PrivateKey::from(pair);
    key.set_comment("cove-server host key");
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| format!("cannot encode the SSH host key: {e}"))?;
    let tmp = data_dir.join(format!("{HOST_KEY_FILE}.tmp"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), fingerprint = %super::keys::fingerprint(key.public_key()), "generated the SSH host key");
    Ok(key)
}

/// The russh configuration: the host key, public-key authentication only, keep-alives, no
/// inactivity timeout (an editor's idle connection stays; keep-alives find dead peers).
pub fn russh_config(host_key: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-cove".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        max_auth_attempts: 6,
        nodelay: true,
        ..Default::default()
    })
}

/// The SSH side of a running server: its configuration and the connection slots shared by
/// the TCP listener and the WebSocket route.
pub struct SshService {
    pub config: Arc<russh::server::Config>,
    /// The host key's public half, as clients pin it.
    pub host_key: cove_api::SshHostKey,
    slots: Arc<Semaphore>,
}

impl SshService {
    /// The service with host key `key`.
    pub fn new(key: PrivateKey) -> Self {
        let public = key.public_key().clone();
        let mut plain = public.clone();
        plain.set_comment("");
        let host_key = cove_api::SshHostKey {
            public_key: plain
                .to_openssh()
                .map(|t| t.trim().to_string())
                .unwrap_or_default(),
            fingerprint: super::keys::fingerprint(&public),
        };
        SshService {
            config: russh_config(key),
            host_key,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

/// Accepts connections on `listener` until the server closes.
pub async fn serve_tcp(state: AppState, listener: TcpListener) {
    let closing = state.closing().clone();
    loop {
        let (socket, peer) = tokio::select! {
            _ = closing.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "SSH accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move { serve_stream(state, socket, Some(peer)).await });
    }
}

/// Runs one SSH connection over `stream` (a TCP socket or a bridged WebSocket) to its end.
pub async fn serve_stream<S>(state: AppState, stream: S, peer: Option<SocketAddr>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(service) = state.ssh() else { return };
    let Ok(_slot) = service.slots.clone().acquire_owned().await else {
        return;
    };
    let authenticated = Arc::new(AtomicBool::new(false));
    let handler = Connection {
        state: state.clone(),
        peer,
        login: None,
        authenticated: authenticated.clone(),
    };
    let session = match russh::server::run_stream(service.config.clone(), stream, handler).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "SSH handshake failed");
            return;
        }
    };
    let handle = session.handle();
    let closing = state.closing().clone();
    let deadline = tokio::time::sleep(AUTH_DEADLINE);
    tokio::pin!(session, deadline);
    let mut deadline_passed = false;
    loop {
        tokio::select! {
            result = &mut session => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "SSH connection ended with an error");
                }
                return;
            }
            _ = &mut deadline, if !deadline_passed => {
                deadline_passed = true;
                if !authenticated.load(Ordering::Relaxed) {
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "authentication timed out".into(),
                            String::new(),
                        )
                        .await;
                    return;
                }
            }
            _ = closing.cancelled() => {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "the server is shutting down".into(),
                        String::new(),
                    )
                    .await;
                return;
            }
        }
    }
}

/// Who logged in, into which environment.
#[derive(Clone)]
pub(super) struct Login {
    pub user: UserRow,
    pub env: EnvRow,
    /// The container sessions run in (`<env>.<component>` as user name); `None`: the main one.
    pub component: Option<String>,
    pub grant: crate::live_auth::Grant,
}

/// One SSH connection.
pub(super) struct Connection {
    state: AppState,
    peer: Option<SocketAddr>,
    login: Option<Login>,
    authenticated: Arc<AtomicBool>,
}

/// The route whose rule an SSH login follows: the environment's terminal.
fn terminal_spec() -> Arc<RouteSpec> {
    static SPEC: OnceLock<Arc<RouteSpec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let spec = crate::routes::api_routes()
            .into_iter()
            .map(|r| r.spec)
            .find(|s| s.method == Method::GET && s.path == "/api/v1/environments/{env}/terminal")
            .expect("the terminal route is in the route table");
        Arc::new(spec)
    })
    .clone()
}

/// The environment an SSH user name names for `user`: an environment id, or a name of
/// which `user` owns exactly one environment.
async fn resolve_env(state: &AppState, user: &UserRow, name: &str) -> Option<EnvRow> {
    if name.is_empty() || name.len() > 200 {
        return None;
    }
    let found = state.store().find_envs(name).await.ok()?;
    if let Some(by_id) = found.iter().find(|e| e.id == name) {
        return Some(by_id.clone());
    }
    let mine: Vec<&EnvRow> = found.iter().filter(|e| e.owner_id == user.id).collect();
    match mine.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

impl Connection {
    /// The full check of a verified key: its user, enabled, may open `env_name`'s terminal.
    async fn check(&self, ssh_user: &str, key: &russh::keys::PublicKey) -> Option<Login> {
        let store = self.state.store();
        let fp = super::keys::fingerprint(key);
        let row = store.ssh_key_by_fingerprint(&fp).await.ok()??;
        let user = store.user_by_id(row.user_id).await.ok()??;
        if user.disabled {
            return None;
        }
        // `<env>.<component>` picks a container (environment ids and names have no dot)
        let (env_name, component) = match ssh_user.split_once('.') {
            Some((e, c)) => (e, Some(c.to_string())),
            None => (ssh_user, None),
        };
        let env = resolve_env(&self.state, &user, env_name).await?;
        if let Some(c) = &component {
            let plan: devfiles::EnvironmentPlan = serde_json::from_str(&env.plan_json).ok()?;
            plan.container(c)?;
        }
        let principal = Principal {
            scopes: auth::user_scopes(&user),
            user: user.clone(),
            token_id: None,
            project_id: None,
            method: AuthMethod::Password,
            session: None,
        };
        let params = vec![("env".to_string(), env.id.clone())];
        let spec = terminal_spec();
        crate::routes::authorize_user(&self.state, &spec, &principal, &params)
            .await
            .ok()?;
        let _ = store.touch_ssh_key(row.id, now_secs()).await;
        let grant = crate::live_auth::Grant::new(spec, &principal, params);
        Some(Login {
            user,
            env,
            component,
            grant,
        })
    }
}

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // only keys someone registered go on to the signature check
        let fp = super::keys::fingerprint(offer.public_key);
        Ok(match self.state.store().ssh_key_by_fingerprint(&fp).await {
            Ok(Some(_)) => Auth::Accept,
            _ => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.check(user, key.public_key).await {
            Some(login) => {
                tracing::info!(
                    username = %login.user.username,
                    env = %login.env.id,
                    peer = ?self.peer,
                    "SSH login"
                );
                crate::audit::ssh_login(
                    &self.state,
                    Some(&login.user.username),
                    &login.env.id,
                    self.peer,
                    true,
                )
                .await;
                self.login = Some(login);
                self.authenticated.store(true, Ordering::Relaxed);
                Ok(Auth::Accept)
            }
            None => {
                let shown: String = user.chars().take(64).collect();
                tracing::info!(ssh_user = %shown, peer = ?self.peer, "SSH login refused");
                crate::audit::ssh_login(&self.state, None, &shown, self.peer, false).await;
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Ok(()); // dropping `reply` refuses the channel
        };
        reply.accept().await;
        let state = self.state.clone();
        tokio::spawn(channel::run_session(state, login, channel));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(login) = self.login.clone() else {
            return Ok(());
        };
        let state = self.state.clone();
        let host = host_to_connect.to_string();
        tokio::spawn(channel::run_direct_tcpip(
            state,
            login,
            channel,
            reply,
            host,
            port_to_connect,
        ));
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if channel::valid_var_name(variable_name) {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}
