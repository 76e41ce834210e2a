//! Branch rules (branch protection), the pure part: which rule applies to a branch, whether a
//! pushed ref update is allowed, and what a pull request still needs before its merge.
//!
//! Decisions:
//! - Rules are ordered; the first rule whose pattern matches the branch applies (none: the
//!   branch is unprotected).
//! - Rules apply to everyone, administrators and owners included (an owner who must bypass a
//!   rule changes the rule; that change is in the audit log).
//! - Creating a branch that matches a rule is allowed (there is nothing to protect yet, and a
//!   pull request needs its destination to exist); moving it then follows the rule. Except
//!   under a rule with `require_pull_request`: such a branch is created by the repository's
//!   owners (or administrators) only, since its runs get every secret — a writer could
//!   otherwise push a new `release/x` with a workflow of their own and read them.
//! - `require_pull_request` refuses every push that moves an existing branch; the server's own
//!   merge of a pull request updates the ref with git2, not through receive-pack, and checks
//!   with `via_pull_request = true`.
//! - Force pushes (non-fast-forward updates) and deletions are refused unless the rule allows
//!   them.
//! - Only branches (`refs/heads/…`) are protected; tags and other refs are not.

use cove_api::{BranchRule, Role, RunState, ZERO_SHA};

/// Most rules per repository.
pub const MAX_RULES: usize = 100;
/// Longest pattern.
pub const MAX_PATTERN_LEN: usize = 255;
/// Most required checks per rule, and the longest name of one.
pub const MAX_CHECKS: usize = 50;
pub const MAX_CHECK_NAME_LEN: usize = 100;
/// Most users allowed to merge per rule.
pub const MAX_MERGE_USERS: usize = 100;
/// Most approvals a rule may require.
pub const MAX_APPROVALS: u32 = 20;

/// Whether `branch` (without `refs/heads/`) matches `pattern`: `*` matches any characters but
/// `/`, `**` any characters including `/`, `?` one character but `/`; the rest is literal.
pub fn pattern_matches(pattern: &str, branch: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Tok {
        Lit(char),
        One,
        Segment,
        Any,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                Tok::Any
            }
            '*' => Tok::Segment,
            '?' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = branch.chars().collect();
    // reach[j]: the first i tokens can match text[..j].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for tok in toks {
        let mut next = vec![false; text.len() + 1];
        match tok {
            Tok::Lit(c) => {
                for j in 0..text.len() {
                    next[j + 1] = reach[j] && text[j] == c;
                }
            }
            Tok::One => {
                for j in 0..text.len() {
                    next[j + 1] = reach[j] && text[j] != '/';
                }
            }
            Tok::Segment | Tok::Any => {
                let crosses = matches!(tok, Tok::Any);
                next[0] = reach[0];
                for j in 0..text.len() {
                    next[j + 1] = reach[j + 1] || (next[j] && (crosses || text[j] != '/'));
                }
            }
        }
        reach = next;
    }
    reach[text.len()]
}

/// The rule that applies to `branch`: the first whose pattern matches.
pub fn rule_for<'a>(rules: &'a [BranchRule], branch: &str) -> Option<&'a BranchRule> {
    rules
        .iter()
        .find(|rule| pattern_matches(&rule.pattern, branch))
}

/// Whether `branch` is protected (a rule matches it).
pub fn is_protected(rules: &[BranchRule], branch: &str) -> bool {
    rule_for(rules, branch).is_some()
}

/// Whether `branch` only changes through reviewed pull requests (its rule requires them; such
/// branches are created by owners only): its runs get every secret like the default branch's.
pub fn is_reviewed(rules: &[BranchRule], branch: &str) -> bool {
    rule_for(rules, branch).is_some_and(|rule| rule.require_pull_request)
}

/// Checks a whole rule list as given to `PUT …/branch-rules`; the error says what to change.
pub fn validate(rules: &[BranchRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} branch rules per repository"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        let p = &rule.pattern;
        if p.is_empty() || p.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "{at}.pattern must be 1 to {MAX_PATTERN_LEN} characters"
            ));
        }
        if p.starts_with('/')
            || p.ends_with('/')
            || p.starts_with("refs/")
            || p.contains("//")
            || p.chars().any(|c| {
                c.is_control() || c.is_whitespace() || matches!(c, '~' | '^' | ':' | '\\' | '[')
            })
        {
            return Err(format!(
                "{at}.pattern {p:?} is not a branch name pattern: give the name without \
                 refs/heads/, e.g. `main` or `release/*` (no spaces, `~^:\\[`, leading or \
                 trailing `/`)"
            ));
        }
        if rules[..i].iter().any(|r| &r.pattern == p) {
            return Err(format!("{at}.pattern {p:?} appears twice"));
        }
        if rule.required_approvals > MAX_APPROVALS {
            return Err(format!(
                "{at}.required_approvals must be at most {MAX_APPROVALS}"
            ));
        }
        if rule.required_checks.len() > MAX_CHECKS {
            return Err(format!("{at}.required_checks: at most {MAX_CHECKS}"));
        }
        for check in &rule.required_checks {
            if check.trim().is_empty()
                || check.len() > MAX_CHECK_NAME_LEN
                || check.chars().any(char::is_control)
            {
                return Err(format!(
                    "{at}.required_checks: {check:?} is not a workflow name (1 to \
                     {MAX_CHECK_NAME_LEN} characters)"
                ));
            }
        }
        if rule.merge_users.len() > MAX_MERGE_USERS {
            return Err(format!("{at}.merge_users: at most {MAX_MERGE_USERS}"));
        }
        for user in &rule.merge_users {
            if crate::names::validate_name("user name", user).is_err() {
                return Err(format!("{at}.merge_users: {user:?} is not a user name"));
            }
        }
    }
    Ok(())
}

/// What a pushed ref update needs to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushCheck {
    /// Accepted (no rule applies, or the rule allows it).
    Allow,
    /// Refused, with the reason git prints.
    Refuse(String),
    /// Accepted only if the update is a fast-forward (old is an ancestor of new); the reason
    /// git prints if it is not.
    FastForwardOnly(String),
}

/// The check that applies to the update of `ref_name` from `old` to `new` (full hex ids,
/// [`ZERO_SHA`] for none). `via_pull_request`: the update is the merge of a pull request.
/// `pusher_is_owner`: the pusher is an owner of the repository or an administrator (only they
/// create branches under a rule that requires pull requests).
pub fn check_update(
    rules: &[BranchRule],
    ref_name: &str,
    old: &str,
    new: &str,
    via_pull_request: bool,
    pusher_is_owner: bool,
) -> PushCheck {
    let Some(branch) = ref_name.strip_prefix("refs/heads/") else {
        return PushCheck::Allow;
    };
    let Some(rule) = rule_for(rules, branch) else {
        return PushCheck::Allow;
    };
    let named = format!("`{branch}`");
    if new == ZERO_SHA {
        return if rule.allow_deletion {
            PushCheck::Allow
        } else {
            PushCheck::Refuse(format!("protected branch: {named} may not be deleted"))
        };
    }
    if old == ZERO_SHA {
        return if rule.require_pull_request && !via_pull_request && !pusher_is_owner {
            PushCheck::Refuse(format!(
                "protected branch: only the repository's owners may create {named}"
            ))
        } else {
            PushCheck::Allow
        };
    }
    if rule.require_pull_request && !via_pull_request {
        return PushCheck::Refuse(format!(
            "protected branch: changes to {named} must go through a pull request"
        ));
    }
    if rule.allow_force_push {
        PushCheck::Allow
    } else {
        PushCheck::FastForwardOnly(format!(
            "protected branch: force push to {named} is not allowed"
        ))
    }
}

/// One review approval of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub user: String,
    /// Given on an earlier revision that a newer push made stale: it does not count.
    pub stale: bool,
}

/// Who asks for the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merger {
    pub username: String,
    /// The merger's role on the repository.
    pub role: Role,
}

/// Why a pull request into a branch governed by `rule` may not be merged yet (empty: the rule
/// is satisfied). `approvals`: the pull request's approvals (the same user counts once, stale
/// ones not at all); `checks`: the latest run of each workflow on the pull request's head, by
/// workflow name.
pub fn merge_requirements(
    rule: Option<&BranchRule>,
    approvals: &[Approval],
    checks: &[(String, RunState)],
    merger: &Merger,
) -> Vec<String> {
    let Some(rule) = rule else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    let mut approvers: Vec<&str> = approvals
        .iter()
        .filter(|a| !a.stale)
        .map(|a| a.user.as_str())
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    let have = approvers.len();
    let need = rule.required_approvals as usize;
    if have < need {
        reasons.push(format!(
            "{need} approval{} required by rule `{}`, {have} given",
            if need == 1 { "" } else { "s" },
            rule.pattern
        ));
    }
    for name in &rule.required_checks {
        match checks.iter().find(|(n, _)| n == name) {
            None => reasons.push(format!("required check `{name}` has not run")),
            Some((_, RunState::Succeeded)) => {}
            Some((_, state)) => {
                reasons.push(format!("required check `{name}` is {}", state.as_str()))
            }
        }
    }
    let restricted = !rule.merge_roles.is_empty() || !rule.merge_users.is_empty();
    if restricted
        && !rule.merge_roles.contains(&merger.role)
        && !rule.merge_users.iter().any(|u| u == &merger.username)
    {
        reasons.push(format!(
            "{} may not merge into branches of rule `{}` (allowed: {})",
            merger.username,
            rule.pattern,
            allowed_mergers(rule)
        ));
    }
    reasons
}

fn allowed_mergers(rule: &BranchRule) -> String {
    let mut who: Vec<String> = rule
        .merge_roles
        .iter()
        .map(|r| format!("role {}", r.as_str()))
        .collect();
    who.extend(rule.merge_users.iter().cloned());
    who.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str) -> BranchRule {
        BranchRule {
            pattern: pattern.into(),
            require_pull_request: false,
            required_approvals: 0,
            required_checks: Vec::new(),
            merge_roles: Vec::new(),
            merge_users: Vec::new(),
            allow_force_push: false,
            allow_deletion: false,
            require_up_to_date: false,
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("main", "main"));
        assert!(!pattern_matches("main", "main2"));
        assert!(!pattern_matches("main", "Main"));
        assert!(pattern_matches("release/*", "release/1.0"));
        assert!(!pattern_matches("release/*", "release/1.0/hotfix"));
        assert!(!pattern_matches("release/*", "release"));
        assert!(pattern_matches("release/**", "release/1.0/hotfix"));
        assert!(pattern_matches("**", "a/b/c"));
        assert!(pattern_matches("*", "feature"));
        assert!(!pattern_matches("*", "team/feature"));
        assert!(pattern_matches("v?", "v1"));
        assert!(!pattern_matches("v?", "v10"));
        assert!(pattern_matches("*-stable", "2.0-stable"));
        assert!(pattern_matches("a*b*c", "aXbYc"));
        assert!(!pattern_matches("a*b*c", "aXbY"));
    }

    #[test]
    fn long_patterns_stay_cheap() {
        let pattern = "*a".repeat(120);
        let text = "a".repeat(250) + "b";
        let start = std::time::Instant::now();
        assert!(!pattern_matches(&pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn the_first_matching_rule_applies() {
        let mut strict = rule("release/1.0");
        strict.allow_deletion = false;
        let mut loose = rule("release/*");
        loose.allow_deletion = true;
        let rules = vec![strict, loose];
        assert_eq!(
            rule_for(&rules, "release/1.0").unwrap().pattern,
            "release/1.0"
        );
        assert_eq!(
            rule_for(&rules, "release/2.0").unwrap().pattern,
            "release/*"
        );
        assert!(rule_for(&rules, "main").is_none());
    }

    #[test]
    fn push_checks() {
        let a = "1".repeat(40);
        let b = "2".repeat(40);
        let mut main = rule("main");
        main.require_pull_request = true;
        let rules = vec![main.clone(), rule("release/*")];
        // Direct push to a PR-only branch: refused; the PR's own merge is not.
        let refused = check_update(&rules, "refs/heads/main", &a, &b, false, false);
        assert!(
            matches!(&refused, PushCheck::Refuse(m) if m.contains("must go through a pull request")),
            "{refused:?}"
        );
        assert!(matches!(
            check_update(&rules, "refs/heads/main", &a, &b, true, false),
            PushCheck::FastForwardOnly(_)
        ));
        // Creating is for owners under a pull-request rule, for everyone otherwise; deleting is
        // refused.
        assert_eq!(
            check_update(&rules, "refs/heads/main", ZERO_SHA, &b, false, true),
            PushCheck::Allow
        );
        assert!(matches!(
            check_update(&rules, "refs/heads/main", ZERO_SHA, &b, false, false),
            PushCheck::Refuse(m) if m.contains("only the repository's owners may create")
        ));
        assert_eq!(
            check_update(&rules, "refs/heads/release/2", ZERO_SHA, &b, false, false),
            PushCheck::Allow
        );
        assert!(matches!(
            check_update(&rules, "refs/heads/release/1", &a, ZERO_SHA, false, false),
            PushCheck::Refuse(m) if m.contains("may not be deleted")
        ));
        // Without require_pull_request: fast-forwards only.
        assert!(matches!(
            check_update(&rules, "refs/heads/release/1", &a, &b, false, false),
            PushCheck::FastForwardOnly(m) if m.contains("force push")
        ));
        // Unprotected branches and tags: anything goes.
        assert_eq!(
            check_update(&rules, "refs/heads/feature", &a, ZERO_SHA, false, false),
            PushCheck::Allow
        );
        assert_eq!(
            check_update(&rules, "refs/tags/main", &a, ZERO_SHA, false, false),
            PushCheck::Allow
        );
        // Allowed when the rule says so.
        let mut open = rule("main");
        open.allow_force_push = true;
        open.allow_deletion = true;
        let rules = vec![open];
        assert_eq!(
            check_update(&rules, "refs/heads/main", &a, &b, false, false),
            PushCheck::Allow
        );
        assert_eq!(
            check_update(&rules, "refs/heads/main", &a, ZERO_SHA, false, false),
            PushCheck::Allow
        );
    }

    fn approval(user: &str, stale: bool) -> Approval {
        Approval {
            user: user.into(),
            stale,
        }
    }

    fn merger(name: &str, role: Role) -> Merger {
        Merger {
            username: name.into(),
            role,
        }
    }

    #[test]
    fn no_rule_no_requirement() {
        assert!(merge_requirements(None, &[], &[], &merger("w", Role::Writer)).is_empty());
        assert!(
            merge_requirements(Some(&rule("main")), &[], &[], &merger("w", Role::Writer))
                .is_empty()
        );
    }

    #[test]
    fn approvals_count_once_and_stale_ones_not_at_all() {
        let mut r = rule("main");
        r.required_approvals = 2;
        let w = merger("w", Role::Writer);
        let reasons = merge_requirements(
            Some(&r),
            &[
                approval("b", false),
                approval("b", false),
                approval("c", true),
            ],
            &[],
            &w,
        );
        assert_eq!(
            reasons,
            vec!["2 approvals required by rule `main`, 1 given"]
        );
        assert!(merge_requirements(
            Some(&r),
            &[approval("b", false), approval("c", false)],
            &[],
            &w
        )
        .is_empty());
    }

    #[test]
    fn required_checks_must_have_succeeded() {
        let mut r = rule("main");
        r.required_checks = vec!["build".into(), "lint".into(), "e2e".into()];
        let checks = vec![
            ("build".to_string(), RunState::Succeeded),
            ("lint".to_string(), RunState::Running),
            ("other".to_string(), RunState::Failed),
        ];
        let reasons = merge_requirements(Some(&r), &[], &checks, &merger("w", Role::Writer));
        assert_eq!(
            reasons,
            vec![
                "required check `lint` is running",
                "required check `e2e` has not run"
            ]
        );
        let green: Vec<(String, RunState)> = ["build", "lint", "e2e"]
            .iter()
            .map(|n| (n.to_string(), RunState::Succeeded))
            .collect();
        assert!(merge_requirements(Some(&r), &[], &green, &merger("w", Role::Writer)).is_empty());
    }

    #[test]
    fn who_may_merge() {
        let mut r = rule("main");
        r.merge_roles = vec![Role::Owner];
        r.merge_users = vec!["bob".into()];
        assert!(merge_requirements(Some(&r), &[], &[], &merger("olga", Role::Owner)).is_empty());
        assert!(merge_requirements(Some(&r), &[], &[], &merger("bob", Role::Writer)).is_empty());
        let reasons = merge_requirements(Some(&r), &[], &[], &merger("walt", Role::Writer));
        assert_eq!(
            reasons,
            vec!["walt may not merge into branches of rule `main` (allowed: role owner, bob)"]
        );
    }

    #[test]
    fn validation() {
        assert!(validate(&[rule("main"), rule("release/*")]).is_ok());
        assert!(validate(&[rule("main"), rule("main")])
            .unwrap_err()
            .contains("twice"));
        assert!(validate(&[rule("")]).is_err());
        assert!(validate(&[rule("refs/heads/main")]).is_err());
        assert!(validate(&[rule("a b")]).is_err());
        let mut r = rule("main");
        r.required_approvals = 21;
        assert!(validate(&[r]).is_err());
        let mut r = rule("main");
        r.merge_users = vec!["not a user".into()];
        assert!(validate(&[r]).is_err());
        let many: Vec<BranchRule> = (0..=MAX_RULES).map(|i| rule(&format!("b{i}"))).collect();
        assert!(validate(&many).is_err());
    }
}
