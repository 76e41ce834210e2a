//! Password logins: argon2 hashing with bounded concurrency, throttling of failed checks per
//! user name and per client address, and equal cost for unknown users.
//!
//! [`Logins::check_password`] is the one place a password login is decided (HTTP Basic on the
//! API and git routes, `POST /api/v1/session`, `cove user passwd`); [`login_outcome`] is
//! where its result is reported, with user name, client address and result.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use tokio::sync::{OnceCell, Semaphore};

use super::throttle::{Allowance, Key, Throttle};
use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::store::{Store, UserRow};

/// Keys held by the back-off table at most (users and addresses together).
pub const THROTTLE_CAPACITY: usize = 50_000;
/// How long a password check waits for a hashing slot before giving up with 503.
pub const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 hashes any length; this bounds the work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing a password failed: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a new password's length: a clear 400 otherwise.
pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::BadRequest(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The result of a password login, as reported to [`login_outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    /// Wrong password, unknown user, no password set, or a disabled account.
    Failure,
    /// Refused before checking: too many recent failures.
    Throttled,
}

impl LoginResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Success => "success",
            LoginResult::Failure => "failure",
            LoginResult::Throttled => "throttled",
        }
    }
}

/// The first bytes of a user name as typed, for keys and logs (a Basic header can carry a
/// user name of any length; real names have at most 100 bytes).
fn bounded(username: &str) -> &str {
    let mut end = username.len().min(MAX_USERNAME_KEY_BYTES);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    &username[..end]
}

/// Longest prefix of a typed user name kept in the throttle table and the log.
const MAX_USERNAME_KEY_BYTES: usize = 128;

/// Where every password login's outcome is reported (logs now; the audit log hooks in here).
/// Never given the password. The user name is as typed (bounded, and logged escaped).
pub fn login_outcome(username: &str, client: IpAddr, result: LoginResult) {
    let username = bounded(username);
    match result {
        LoginResult::Success => {
            tracing::info!(username = ?username, client = %client, result = result.as_str(), "password login")
        }
        _ => {
            tracing::warn!(username = ?username, client = %client, result = result.as_str(), "password login")
        }
    }
}

/// Password checking state shared by all requests: the back-off table, the hashing slots and
/// the hash unknown users are checked against.
pub struct Logins {
    throttle: Mutex<Throttle>,
    allowance: Allowance,
    hashing: Semaphore,
    /// A hash of a random password with the same parameters as real ones.
    dummy: OnceCell<String>,
    settings: AuthSettings,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The throttle key of a client address: IPv4 as is, IPv6 by its /64 (one host's range).
pub fn addr_key(client: IpAddr) -> Key {
    match client {
        IpAddr::V4(_) => Key::Addr(client),
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            Key::Addr(IpAddr::from(seg))
        }
    }
}

/// Releases a throttle reservation whose request went away before its verdict.
struct Reservation<'a> {
    logins: &'a Logins,
    keys: Vec<Key>,
    done: bool,
}

impl Reservation<'_> {
    fn finish(mut self, ok: bool) {
        self.done = true;
        let mut t = self.logins.table();
        t.finish(&self.keys, ok, self.logins.allowance, Instant::now());
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.logins.table().abandon(&self.keys);
        }
    }
}

impl Logins {
    pub fn new(settings: AuthSettings) -> Logins {
        Logins {
            throttle: Mutex::new(Throttle::new(THROTTLE_CAPACITY)),
            allowance: Allowance {
                per_user: settings.free_failures_per_user,
                per_addr: settings.free_failures_per_address,
            },
            hashing: Semaphore::new(settings.max_concurrent_hashes),
            dummy: OnceCell::new(),
            settings,
        }
    }

    /// The resolved `[auth]` settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Throttle> {
        match self.throttle.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs `work` (an argon2 computation) on the blocking pool, at most
    /// `max_concurrent_hashes` at once; 503 after waiting [`HASH_QUEUE_TIMEOUT`] for a slot.
    pub async fn hash_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = tokio::time::timeout(HASH_QUEUE_TIMEOUT, self.hashing.acquire())
            .await
            .map_err(|_| {
                ApiError::Unavailable("too many password checks at once; try again".into())
            })?
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(ApiError::internal)
    }

    /// Hashes a new password (bounded like checks).
    pub async fn hash_new_password(&self, password: String) -> Result<String, ApiError> {
        self.hash_slot(move || hash_password(&password)).await?
    }

    async fn dummy_hash(&self) -> Result<String, ApiError> {
        self.dummy
            .get_or_try_init(|| async {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let random = hex::encode(bytes);
                self.hash_slot(move || hash_password(&random)).await?
            })
            .await
            .cloned()
    }

    /// Checks `username`'s `password` for a request from `client`: the user when right;
    /// 401 when wrong, unknown, without a password or disabled (all at the same argon2 cost);
    /// 429 with `Retry-After` when the user name or the address failed too often lately.
    pub async fn check_password(
        &self,
        store: &Store,
        client: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<UserRow, ApiError> {
        let keys = vec![Key::User(username.to_ascii_lowercase()), addr_key(client)];
        let begun = self.table().begin(&keys, self.allowance, Instant::now());
        if let Err(wait) = begun {
            login_outcome(username, client, LoginResult::Throttled);
            return Err(ApiError::TooManyAttempts {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        let reservation = Reservation {
            logins: self,
            keys,
            done: false,
        };
        let plausible = password.len() <= MAX_PASSWORD_BYTES
            && crate::names::validate_name("username", username).is_ok();
        let user = if plausible {
            store.user_by_name(username).await?
        } else {
            None
        };
        let usable = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .filter(|_| password.len() <= MAX_PASSWORD_BYTES);
        // Unknown users, users without a password and overlong passwords cost the same hash.
        let (phc, real) = match usable {
            Some(phc) => (phc, true),
            None => (self.dummy_hash().await?, false),
        };
        let candidate = if password.len() > MAX_PASSWORD_BYTES {
            String::new()
        } else {
            password.to_string()
        };
        let verified = self
            .hash_slot(move || verify_password(&candidate, &phc))
            .await?;
        let user = user.filter(|u| verified && real && !u.disabled);
        reservation.finish(user.is_some());
        match user {
            Some(user) => {
                login_outcome(username, client, LoginResult::Success);
                Ok(user)
            }
            None => {
                login_outcome(username, client, LoginResult::Failure);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_hashes_at_once_than_the_slots() {
        let logins = Arc::new(Logins::new(AuthSettings {
            max_concurrent_hashes: 2,
            ..AuthSettings::default()
        }));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (logins, running, most) = (logins.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                logins
                    .hash_slot(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("a slot within the wait");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} hashes ran at once");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("v6");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
    }
}
