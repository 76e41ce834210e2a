//! SQL for projects and members (migration 0029_projects): projects, their repositories (one
//! project per repository at most), members with project roles, pending invitations, and the
//! role on a repository that a project role gives.
//!
//! Every change of a project's members first updates the project's row, which serializes
//! them per project on SQLite (the write lock) and PostgreSQL (the row lock): the "at least one
//! administrator" rule cannot be broken by two concurrent demotions.

use cove_api::{EstimateKind, ProjectRole, Role};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{map_unique, next_id, now_ms, repo_from_row, RepoRow, Store, StoreError};

/// A stored project.
#[derive(Debug, Clone)]
pub struct ProjectRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub estimate_kind: EstimateKind,
    pub created_by: i64,
    pub created_at_ms: i64,
}

/// A member or a pending invitation of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectMemberRow {
    pub user_id: i64,
    pub username: String,
    pub role: ProjectRole,
    pub pending: bool,
    pub invited_by: Option<String>,
    pub since_ms: i64,
}

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRefusal {
    /// The user is neither a member nor invited.
    NotMember,
    /// The change would leave the project without an administrator.
    LastAdministrator,
}

const PROJECT_COLS: &str = "id, name, description, estimate_kind, created_by, created_at_ms";

fn project_from_row(row: &AnyRow) -> Result<ProjectRow, StoreError> {
    let kind: String = row.try_get("estimate_kind")?;
    Ok(ProjectRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        estimate_kind: EstimateKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown estimate kind {kind:?}")))?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn role_of(text: &str) -> Result<ProjectRole, StoreError> {
    ProjectRole::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown project role {text:?}")))
}

/// Takes the project row's lock for the rest of the transaction.
async fn lock_project(tx: &mut Transaction<'_, Any>, project_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE projects SET created_at_ms = created_at_ms WHERE id = $1")
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn administrators(tx: &mut Transaction<'_, Any>, project_id: i64) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM project_members WHERE project_id = $1 AND role = 'administrator'",
    )
    .bind(project_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("n")?)
}

async fn member_role_in(
    tx: &mut Transaction<'_, Any>,
    project_id: i64,
    user_id: i64,
) -> Result<Option<ProjectRole>, StoreError> {
    let row =
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|r| role_of(&r.try_get::<String, _>("role")?))
        .transpose()
}

impl Store {
    /// Creates a project with `creator` as its administrator. A name taken (without regard to
    /// case) is a [`StoreError::Conflict`].
    pub async fn create_project(
        &self,
        name: &str,
        description: &str,
        estimate_kind: EstimateKind,
        creator_id: i64,
    ) -> Result<ProjectRow, StoreError> {
        let row = ProjectRow {
            id: next_id(),
            name: name.to_string(),
            description: description.to_string(),
            estimate_kind,
            created_by: creator_id,
            created_at_ms: now_ms(),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projects (id, name, name_key, description, estimate_kind, created_by, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(name)
        .bind(name.to_ascii_lowercase())
        .bind(description)
        .bind(estimate_kind.as_str())
        .bind(creator_id)
        .bind(row.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, || format!("project {name} already exists")))?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, invited_by, since_ms) \
             VALUES ($1, $2, 'administrator', NULL, $3)",
        )
        .bind(row.id)
        .bind(creator_id)
        .bind(row.created_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// The project named `name` (without regard to case).
    pub async fn project(&self, name: &str) -> Result<Option<ProjectRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE name_key = $1"
        ))
        .bind(name.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<ProjectRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// The projects `user_id` is a member of or invited to (every project when `all`), by
    /// name, with the user's role and pending invitation's role.
    pub async fn list_projects(
        &self,
        user_id: i64,
        all: bool,
    ) -> Result<Vec<(ProjectRow, Option<ProjectRole>, Option<ProjectRole>)>, StoreError> {
        let filter = if all {
            ""
        } else {
            "WHERE m.role IS NOT NULL OR i.role IS NOT NULL"
        };
        let rows = sqlx::query(&format!(
            "SELECT p.id, p.name, p.description, p.estimate_kind, p.created_by, p.created_at_ms, \
                    m.role AS member_role, i.role AS invited_role \
             FROM projects p \
             LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 \
             LEFT JOIN project_invitations i ON i.project_id = p.id AND i.user_id = $2 \
             {filter} ORDER BY p.name_key"
        ))
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let member: Option<String> = row.try_get("member_role")?;
                let invited: Option<String> = row.try_get("invited_role")?;
                Ok((
                    project_from_row(row)?,
                    member.as_deref().map(role_of).transpose()?,
                    invited.as_deref().map(role_of).transpose()?,
                ))
            })
            .collect()
    }

    /// Changes a project's description and estimate kind.
    pub async fn update_project(
        &self,
        id: i64,
        description: &str,
        estimate_kind: EstimateKind,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET description = $1, estimate_kind = $2 WHERE id = $3")
            .bind(description)
            .bind(estimate_kind.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The project's repositories, by `owner/name`.
    pub async fn project_repos(&self, project_id: i64) -> Result<Vec<RepoRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.owner, r.name, r.owner_id, r.visibility, r.default_branch, \
                    r.created_at \
             FROM project_repos pr JOIN repos r ON r.id = pr.repo_id \
             WHERE pr.project_id = $1 ORDER BY r.owner, r.name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(repo_from_row).collect()
    }

    /// The project a repository belongs to, if any.
    pub async fn project_of_repo(&self, repo_id: i64) -> Result<Option<ProjectRow>, StoreError> {
        let row = sqlx::query(
            "SELECT p.id, p.name, p.description, p.estimate_kind, p.created_by, p.created_at_ms \
             FROM project_repos pr JOIN projects p ON p.id = pr.project_id \
             WHERE pr.repo_id = $1",
        )
        .bind(repo_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// Puts a repository into a project; one that already belongs to a project is a
    /// [`StoreError::Conflict`].
    pub async fn attach_repo(&self, project_id: i64, repo: &RepoRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO project_repos (repo_id, project_id) VALUES ($1, $2)")
            .bind(repo.id)
            .bind(project_id)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                map_unique(e, || {
                    format!(
                        "repository {}/{} already belongs to a project",
                        repo.owner, repo.name
                    )
                })
            })?;
        Ok(())
    }

    /// Takes a repository out of a project; whether it was in it.
    pub async fn detach_repo(&self, project_id: i64, repo_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM project_repos WHERE repo_id = $1 AND project_id = $2")
            .bind(repo_id)
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `user_id`'s role in the project, `None` when not a member (invitations do not count).
    pub async fn project_role(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<Option<ProjectRole>, StoreError> {
        let row =
            sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| role_of(&r.try_get::<String, _>("role")?))
            .transpose()
    }

    /// `user_id`'s role in the project that `repo_id` belongs to, if any.
    pub async fn project_role_for_repo(
        &self,
        repo_id: i64,
        user_id: i64,
    ) -> Result<Option<ProjectRole>, StoreError> {
        let row = sqlx::query(
            "SELECT m.role FROM project_repos pr JOIN project_members m \
             ON m.project_id = pr.project_id WHERE pr.repo_id = $1 AND m.user_id = $2",
        )
        .bind(repo_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| role_of(&r.try_get::<String, _>("role")?))
            .transpose()
    }

    /// The role a per-repository membership or, without one, the repository's project gives
    /// `user_id` on `repo_id` (the per-repository role wins). The repository's owner and
    /// administrators are handled by `auth`.
    pub async fn member_role(
        &self,
        repo_id: i64,
        user_id: i64,
    ) -> Result<Option<Role>, StoreError> {
        if let Some(role) = self.repo_member_role(repo_id, user_id).await? {
            return Ok(Some(role));
        }
        Ok(self
            .project_role_for_repo(repo_id, user_id)
            .await?
            .map(ProjectRole::repo_role))
    }

    /// Members (by name) and then pending invitations (by name).
    pub async fn project_members(
        &self,
        project_id: i64,
    ) -> Result<Vec<ProjectMemberRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.username, m.role, m.invited_by, m.since_ms, 0 AS pending \
             FROM project_members m JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 \
             UNION ALL \
             SELECT i.user_id, u.username, i.role, i.invited_by, i.created_at_ms AS since_ms, \
                    1 AS pending \
             FROM project_invitations i JOIN users u ON u.id = i.user_id WHERE i.project_id = $2 \
             ORDER BY pending, username",
        )
        .bind(project_id)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProjectMemberRow {
                    user_id: row.try_get("user_id")?,
                    username: row.try_get("username")?,
                    role: role_of(&row.try_get::<String, _>("role")?)?,
                    pending: row.try_get::<i64, _>("pending")? != 0,
                    invited_by: row.try_get("invited_by")?,
                    since_ms: row.try_get("since_ms")?,
                })
            })
            .collect()
    }

    /// Invites `user_id` with `role` (replacing an earlier pending invitation). A member
    /// already is a [`StoreError::Conflict`].
    pub async fn invite_to_project(
        &self,
        project_id: i64,
        user_id: i64,
        role: ProjectRole,
        invited_by: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_project(&mut tx, project_id).await?;
        if member_role_in(&mut tx, project_id, user_id)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(
                "the user is already a member; change their role instead".into(),
            ));
        }
        sqlx::query("DELETE FROM project_invitations WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO project_invitations (project_id, user_id, role, invited_by, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(invited_by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns `user_id`'s pending invitation into a membership; its role, or `None` when there
    /// was no invitation.
    pub async fn accept_invitation(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<Option<ProjectRole>, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_project(&mut tx, project_id).await?;
        let row = sqlx::query(
            "SELECT role, invited_by FROM project_invitations \
             WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role = role_of(&row.try_get::<String, _>("role")?)?;
        let invited_by: String = row.try_get("invited_by")?;
        sqlx::query("DELETE FROM project_invitations WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, invited_by, since_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(invited_by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(role))
    }

    /// Changes a member's role (or a pending invitation's).
    pub async fn set_project_role(
        &self,
        project_id: i64,
        user_id: i64,
        role: ProjectRole,
    ) -> Result<Result<(), MemberRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_project(&mut tx, project_id).await?;
        let Some(now) = member_role_in(&mut tx, project_id, user_id).await? else {
            let done = sqlx::query(
                "UPDATE project_invitations SET role = $1 WHERE project_id = $2 AND user_id = $3",
            )
            .bind(role.as_str())
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(if done.rows_affected() > 0 {
                Ok(())
            } else {
                Err(MemberRefusal::NotMember)
            });
        };
        if now == ProjectRole::Administrator
            && role != ProjectRole::Administrator
            && administrators(&mut tx, project_id).await? <= 1
        {
            return Ok(Err(MemberRefusal::LastAdministrator));
        }
        sqlx::query("UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Removes a member (or a pending invitation). The last administrator stays.
    pub async fn remove_project_member(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<Result<(), MemberRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_project(&mut tx, project_id).await?;
        let role = member_role_in(&mut tx, project_id, user_id).await?;
        if role == Some(ProjectRole::Administrator)
            && administrators(&mut tx, project_id).await? <= 1
        {
            return Ok(Err(MemberRefusal::LastAdministrator));
        }
        let invitations =
            sqlx::query("DELETE FROM project_invitations WHERE project_id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(if role.is_some() || invitations.rows_affected() > 0 {
            Ok(())
        } else {
            Err(MemberRefusal::NotMember)
        })
    }
}
