//! SQL for issues and the board (migration 0024_issues): the board row that serializes a
//! repository's moves and inserts, its columns, issues with their per-repository numbers and
//! card ranks, comments and the branches created from issues.

use cove_api::Priority;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{map_unique, next_id, now_ms, Store, StoreError};

/// The columns a new board starts with.
pub const DEFAULT_COLUMNS: [&str; 5] = ["Backlog", "To do", "In progress", "In review", "Done"];

/// The gap between two cards' ranks when the store places them.
pub const RANK_GAP: i64 = 1024;

/// A board column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRow {
    pub id: i64,
    pub name: String,
    pub position: i64,
    pub limit: Option<u32>,
}

/// A stored issue (with its column's name).
#[derive(Debug, Clone)]
pub struct IssueRow {
    pub id: i64,
    pub repo_id: i64,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub column_id: i64,
    pub column: String,
    pub rank: i64,
    pub assignees: Vec<String>,
    pub labels: Vec<String>,
    pub priority: Priority,
    pub estimate: Option<String>,
    pub author_id: i64,
    pub author: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A stored issue comment.
#[derive(Debug, Clone)]
pub struct IssueCommentRow {
    pub id: i64,
    pub issue_id: i64,
    pub author_id: i64,
    pub author: String,
    pub body: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An issue to insert (number, id and rank are assigned by the store).
#[derive(Debug, Clone)]
pub struct NewIssue<'a> {
    pub repo_id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub column_id: i64,
    pub assignees: &'a [String],
    pub labels: &'a [String],
    pub priority: Priority,
    pub estimate: Option<&'a str>,
    pub author_id: i64,
    pub author: &'a str,
}

/// Which issues a list returns.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    pub column_id: Option<i64>,
    pub assignee: Option<String>,
    pub label: Option<String>,
    /// Case-insensitive, in the title or the description.
    pub text: Option<String>,
}

/// Why a move was refused.
#[derive(Debug)]
pub enum MoveRefusal {
    /// The destination column holds its limit.
    ColumnFull { column: String, limit: u32 },
}

/// `,a,b,`: stored so a filter on one name is one `LIKE '%,name,%'`.
fn join_list(items: &[String]) -> String {
    format!(",{},", items.join(","))
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `LIKE` pattern text with `\`, `%` and `_` escaped (used with `ESCAPE '\'`).
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const ISSUE_SELECT: &str = "SELECT i.id, i.repo_id, i.number, i.title, i.description, \
     i.column_id, c.name AS column_name, i.card_rank, i.assignees, i.labels, i.priority, \
     i.estimate, i.author_id, i.author_name, i.created_at_ms, i.updated_at_ms \
     FROM issues i JOIN issue_columns c ON c.id = i.column_id";

fn issue_from_row(row: &AnyRow) -> Result<IssueRow, StoreError> {
    let priority: String = row.try_get("priority")?;
    Ok(IssueRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        column_id: row.try_get("column_id")?,
        column: row.try_get("column_name")?,
        rank: row.try_get("card_rank")?,
        assignees: split_list(&row.try_get::<String, _>("assignees")?),
        labels: split_list(&row.try_get::<String, _>("labels")?),
        priority: Priority::parse(&priority)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown priority {priority:?}")))?,
        estimate: row.try_get("estimate")?,
        author_id: row.try_get("author_id")?,
        author: row.try_get("author_name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn column_from_row(row: &AnyRow) -> Result<ColumnRow, StoreError> {
    Ok(ColumnRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        position: row.try_get("position")?,
        limit: row
            .try_get::<Option<i64>, _>("wip_limit")?
            .and_then(|l| u32::try_from(l).ok()),
    })
}

fn comment_from_row(row: &AnyRow) -> Result<IssueCommentRow, StoreError> {
    Ok(IssueCommentRow {
        id: row.try_get("id")?,
        issue_id: row.try_get("issue_id")?,
        author_id: row.try_get("author_id")?,
        author: row.try_get("author_name")?,
        body: row.try_get("body")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// Takes the repository's board lock for the rest of the transaction (the first write of
/// the transaction, so SQLite takes its write lock here and PostgreSQL the row's lock).
async fn lock_board(tx: &mut Transaction<'static, Any>, repo_id: i64) -> Result<(), StoreError> {
    let locked = sqlx::query("UPDATE issue_boards SET version = version + 1 WHERE repo_id = $1")
        .bind(repo_id)
        .execute(&mut **tx)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(StoreError::Corrupt(format!(
            "repository {repo_id} has no board row"
        )));
    }
    Ok(())
}

async fn columns_in(
    tx: &mut Transaction<'static, Any>,
    repo_id: i64,
) -> Result<Vec<ColumnRow>, StoreError> {
    sqlx::query(
        "SELECT id, name, position, wip_limit FROM issue_columns WHERE repo_id = $1 \
         ORDER BY position",
    )
    .bind(repo_id)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(column_from_row)
    .collect()
}

/// The rank a card gets at `position` of a column (other cards than `moving`), renumbering
/// the column when no gap is left there.
async fn rank_at(
    tx: &mut Transaction<'static, Any>,
    column_id: i64,
    moving: i64,
    position: Option<u32>,
) -> Result<i64, StoreError> {
    let position = i64::from(position.unwrap_or(u32::MAX));
    let neighbours = |offset: i64, limit: i64| {
        sqlx::query(
            "SELECT id, card_rank FROM issues WHERE column_id = $1 AND id <> $2 \
             ORDER BY card_rank, id LIMIT $3 OFFSET $4",
        )
        .bind(column_id)
        .bind(moving)
        .bind(limit)
        .bind(offset)
    };
    let ranks: Vec<i64> = if position == 0 {
        neighbours(0, 1).fetch_all(&mut **tx).await?
    } else {
        neighbours(position - 1, 2).fetch_all(&mut **tx).await?
    }
    .iter()
    .map(|r| r.try_get::<i64, _>("card_rank"))
    .collect::<Result<_, _>>()?;
    let (prev, next) = match (position, ranks.as_slice()) {
        (0, [next, ..]) => (None, Some(*next)),
        (0, []) => (None, None),
        (_, [prev, next, ..]) => (Some(*prev), Some(*next)),
        (_, [prev]) => (Some(*prev), None),
        (_, []) => {
            // Past the end: after the last card.
            let last: Option<i64> = sqlx::query(
                "SELECT MAX(card_rank) AS last FROM issues WHERE column_id = $1 AND id <> $2",
            )
            .bind(column_id)
            .bind(moving)
            .fetch_one(&mut **tx)
            .await?
            .try_get("last")?;
            (last, None)
        }
    };
    match (prev, next) {
        (None, None) => Ok(RANK_GAP),
        (Some(prev), None) => Ok(prev + RANK_GAP),
        (None, Some(next)) => Ok(next - RANK_GAP),
        (Some(prev), Some(next)) if next - prev > 1 => Ok(prev + (next - prev) / 2),
        (Some(_), Some(_)) => {
            // No gap left: renumber the column with the card's place kept free.
            let ids: Vec<i64> = sqlx::query(
                "SELECT id FROM issues WHERE column_id = $1 AND id <> $2 ORDER BY card_rank, id",
            )
            .bind(column_id)
            .bind(moving)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
            let place = usize::try_from(position)
                .unwrap_or(usize::MAX)
                .min(ids.len());
            for (i, id) in ids.iter().enumerate() {
                let slot = if i < place { i } else { i + 1 } as i64;
                sqlx::query("UPDATE issues SET card_rank = $1 WHERE id = $2")
                    .bind((slot + 1) * RANK_GAP)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok((place as i64 + 1) * RANK_GAP)
        }
    }
}

impl Store {
    /// The repository's board columns in order, creating the board with its default columns
    /// on first use.
    pub async fn board_columns(&self, repo_id: i64) -> Result<Vec<ColumnRow>, StoreError> {
        // Read first: the board exists after its first use, and a read takes no write lock.
        let existing: Vec<ColumnRow> = sqlx::query(
            "SELECT id, name, position, wip_limit FROM issue_columns WHERE repo_id = $1 \
             ORDER BY position",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(column_from_row)
        .collect::<Result<_, _>>()?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let mut tx = self.pool.begin().await?;
        let created = sqlx::query(
            "INSERT INTO issue_boards (repo_id, version) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 1 {
            for (i, name) in DEFAULT_COLUMNS.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO issue_columns (id, repo_id, name, position, wip_limit) \
                     VALUES ($1, $2, $3, $4, NULL)",
                )
                .bind(next_id())
                .bind(repo_id)
                .bind(*name)
                .bind(i as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        let columns = columns_in(&mut tx, repo_id).await?;
        tx.commit().await?;
        Ok(columns)
    }

    /// Replaces the columns: kept by name (cards stay), new ones added, left-out ones removed
    /// when empty (else `Conflict`).
    pub async fn set_board_columns(
        &self,
        repo_id: i64,
        columns: &[(String, Option<u32>)],
    ) -> Result<Vec<ColumnRow>, StoreError> {
        self.board_columns(repo_id).await?;
        let mut tx = self.pool.begin().await?;
        lock_board(&mut tx, repo_id).await?;
        let existing = columns_in(&mut tx, repo_id).await?;
        for old in &existing {
            if columns.iter().any(|(name, _)| *name == old.name) {
                continue;
            }
            let cards: i64 = sqlx::query("SELECT COUNT(*) AS n FROM issues WHERE column_id = $1")
                .bind(old.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if cards > 0 {
                return Err(StoreError::Conflict(format!(
                    "column {:?} still holds {cards} issue(s); move them first",
                    old.name
                )));
            }
            sqlx::query("DELETE FROM issue_columns WHERE id = $1")
                .bind(old.id)
                .execute(&mut *tx)
                .await?;
        }
        // Positions are moved out of the way first, then set (no unique index on them).
        for (i, (name, limit)) in columns.iter().enumerate() {
            let limit = limit.map(i64::from);
            match existing.iter().find(|c| c.name == *name) {
                Some(old) => {
                    sqlx::query(
                        "UPDATE issue_columns SET position = $1, wip_limit = $2 WHERE id = $3",
                    )
                    .bind(i as i64)
                    .bind(limit)
                    .bind(old.id)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO issue_columns (id, repo_id, name, position, wip_limit) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(next_id())
                    .bind(repo_id)
                    .bind(name)
                    .bind(i as i64)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let out = columns_in(&mut tx, repo_id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Inserts an issue with the next number of its repository at the bottom of its column,
    /// in one transaction under the board's lock.
    pub async fn insert_issue(&self, new: &NewIssue<'_>) -> Result<IssueRow, StoreError> {
        self.board_columns(new.repo_id).await?;
        let id = next_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        lock_board(&mut tx, new.repo_id).await?;
        let rank = rank_at(&mut tx, new.column_id, id, None).await?;
        sqlx::query(
            "INSERT INTO issues (id, repo_id, number, title, description, column_id, card_rank, \
             assignees, labels, priority, estimate, author_id, author_name, created_at_ms, \
             updated_at_ms) \
             SELECT $1, $2, COALESCE(MAX(number), 0) + 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $13 FROM issues WHERE repo_id = $2",
        )
        .bind(id)
        .bind(new.repo_id)
        .bind(new.title)
        .bind(new.description)
        .bind(new.column_id)
        .bind(rank)
        .bind(join_list(new.assignees))
        .bind(join_list(new.labels))
        .bind(new.priority.as_str())
        .bind(new.estimate)
        .bind(new.author_id)
        .bind(new.author)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, || "issue number taken".into()))?;
        let row = sqlx::query(&format!("{ISSUE_SELECT} WHERE i.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let issue = issue_from_row(&row)?;
        tx.commit().await?;
        Ok(issue)
    }

    /// Issue `number` of a repository.
    pub async fn issue(&self, repo_id: i64, number: i64) -> Result<Option<IssueRow>, StoreError> {
        sqlx::query(&format!(
            "{ISSUE_SELECT} WHERE i.repo_id = $1 AND i.number = $2"
        ))
        .bind(repo_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(issue_from_row)
        .transpose()
    }

    /// A page of a repository's issues matching `filter`, newest first, and how many match.
    pub async fn list_issues(
        &self,
        repo_id: i64,
        filter: &IssueFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<IssueRow>, i64), StoreError> {
        let mut clauses = vec!["i.repo_id = $1".to_string()];
        let mut texts: Vec<String> = Vec::new();
        let mut text_clause = |sql: &str, value: String| {
            texts.push(value);
            clauses.push(sql.replace('?', &format!("${}", texts.len() + 1)));
        };
        if let Some(assignee) = &filter.assignee {
            text_clause(
                "i.assignees LIKE ? ESCAPE '\\'",
                format!("%,{},%", like_escape(assignee)),
            );
        }
        if let Some(label) = &filter.label {
            text_clause(
                "i.labels LIKE ? ESCAPE '\\'",
                format!("%,{},%", like_escape(label)),
            );
        }
        if let Some(text) = &filter.text {
            text_clause(
                "(LOWER(i.title) LIKE ? ESCAPE '\\' OR LOWER(i.description) LIKE ? ESCAPE '\\')",
                format!("%{}%", like_escape(&text.to_lowercase())),
            );
        }
        let mut next = texts.len() + 2;
        if filter.column_id.is_some() {
            clauses.push(format!("i.column_id = ${next}"));
            next += 1;
        }
        let where_sql = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM issues i WHERE {where_sql}");
        let page_sql = format!(
            "{ISSUE_SELECT} WHERE {where_sql} ORDER BY i.number DESC LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut count = sqlx::query(&count_sql).bind(repo_id);
        let mut page = sqlx::query(&page_sql).bind(repo_id);
        for text in &texts {
            count = count.bind(text.clone());
            page = page.bind(text.clone());
        }
        if let Some(column) = filter.column_id {
            count = count.bind(column);
            page = page.bind(column);
        }
        let total: i64 = count.fetch_one(&self.pool).await?.try_get("n")?;
        let rows = page.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        Ok((
            rows.iter().map(issue_from_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Every issue of the repository in board order (column position, then rank), without
    /// descriptions (a card does not show one).
    pub async fn board_issues(&self, repo_id: i64) -> Result<Vec<IssueRow>, StoreError> {
        let select = ISSUE_SELECT.replace("i.description,", "'' AS description,");
        sqlx::query(&format!(
            "{select} WHERE i.repo_id = $1 ORDER BY c.position, i.card_rank, i.id"
        ))
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(issue_from_row)
        .collect()
    }

    /// Changes title, description, assignees, labels, priority and estimate.
    pub async fn update_issue(&self, issue: &IssueRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE issues SET title = $1, description = $2, assignees = $3, labels = $4, \
             priority = $5, estimate = $6, updated_at_ms = $7 WHERE id = $8",
        )
        .bind(&issue.title)
        .bind(&issue.description)
        .bind(join_list(&issue.assignees))
        .bind(join_list(&issue.labels))
        .bind(issue.priority.as_str())
        .bind(issue.estimate.as_deref())
        .bind(now_ms())
        .bind(issue.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves an issue into `column_id` at `position` (0 = top, `None` = bottom), in one
    /// transaction under the board's lock: concurrent moves apply one after the other, each
    /// against the order the previous one left. A full destination column refuses.
    pub async fn move_issue(
        &self,
        repo_id: i64,
        issue_id: i64,
        column_id: i64,
        position: Option<u32>,
    ) -> Result<Result<IssueRow, MoveRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_board(&mut tx, repo_id).await?;
        let columns = columns_in(&mut tx, repo_id).await?;
        let column = columns
            .iter()
            .find(|c| c.id == column_id)
            .ok_or_else(|| StoreError::Conflict("the column was removed".into()))?;
        let current: i64 = sqlx::query("SELECT column_id FROM issues WHERE id = $1")
            .bind(issue_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("column_id")?;
        if let Some(limit) = column.limit {
            if current != column_id {
                let cards: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM issues WHERE column_id = $1")
                        .bind(column_id)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                if cards >= i64::from(limit) {
                    return Ok(Err(MoveRefusal::ColumnFull {
                        column: column.name.clone(),
                        limit,
                    }));
                }
            }
        }
        let rank = rank_at(&mut tx, column_id, issue_id, position).await?;
        sqlx::query(
            "UPDATE issues SET column_id = $1, card_rank = $2, updated_at_ms = $3 WHERE id = $4",
        )
        .bind(column_id)
        .bind(rank)
        .bind(now_ms())
        .bind(issue_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!("{ISSUE_SELECT} WHERE i.id = $1"))
            .bind(issue_id)
            .fetch_one(&mut *tx)
            .await?;
        let issue = issue_from_row(&row)?;
        tx.commit().await?;
        Ok(Ok(issue))
    }

    /// Comments of an issue, oldest first.
    pub async fn issue_comments(&self, issue_id: i64) -> Result<Vec<IssueCommentRow>, StoreError> {
        sqlx::query(
            "SELECT id, issue_id, author_id, author_name, body, created_at_ms, updated_at_ms \
             FROM issue_comments WHERE issue_id = $1 ORDER BY id",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(comment_from_row)
        .collect()
    }

    pub async fn issue_comment(
        &self,
        issue_id: i64,
        id: i64,
    ) -> Result<Option<IssueCommentRow>, StoreError> {
        sqlx::query(
            "SELECT id, issue_id, author_id, author_name, body, created_at_ms, updated_at_ms \
             FROM issue_comments WHERE issue_id = $1 AND id = $2",
        )
        .bind(issue_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(comment_from_row)
        .transpose()
    }

    pub async fn insert_issue_comment(&self, row: &IssueCommentRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO issue_comments (id, issue_id, author_id, author_name, body, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(row.issue_id)
        .bind(row.author_id)
        .bind(&row.author)
        .bind(&row.body)
        .bind(row.created_at_ms)
        .bind(row.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE issues SET updated_at_ms = $1 WHERE id = $2")
            .bind(row.created_at_ms)
            .bind(row.issue_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn edit_issue_comment(&self, id: i64, body: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE issue_comments SET body = $1, updated_at_ms = $2 WHERE id = $3")
            .bind(body)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_issue_comment(&self, issue_id: i64, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM issue_comments WHERE issue_id = $1 AND id = $2")
            .bind(issue_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a branch created from an issue (again: nothing changes).
    pub async fn add_issue_branch(&self, issue_id: i64, branch: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO issue_branches (issue_id, branch, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(issue_id)
        .bind(branch)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn issue_branches(&self, issue_id: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT branch FROM issue_branches WHERE issue_id = $1 ORDER BY created_at_ms, branch",
        )
        .bind(issue_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>("branch")?))
        .collect()
    }

    /// Pull requests of a repository whose title or description contains `#number`
    /// (a superset: the caller checks word boundaries), newest first, at most 200.
    pub async fn pulls_mentioning(
        &self,
        repo_id: i64,
        number: i64,
    ) -> Result<Vec<(i64, String, String, String)>, StoreError> {
        let pattern = format!("%#{number}%");
        sqlx::query(
            "SELECT number, title, description, state FROM pull_requests WHERE repo_id = $1 \
             AND (title LIKE $2 OR description LIKE $2) ORDER BY number DESC LIMIT 200",
        )
        .bind(repo_id)
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("number")?,
                r.try_get("title")?,
                r.try_get("description")?,
                r.try_get("state")?,
            ))
        })
        .collect()
    }
}
