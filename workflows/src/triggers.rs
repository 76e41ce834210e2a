//! Trigger matching (design notes §1.3 and §6 rule 7).
//!
//! - `Branches` and `FilesChanged` are full-match regular expressions
//!   ([`crate::Pattern`]); omitted or `[]` means "all".
//! - `FilesChanged`: the trigger fires if **any** changed file matches any
//!   pattern. With an empty change list (e.g. a branch creation) it does not
//!   fire when patterns are given.
//! - Pull requests match the **destination** branch. `REVISION` ⊇ `OPEN`:
//!   the first revision is the creation, so a trigger on `REVISION` also
//!   fires for an opened pull request.
//! - A workflow without triggers (or with only `MANUAL`) starts only by
//!   hand.

use crate::model::{PullRequestEvent, Trigger, Workflow};
use crate::pattern::{any_full_match, Pattern};

fn files_match(patterns: &[Pattern], changed: &[&str]) -> bool {
    patterns.is_empty()
        || changed
            .iter()
            .any(|f| patterns.iter().any(|p| p.full_match(f)))
}

impl Trigger {
    /// Does a push of `changed_files` to `branch` fire this trigger?
    pub fn matches_push(&self, branch: &str, changed_files: &[&str]) -> bool {
        match self {
            Trigger::Push {
                branches,
                files_changed,
            } => any_full_match(branches, branch) && files_match(files_changed, changed_files),
            _ => false,
        }
    }

    /// Does a pull request `event` into `destination_branch` fire this
    /// trigger?
    pub fn matches_pull_request(
        &self,
        event: PullRequestEvent,
        destination_branch: &str,
        changed_files: &[&str],
    ) -> bool {
        match self {
            Trigger::PullRequest {
                events,
                branches,
                files_changed,
            } => {
                let event_ok = events.contains(&event)
                    || (event == PullRequestEvent::Open
                        && events.contains(&PullRequestEvent::Revision));
                event_ok
                    && any_full_match(branches, destination_branch)
                    && files_match(files_changed, changed_files)
            }
            _ => false,
        }
    }
}

impl Workflow {
    /// Does a push to `branch` changing `changed_files` start this workflow?
    pub fn matches_push(&self, branch: &str, changed_files: &[&str]) -> bool {
        self.triggers
            .iter()
            .any(|t| t.matches_push(branch, changed_files))
    }

    /// Does this pull request event start the workflow? Matches the
    /// destination branch; the run uses the source branch's files.
    pub fn matches_pull_request(
        &self,
        event: PullRequestEvent,
        destination_branch: &str,
        changed_files: &[&str],
    ) -> bool {
        self.triggers
            .iter()
            .any(|t| t.matches_pull_request(event, destination_branch, changed_files))
    }

    /// The schedule expression and the branches (out of `branches`) that
    /// get one run each when it fires; `None` without a SCHEDULE trigger.
    pub fn scheduled_runs<'b>(&self, branches: &[&'b str]) -> Option<(&str, Vec<&'b str>)> {
        self.triggers.iter().find_map(|t| match t {
            Trigger::Schedule {
                expression,
                branches: pats,
            } => Some((
                expression.as_str(),
                branches
                    .iter()
                    .copied()
                    .filter(|b| any_full_match(pats, b))
                    .collect(),
            )),
            _ => None,
        })
    }

    /// True when nothing but a person can start the workflow.
    pub fn is_manual_only(&self) -> bool {
        self.triggers.iter().all(|t| matches!(t, Trigger::Manual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(triggers: &str) -> Workflow {
        let text = format!(
            "Name: t\nSchemaVersion: '1.0'\nTriggers:\n{triggers}Actions:\n  A: {{Identifier: aws/build@v1, Configuration: {{Steps: [{{Run: a}}]}}}}\n"
        );
        crate::validate_file("t.yaml", &text).expect("valid").0
    }

    #[test]
    fn revision_includes_open_but_not_the_reverse() {
        let rev = wf("  - {Type: PULLREQUEST, Events: [REVISION]}\n");
        assert!(rev.matches_pull_request(PullRequestEvent::Open, "main", &[]));
        assert!(rev.matches_pull_request(PullRequestEvent::Revision, "main", &[]));
        assert!(!rev.matches_pull_request(PullRequestEvent::Closed, "main", &[]));
        let open = wf("  - {Type: PULLREQUEST, Events: [OPEN]}\n");
        assert!(!open.matches_pull_request(PullRequestEvent::Revision, "main", &[]));
        assert!(!open.matches_push("main", &[]));
    }

    #[test]
    fn pull_requests_match_the_destination_branch_events_and_files() {
        let w = wf("  - Type: PULLREQUEST\n    Events: [OPEN, CLOSED]\n    Branches: ['main', 'release-.*']\n    FilesChanged: ['src/.*']\n");
        // the destination is matched, never the source
        assert!(w.matches_pull_request(PullRequestEvent::Open, "main", &["src/a.rs"]));
        assert!(w.matches_pull_request(PullRequestEvent::Closed, "release-2", &["src/a.rs"]));
        assert!(!w.matches_pull_request(PullRequestEvent::Open, "feature", &["src/a.rs"]));
        assert!(!w.matches_pull_request(PullRequestEvent::Open, "xmain", &["src/a.rs"]));
        // only the listed events
        assert!(!w.matches_pull_request(PullRequestEvent::Revision, "main", &["src/a.rs"]));
        assert!(!w.matches_pull_request(PullRequestEvent::Merged, "main", &["src/a.rs"]));
        // FilesChanged: one changed file must match
        assert!(w.matches_pull_request(PullRequestEvent::Open, "main", &["README", "src/b.rs"]));
        assert!(!w.matches_pull_request(PullRequestEvent::Open, "main", &["README"]));
        assert!(!w.matches_pull_request(PullRequestEvent::Open, "main", &[]));
        // no push fires a PULLREQUEST trigger
        assert!(!w.matches_push("main", &["src/a.rs"]));
        // `Branches: []` and no `Branches` mean every destination
        for t in [
            "  - {Type: PULLREQUEST, Events: [CLOSED], Branches: []}\n",
            "  - {Type: PULLREQUEST, Events: [CLOSED]}\n",
        ] {
            let all = wf(t);
            assert!(all.matches_pull_request(PullRequestEvent::Closed, "any/branch", &[]));
            assert!(!all.matches_pull_request(PullRequestEvent::Open, "any/branch", &[]));
        }
    }

    #[test]
    fn files_changed_needs_a_matching_file() {
        let w = wf("  - {Type: PUSH, FilesChanged: ['src/.*', 'Cargo\\.toml']}\n");
        assert!(w.matches_push("any", &["README.md", "src/lib.rs"]));
        assert!(w.matches_push("any", &["Cargo.toml"]));
        assert!(!w.matches_push("any", &["Cargo_toml"]));
        assert!(
            !w.matches_push("any", &["docs/src/x.md"]),
            "full match, not search"
        );
        assert!(!w.matches_push("any", &[]));
        let all = wf("  - {Type: PUSH, Branches: [], FilesChanged: []}\n");
        assert!(all.matches_push("whatever", &[]));
    }

    #[test]
    fn schedules_run_once_per_matching_branch() {
        let w = wf("  - Type: SCHEDULE\n    Expression: \"0 3 ? * MON *\"\n    Branches: ['main', 'release-.*']\n");
        let (expr, branches) = w
            .scheduled_runs(&["main", "release-1", "feature", "pre-release-1"])
            .expect("scheduled");
        assert_eq!(expr, "0 3 ? * MON *");
        assert_eq!(branches, vec!["main", "release-1"]);
        assert!(!w.is_manual_only());
        assert!(!w.matches_push("main", &[]));
        assert!(wf("  - Type: MANUAL\n").is_manual_only());
        assert!(wf("  []\n").is_manual_only());
    }
}
