//! Repository secrets, sealed at rest with AES-256-GCM.
//!
//! The key is 32 random bytes in `<data dir>/secrets.key`, created with mode 0600 on first
//! start. Each value is sealed with a fresh random 96-bit nonce and the associated data
//! `"<repo id>/<name>"`, so a sealed value copied to another repository or name does not
//! open. Stored form: base64(nonce ‖ ciphertext ‖ tag). Values never appear in errors or logs.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

/// The file holding the key, under the data directory.
pub const KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret key file {0} is not 32 bytes")]
    BadKey(String),
    #[error("sealing a secret failed")]
    Seal,
    #[error("a stored secret could not be opened (wrong key or corrupt)")]
    Open,
}

/// The sealing key.
pub struct SecretKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Loads the key from the data directory, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, SecretError> {
        let path = data_dir.join(KEY_FILE);
        let display = path.display().to_string();
        let err = |source| SecretError::KeyFile {
            path: display.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let mut fresh = [0u8; 32];
                rng.fill(&mut fresh).map_err(|_| SecretError::Seal)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(&path) {
                    Ok(mut file) => {
                        file.write_all(&fresh).map_err(err)?;
                        file.sync_all().map_err(err)?;
                        fresh.to_vec()
                    }
                    // Another process won the race: use its key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read(&path).map_err(err)?
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        let unbound =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SecretError::BadKey(display))?;
        Ok(SecretKey {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    fn aad(repo_id: i64, name: &str) -> Vec<u8> {
        format!("{repo_id}/{name}").into_bytes()
    }

    pub fn seal(&self, repo_id: i64, name: &str, value: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Seal)?;
        let mut buf = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(repo_id, name)),
                &mut buf,
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, repo_id: i64, name: &str, sealed: &str) -> Result<String, SecretError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(repo_id, name)), &mut buf)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Open)
    }
}

/// Secret names: like environment variable names (`CATALYST_SECRETS_<name>` must be one).
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether runs of `branch` get every secret of the repository, or only those marked for all
/// branches (`all_branches`): the default branch and every branch whose rule requires pull
/// requests (`forge::rules::is_reviewed`: it changes only through reviewed merges and only
/// owners create it) get them all.
pub fn branch_gets_every_secret(
    default_branch: &str,
    branch: &str,
    rules: &[cove_api::BranchRule],
) -> bool {
    branch == default_branch || crate::forge::rules::is_reviewed(rules, branch)
}

/// Why a run on `branch` does not get secret `name` (it is not marked for all branches). No
/// value in it.
pub fn withheld_reason(name: &str, default_branch: &str, branch: &str) -> String {
    format!(
        "secret `{name}` is given only to runs of the default branch `{default_branch}` and of \
         branches whose rule requires pull requests, and this run is on branch `{branch}`; to give it to every branch, set it again with \
         `cove secret set --all-branches`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SecretKey::load_or_create(dir.path()).expect("key");
        let sealed = key.seal(1, "token", "hunter2-value").expect("seal");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            key.open(1, "token", &sealed).expect("open"),
            "hunter2-value"
        );
        assert!(key.open(2, "token", &sealed).is_err(), "bound to the repo");
        assert!(key.open(1, "other", &sealed).is_err(), "bound to the name");
        // Same key after a reload; file mode 0600.
        let again = SecretKey::load_or_create(dir.path()).expect("reload");
        assert_eq!(
            again.open(1, "token", &sealed).expect("open"),
            "hunter2-value"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(valid_secret_name("api_token"));
        assert!(!valid_secret_name("a b"));
        assert!(!valid_secret_name("1x"));
    }

    #[test]
    fn only_the_default_branch_and_protected_branches_get_every_secret() {
        assert!(branch_gets_every_secret("main", "main", &[]));
        assert!(!branch_gets_every_secret("main", "feature", &[]));
        assert!(!branch_gets_every_secret("main", "Main", &[]));
        let rules = vec![cove_api::BranchRule {
            pattern: "release/*".into(),
            require_pull_request: true,
            required_approvals: 0,
            required_checks: Vec::new(),
            merge_roles: Vec::new(),
            merge_users: Vec::new(),
            allow_force_push: false,
            allow_deletion: false,
            require_up_to_date: false,
        }];
        assert!(branch_gets_every_secret("main", "release/1.0", &rules));
        assert!(!branch_gets_every_secret("main", "feature", &rules));
        // A rule without pull requests (say, only "no force push") does not make a branch
        // trusted with every secret.
        let mut open = rules.clone();
        open[0].require_pull_request = false;
        assert!(!branch_gets_every_secret("main", "release/1.0", &open));
        let reason = withheld_reason("api_token", "main", "feature");
        for needle in ["`api_token`", "`main`", "`feature`", "--all-branches"] {
            assert!(reason.contains(needle), "{needle} not in {reason}");
        }
    }
}
