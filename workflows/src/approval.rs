//! `aws/approval@v1` gates: their configuration and the pure decisions about them.
//!
//! CodeCatalyst's gate has one configuration key, `ApprovalsRequired` (default 1). Cove adds
//! two documented extension keys (CodeCatalyst keeps approvers and conditions outside the
//! YAML, so it has no syntax for them):
//!
//! ```yaml
//! ApproveDeploy:
//!   Identifier: aws/approval@v1
//!   DependsOn: [Synth]
//!   Timeout: 1440            # minutes (the server's default when absent)
//!   Configuration:
//!     ApprovalsRequired: 2   # distinct approvers
//!     Approvers: [alice, bob]  # Cove: user names; default the repository's owners and admins
//!     Condition:             # Cove: pause only when one of these holds
//!       When: ${Synth.PermissionsBroadened} == true
//!       FilesChanged: ['infra/.*', 'cdk\.json']
//! ```
//!
//! Without `Condition` the gate always pauses. With it, the gate pauses when **any** given
//! test holds; otherwise it passes by itself with a recorded reason. A `When` whose variable
//! was not exported holds (the safe side: a human decides).

use std::collections::BTreeSet;

use serde::Serialize;
use yamlmap::Node;

use crate::interpolate::references;
use crate::pattern::Pattern;
use crate::reader::Reader;

/// Most approvals a gate may require.
pub const MAX_APPROVALS_REQUIRED: u32 = 10;
/// Most names in an `Approvers` list.
pub const MAX_APPROVERS: usize = 100;

/// A gate's configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    /// Distinct approvals needed (`ApprovalsRequired`, default 1).
    pub approvals_required: u32,
    /// User names who may decide; empty means the repository's owners and admins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            approvals_required: 1,
            approvers: Vec::new(),
            condition: None,
        }
    }
}

/// When a conditional gate pauses.
#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<VariableTest>,
    /// Full-match regular expressions over the files the run's push changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files_changed: Vec<Pattern>,
}

/// `${Action.Var} == value` or `!=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariableTest {
    /// The `${…}` reference as written.
    pub reference: String,
    pub equals: bool,
    pub value: String,
}

impl VariableTest {
    /// Parses `${Scope.Name} == value` / `!=`; the value may be quoted with `'` or `"`.
    pub fn parse(text: &str) -> Result<VariableTest, String> {
        let (at, equals) = match (text.find("=="), text.find("!=")) {
            (Some(a), None) => (a, true),
            (None, Some(b)) => (b, false),
            _ => {
                return Err(format!(
                    "`{text}` is not `${{Action.Variable}} == value` or `${{Action.Variable}} != value`"
                ))
            }
        };
        let left = text[..at].trim();
        let mut value = text[at + 2..].trim();
        let refs = references(left);
        if refs.len() != 1 || refs[0].start != 0 || refs[0].end != left.len() {
            return Err(format!(
                "the left side `{left}` must be one `${{Action.Variable}}` reference"
            ));
        }
        if refs[0].scope == "Secrets" {
            return Err("a condition cannot test a secret".into());
        }
        for q in ['\'', '"'] {
            if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
                value = &value[1..value.len() - 1];
            }
        }
        if value.is_empty() || value.contains("==") || value.contains("!=") {
            return Err(format!("the right side of `{text}` must be one value"));
        }
        Ok(VariableTest {
            reference: left.to_string(),
            equals,
            value: value.to_string(),
        })
    }
}

/// Whether a conditional gate pauses, and why (recorded with the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub pause: bool,
    pub reason: String,
}

impl Condition {
    /// Evaluates the condition. `resolve` gives the value of a `${…}` reference (`None`: the
    /// variable was not exported); `changed` are the files the run's push changed.
    pub fn evaluate(
        &self,
        resolve: impl Fn(&str) -> Option<String>,
        changed: &[&str],
    ) -> Evaluation {
        let mut why_not = Vec::new();
        if let Some(t) = &self.when {
            let op = if t.equals { "==" } else { "!=" };
            match resolve(&t.reference) {
                None => {
                    return Evaluation {
                        pause: true,
                        reason: format!(
                            "{} was not exported, so approval is required",
                            t.reference
                        ),
                    }
                }
                Some(v) if (v == t.value) == t.equals => {
                    return Evaluation {
                        pause: true,
                        reason: format!("{} {op} {} holds (value `{v}`)", t.reference, t.value),
                    }
                }
                Some(v) => why_not.push(format!(
                    "{} {op} {} does not hold (value `{v}`)",
                    t.reference, t.value
                )),
            }
        }
        if !self.files_changed.is_empty() {
            if let Some(f) = changed
                .iter()
                .find(|f| self.files_changed.iter().any(|p| p.full_match(f)))
            {
                return Evaluation {
                    pause: true,
                    reason: format!("{f} changed (FilesChanged)"),
                };
            }
            why_not.push(format!(
                "no changed file matches FilesChanged ({} file(s) changed)",
                changed.len()
            ));
        }
        Evaluation {
            pause: false,
            reason: format!("condition false: {}", why_not.join("; ")),
        }
    }
}

/// One recorded decision on a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// Where a gate stands after its decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tally {
    /// Enough distinct approvers.
    Approved,
    /// Somebody rejected: the gate fails.
    Rejected { by: String },
    /// Still waiting: `have` of `need` distinct approvals.
    Waiting { have: u32, need: u32 },
}

/// The gate's state from its decisions (in order): any rejection rejects; otherwise it is
/// approved once `required` distinct users approved.
pub fn tally<'a>(required: u32, decisions: impl IntoIterator<Item = (&'a str, Decision)>) -> Tally {
    let mut approvers = BTreeSet::new();
    for (user, d) in decisions {
        match d {
            Decision::Reject => return Tally::Rejected { by: user.into() },
            Decision::Approve => {
                approvers.insert(user);
            }
        }
    }
    let have = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
    if have >= required.max(1) {
        Tally::Approved
    } else {
        Tally::Waiting {
            have,
            need: required.max(1),
        }
    }
}

/// Whether `user` may decide on `gate`: one of its `Approvers`, or, without a list, an owner
/// of the repository or an administrator (`is_owner_or_admin`).
pub fn may_decide(gate: &Gate, user: &str, is_owner_or_admin: bool) -> bool {
    if gate.approvers.is_empty() {
        is_owner_or_admin
    } else {
        gate.approvers.iter().any(|a| a == user)
    }
}

/// Reads an approval gate's `Configuration` (already known to be a map, or absent).
pub(crate) fn read_gate(r: &mut Reader, config: Option<&Node>, id: &str) -> Gate {
    let mut gate = Gate::default();
    let Some(n) = config else { return gate };
    r.check_keys(
        n,
        &["ApprovalsRequired", "Approvers", "Condition"],
        &format!("`Configuration` of approval gate `{id}`"),
    );
    if let Some(a) = n.get("ApprovalsRequired") {
        if let Some(k) = r.positive(a, "`ApprovalsRequired`") {
            if k > MAX_APPROVALS_REQUIRED {
                r.error(
                    a.pos,
                    format!("`ApprovalsRequired` is {k}; at most {MAX_APPROVALS_REQUIRED} are supported"),
                    "require fewer approvals",
                );
            } else {
                gate.approvals_required = k;
            }
        }
    }
    if let Some(list) = n.get("Approvers") {
        let items = r.seq(list, "`Approvers`").unwrap_or_default();
        if items.len() > MAX_APPROVERS {
            r.error(
                list.pos,
                format!(
                    "`Approvers` names {} users; at most {MAX_APPROVERS}",
                    items.len()
                ),
                "name fewer approvers",
            );
        }
        for item in items.iter().take(MAX_APPROVERS) {
            if let Some(name) = r.nonempty_text(item, "an entry of `Approvers`") {
                if !gate.approvers.contains(&name) {
                    gate.approvers.push(name);
                }
            }
        }
        if items.is_empty() {
            r.error(
                list.pos,
                "`Approvers` is empty: nobody could approve",
                "name at least one user, or remove `Approvers` to let the repository's owners decide",
            );
        }
    }
    if let Some(c) = n.get("Condition") {
        gate.condition = read_condition(r, c, id);
    }
    if !gate.approvers.is_empty()
        && (gate.approvers.len() as u64) < u64::from(gate.approvals_required)
    {
        if let Some(a) = n.get("ApprovalsRequired") {
            r.error(
                a.pos,
                format!(
                    "`ApprovalsRequired` is {} but `Approvers` names {} user(s): the gate could never open",
                    gate.approvals_required,
                    gate.approvers.len()
                ),
                "require fewer approvals or name more approvers",
            );
        }
    }
    gate
}

fn read_condition(r: &mut Reader, c: &Node, id: &str) -> Option<Condition> {
    r.map(c, "`Condition`")?;
    r.check_keys(
        c,
        &["When", "FilesChanged"],
        &format!("`Condition` of approval gate `{id}`"),
    );
    let mut out = Condition {
        when: None,
        files_changed: Vec::new(),
    };
    if let Some(w) = c.get("When") {
        if let Some(text) = r.nonempty_text(w, "`When`") {
            match VariableTest::parse(&text) {
                Ok(t) => out.when = Some(t),
                Err(e) => r.error(
                    w.pos,
                    format!("unknown condition syntax: {e}"),
                    "write `When: ${Action.Variable} == value` (or `!=`), the variable an earlier action exports",
                ),
            }
        }
    }
    if let Some(f) = c.get("FilesChanged") {
        out.files_changed = crate::codecatalyst::patterns(r, f, "FilesChanged");
    }
    if c.get("When").is_none() && c.get("FilesChanged").is_none() {
        r.error(
            c.pos,
            "`Condition` has neither `When` nor `FilesChanged`",
            "add `When: ${Action.Variable} == value` or `FilesChanged: [regex, …]`, or remove `Condition`",
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_tests_parse_and_refuse_other_syntax() {
        let t = VariableTest::parse("${Synth.PermissionsBroadened} == true").unwrap();
        assert_eq!(t.reference, "${Synth.PermissionsBroadened}");
        assert!(t.equals);
        assert_eq!(t.value, "true");
        let t = VariableTest::parse("${G.A.X}!='no'").unwrap();
        assert!(!t.equals);
        assert_eq!(t.value, "no");
        for bad in [
            "${Synth.X}",
            "Synth.X == true",
            "${Synth.X} > 1",
            "${Synth.X} == ",
            "${A.X} == ${B.Y} == 1",
            "${Secrets.token} == x",
            "${A.X} ${B.Y} == 1",
            "${A.X} == 1 != 2",
        ] {
            assert!(VariableTest::parse(bad).is_err(), "{bad}");
        }
    }

    fn cond(when: Option<&str>, files: &[&str]) -> Condition {
        Condition {
            when: when.map(|w| VariableTest::parse(w).unwrap()),
            files_changed: files.iter().map(|f| Pattern::new(f).unwrap()).collect(),
        }
    }

    #[test]
    fn a_condition_pauses_when_any_test_holds() {
        let c = cond(Some("${Synth.PermissionsBroadened} == true"), &["infra/.*"]);
        let val = |v: Option<&'static str>| move |_: &str| v.map(str::to_string);
        assert!(c.evaluate(val(Some("true")), &[]).pause);
        let e = c.evaluate(val(Some("false")), &["src/a.rs"]);
        assert!(!e.pause);
        assert!(e.reason.contains("does not hold"), "{}", e.reason);
        assert!(c.evaluate(val(Some("false")), &["infra/stack.ts"]).pause);
        assert!(
            !c.evaluate(val(Some("false")), &["x/infra/stack.ts"]).pause,
            "full match"
        );
        let e = c.evaluate(val(None), &[]);
        assert!(e.pause, "a missing variable needs a human");
        let ne = cond(Some("${A.X} != ok"), &[]);
        assert!(ne.evaluate(val(Some("bad")), &[]).pause);
        assert!(!ne.evaluate(val(Some("ok")), &[]).pause);
    }

    #[test]
    fn tallies_count_distinct_approvers_and_any_rejection() {
        use Decision::*;
        assert_eq!(
            tally(2, [("a", Approve), ("a", Approve)]),
            Tally::Waiting { have: 1, need: 2 }
        );
        assert_eq!(tally(2, [("a", Approve), ("b", Approve)]), Tally::Approved);
        assert_eq!(
            tally(2, [("a", Approve), ("b", Reject)]),
            Tally::Rejected { by: "b".into() }
        );
        assert_eq!(tally(1, []), Tally::Waiting { have: 0, need: 1 });
        assert_eq!(tally(0, [("a", Approve)]), Tally::Approved);
    }

    #[test]
    fn approvers_list_replaces_the_owner_rule() {
        let owners = Gate::default();
        assert!(may_decide(&owners, "x", true));
        assert!(!may_decide(&owners, "x", false));
        let listed = Gate {
            approvers: vec!["bob".into()],
            ..Gate::default()
        };
        assert!(may_decide(&listed, "bob", false));
        assert!(!may_decide(&listed, "alice", true));
    }

    const HEAD: &str = "Name: w\nSchemaVersion: '1.0'\nActions:\n  Synth:\n    Identifier: aws/build@v1\n    Outputs: {Variables: [PermissionsBroadened]}\n    Configuration: {Steps: [{Run: PermissionsBroadened=true}]}\n  Gate:\n    Identifier: aws/approval@v1\n";

    #[test]
    fn gates_are_read_with_their_extension_keys() {
        let text = format!("{HEAD}    Configuration:\n      ApprovalsRequired: 2\n      Approvers: [alice, bob]\n      Condition:\n        When: ${{Synth.PermissionsBroadened}} == true\n        FilesChanged: ['infra/.*']\n");
        let (w, _) = crate::validate_file("w.yaml", &text).expect("valid");
        let gate = w.action("Gate").unwrap().gate.clone().expect("a gate");
        assert_eq!(gate.approvals_required, 2);
        assert_eq!(gate.approvers, vec!["alice", "bob"]);
        let c = gate.condition.expect("condition");
        assert_eq!(c.when.unwrap().reference, "${Synth.PermissionsBroadened}");
        assert_eq!(c.files_changed.len(), 1);
        // the reference is an implicit dependency
        assert_eq!(w.action("Gate").unwrap().depends_on[0].action, "Synth");
        let plain = format!("{HEAD}    DependsOn: [Synth]\n");
        let (w, _) = crate::validate_file("w.yaml", &plain).expect("valid");
        assert_eq!(
            w.action("Gate")
                .unwrap()
                .gate
                .as_ref()
                .unwrap()
                .approvals_required,
            1
        );
    }

    #[test]
    fn unknown_condition_syntax_is_refused_with_its_position() {
        let text = format!("{HEAD}    Configuration:\n      Condition:\n        When: ${{Synth.PermissionsBroadened}} > 1\n");
        let errs = crate::validate_file("w.yaml", &text).unwrap_err();
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            all.iter()
                .any(|e| e.starts_with("w.yaml:12:15: error: unknown condition syntax")),
            "{all:?}"
        );
        let text = format!("{HEAD}    Configuration:\n      Condition: {{Unless: x}}\n");
        let all: Vec<String> = crate::validate_file("w.yaml", &text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            all.iter()
                .any(|e| e.contains("w.yaml:11:") && e.contains("Unless")),
            "{all:?}"
        );
        let text = format!(
            "{HEAD}    Configuration:\n      ApprovalsRequired: 3\n      Approvers: [a, b]\n"
        );
        assert!(
            crate::validate_file("w.yaml", &text).is_err(),
            "could never open"
        );
    }
}
