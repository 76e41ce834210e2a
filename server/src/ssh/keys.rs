//! SSH public keys as users register them: one OpenSSH line, parsed with `ssh-key` (through
//! russh's re-export), bounded in size, fingerprinted like `ssh-keygen -lf` (`SHA256:…`).

use russh::keys::{HashAlg, PublicKey};

/// Longest public key line accepted (an RSA-16384 key is about 2.8 KiB).
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;
/// Longest key name.
pub const MAX_KEY_NAME_CHARS: usize = 100;

/// A parsed public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub algorithm: String,
    /// `SHA256:…` (unpadded base64), as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// `ALGORITHM BASE64` without the comment.
    pub openssh: String,
    /// The key's comment (may be empty).
    pub comment: String,
}

/// The fingerprint of `key` as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses one public key line (`.pub` file content; surrounding blank lines and `#` comment
/// lines are ignored). Errors say what is wrong, never echo more than a short prefix.
pub fn parse_public_key(text: &str) -> Result<ParsedKey, String> {
    if text.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(format!(
            "the public key is {} bytes; at most {MAX_PUBLIC_KEY_BYTES} are accepted",
            text.len()
        ));
    }
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "this is a private key: give the public key (the .pub file) and keep the private key secret"
                .into(),
        );
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match lines.as_slice() {
        [one] => *one,
        [] => return Err("no public key given: pass the content of a .pub file".into()),
        _ => {
            return Err(format!(
                "{} lines given: add one public key at a time",
                lines.len()
            ))
        }
    };
    let key = PublicKey::from_openssh(line).map_err(|e| {
        format!(
            "not an OpenSSH public key ({e}): expected a line like \"ssh-ed25519 AAAA… comment\""
        )
    })?;
    let mut plain = key.clone();
    plain.set_comment("");
    let openssh = plain
        .to_openssh()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    Ok(ParsedKey {
        algorithm: key.algorithm().as_str().to_string(),
        fingerprint: fingerprint(&key),
        openssh: openssh.trim().to_string(),
        comment: key.comment().as_str_lossy().to_string(),
    })
}

/// A key name: the given one, else the key's comment, else its algorithm; 1–100 printable
/// characters.
pub fn key_name(given: Option<&str>, parsed: &ParsedKey) -> Result<String, String> {
    let name = given
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| Some(parsed.comment.trim().to_string()).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| parsed.algorithm.clone());
    if name.chars().count() > MAX_KEY_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(format!(
            "key name must be 1-{MAX_KEY_NAME_CHARS} printable characters"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    // generated with ssh-keygen -t ed25519 -C me@host; ssh-keygen -lf prints the fingerprint
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL9YO9fUJryeaoXTuFgP0ZcgYkCOYm6u53TyccWZquJA me@host";

    #[test]
    fn parses_a_pub_file() {
        let k = parse_public_key(&format!("\n{ED25519}\n")).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(
            k.fingerprint,
            "SHA256:uR/rp7jhnYotcCUtwuF7E9I56U/zNAXEDdWdrySZ7s0"
        );
        assert_eq!(k.comment, "me@host");
        assert!(!k.openssh.contains("me@host"));
        assert_eq!(key_name(None, &k).unwrap(), "me@host");
        assert_eq!(key_name(Some(" laptop "), &k).unwrap(), "laptop");
    }

    #[test]
    fn refuses_bad_input() {
        for (text, says) in [
            ("", "no public key"),
            ("ssh-ed25519 AAAA", "not an OpenSSH public key"),
            ("hello world", "not an OpenSSH public key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "private key"),
        ] {
            let e = parse_public_key(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let two = format!("{ED25519}\n{ED25519}");
        assert!(parse_public_key(&two)
            .unwrap_err()
            .contains("one public key"));
        let huge = "a".repeat(MAX_PUBLIC_KEY_BYTES + 1);
        assert!(parse_public_key(&huge).unwrap_err().contains("at most"));
    }
}
