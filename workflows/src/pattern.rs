//! Trigger patterns: `Branches` and `FilesChanged` entries.
//!
//! CodeCatalyst documents these as regular expressions, not globs. Cove
//! matches them **in full**: the pattern is compiled as `^(?:PATTERN)$`, so
//! `feature-.*` matches `feature-x` but not `my-feature-x`, and `code/`
//! matches only the path `code/` (write `code/.*` for files below it).

use std::fmt;

use regex::Regex;
use serde::{Serialize, Serializer};

/// A compiled full-match regular expression, serialized as its source text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

/// Why a pattern did not compile: the regex crate's one-line reason and
/// where in the pattern (in characters from its start) the problem is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
    /// Character offset of the offending part, when the parser knows it.
    pub offset: Option<usize>,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, PatternError> {
        // Parse the bare pattern first so the error talks about what the
        // user wrote (and where), not about our anchoring.
        if let Err(e) = regex_syntax::Parser::new().parse(source) {
            let (reason, span) = match &e {
                regex_syntax::Error::Parse(e) => (e.kind().to_string(), Some(*e.span())),
                regex_syntax::Error::Translate(e) => (e.kind().to_string(), Some(*e.span())),
                other => (other.to_string(), None),
            };
            return Err(PatternError {
                pattern: source.to_string(),
                reason,
                offset: span.map(|s| source[..s.start.offset.min(source.len())].chars().count()),
            });
        }
        let regex = Regex::new(&format!("^(?:{source})$")).map_err(|e| PatternError {
            pattern: source.to_string(),
            reason: reason_of(&e),
            offset: None,
        })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// A pattern matching exactly `literal`.
    /// Fails only if the literal is too long to compile.
    pub fn literal(literal: &str) -> Result<Pattern, PatternError> {
        Pattern::new(&regex::escape(literal))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True if the whole of `text` matches.
    pub fn full_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// True when `patterns` is empty (meaning "all") or any pattern matches.
pub fn any_full_match(patterns: &[Pattern], text: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.full_match(text))
}

fn reason_of(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(msg) => msg
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(msg.as_str())
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled pattern is larger than the {limit}-byte limit")
        }
        other => other.to_string(),
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_full_match() {
        let p = Pattern::new("feature-.*").unwrap();
        assert!(p.full_match("feature-x"));
        assert!(!p.full_match("my-feature-x"));
        let main = Pattern::new("main").unwrap();
        assert!(main.full_match("main"));
        assert!(!main.full_match("main2"));
        assert!(!main.full_match("domain"));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        // Without the group, `^a|b$` would match "bb…a" prefixes.
        let p = Pattern::new("main|dev").unwrap();
        assert!(p.full_match("dev"));
        assert!(!p.full_match("devel"));
        assert!(!p.full_match("xmain"));
    }

    #[test]
    fn files_changed_directory_needs_wildcard() {
        let p = Pattern::new("code/").unwrap();
        assert!(p.full_match("code/"));
        assert!(!p.full_match("code/main.tf"));
        assert!(Pattern::new("code/.*").unwrap().full_match("code/main.tf"));
    }

    #[test]
    fn escaped_slash_is_accepted() {
        let p = Pattern::new(r"backend\/.*").unwrap();
        assert!(p.full_match("backend/x"));
    }

    #[test]
    fn glob_star_is_a_regex_error() {
        let e = Pattern::new("*").unwrap_err();
        assert_eq!(e.reason, "repetition operator missing expression");
        assert_eq!(e.offset, Some(0));
        let e = Pattern::new("main|(rel").unwrap_err();
        assert_eq!(e.reason, "unclosed group");
        assert_eq!(e.offset, Some(5));
        let e = Pattern::new("é+\\q").unwrap_err();
        assert_eq!(e.offset, Some(2), "{e:?}");
    }

    #[test]
    fn literal_escapes() {
        let p = Pattern::literal("release/1.0").unwrap();
        assert!(p.full_match("release/1.0"));
        assert!(!p.full_match("release/1x0"));
    }

    #[test]
    fn empty_list_means_all() {
        assert!(any_full_match(&[], "anything"));
    }
}
