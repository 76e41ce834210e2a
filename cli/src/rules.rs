//! `cove repo rules list|set|delete`: a repository's branch rules (branch protection).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{BranchRule, BranchRules, Role};

use crate::client::Client;
use crate::repo::{full_name, Output};

/// Branch rules: per branch name pattern, pull requests only, approvals, required checks, who
/// may merge, force push and deletion. The first rule whose pattern matches a branch applies.
#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the rules in order.
    List {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Add the rule for PATTERN, or replace it (keeping its place). Owners only.
    Set {
        /// NAME or OWNER/NAME.
        repo: String,
        /// Branch name pattern: `main`, `release/*` (one segment), `team/**` (any depth).
        pattern: String,
        /// Refuse direct pushes that move the branch: changes come through pull requests.
        #[arg(long)]
        require_pr: bool,
        /// Approvals a pull request needs before its merge.
        #[arg(long, default_value_t = 0)]
        approvals: u32,
        /// A workflow whose run must have succeeded before the merge (repeatable).
        #[arg(long = "check", value_name = "WORKFLOW")]
        checks: Vec<String>,
        /// A repository role (reader, writer, owner) whose members may merge (repeatable).
        #[arg(long = "merge-role", value_name = "ROLE", value_parser = parse_role)]
        merge_roles: Vec<Role>,
        /// A user who may merge (repeatable). No --merge-role/--merge-user: every writer.
        #[arg(long = "merge-user", value_name = "USER")]
        merge_users: Vec<String>,
        /// Allow pushes that are not fast-forwards.
        #[arg(long)]
        allow_force_push: bool,
        /// Allow deleting the branch by a push.
        #[arg(long)]
        allow_deletion: bool,
        /// A pull request merges only when its source branch contains the branch's latest
        /// commit (merged or rebased on it).
        #[arg(long)]
        require_up_to_date: bool,
        /// Put the rule at this place in the list (1 = first); default: where it was, or last.
        #[arg(long)]
        position: Option<usize>,
    },
    /// Remove the rule for PATTERN. Owners only.
    Delete {
        /// NAME or OWNER/NAME.
        repo: String,
        pattern: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role (reader, writer, owner)"))
}

/// `rules` with `rule` put in: replacing the rule with the same pattern, at `position`
/// (1-based) when given, else where the old one was, else last.
pub fn with_rule(
    mut rules: Vec<BranchRule>,
    rule: BranchRule,
    position: Option<usize>,
) -> Vec<BranchRule> {
    let old = rules.iter().position(|r| r.pattern == rule.pattern);
    if let Some(i) = old {
        rules.remove(i);
    }
    let at = match (position, old) {
        (Some(p), _) => p.saturating_sub(1),
        (None, Some(i)) => i,
        (None, None) => rules.len(),
    };
    rules.insert(at.min(rules.len()), rule);
    rules
}

/// `rules` without the rule for `pattern`; `None` if there is none.
pub fn without_rule(mut rules: Vec<BranchRule>, pattern: &str) -> Option<Vec<BranchRule>> {
    let i = rules.iter().position(|r| r.pattern == pattern)?;
    rules.remove(i);
    Some(rules)
}

fn describe(rule: &BranchRule) -> String {
    let mut parts = Vec::new();
    if rule.require_pull_request {
        parts.push("pull requests only".to_string());
    }
    if rule.required_approvals > 0 {
        parts.push(format!("{} approval(s)", rule.required_approvals));
    }
    if !rule.required_checks.is_empty() {
        parts.push(format!("checks: {}", rule.required_checks.join(", ")));
    }
    if !rule.merge_roles.is_empty() || !rule.merge_users.is_empty() {
        let mut who: Vec<String> = rule
            .merge_roles
            .iter()
            .map(|r| format!("role {}", r.as_str()))
            .collect();
        who.extend(rule.merge_users.iter().cloned());
        parts.push(format!("merge: {}", who.join(", ")));
    }
    parts.push(
        if rule.allow_force_push {
            "force push allowed"
        } else {
            "no force push"
        }
        .to_string(),
    );
    if rule.require_up_to_date {
        parts.push("up to date required".to_string());
    }
    parts.push(
        if rule.allow_deletion {
            "deletion allowed"
        } else {
            "no deletion"
        }
        .to_string(),
    );
    parts.join("; ")
}

fn print(rules: &BranchRules, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rules)?),
        Output::Text if rules.rules.is_empty() => println!("no branch rules"),
        Output::Text => {
            let width = rules
                .rules
                .iter()
                .map(|r| r.pattern.len())
                .max()
                .unwrap_or(7)
                .max(7);
            println!("#  {:width$}  RULE", "PATTERN");
            for (i, rule) in rules.rules.iter().enumerate() {
                println!("{:<2} {:width$}  {}", i + 1, rule.pattern, describe(rule));
            }
        }
    }
    Ok(())
}

pub fn run(client: &Client, args: RulesArgs) -> Result<()> {
    match args.command {
        RulesCommand::List { repo, output } => {
            let (owner, name) = full_name(client, &repo)?;
            let rules: BranchRules = client.get(&format!("/repos/{owner}/{name}/branch-rules"))?;
            print(&rules, output)
        }
        RulesCommand::Set {
            repo,
            pattern,
            require_pr,
            approvals,
            checks,
            merge_roles,
            merge_users,
            allow_force_push,
            allow_deletion,
            require_up_to_date,
            position,
        } => {
            let (owner, name) = full_name(client, &repo)?;
            let path = format!("/repos/{owner}/{name}/branch-rules");
            let current: BranchRules = client.get(&path)?;
            let rule = BranchRule {
                pattern,
                require_pull_request: require_pr,
                required_approvals: approvals,
                required_checks: checks,
                merge_roles,
                merge_users,
                allow_force_push,
                allow_deletion,
                require_up_to_date,
            };
            let body = BranchRules {
                rules: with_rule(current.rules, rule, position),
            };
            let saved: BranchRules = client.put(&path, &body)?;
            print(&saved, Output::Text)
        }
        RulesCommand::Delete { repo, pattern } => {
            let (owner, name) = full_name(client, &repo)?;
            let path = format!("/repos/{owner}/{name}/branch-rules");
            let current: BranchRules = client.get(&path)?;
            let Some(rules) = without_rule(current.rules, &pattern) else {
                bail!("{owner}/{name} has no branch rule for {pattern:?} (cove repo rules list {owner}/{name})");
            };
            let saved: BranchRules = client.put(&path, &BranchRules { rules })?;
            print(&saved, Output::Text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, approvals: u32) -> BranchRule {
        BranchRule {
            pattern: pattern.into(),
            require_pull_request: false,
            required_approvals: approvals,
            required_checks: Vec::new(),
            merge_roles: Vec::new(),
            merge_users: Vec::new(),
            allow_force_push: false,
            allow_deletion: false,
            require_up_to_date: false,
        }
    }

    fn patterns(rules: &[BranchRule]) -> Vec<&str> {
        rules.iter().map(|r| r.pattern.as_str()).collect()
    }

    #[test]
    fn set_replaces_in_place_appends_or_moves() {
        let rules = vec![rule("main", 0), rule("release/*", 0)];
        let replaced = with_rule(rules.clone(), rule("main", 2), None);
        assert_eq!(patterns(&replaced), ["main", "release/*"]);
        assert_eq!(replaced[0].required_approvals, 2);
        let appended = with_rule(rules.clone(), rule("dev", 0), None);
        assert_eq!(patterns(&appended), ["main", "release/*", "dev"]);
        let first = with_rule(rules.clone(), rule("release/1.0", 0), Some(1));
        assert_eq!(patterns(&first), ["release/1.0", "main", "release/*"]);
        let moved = with_rule(rules.clone(), rule("main", 0), Some(9));
        assert_eq!(patterns(&moved), ["release/*", "main"]);
        assert_eq!(
            patterns(&without_rule(rules.clone(), "main").unwrap()),
            ["release/*"]
        );
        assert!(without_rule(rules, "nope").is_none());
    }
}
