//! Merging a pull request on the server, against the bare repository with git2 (no working
//! tree): fast-forward, merge commit or squash (the merged tree from git2's in-memory
//! `merge_commits` → `write_tree_to`), then the destination ref is moved with a
//! compare-and-swap on its old value. The merge is a push: it is recorded as push events
//! with the merger as pusher, exactly like `crate::git` records a push, so PUSH-triggered
//! workflows of the destination run through the same path.

use std::path::{Path, PathBuf};

use cove_api::{MergeMethod, PullState, ReviewVerdict};

use super::diff::{branch_sha, git_err, off_thread, open};
use crate::error::ApiError;
use crate::store::{PullRow, RefUpdate, RepoRow, ReviewRow, UserRow};
use crate::AppState;

/// What must hold before a pull request may be merged: every reason it may not, empty when
/// it may. **The extension point for branch rules** (`forge::rules`): they add their own
/// reasons (N approvals, required checks green, who may merge) here.
pub async fn requirements(
    state: &AppState,
    repo: &RepoRow,
    pull: &PullRow,
    merger: &UserRow,
) -> Result<Vec<String>, ApiError> {
    let mut reasons = Vec::new();
    if pull.state != PullState::Open {
        reasons.push(format!("the pull request is {}", pull.state.as_str()));
        return Ok(reasons);
    }
    // A mirror's branches follow the upstream (forge/mirror): a merge here would be undone.
    if let Some(mirror) = state.store().mirror(repo.id).await? {
        reasons.push(format!(
            "this repository is a mirror of {}; merge in the upstream",
            mirror.url
        ));
    }
    let reviews = state.store().reviews(pull.id).await?;
    reasons.extend(review_reasons(pull, &reviews));
    // the destination's branch rule: approvals, required checks, who may merge
    let rules = state.store().branch_rules(repo.id).await?;
    if let Some(rule) = super::rules::rule_for(&rules, &pull.destination) {
        let approvals: Vec<super::rules::Approval> = reviews
            .iter()
            .filter(|r| r.verdict == ReviewVerdict::Approve)
            .map(|r| super::rules::Approval {
                user: r.reviewer.clone(),
                stale: r.stale,
            })
            .collect();
        // the latest run of each workflow on the pull request's head commit
        let checks: Vec<(String, cove_api::RunState)> =
            crate::runs::pulls::checks(state, repo.id, &pull.head_sha)
                .await?
                .into_iter()
                .map(|run| (run.workflow, run.state))
                .collect();
        let role = crate::auth::role_of_user(state.store(), merger, repo)
            .await?
            .unwrap_or(cove_api::Role::Reader);
        let merger = super::rules::Merger {
            username: merger.username.clone(),
            role,
        };
        reasons.extend(super::rules::merge_requirements(
            Some(rule),
            &approvals,
            &checks,
            &merger,
        ));
        if rule.require_up_to_date
            && !super::diff::contains_destination(
                crate::repos::repo_dir(state, repo),
                pull.source.clone(),
                pull.destination.clone(),
            )
            .await?
        {
            reasons.push(format!(
                "{} is out of date with {}: rule `{}` requires it to contain the latest {} (merge or rebase it first)",
                pull.source, pull.destination, rule.pattern, pull.destination
            ));
        }
    }
    Ok(reasons)
}

/// Each reviewer's standing verdict: their latest approve / request_changes that is not stale.
pub fn standing_verdicts(
    reviews: &[ReviewRow],
) -> std::collections::BTreeMap<String, ReviewVerdict> {
    let mut out = std::collections::BTreeMap::new();
    for review in reviews {
        if review.verdict == ReviewVerdict::Comment || review.stale {
            continue;
        }
        out.insert(review.reviewer.clone(), review.verdict);
    }
    out
}

/// Required reviewers who have not approved, and anyone whose standing verdict is
/// "changes requested".
pub fn review_reasons(pull: &PullRow, reviews: &[ReviewRow]) -> Vec<String> {
    let verdicts = standing_verdicts(reviews);
    let mut reasons = Vec::new();
    for reviewer in &pull.reviewers {
        if verdicts.get(reviewer) != Some(&ReviewVerdict::Approve) {
            reasons.push(format!(
                "required reviewer {reviewer} has not approved the current revision"
            ));
        }
    }
    for (who, verdict) in &verdicts {
        if *verdict == ReviewVerdict::RequestChanges {
            reasons.push(format!("{who} requested changes"));
        }
    }
    reasons
}

/// A merge that git2 carried out.
#[derive(Debug)]
pub struct Merged {
    /// The destination's commit before and after.
    pub update: RefUpdate,
    /// The source branch's deletion, when asked for and done.
    pub deleted_source: Option<RefUpdate>,
}

/// Everything the blocking merge needs.
pub struct MergeJob {
    pub path: PathBuf,
    pub method: MergeMethod,
    pub source: String,
    pub destination: String,
    /// The head the caller saw: the merge is refused when the source moved since.
    pub head: String,
    pub message: String,
    pub author: (String, String),
    pub committer: (String, String),
    pub delete_source: bool,
}

/// Merges on a blocking thread. `Err(Conflict)` carries the reason a user reads.
pub async fn merge(job: MergeJob) -> Result<Merged, ApiError> {
    off_thread(move || merge_blocking(&job)).await
}

fn refuse(reason: impl Into<String>) -> ApiError {
    ApiError::Conflict(format!("cannot merge: {}", reason.into()))
}

fn merge_blocking(job: &MergeJob) -> Result<Merged, ApiError> {
    let repo = open(&job.path)?;
    let dest_ref = format!("refs/heads/{}", job.destination);
    let source_ref = format!("refs/heads/{}", job.source);
    let Some(dest) = branch_sha(&repo, &job.destination) else {
        return Err(refuse(format!(
            "the destination branch {} does not exist",
            job.destination
        )));
    };
    let Some(head) = branch_sha(&repo, &job.source) else {
        return Err(refuse(format!(
            "the source branch {} does not exist",
            job.source
        )));
    };
    if head.to_string() != job.head {
        return Err(refuse(
            "the source branch moved while merging; review the new revision",
        ));
    }
    if head == dest || repo.graph_descendant_of(dest, head).map_err(git_err)? {
        return Err(refuse("the destination already contains the source"));
    }
    let new = match job.method {
        MergeMethod::FastForward => {
            if !repo.graph_descendant_of(head, dest).map_err(git_err)? {
                return Err(refuse(format!(
                    "{} moved since the source branched off, so it cannot be fast-forwarded; \
                     merge {} into the source or use a merge commit or squash",
                    job.destination, job.destination
                )));
            }
            head
        }
        MergeMethod::Merge | MergeMethod::Squash => {
            let dest_commit = repo.find_commit(dest).map_err(git_err)?;
            let head_commit = repo.find_commit(head).map_err(git_err)?;
            let tree = merged_tree(&repo, &dest_commit, &head_commit)?;
            let author = signature(&job.author)?;
            let committer = signature(&job.committer)?;
            let parents: Vec<&git2::Commit> = if job.method == MergeMethod::Merge {
                vec![&dest_commit, &head_commit]
            } else {
                vec![&dest_commit]
            };
            repo.commit(None, &author, &committer, &job.message, &tree, &parents)
                .map_err(git_err)?
        }
    };
    // Compare-and-swap: the destination must still be where it was read.
    repo.reference_matching(&dest_ref, new, true, dest, "cove: merge pull request")
        .map_err(|e| {
            if e.code() == git2::ErrorCode::Modified || e.code() == git2::ErrorCode::Locked {
                refuse(format!(
                    "{} moved while merging; try again",
                    job.destination
                ))
            } else {
                git_err(e)
            }
        })?;
    let update = RefUpdate {
        ref_name: dest_ref,
        old_sha: dest.to_string(),
        new_sha: new.to_string(),
    };
    let mut deleted_source = None;
    if job.delete_source {
        if let Ok(mut reference) = repo.find_reference(&source_ref) {
            if reference.target() == Some(head) && reference.delete().is_ok() {
                deleted_source = Some(RefUpdate {
                    ref_name: source_ref,
                    old_sha: head.to_string(),
                    new_sha: cove_api::ZERO_SHA.to_string(),
                });
            }
        }
    }
    Ok(Merged {
        update,
        deleted_source,
    })
}

fn signature((name, email): &(String, String)) -> Result<git2::Signature<'static>, ApiError> {
    git2::Signature::now(name, email).map_err(git_err)
}

/// The tree of `ours` merged with `theirs`, written to the object database; a conflict is
/// refused with the conflicting paths.
fn merged_tree<'r>(
    repo: &'r git2::Repository,
    ours: &git2::Commit<'r>,
    theirs: &git2::Commit<'r>,
) -> Result<git2::Tree<'r>, ApiError> {
    let mut index = repo.merge_commits(ours, theirs, None).map_err(git_err)?;
    if index.has_conflicts() {
        let mut paths = Vec::new();
        for conflict in index.conflicts().map_err(git_err)?.flatten() {
            let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
            if let Some(entry) = entry {
                paths.push(String::from_utf8_lossy(&entry.path).into_owned());
            }
            if paths.len() >= 20 {
                paths.push("…".into());
                break;
            }
        }
        return Err(refuse(format!("conflict in {}", paths.join(", "))));
    }
    let id = index.write_tree_to(repo).map_err(git_err)?;
    repo.find_tree(id).map_err(git_err)
}

/// Whether a merge of `head` into `dest` would conflict (for the mergeability answer).
pub async fn conflicts(path: PathBuf, dest: String, head: String) -> Result<bool, ApiError> {
    off_thread(move || conflicts_blocking(&path, &dest, &head)).await
}

fn conflicts_blocking(path: &Path, dest: &str, head: &str) -> Result<bool, ApiError> {
    let repo = open(path)?;
    let (Ok(dest), Ok(head)) = (git2::Oid::from_str(dest), git2::Oid::from_str(head)) else {
        return Ok(false);
    };
    let ours = repo.find_commit(dest).map_err(git_err)?;
    let theirs = repo.find_commit(head).map_err(git_err)?;
    let index = repo.merge_commits(&ours, &theirs, None).map_err(git_err)?;
    Ok(index.has_conflicts())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(reviewers: &[&str]) -> PullRow {
        PullRow {
            id: 1,
            repo_id: 1,
            number: 1,
            source: "f".into(),
            destination: "main".into(),
            title: "t".into(),
            description: String::new(),
            author_id: 1,
            author: "alice".into(),
            state: PullState::Open,
            head_sha: "h".into(),
            base_sha: "b".into(),
            merge_sha: None,
            revision: 2,
            reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn review(id: i64, who: &str, verdict: ReviewVerdict, stale: bool) -> ReviewRow {
        ReviewRow {
            id,
            pr_id: 1,
            reviewer_id: id,
            reviewer: who.into(),
            verdict,
            body: String::new(),
            revision: 1,
            stale,
            created_at_ms: id,
        }
    }

    #[test]
    fn required_reviewers_need_a_standing_approval() {
        let p = pull(&["bob"]);
        assert_eq!(
            review_reasons(&p, &[]),
            ["required reviewer bob has not approved the current revision"]
        );
        // A stale approval does not count; a comment is no verdict.
        let stale = [
            review(1, "bob", ReviewVerdict::Approve, true),
            review(2, "bob", ReviewVerdict::Comment, false),
        ];
        assert_eq!(review_reasons(&p, &stale).len(), 1);
        let fresh = [review(3, "bob", ReviewVerdict::Approve, false)];
        assert!(review_reasons(&p, &fresh).is_empty());
    }

    #[test]
    fn changes_requested_block_until_the_same_reviewer_approves() {
        let p = pull(&[]);
        let mut reviews = vec![review(1, "carol", ReviewVerdict::RequestChanges, false)];
        assert_eq!(review_reasons(&p, &reviews), ["carol requested changes"]);
        reviews.push(review(2, "dave", ReviewVerdict::Approve, false));
        assert_eq!(review_reasons(&p, &reviews), ["carol requested changes"]);
        reviews.push(review(3, "carol", ReviewVerdict::Approve, false));
        assert!(review_reasons(&p, &reviews).is_empty());
    }
}
