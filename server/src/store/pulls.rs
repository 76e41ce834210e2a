//! SQL for pull requests (migration 0013_pulls): the requests with their per-repository
//! numbers, revisions, comments, reviews, events and the per-repository settings. Every
//! change that records an event writes the event in the same transaction.

use cove_api::{MergeMethod, PullSettings, PullState, ReviewVerdict};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{map_unique, next_id, now_ms, Store, StoreError};

/// A stored pull request.
#[derive(Debug, Clone)]
pub struct PullRow {
    pub id: i64,
    pub repo_id: i64,
    pub number: i64,
    pub source: String,
    pub destination: String,
    pub title: String,
    pub description: String,
    pub author_id: i64,
    pub author: String,
    pub state: PullState,
    pub head_sha: String,
    pub base_sha: String,
    pub merge_sha: Option<String>,
    pub revision: i64,
    pub reviewers: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A stored comment.
#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: i64,
    pub pr_id: i64,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub author: String,
    pub body: String,
    pub path: Option<String>,
    pub side: Option<String>,
    pub line: Option<u32>,
    pub commit: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A stored review.
#[derive(Debug, Clone)]
pub struct ReviewRow {
    pub id: i64,
    pub pr_id: i64,
    pub reviewer_id: i64,
    pub reviewer: String,
    pub verdict: ReviewVerdict,
    pub body: String,
    pub revision: i64,
    pub stale: bool,
    pub created_at_ms: i64,
}

/// A stored pull-request event.
#[derive(Debug, Clone)]
pub struct PullEventRow {
    pub id: i64,
    pub repo_id: i64,
    pub pr_id: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub detail: String,
    pub created_at_ms: i64,
}

/// A pull request to insert (its number and id are assigned by the store).
#[derive(Debug, Clone)]
pub struct NewPull<'a> {
    pub repo_id: i64,
    pub source: &'a str,
    pub destination: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub author_id: i64,
    pub author: &'a str,
    pub head_sha: &'a str,
    pub base_sha: &'a str,
    pub reviewers: &'a [String],
}

const PULL_COLS: &str = "id, repo_id, number, source_branch, dest_branch, title, description, \
     author_id, author_name, state, head_sha, base_sha, merge_sha, revision, reviewers, \
     created_at_ms, updated_at_ms";
const COMMENT_COLS: &str = "id, pr_id, parent_id, author_id, author_name, body, path, side, \
     line, commit_sha, created_at_ms, updated_at_ms";
const REVIEW_COLS: &str =
    "id, pr_id, reviewer_id, reviewer_name, verdict, body, revision, stale, created_at_ms";
const EVENT_COLS: &str = "id, repo_id, pr_id, kind, actor, detail, created_at_ms";

fn pull_from_row(row: &AnyRow) -> Result<PullRow, StoreError> {
    let state: String = row.try_get("state")?;
    let reviewers: String = row.try_get("reviewers")?;
    Ok(PullRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        number: row.try_get("number")?,
        source: row.try_get("source_branch")?,
        destination: row.try_get("dest_branch")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        author_id: row.try_get("author_id")?,
        author: row.try_get("author_name")?,
        state: PullState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown pull state {state:?}")))?,
        head_sha: row.try_get("head_sha")?,
        base_sha: row.try_get("base_sha")?,
        merge_sha: row.try_get("merge_sha")?,
        revision: row.try_get("revision")?,
        reviewers: reviewers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn comment_from_row(row: &AnyRow) -> Result<CommentRow, StoreError> {
    Ok(CommentRow {
        id: row.try_get("id")?,
        pr_id: row.try_get("pr_id")?,
        parent_id: row.try_get("parent_id")?,
        author_id: row.try_get("author_id")?,
        author: row.try_get("author_name")?,
        body: row.try_get("body")?,
        path: row.try_get("path")?,
        side: row.try_get("side")?,
        line: row
            .try_get::<Option<i64>, _>("line")?
            .and_then(|l| u32::try_from(l).ok()),
        commit: row.try_get("commit_sha")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn review_from_row(row: &AnyRow) -> Result<ReviewRow, StoreError> {
    let verdict: String = row.try_get("verdict")?;
    Ok(ReviewRow {
        id: row.try_get("id")?,
        pr_id: row.try_get("pr_id")?,
        reviewer_id: row.try_get("reviewer_id")?,
        reviewer: row.try_get("reviewer_name")?,
        verdict: ReviewVerdict::parse(&verdict)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown verdict {verdict:?}")))?,
        body: row.try_get("body")?,
        revision: row.try_get("revision")?,
        stale: row.try_get::<i64, _>("stale")? != 0,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<PullEventRow, StoreError> {
    Ok(PullEventRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        pr_id: row.try_get("pr_id")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    repo_id: i64,
    pr_id: i64,
    kind: &str,
    actor: Option<&str>,
    detail: &str,
) -> Result<PullEventRow, StoreError> {
    let event = PullEventRow {
        id: next_id(),
        repo_id,
        pr_id,
        kind: kind.to_string(),
        actor: actor.map(str::to_string),
        detail: detail.to_string(),
        created_at_ms: now_ms(),
    };
    sqlx::query(&format!(
        "INSERT INTO pr_events ({EVENT_COLS}, runs_pending) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(event.id)
    .bind(event.repo_id)
    .bind(event.pr_id)
    .bind(&event.kind)
    .bind(&event.actor)
    .bind(&event.detail)
    .bind(event.created_at_ms)
    // PULLREQUEST triggers' cursor: pending for the kinds that fire triggers
    .bind(i64::from(
        !crate::runs::pulls::trigger_events(kind).is_empty(),
    ))
    .execute(&mut **tx)
    .await?;
    Ok(event)
}

impl Store {
    /// Inserts a pull request with the next number of its repository, its revision 1 and its
    /// `pr_opened` event, in one transaction. Two concurrent inserts cannot get the same
    /// number (unique index); the loser retries with the next one.
    pub async fn insert_pull(
        &self,
        new: &NewPull<'_>,
    ) -> Result<(PullRow, PullEventRow), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_insert_pull(new).await {
                Err(StoreError::Conflict(_)) if attempt < 20 => continue,
                other => return other,
            }
        }
    }

    async fn try_insert_pull(
        &self,
        new: &NewPull<'_>,
    ) -> Result<(PullRow, PullEventRow), StoreError> {
        let id = next_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pull_requests (id, repo_id, number, source_branch, dest_branch, title, \
             description, author_id, author_name, state, head_sha, base_sha, revision, reviewers, \
             created_at_ms, updated_at_ms) \
             SELECT $1, $2, COALESCE(MAX(number), 0) + 1, $3, $4, $5, $6, $7, $8, 'open', $9, $10, \
             1, $11, $12, $12 FROM pull_requests WHERE repo_id = $2",
        )
        .bind(id)
        .bind(new.repo_id)
        .bind(new.source)
        .bind(new.destination)
        .bind(new.title)
        .bind(new.description)
        .bind(new.author_id)
        .bind(new.author)
        .bind(new.head_sha)
        .bind(new.base_sha)
        .bind(new.reviewers.join(","))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, || "pull request number taken".into()))?;
        sqlx::query(
            "INSERT INTO pr_revisions (id, pr_id, revision, head_sha, base_sha, created_at_ms) \
             VALUES ($1, $2, 1, $3, $4, $5)",
        )
        .bind(next_id())
        .bind(id)
        .bind(new.head_sha)
        .bind(new.base_sha)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {PULL_COLS} FROM pull_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let pull = pull_from_row(&row)?;
        let event = insert_event(
            &mut tx,
            new.repo_id,
            id,
            "pr_opened",
            Some(new.author),
            &format!("#{} {} -> {}", pull.number, new.source, new.destination),
        )
        .await?;
        tx.commit().await?;
        Ok((pull, event))
    }

    /// Pull request `number` of a repository.
    pub async fn pull(&self, repo_id: i64, number: i64) -> Result<Option<PullRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PULL_COLS} FROM pull_requests WHERE repo_id = $1 AND number = $2"
        ))
        .bind(repo_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(pull_from_row)
        .transpose()
    }

    /// A repository's pull requests, newest first, optionally in one state.
    pub async fn list_pulls(
        &self,
        repo_id: i64,
        state: Option<PullState>,
        limit: i64,
    ) -> Result<Vec<PullRow>, StoreError> {
        let rows = match state {
            Some(state) => {
                sqlx::query(&format!(
                    "SELECT {PULL_COLS} FROM pull_requests WHERE repo_id = $1 AND state = $2 \
                     ORDER BY number DESC LIMIT $3"
                ))
                .bind(repo_id)
                .bind(state.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {PULL_COLS} FROM pull_requests WHERE repo_id = $1 \
                     ORDER BY number DESC LIMIT $2"
                ))
                .bind(repo_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(pull_from_row).collect()
    }

    /// Open pull requests whose source is `branch`.
    pub async fn open_pulls_from(
        &self,
        repo_id: i64,
        branch: &str,
    ) -> Result<Vec<PullRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PULL_COLS} FROM pull_requests WHERE repo_id = $1 AND source_branch = $2 \
             AND state = 'open'"
        ))
        .bind(repo_id)
        .bind(branch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(pull_from_row)
        .collect()
    }

    /// Every open pull request of every repository (start-up reconciliation).
    pub async fn all_open_pulls(&self) -> Result<Vec<PullRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PULL_COLS} FROM pull_requests WHERE state = 'open' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(pull_from_row)
        .collect()
    }

    /// Changes title, description and reviewers.
    pub async fn update_pull(&self, pull: &PullRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pull_requests SET title = $1, description = $2, reviewers = $3, \
             updated_at_ms = $4 WHERE id = $5",
        )
        .bind(&pull.title)
        .bind(&pull.description)
        .bind(pull.reviewers.join(","))
        .bind(now_ms())
        .bind(pull.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A new revision of an open pull request whose head was `old_head`: records it, marks
    /// earlier approvals stale when `stale_approvals`, and its `pr_revision` event. `None` when
    /// the request is no longer open at `old_head` (compare-and-set).
    pub async fn add_revision(
        &self,
        pull: &PullRow,
        new_head: &str,
        base_sha: &str,
        stale_approvals: bool,
        actor: Option<&str>,
    ) -> Result<Option<(i64, PullEventRow)>, StoreError> {
        let now = now_ms();
        let revision = pull.revision + 1;
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE pull_requests SET head_sha = $1, base_sha = $2, revision = $3, \
             updated_at_ms = $4 WHERE id = $5 AND state = 'open' AND head_sha = $6 \
             AND revision = $7",
        )
        .bind(new_head)
        .bind(base_sha)
        .bind(revision)
        .bind(now)
        .bind(pull.id)
        .bind(&pull.head_sha)
        .bind(pull.revision)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO pr_revisions (id, pr_id, revision, head_sha, base_sha, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(next_id())
        .bind(pull.id)
        .bind(revision)
        .bind(new_head)
        .bind(base_sha)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if stale_approvals {
            sqlx::query(
                "UPDATE pr_reviews SET stale = 1 WHERE pr_id = $1 AND verdict = 'approve' \
                 AND revision < $2",
            )
            .bind(pull.id)
            .bind(revision)
            .execute(&mut *tx)
            .await?;
        }
        let event = insert_event(
            &mut tx,
            pull.repo_id,
            pull.id,
            "pr_revision",
            actor,
            &format!("revision {revision} {new_head}"),
        )
        .await?;
        tx.commit().await?;
        Ok(Some((revision, event)))
    }

    /// The revisions of a pull request, oldest first.
    pub async fn pull_revisions(
        &self,
        pr_id: i64,
    ) -> Result<Vec<cove_api::PullRevision>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, head_sha, base_sha, created_at_ms FROM pr_revisions \
             WHERE pr_id = $1 ORDER BY revision",
        )
        .bind(pr_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(cove_api::PullRevision {
                    revision: row.try_get("revision")?,
                    head_sha: row.try_get("head_sha")?,
                    base_sha: row.try_get("base_sha")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// open → merged (with the destination's new commit) or open → closed, with its event.
    /// False when the request was not open at revision `revision`.
    pub async fn end_pull(
        &self,
        pull: &PullRow,
        to: PullState,
        merge_sha: Option<&str>,
        actor: &str,
    ) -> Result<Option<PullEventRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE pull_requests SET state = $1, merge_sha = $2, updated_at_ms = $3 \
             WHERE id = $4 AND state = 'open' AND revision = $5",
        )
        .bind(to.as_str())
        .bind(merge_sha)
        .bind(now_ms())
        .bind(pull.id)
        .bind(pull.revision)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(None);
        }
        let (kind, detail) = match to {
            PullState::Merged => ("pr_merged", merge_sha.unwrap_or_default().to_string()),
            _ => ("pr_closed", String::new()),
        };
        let event =
            insert_event(&mut tx, pull.repo_id, pull.id, kind, Some(actor), &detail).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    /// Stores a comment and its `comment_added` event.
    pub async fn insert_comment(
        &self,
        pull: &PullRow,
        comment: &CommentRow,
    ) -> Result<PullEventRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO pr_comments ({COMMENT_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(comment.id)
        .bind(comment.pr_id)
        .bind(comment.parent_id)
        .bind(comment.author_id)
        .bind(&comment.author)
        .bind(&comment.body)
        .bind(&comment.path)
        .bind(&comment.side)
        .bind(comment.line.map(i64::from))
        .bind(&comment.commit)
        .bind(comment.created_at_ms)
        .bind(comment.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        let event = insert_event(
            &mut tx,
            pull.repo_id,
            pull.id,
            "comment_added",
            Some(&comment.author),
            &comment.id.to_string(),
        )
        .await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Comment `id` of pull request `pr_id`.
    pub async fn comment(&self, pr_id: i64, id: i64) -> Result<Option<CommentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COMMENT_COLS} FROM pr_comments WHERE pr_id = $1 AND id = $2"
        ))
        .bind(pr_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(comment_from_row)
        .transpose()
    }

    /// The comments of a pull request, oldest first.
    pub async fn comments(&self, pr_id: i64) -> Result<Vec<CommentRow>, StoreError> {
        self.rows_of_pull(COMMENT_COLS, "pr_comments", pr_id, comment_from_row)
            .await
    }

    /// The rows of `table` that belong to pull request `pr_id`, oldest first.
    async fn rows_of_pull<T>(
        &self,
        cols: &str,
        table: &str,
        pr_id: i64,
        from_row: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        sqlx::query(&format!(
            "SELECT {cols} FROM {table} WHERE pr_id = $1 ORDER BY id"
        ))
        .bind(pr_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Changes a comment's body.
    pub async fn edit_comment(&self, id: i64, body: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE pr_comments SET body = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(body)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a comment; its replies go with it.
    pub async fn delete_comment(&self, pr_id: i64, id: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pr_comments WHERE pr_id = $1 AND parent_id = $2")
            .bind(pr_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pr_comments WHERE pr_id = $1 AND id = $2")
            .bind(pr_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a review and its `review_submitted` event.
    pub async fn insert_review(
        &self,
        pull: &PullRow,
        review: &ReviewRow,
    ) -> Result<PullEventRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO pr_reviews ({REVIEW_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)"
        ))
        .bind(review.id)
        .bind(review.pr_id)
        .bind(review.reviewer_id)
        .bind(&review.reviewer)
        .bind(review.verdict.as_str())
        .bind(&review.body)
        .bind(review.revision)
        .bind(review.created_at_ms)
        .execute(&mut *tx)
        .await?;
        let event = insert_event(
            &mut tx,
            pull.repo_id,
            pull.id,
            "review_submitted",
            Some(&review.reviewer),
            review.verdict.as_str(),
        )
        .await?;
        tx.commit().await?;
        Ok(event)
    }

    /// The reviews of a pull request, oldest first.
    pub async fn reviews(&self, pr_id: i64) -> Result<Vec<ReviewRow>, StoreError> {
        self.rows_of_pull(REVIEW_COLS, "pr_reviews", pr_id, review_from_row)
            .await
    }

    /// The events of a pull request, oldest first.
    pub async fn pull_events(&self, pr_id: i64) -> Result<Vec<PullEventRow>, StoreError> {
        self.rows_of_pull(EVENT_COLS, "pr_events", pr_id, event_from_row)
            .await
    }

    /// A repository's pull-request settings (defaults when never set).
    pub async fn pull_settings(&self, repo_id: i64) -> Result<PullSettings, StoreError> {
        let row = sqlx::query(
            "SELECT allowed_merge_methods, stale_approvals FROM pr_settings WHERE repo_id = $1",
        )
        .bind(repo_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(PullSettings::default());
        };
        let methods: String = row.try_get("allowed_merge_methods")?;
        Ok(PullSettings {
            allowed_merge_methods: methods.split(',').filter_map(MergeMethod::parse).collect(),
            stale_approvals: row.try_get::<i64, _>("stale_approvals")? != 0,
        })
    }

    /// Sets a repository's pull-request settings.
    pub async fn set_pull_settings(
        &self,
        repo_id: i64,
        settings: &PullSettings,
    ) -> Result<(), StoreError> {
        let methods = settings
            .allowed_merge_methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pr_settings WHERE repo_id = $1")
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pr_settings (repo_id, allowed_merge_methods, stale_approvals) \
             VALUES ($1, $2, $3)",
        )
        .bind(repo_id)
        .bind(methods)
        .bind(i64::from(settings.stale_approvals))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A pull request event whose runs are not created yet.
#[derive(Debug, Clone)]
pub struct PendingPullEvent {
    pub owner: String,
    pub name: String,
    pub number: i64,
    pub event: PullEventRow,
}

impl Store {
    /// Up to `limit` pull request events whose runs are not created yet, oldest first.
    pub async fn pending_pull_events(
        &self,
        limit: i64,
    ) -> Result<Vec<PendingPullEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.repo_id, e.pr_id, e.kind, e.actor, e.detail, e.created_at_ms, \
             p.number, r.owner, r.name FROM pr_events e \
             JOIN pull_requests p ON p.id = e.pr_id JOIN repos r ON r.id = e.repo_id \
             WHERE e.runs_pending = 1 ORDER BY e.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PendingPullEvent {
                    owner: row.try_get("owner")?,
                    name: row.try_get("name")?,
                    number: row.try_get("number")?,
                    event: event_from_row(row)?,
                })
            })
            .collect()
    }

    /// The runs of pull request event `id` are created (or it had none to create).
    pub async fn pull_event_done(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE pr_events SET runs_pending = 0 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
