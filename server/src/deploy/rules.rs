//! The pure rules of deployment environments: names, the shape of protection rules and
//! account connections, who may deploy from which branch, which role a workflow may name,
//! and the STS session an action gets. No IO.

use cove_api::{DeployConnectionRequest, DeployProtection, Role};

use crate::runs::package_policy::{glob_match, PackagesPolicy};

/// Most patterns, users or roles in one list.
pub const MAX_LIST: usize = 50;
/// Most approvals an environment may require.
pub const MAX_APPROVALS: u32 = 20;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1000;
/// Longest variable value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Environment and connection names: letters, digits, `.`, `_`, `-`, at most 100.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every problem with a protection rule, as one message.
pub fn check_protection(p: &DeployProtection) -> Result<(), String> {
    let mut problems = Vec::new();
    for (what, list) in [
        ("deployers", &p.deployers),
        ("approvers", &p.approvers),
        ("branches", &p.branches),
    ] {
        if list.len() > MAX_LIST {
            problems.push(format!("{what}: at most {MAX_LIST}"));
        }
        for item in list {
            if item.is_empty() || item.len() > 200 || item.chars().any(char::is_control) {
                problems.push(format!(
                    "{what}: {item:?} must be 1..=200 printable characters"
                ));
            }
        }
    }
    if p.required_approvals > MAX_APPROVALS {
        problems.push(format!(
            "required_approvals {} must be at most {MAX_APPROVALS}",
            p.required_approvals
        ));
    }
    if !p.approvers.is_empty() && p.required_approvals as usize > p.approvers.len() {
        problems.push(format!(
            "required_approvals {} is more than the {} approver(s) named",
            p.required_approvals,
            p.approvers.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// An AWS region name (`us-east-1`).
fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The account of an IAM role ARN (`arn:<partition>:iam::<account>:role/<path/name>`).
pub fn role_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(":iam::")?;
    let (account, role) = rest.split_once(":role/")?;
    let ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && role.len() <= 512
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    ok.then_some(account)
}

/// Every problem with an administrator's connection, as one message.
pub fn check_connection(
    policy: &PackagesPolicy,
    name: &str,
    c: &DeployConnectionRequest,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if !valid_name(name) {
        problems.push(format!(
            "connection {name:?}: letters, digits, '.', '_', '-', at most 100"
        ));
    }
    if c.account_id.len() != 12 || !c.account_id.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "account_id {:?} must be a 12-digit AWS account id",
            c.account_id
        ));
    }
    if !valid_region(&c.region) {
        problems.push(format!(
            "region {:?} is not an AWS region name (e.g. us-east-1)",
            c.region
        ));
    }
    if c.roles.is_empty() {
        problems.push("roles: name at least one IAM role ARN".into());
    }
    if c.roles.len() > MAX_LIST {
        problems.push(format!("roles: at most {MAX_LIST}"));
    }
    for r in &c.roles {
        match role_account(r) {
            None => problems.push(format!(
                "role {r:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            )),
            Some(a) if a != c.account_id => problems.push(format!(
                "role {r:?} is in account {a}, not in the connection's account {}",
                c.account_id
            )),
            Some(_) => {}
        }
    }
    if let Some(p) = &c.endpoints {
        if !policy.endpoints.contains_key(p) {
            problems.push(format!(
                "endpoints {p:?} is not an endpoint profile of the server's configuration \
                 ([packages.endpoints.NAME])"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether `branch` may deploy under `p` (no patterns: every branch).
pub fn branch_allowed(p: &DeployProtection, branch: &str) -> bool {
    p.branches.is_empty() || p.branches.iter().any(|pat| glob_match(pat, branch))
}

/// Whether a person with `role` on the repository (`None`: none) may deploy under `p`.
/// Administrators always may.
pub fn may_deploy(p: &DeployProtection, user: &str, role: Option<Role>, is_admin: bool) -> bool {
    if is_admin || p.deployers.iter().any(|d| d == user) {
        return true;
    }
    let least = match p.deployer_role {
        Some(r) => r,
        None if p.deployers.is_empty() => Role::Writer,
        None => return false,
    };
    role.is_some_and(|r| r >= least)
}

/// Why `actor` may not deploy from `branch` into environment `env`, or `None` when allowed.
/// `actor`: `(name, role, admin)`; `None` when no person started the run.
pub fn refusal(
    env: &str,
    p: &DeployProtection,
    branch: &str,
    actor: Option<(&str, Option<Role>, bool)>,
) -> Option<String> {
    if !branch_allowed(p, branch) {
        return Some(format!(
            "branch `{branch}` may not deploy to environment `{env}` (allowed: {})",
            p.branches.join(", ")
        ));
    }
    match actor {
        None => Some(format!(
            "no person started this run, and deploying to environment `{env}` needs one who may"
        )),
        Some((user, role, admin)) if !may_deploy(p, user, role, admin) => {
            let who = match (p.deployer_role, p.deployers.is_empty()) {
                (Some(r), true) => format!("{}s and above", r.as_str()),
                (Some(r), false) => {
                    format!("{}s and above, and {}", r.as_str(), p.deployers.join(", "))
                }
                (None, true) => "writers and above".to_string(),
                (None, false) => p.deployers.join(", "),
            };
            Some(format!(
                "{user} may not deploy to environment `{env}` (who may: {who})"
            ))
        }
        Some(_) => None,
    }
}

/// The role session name of a deploy action: `cove-<repo>-<run>-<action>`, characters STS
/// does not take replaced by `_`, at most 64 characters.
pub fn session_name(repo: &str, run_number: i64, action: &str) -> String {
    format!("cove-{repo}-{run_number}-{action}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The session's duration for an action with `timeout_secs`: the timeout plus five minutes to
/// finish, within STS's 900..=43200 s.
pub fn session_secs(timeout_secs: u64) -> u64 {
    timeout_secs.saturating_add(300).clamp(900, 43_200)
}

/// A session tag value: at most 256 characters of what STS accepts.
pub fn tag_value(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(account: &str, roles: &[&str]) -> DeployConnectionRequest {
        DeployConnectionRequest {
            account_id: account.into(),
            region: "us-east-1".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            endpoints: None,
        }
    }

    #[test]
    fn connections_name_every_problem() {
        let policy = PackagesPolicy::default();
        assert_eq!(
            check_connection(
                &policy,
                "prod",
                &conn("123456789012", &["arn:aws:iam::123456789012:role/deploy"])
            ),
            Ok(())
        );
        let mut bad = conn(
            "12345",
            &[
                "arn:aws:iam::210987654321:role/x",
                "deploy",
                "arn:aws:iam::12345:role/",
            ],
        );
        bad.region = "evil.example".into();
        bad.endpoints = Some("nowhere".into());
        let msg = check_connection(&policy, "a b", &bad).unwrap_err();
        for needle in [
            "connection \"a b\"",
            "account_id \"12345\"",
            "region",
            "\"deploy\" is not an IAM role ARN",
            "not in the connection's account",
            "endpoints \"nowhere\"",
        ] {
            assert!(msg.contains(needle), "{needle} not in {msg}");
        }
    }

    #[test]
    fn who_may_deploy_from_where() {
        let open = DeployProtection::default();
        assert!(may_deploy(&open, "w", Some(Role::Writer), false));
        assert!(!may_deploy(&open, "r", Some(Role::Reader), false));
        assert!(may_deploy(&open, "admin", None, true));
        let named = DeployProtection {
            deployers: vec!["carol".into()],
            ..Default::default()
        };
        assert!(may_deploy(&named, "carol", Some(Role::Reader), false));
        assert!(!may_deploy(&named, "bob", Some(Role::Owner), false));
        let owners = DeployProtection {
            deployer_role: Some(Role::Owner),
            branches: vec!["main".into(), "release/*".into()],
            ..Default::default()
        };
        assert!(!may_deploy(&owners, "w", Some(Role::Writer), false));
        assert!(may_deploy(&owners, "o", Some(Role::Owner), false));
        assert!(branch_allowed(&owners, "release/1.2"));
        assert!(!branch_allowed(&owners, "feature"));
        let why = refusal(
            "prod",
            &owners,
            "feature",
            Some(("o", Some(Role::Owner), false)),
        )
        .expect("refused");
        assert!(why.contains("`feature`") && why.contains("`prod`"), "{why}");
        let why = refusal(
            "prod",
            &owners,
            "main",
            Some(("w", Some(Role::Writer), false)),
        )
        .expect("refused");
        assert!(
            why.contains("w may not deploy") && why.contains("owners"),
            "{why}"
        );
        assert!(refusal("prod", &owners, "main", None).is_some());
        assert_eq!(
            refusal(
                "prod",
                &owners,
                "main",
                Some(("o", Some(Role::Owner), false))
            ),
            None
        );
    }

    #[test]
    fn protections_are_bounded() {
        let p = DeployProtection {
            required_approvals: 3,
            approvers: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert!(check_protection(&p)
            .unwrap_err()
            .contains("more than the 2"));
        let p = DeployProtection {
            branches: vec![String::new()],
            required_approvals: 99,
            ..Default::default()
        };
        let msg = check_protection(&p).unwrap_err();
        assert!(
            msg.contains("branches") && msg.contains("at most 20"),
            "{msg}"
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let name = session_name("acme/app", 12, "Deploy Prod");
        assert_eq!(name, "cove-acme_app-12-Deploy_Prod");
        let long = session_name(&"r".repeat(100), 1, "a");
        assert_eq!(long.len(), 64);
        assert_eq!(session_secs(60), 900);
        assert_eq!(session_secs(3600), 3900);
        assert_eq!(session_secs(100_000), 43_200);
        assert_eq!(tag_value("feat/x#1"), "feat/x_1");
    }
}
