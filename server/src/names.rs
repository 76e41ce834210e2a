//! Validation of user, owner and repository names.
//!
//! Invariant: a name that passes [`validate_name`] is a single, ordinary path component, so
//! `data_dir/repos/<owner>/<name>.git` can never leave the data directory.

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {MAX_NAME_LEN} characters")]
    TooLong { what: &'static str },
    #[error("{what} may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter { what: &'static str },
    #[error("{what} must not start with '.' or '-'")]
    BadStart { what: &'static str },
    #[error("{what} must not contain '..'")]
    DotDot { what: &'static str },
    #[error("{what} must not end with '.git' or '.lock'")]
    ReservedSuffix { what: &'static str },
}

/// Checks a user, owner or repository name: `[A-Za-z0-9._-]{1,100}`, no leading `.` or `-`,
/// no `..`, no `.git`/`.lock` suffix.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(NameError::BadCharacter { what });
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(NameError::BadStart { what });
    }
    if name.contains("..") {
        return Err(NameError::DotDot { what });
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".git") || lower.ends_with(".lock") {
        return Err(NameError::ReservedSuffix { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "cove", "my-repo_1.2", "A.b-C_d"] {
            assert_eq!(validate_name("name", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_dangerous_names() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            ".git",
            "a..b",
            "a/b",
            "a\\b",
            "/etc",
            "a\nb",
            "é",
            "-x",
            "x.git",
            "x.lock",
            "%2e%2e",
            " a",
            long.as_str(),
        ] {
            assert!(validate_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
