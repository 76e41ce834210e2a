//! SSH public keys registered with Cove (`/api/v1/user/ssh-keys`, `/api/v1/ssh-keys`).

use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/user/ssh-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyRequest {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`), as in a `.pub` file.
    pub public_key: String,
    /// A name for the key; the key's comment when absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// A registered SSH public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKeyInfo {
    pub id: i64,
    /// The user the key belongs to.
    pub username: String,
    pub name: String,
    /// Algorithm, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The key in OpenSSH form (algorithm and base64, no comment).
    pub public_key: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last SSH login with this key.
    pub last_used_at: Option<i64>,
}

/// The public host key of the server's SSH endpoint (`GET /api/v1/ssh/host-key`), for
/// clients to pin (`cove config-ssh` writes it to a known-hosts file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshHostKey {
    /// OpenSSH form: `ssh-ed25519 AAAA…`.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}
