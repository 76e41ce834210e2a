//! SQL for deployment environments (migration 0025_deploy): environments with their
//! protection rules (JSON), administrator-set account connections, environment-scoped
//! variables and sealed secrets, and the deployments recorded per deploy action of a run.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{map_unique, Store, StoreError};

/// A stored deployment environment.
#[derive(Debug, Clone)]
pub struct DeployEnvRow {
    pub id: i64,
    pub repo_id: i64,
    pub name: String,
    pub description: String,
    /// `cove_api::DeployProtection` as JSON.
    pub protection: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A stored account connection.
#[derive(Debug, Clone)]
pub struct DeployConnectionRow {
    pub env_id: i64,
    pub name: String,
    pub account_id: String,
    pub region: String,
    /// JSON list of role ARNs.
    pub roles: String,
    pub endpoints: Option<String>,
}

/// A stored variable (a secret's `value` is sealed).
#[derive(Debug, Clone)]
pub struct DeployVariableRow {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// A deployment with what its job says about it.
#[derive(Debug, Clone)]
pub struct DeploymentRow {
    pub id: i64,
    pub env_id: i64,
    pub env_name: String,
    pub run_id: i64,
    pub run_number: i64,
    pub job_id: i64,
    pub action: String,
    pub branch: String,
    pub commit_sha: String,
    pub actor: Option<String>,
    pub refused: Option<String>,
    pub rollback_of: Option<i64>,
    pub job_state: String,
    pub job_error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// A deployment to record with a new run.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub id: i64,
    pub env_id: i64,
    pub run_id: i64,
    pub job_id: i64,
    pub action: String,
    pub actor: Option<String>,
    pub refused: Option<String>,
    pub rollback_of: Option<i64>,
    pub created_at_ms: i64,
}

const ENV_COLS: &str = "id, repo_id, name, description, protection, created_at_ms, updated_at_ms";

fn env_from_row(row: &AnyRow) -> Result<DeployEnvRow, StoreError> {
    Ok(DeployEnvRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        protection: row.try_get("protection")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

const DEPLOYMENT_COLS: &str =
    "d.id, d.env_id, e.name AS env_name, d.run_id, r.number AS run_number, \
    d.job_id, d.action, r.branch, r.commit_sha, d.actor, d.refused, d.rollback_of, \
    j.state AS job_state, j.error AS job_error, d.created_at_ms, j.finished_at_ms";

const DEPLOYMENT_FROM: &str = "deployments d JOIN deploy_environments e ON e.id = d.env_id \
    JOIN runs r ON r.id = d.run_id JOIN jobs j ON j.id = d.job_id";

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRow, StoreError> {
    Ok(DeploymentRow {
        id: row.try_get("id")?,
        env_id: row.try_get("env_id")?,
        env_name: row.try_get("env_name")?,
        run_id: row.try_get("run_id")?,
        run_number: row.try_get("run_number")?,
        job_id: row.try_get("job_id")?,
        action: row.try_get("action")?,
        branch: row.try_get("branch")?,
        commit_sha: row.try_get("commit_sha")?,
        actor: row.try_get("actor")?,
        refused: row.try_get("refused")?,
        rollback_of: row.try_get("rollback_of")?,
        job_state: row.try_get("job_state")?,
        job_error: row.try_get("job_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

impl Store {
    /// Stores a new environment; a name the repository already has is a conflict.
    pub async fn create_deploy_env(&self, e: &DeployEnvRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO deploy_environments ({ENV_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(e.id)
        .bind(e.repo_id)
        .bind(&e.name)
        .bind(&e.description)
        .bind(&e.protection)
        .bind(e.created_at_ms)
        .bind(e.updated_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|err| map_unique(err, || format!("deployment environment {}", e.name)))?;
        Ok(())
    }

    /// The repository's environments by name.
    pub async fn deploy_envs(&self, repo_id: i64) -> Result<Vec<DeployEnvRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM deploy_environments WHERE repo_id = $1 ORDER BY name"
        ))
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(env_from_row)
        .collect()
    }

    /// One environment of the repository by name.
    pub async fn deploy_env(
        &self,
        repo_id: i64,
        name: &str,
    ) -> Result<Option<DeployEnvRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM deploy_environments WHERE repo_id = $1 AND name = $2"
        ))
        .bind(repo_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(env_from_row)
        .transpose()
    }

    /// An environment by id.
    pub async fn deploy_envs_by_id(&self, id: i64) -> Result<Option<DeployEnvRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM deploy_environments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(env_from_row)
        .transpose()
    }

    /// Replaces description and protection; false when there is no such environment.
    pub async fn update_deploy_env(
        &self,
        id: i64,
        description: &str,
        protection: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deploy_environments SET description = $1, protection = $2, \
             updated_at_ms = $3 WHERE id = $4",
        )
        .bind(description)
        .bind(protection)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The deploy actions of environment `env_id` that wait for approval: (job id, run id).
    pub async fn waiting_deploy_jobs(&self, env_id: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.job_id, d.run_id FROM deployments d JOIN jobs j ON j.id = d.job_id \
             WHERE d.env_id = $1 AND j.state = $2 ORDER BY d.id",
        )
        .bind(env_id)
        .bind(cove_api::JobState::WaitingApproval.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("job_id")?, r.try_get("run_id")?)))
            .collect()
    }

    /// Deletes an environment with its connections, variables and history.
    pub async fn delete_deploy_env(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for table in ["deployments", "deploy_variables", "deploy_connections"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE env_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM deploy_environments WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The environment's connections by name.
    pub async fn deploy_connections(
        &self,
        env_id: i64,
    ) -> Result<Vec<DeployConnectionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT env_id, name, account_id, region, roles, endpoints FROM deploy_connections \
             WHERE env_id = $1 ORDER BY name",
        )
        .bind(env_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeployConnectionRow {
                    env_id: row.try_get("env_id")?,
                    name: row.try_get("name")?,
                    account_id: row.try_get("account_id")?,
                    region: row.try_get("region")?,
                    roles: row.try_get("roles")?,
                    endpoints: row.try_get("endpoints")?,
                })
            })
            .collect()
    }

    /// Creates or replaces a connection.
    pub async fn put_deploy_connection(&self, c: &DeployConnectionRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM deploy_connections WHERE env_id = $1 AND name = $2")
            .bind(c.env_id)
            .bind(&c.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO deploy_connections (env_id, name, account_id, region, roles, endpoints) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.env_id)
        .bind(&c.name)
        .bind(&c.account_id)
        .bind(&c.region)
        .bind(&c.roles)
        .bind(&c.endpoints)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_deploy_connection(
        &self,
        env_id: i64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM deploy_connections WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The environment's variables by name (secrets sealed).
    pub async fn deploy_variables(
        &self,
        env_id: i64,
    ) -> Result<Vec<DeployVariableRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value, secret FROM deploy_variables WHERE env_id = $1 ORDER BY name",
        )
        .bind(env_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeployVariableRow {
                    name: row.try_get("name")?,
                    value: row.try_get("value")?,
                    secret: row.try_get::<i64, _>("secret")? != 0,
                })
            })
            .collect()
    }

    /// Creates or replaces a variable (`value` already sealed for a secret).
    pub async fn put_deploy_variable(
        &self,
        env_id: i64,
        v: &DeployVariableRow,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM deploy_variables WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(&v.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO deploy_variables (env_id, name, value, secret, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(env_id)
        .bind(&v.name)
        .bind(&v.value)
        .bind(i64::from(v.secret))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_deploy_variable(
        &self,
        env_id: i64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM deploy_variables WHERE env_id = $1 AND name = $2")
            .bind(env_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records deployments (one per deploy action of a new run).
    pub async fn record_deployments(&self, rows: &[NewDeployment]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for d in rows {
            sqlx::query(
                "INSERT INTO deployments (id, env_id, run_id, job_id, action, actor, refused, \
                 rollback_of, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(d.id)
            .bind(d.env_id)
            .bind(d.run_id)
            .bind(d.job_id)
            .bind(&d.action)
            .bind(&d.actor)
            .bind(&d.refused)
            .bind(d.rollback_of)
            .bind(d.created_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The environment's deployments, newest first, at most `limit`.
    pub async fn deployments(
        &self,
        env_id: i64,
        limit: i64,
    ) -> Result<Vec<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM {DEPLOYMENT_FROM} WHERE d.env_id = $1 \
             ORDER BY d.created_at_ms DESC, d.id DESC LIMIT $2"
        ))
        .bind(env_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(deployment_from_row)
        .collect()
    }

    /// The deployments of a run.
    pub async fn deployments_of_run(&self, run_id: i64) -> Result<Vec<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM {DEPLOYMENT_FROM} WHERE d.run_id = $1 ORDER BY d.id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(deployment_from_row)
        .collect()
    }

    /// The deployment of a job, if it is a deploy action.
    pub async fn deployment_of_job(
        &self,
        job_id: i64,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM {DEPLOYMENT_FROM} WHERE d.job_id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(deployment_from_row)
        .transpose()
    }

    /// The users who approved job `job_id` in its newest round (approval decisions outlive
    /// the gate row of an approved deploy action; a retry opens a new round).
    pub async fn approvers_of_job(&self, job_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT user_name FROM approval_decisions WHERE job_id = $1 \
             AND decision = 'approve' AND round = \
             (SELECT MAX(round) FROM approval_decisions WHERE job_id = $1) ORDER BY user_name",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("user_name")?))
            .collect()
    }

    /// The newest successful deployment into the environment.
    pub async fn current_deployment(
        &self,
        env_id: i64,
    ) -> Result<Option<DeploymentRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM {DEPLOYMENT_FROM} WHERE d.env_id = $1 \
             AND j.state = 'succeeded' ORDER BY j.finished_at_ms DESC, d.id DESC LIMIT 1"
        ))
        .bind(env_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(deployment_from_row)
        .transpose()
    }
}
