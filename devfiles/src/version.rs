//! `schemaVersion` handling: the pattern check, suffix stripping and the set
//! of versions Cove understands.

use std::fmt;

use serde::Serialize;

/// A devfile schema version (major.minor.patch) with any `-pre`/`+build`
/// suffix stripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub const V2_0_0: Version = Version(2, 0, 0);
    pub const V2_1_0: Version = Version(2, 1, 0);
    pub const V2_2_0: Version = Version(2, 2, 0);
    /// The schema versions Cove validates against.
    pub const SUPPORTED: [Version; 6] = [
        Version(2, 0, 0),
        Version(2, 1, 0),
        Version(2, 2, 0),
        Version(2, 2, 1),
        Version(2, 2, 2),
        Version(2, 3, 0),
    ];

    /// Parse `2.2.0`, `2.2.0-latest`, `2.2.0+build.1`. Returns `None` when the
    /// text does not match the schema's semver pattern.
    pub fn parse(text: &str) -> Option<Version> {
        let (core, suffix) = match text.find(['-', '+']) {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        };
        if !valid_suffix(suffix) {
            return None;
        }
        let mut parts = core.split('.');
        let mut num = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version(num()?, num()?, num()?);
        if parts.next().is_some() {
            return None;
        }
        Some(v)
    }

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }
}

/// `(-[0-9a-z-]+(\.[0-9a-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?`
fn valid_suffix(s: &str) -> bool {
    let (pre, build) = match s.find('+') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let dotted = |t: &str, upper: bool| {
        t.split('.').all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_digit()
                        || b.is_ascii_lowercase()
                        || b == b'-'
                        || (upper && b.is_ascii_uppercase())
                })
        })
    };
    let pre_ok = pre.is_empty() || (pre.starts_with('-') && dotted(&pre[1..], false));
    pre_ok && build.is_none_or(|b| dotted(b, true))
}

/// True when `text` is a semver version as `metadata.version` requires.
pub fn is_semver(text: &str) -> bool {
    Version::parse(text).is_some() && !text.starts_with(['-', '+'])
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for Version {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Version::parse(s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_strips_suffixes() {
        assert_eq!(Version::parse("2.2.0"), Some(Version(2, 2, 0)));
        assert_eq!(Version::parse("2.2.0-latest"), Some(Version(2, 2, 0)));
        assert_eq!(Version::parse("2.1.0+build.7"), Some(Version(2, 1, 0)));
        assert_eq!(Version::parse("2.2"), None);
        assert_eq!(Version::parse("2.2.0-"), None);
        assert_eq!(Version::parse("x.x.x"), None);
        assert_eq!(Version::parse("2.2.0-UPPER"), None);
        assert!(!Version(2, 4, 0).is_supported());
        assert!(Version(2, 3, 0).is_supported());
    }
}
