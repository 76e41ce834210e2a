//! What an administrator allows repositories' package configurations to use
//! (`[packages]` of the server configuration): named endpoint profiles (STS and
//! CodeArtifact endpoints) and the IAM roles a repository may name (ARN
//! patterns, globally and per repository `owner/name`).
//!
//! A repository owner only chooses among these: a configuration names a
//! profile (`endpoints`) and a role that matches an allowed pattern. Endpoint
//! URLs typed by an owner are refused, so nothing an owner types reaches the
//! agent's AWS credentials or a build's egress allow-list.
//!
//! ```toml
//! [packages]
//! role_arn_patterns = ["arn:aws:iam::123456789012:role/cove-*"]
//! [packages.endpoints.vpc]
//! sts = "https://vpce-0abc-sts.sts.us-east-1.vpce.amazonaws.com"
//! codeartifact = "https://vpce-0abc-api.codeartifact.us-east-1.vpce.amazonaws.com"
//! [packages.repositories."acme/app"]
//! role_arn_patterns = ["arn:aws:iam::210987654321:role/app-build"]
//! ```

use std::collections::BTreeMap;

use cove_api::PackageConfig;
use serde::Deserialize;

/// `[packages]` of the server configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesPolicy {
    /// Roles every repository may name (`*` matches any run of characters).
    #[serde(default)]
    pub role_arn_patterns: Vec<String>,
    /// Endpoint profiles by name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointProfile>,
    /// More roles for one repository, by `owner/name`.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepoPolicy>,
}

/// `[packages.endpoints.NAME]`: where the agent's broker calls STS and the
/// CodeArtifact API (VPC endpoints, or test doubles). Absent: AWS's regional
/// endpoint (or the agent's own setting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointProfile {
    pub sts: Option<String>,
    pub codeartifact: Option<String>,
}

/// `[packages.repositories."owner/name"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    #[serde(default)]
    pub role_arn_patterns: Vec<String>,
}

/// `*` matches any run of characters (also none); everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(p) => p,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

impl PackagesPolicy {
    /// Problems with the administrator's own settings (checked at start).
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let patterns = self.role_arn_patterns.iter().map(|p| ("", p)).chain(
            self.repositories
                .iter()
                .flat_map(|(r, p)| p.role_arn_patterns.iter().map(move |x| (r.as_str(), x))),
        );
        for (repo, p) in patterns {
            if !p.starts_with("arn:") {
                let at = if repo.is_empty() {
                    String::new()
                } else {
                    format!(" of repository {repo}")
                };
                problems.push(format!(
                    "packages: role_arn_patterns{at}: {p:?} must start with \"arn:\""
                ));
            }
        }
        for repo in self.repositories.keys() {
            if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
                problems.push(format!(
                    "packages.repositories: {repo:?} must be OWNER/NAME"
                ));
            }
        }
        for (name, profile) in &self.endpoints {
            for (what, url) in [
                ("sts", &profile.sts),
                ("codeartifact", &profile.codeartifact),
            ] {
                if let Some(u) = url {
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        problems.push(format!(
                            "packages.endpoints.{name}.{what}: {u:?} must be an http(s) URL"
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The role patterns that apply to repository `owner/name`.
    pub fn role_patterns<'a>(&'a self, repo: &str) -> impl Iterator<Item = &'a String> {
        self.role_arn_patterns.iter().chain(
            self.repositories
                .get(repo)
                .into_iter()
                .flat_map(|r| r.role_arn_patterns.iter()),
        )
    }

    /// What an owner's configuration of repository `repo` may not name, one
    /// message per field (empty: allowed). Field names are the JSON ones.
    pub fn refusals(&self, repo: &str, config: &PackageConfig) -> Vec<String> {
        let mut out = Vec::new();
        for (what, url) in [
            ("sts_endpoint", &config.sts_endpoint),
            ("codeartifact_endpoint", &config.codeartifact_endpoint),
        ] {
            if url.is_some() {
                out.push(format!(
                    "{what}: endpoints are chosen by the server's administrator, not per \
                     repository; name an endpoint profile with `endpoints` ({})",
                    self.profile_names()
                ));
            }
        }
        if let Some(name) = &config.endpoints {
            if !self.endpoints.contains_key(name) {
                out.push(format!(
                    "endpoints: {name:?} is not an endpoint profile of this server ({})",
                    self.profile_names()
                ));
            }
        }
        let patterns: Vec<&String> = self.role_patterns(repo).collect();
        if !patterns.iter().any(|p| glob_match(p, &config.role_arn)) {
            out.push(if patterns.is_empty() {
                format!(
                    "role_arn {:?}: the server's administrator allows no role for this \
                     repository (`role_arn_patterns` of `[packages]` in the server \
                     configuration)",
                    config.role_arn
                )
            } else {
                format!(
                    "role_arn {:?} matches none of the roles the server's administrator \
                     allows for this repository: {}",
                    config.role_arn,
                    patterns
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        out
    }

    /// The profile a configuration names (`None`: no profile).
    pub fn profile(&self, config: &PackageConfig) -> Option<&EndpointProfile> {
        config
            .endpoints
            .as_ref()
            .and_then(|name| self.endpoints.get(name))
    }

    fn profile_names(&self) -> String {
        if self.endpoints.is_empty() {
            "this server has no endpoint profiles: `[packages.endpoints.NAME]`".into()
        } else {
            format!(
                "profiles: {}",
                self.endpoints
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PackagesPolicy {
        toml::from_str(
            r#"
role_arn_patterns = ["arn:aws:iam::123456789012:role/cove-*"]
[endpoints.vpc]
sts = "http://sts.internal:5000"
codeartifact = "http://ca.internal:5001"
[repositories."acme/app"]
role_arn_patterns = ["arn:aws:iam::210987654321:role/app-build"]
"#,
        )
        .expect("valid")
    }

    fn config(role: &str) -> PackageConfig {
        PackageConfig {
            role_arn: role.into(),
            region: "us-east-1".into(),
            domain: "acme".into(),
            domain_owner: "123456789012".into(),
            repositories: vec![],
            mode: cove_api::PackageMode::TokenFree,
            endpoints: None,
            sts_endpoint: None,
            codeartifact_endpoint: None,
            max_session_secs: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("a*c", "abc"));
        assert!(glob_match("a*c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("abc", "abcd"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
        assert!(!glob_match("ab*ba", "aba"), "the ends must not overlap");
        assert!(glob_match(
            "arn:aws:iam::123456789012:role/cove-*",
            "arn:aws:iam::123456789012:role/cove-build"
        ));
        assert!(!glob_match(
            "arn:aws:iam::123456789012:role/cove-*",
            "arn:aws:iam::999999999999:role/cove-build"
        ));
    }

    #[test]
    fn roles_come_from_global_and_per_repository_patterns() {
        let p = policy();
        assert!(p.check().is_ok());
        let ok = config("arn:aws:iam::123456789012:role/cove-build");
        assert!(p.refusals("x/y", &ok).is_empty());
        let app = config("arn:aws:iam::210987654321:role/app-build");
        assert!(p.refusals("acme/app", &app).is_empty());
        let other = p.refusals("x/y", &app);
        assert_eq!(other.len(), 1);
        assert!(other[0].starts_with("role_arn"), "{other:?}");
        let none = PackagesPolicy::default().refusals("x/y", &ok);
        assert!(none[0].contains("allows no role"), "{none:?}");
    }

    #[test]
    fn raw_endpoints_and_unknown_profiles_are_refused_by_field() {
        let p = policy();
        let mut c = config("arn:aws:iam::123456789012:role/cove-build");
        c.sts_endpoint = Some("http://evil.example".into());
        c.codeartifact_endpoint = Some("http://evil.example".into());
        c.endpoints = Some("nope".into());
        let r = p.refusals("x/y", &c);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].starts_with("sts_endpoint") && r[0].contains("profiles: vpc"));
        assert!(r[1].starts_with("codeartifact_endpoint"));
        assert!(r[2].starts_with("endpoints: \"nope\""));
        c.sts_endpoint = None;
        c.codeartifact_endpoint = None;
        c.endpoints = Some("vpc".into());
        assert!(p.refusals("x/y", &c).is_empty());
        assert_eq!(
            p.profile(&c).and_then(|e| e.sts.as_deref()),
            Some("http://sts.internal:5000")
        );
    }

    #[test]
    fn bad_administrator_settings_are_named() {
        let p: PackagesPolicy = toml::from_str(
            "role_arn_patterns = [\"cove-*\"]\n[endpoints.x]\nsts = \"sts.internal\"\n[repositories.bad]\n",
        )
        .expect("valid toml");
        let e = p.check().unwrap_err();
        for needle in ["\"cove-*\"", "packages.endpoints.x.sts", "\"bad\""] {
            assert!(e.contains(needle), "{needle} not in {e}");
        }
        assert!(toml::from_str::<PackagesPolicy>("[endpoints.x]\nsst = \"x\"\n").is_err());
    }
}
